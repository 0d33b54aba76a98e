"""The migration lock: which strategy holds it, and the session-level advisory lock, waited for
by polling.

Waiters poll ``pg_try_advisory_lock`` from an autocommit connection instead of blocking in
``pg_advisory_lock``: a blocked waiter holds a snapshot open, and the holder's
``CREATE INDEX CONCURRENTLY`` would wait for it forever.
"""

from __future__ import annotations

import logging
import struct
import time
from typing import TYPE_CHECKING

from ._errors import LockTimeoutError

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("sqlmigrate")

_FIRST_POLL = 0.05
_MAX_POLL = 0.5


def acquire(conn: psycopg.Connection, key: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    delay = _FIRST_POLL
    announced = False
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if row and row[0]:
            return
        now = time.monotonic()
        if now >= deadline:
            raise timeout_error(what, timeout)
        if not announced:
            log.info("waiting for another process to finish migrating %s", what)
            announced = True
        time.sleep(min(delay, deadline - now))
        delay = min(delay * 2, _MAX_POLL)


def release(conn: psycopg.Connection, key: int) -> None:
    if not conn.closed:
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def timeout_error(what: str, timeout: float) -> LockTimeoutError:
    return LockTimeoutError(
        f"another process held the migration lock of {what} for more than {timeout:g} s; "
        "it may still be migrating: check pg_stat_activity (application_name = 'sqlmigrate'), "
        "or raise --lock-timeout"
    )


_PID = "SELECT pg_backend_pid()"
_SAMPLES = 4


def detect_strategy(conn: psycopg.Connection, conninfo: str | None, *, needs_session: bool) -> str:
    """``session`` on a direct connection; ``transaction`` (no session state) behind a proxy or
    pooler, unless a no-transaction step ``needs_session`` and no transaction pooler shows itself
    (a session pooler keeps the session; a transaction pooler would keep the lock on a pooled server
    session that other clients then get)."""
    if _direct(conn):
        return "session"
    if not needs_session:
        return "transaction"
    return "transaction" if _transaction_pooled(conn, conninfo) else "session"


def _direct(conn: psycopg.Connection) -> bool:
    """Nothing sits between this client and the server. Over TCP: the server's client port is this
    socket's own port. Over a Unix socket (Linux): the process at the other end is PostgreSQL's
    postmaster, not a pooler."""
    import os
    import socket

    row = conn.execute("SELECT inet_client_port()").fetchone()
    try:
        with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
            if row is not None and row[0] is not None:
                local = sock.getsockname()
                return isinstance(local, tuple) and local[1] == row[0]
            if sock.family != socket.AF_UNIX or not hasattr(socket, "SO_PEERCRED"):
                return False
            peer, _, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                             struct.calcsize("3i")))
    except (OSError, ValueError):
        return False
    try:
        with open(f"/proc/{peer}/comm", encoding="utf-8") as f:
            return f.read().strip() in ("postgres", "postmaster")
    except OSError:  # another PID namespace (a socket mounted from a container), or no /proc
        return False


def _transaction_pooled(conn: psycopg.Connection, conninfo: str | None) -> bool:
    """A transaction pooler shows itself by moving this client between server sessions, or by giving
    this client's idle server session to another client: a second connection, opened for a moment,
    gets the same backend (PgBouncer hands out the most recently used server first)."""
    import psycopg

    first = _pid(conn)
    if any(_pid(conn) != first for _ in range(_SAMPLES)):
        return True
    if conninfo is None:  # the caller's connection: no second one to open
        return False
    from ._connection import connect

    try:
        other = connect(conninfo, connect_timeout=_PROBE_WAIT)
    except Exception:
        return False
    try:
        # Bounded: a pooler whose servers are all taken (by the other processes starting now, each
        # holding one while it probes) would queue this query, and every prober would wait for the
        # others. No answer in time tells nothing: the guards still catch a move.
        return _pid_within(other, _PROBE_WAIT) == first
    except psycopg.Error:
        return False
    finally:
        other.close()


_PROBE_WAIT = 1.0


def _pid_within(conn: psycopg.Connection, seconds: float) -> int | None:
    """The backend pid of ``conn``, or None when no server answers within ``seconds``."""
    import select

    pgconn = conn.pgconn
    pgconn.send_query(_PID.encode())
    while pgconn.flush():
        select.select([], [pgconn.socket], [], seconds)
    deadline = time.monotonic() + seconds
    pgconn.consume_input()
    while pgconn.is_busy():
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([pgconn.socket], [], [], left)[0]:
            return None
        pgconn.consume_input()
    result = pgconn.get_result()
    while pgconn.get_result() is not None:
        pass
    value = result.get_value(0, 0) if result is not None and result.ntuples else None
    return int(value) if value else None


def _pid(conn: psycopg.Connection) -> int:
    row = conn.execute(_PID).fetchone()
    return int(row[0]) if row else 0
