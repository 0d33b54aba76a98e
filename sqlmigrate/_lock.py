"""The migration lock: which strategy holds it, and the session-level advisory lock, waited for
by polling.

Waiters poll ``pg_try_advisory_lock`` from an autocommit connection instead of blocking in
``pg_advisory_lock``: a blocked waiter holds a snapshot open, and the holder's
``CREATE INDEX CONCURRENTLY`` would wait for it forever.
"""

from __future__ import annotations

import logging
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


def detect_strategy(conn: psycopg.Connection, conninfo: str | None) -> str:
    """``session`` on a direct or session-pooled connection, ``transaction`` behind a transaction
    pooler, where a session-level lock would stay behind on a pooled server session.

    A transaction pooler shows itself by moving this client between server sessions, or by giving
    this client's idle server session to another client: a second connection, opened for a moment,
    gets the same backend (PgBouncer hands out the most recently used server first). Neither can
    happen on a direct or session-pooled connection.
    """
    import psycopg

    first = _pid(conn)
    if any(_pid(conn) != first for _ in range(_SAMPLES)):
        return "transaction"
    if conninfo is None:  # the caller's connection: no second one to open
        return "session"
    from ._connection import connect

    try:
        other = connect(conninfo)
    except Exception:
        return "session"
    try:
        other.autocommit = False
        shared = _pid(other) == first
        other.rollback()
    except psycopg.Error:
        shared = False
    finally:
        other.close()
    return "transaction" if shared else "session"


def _pid(conn: psycopg.Connection) -> int:
    row = conn.execute(_PID).fetchone()
    return int(row[0]) if row else 0
