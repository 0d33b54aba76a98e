"""One session with the database: the connection, where the history lives, how the migration lock
is held, timeouts, and the isolation of one step from the next.

Every step's transaction starts with a guard that takes the migration lock at transaction level
and checks the history row it is about to write: a transaction that cannot prove it holds the lock
(a transaction pooler moved it to another server session) or that finds the work already done
applies nothing. sqlmigrate's own settings are ``SET LOCAL`` inside that transaction, and the
session state a migration leaves (``SET``, temporary tables, prepared statements) is reset after it
in the same message, so nothing leaks into the next migration or onto a pooled server session.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from psycopg import sql

from . import _lock as lock
from ._config import LOCK_STRATEGIES
from ._execute import ALREADY_DONE, LOCK_BUSY, GuardFailed
from ._errors import ConfigurationError, ConnectError, DatabaseError, PrivilegeError, SqlMigrateError

if TYPE_CHECKING:
    import psycopg

    from ._history import History, Row

log = logging.getLogger("sqlmigrate")
T = TypeVar("T")

# What a fresh psql session would not have: the state a migration may leave behind. Not DISCARD
# ALL, which would also drop the session lock that the run keeps.
_RESET = "RESET ALL;DEALLOCATE ALL;CLOSE ALL;UNLISTEN *;DISCARD TEMP;DISCARD SEQUENCES"

# Placeholders in the cached guard text (no SQL contains them).
_VERSION, _CHECKSUM = "\x01version\x01", "\x01checksum\x01"


class Session:
    """An open connection with its history location and lock strategy; see :func:`open_session`."""

    def __init__(self, conn: psycopg.Connection, history: History, *, conninfo: str | None,
                 strategy: str, lock_timeout: float, statement_timeout: float | None,
                 lock_wait: float = 0, lock_retries: int = 0) -> None:
        self.conn = conn
        self.history = history
        self.conninfo = conninfo
        self.strategy = strategy
        self.lock_timeout = lock_timeout
        self.statement_timeout = statement_timeout
        #: each statement's wait for a table lock (0: forever), and the retries of a migration that hit it
        self.lock_wait = lock_wait
        self.lock_retries = lock_retries
        self._run_lock = False
        self._waited = False

    # -- reading ------------------------------------------------------------------------------------

    def rows(self) -> list[Row]:
        with translate("reading the history"):
            return self.history.rows(self.conn)

    # -- the migration lock -------------------------------------------------------------------------

    @property
    def per_transaction(self) -> bool:
        """True when the lock is only ever held inside a step's own transaction (no session state)."""
        return self.strategy in ("transaction", "table")

    def history_exists(self) -> bool:
        with translate("reading the history"):
            return self.history.exists(self.conn)

    @contextmanager
    def locked(self, *, create: bool = True, no_transaction: bool = False) -> Iterator[None]:
        """Hold the migration lock for a run: with the ``session`` strategy, a session-level advisory
        lock for the whole block; otherwise each step's guard takes it for its own transaction.
        The history tables are created first when missing (unless not ``create``).

        ``auto`` takes the session strategy on a direct connection; behind a proxy or pooler it
        keeps no session state, unless a ``no_transaction`` step needs a lock that outlives one
        transaction and no transaction pooler shows itself.
        """
        with translate("taking the migration lock"):
            if self.strategy == "auto":
                self.strategy = lock.detect_strategy(self.conn, self.conninfo, needs_session=no_transaction)
                log.debug("lock strategy: %s", self.strategy)
            if not self.per_transaction:
                key = self.history.lock_key()
                lock.acquire(self.conn, key, self.lock_timeout, self.history.display)
                self._run_lock = True
        try:
            if create:
                self._ensure()
            yield
        finally:
            if self._run_lock:
                self._run_lock = False
                try:
                    lock.release(self.conn, key)
                except Exception:
                    pass  # closing the session releases it too

    def _ensure(self) -> None:
        """Create the history tables (and the lock table of the ``table`` strategy) when missing."""
        if self.strategy == "table":
            self.history.ensure_lock_table(self.conn)
        if self.history.ready(self.conn):
            return
        self.transaction(self.history.create_sql(self.conn), "creating the history tables")

    def in_turn(self, run: Callable[[], T]) -> T:
        """``run()`` (one guarded transaction), again after a pause while its guard finds the lock
        busy; a guard that finds the work done raises :class:`GuardFailed` to the caller."""
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.05
        while True:
            try:
                return run()
            except GuardFailed as refused:
                if not refused.busy:
                    raise
                delay = self._wait_turn(deadline, delay)

    def _wait_turn(self, deadline: float, delay: float) -> float:
        """After a guard found the lock busy: sleep, or raise once the lock timeout is spent."""
        if not self.per_transaction:
            raise DatabaseError(
                "the migration lock of this session is no longer visible to its transactions: the "
                "connection goes through a transaction pooler (PgBouncer pool_mode=transaction, "
                "Supavisor, RDS Proxy), which moves transactions between server sessions. Nothing was "
                "applied by this transaction. Use --lock-strategy transaction, or a direct or "
                "session-pooled URL", LOCK_BUSY)
        now = time.monotonic()
        if now >= deadline:
            raise lock.timeout_error(self.history.display, self.lock_timeout)
        if not self._waited:
            log.info("waiting for another process to finish migrating %s", self.history.display)
            self._waited = True
        time.sleep(min(delay, deadline - now))
        return min(delay * 2, 0.5)

    # -- what a step's transaction starts and ends with ---------------------------------------------

    def begin(self, version: int | None = None, *, applied: bool | None = None,
              checksum: str | None = None) -> list[str]:
        """The statements that open a step's transaction: BEGIN, sqlmigrate's own settings (local to
        the transaction), and the guard. With ``version``, the guard also checks that its history
        row is applied (``applied=True``, with ``checksum`` if given) or not (``applied=False``)."""
        statements = ["BEGIN", *(f"SET LOCAL {setting}" for setting in self._settings())]
        guard = self._guard_template(version is not None, bool(applied), checksum is not None)
        if version is not None:
            guard = guard.replace(_VERSION, str(int(version)))
        if checksum is not None:
            guard = guard.replace(_CHECKSUM, sql.Literal(checksum).as_string(self.conn))
        statements.append(guard)
        return statements

    @functools.lru_cache(maxsize=8)  # composed once per kind: one per step would cost 5% of S1
    def _guard_template(self, check: bool, applied: bool, with_checksum: bool) -> str:
        if self.strategy == "table":
            take = sql.SQL(
                "BEGIN PERFORM 1 FROM {} WHERE id = 1 FOR UPDATE NOWAIT;"
                " EXCEPTION WHEN lock_not_available THEN RAISE EXCEPTION 'sqlmigrate: the migration lock"
                " is held by another process' USING ERRCODE = {busy}; END;"
            ).format(self.history.lock_ident, busy=sql.Literal(LOCK_BUSY))
        else:
            take = sql.SQL(
                "IF NOT pg_try_advisory_xact_lock({key}) THEN RAISE EXCEPTION 'sqlmigrate: the migration"
                " lock is held by another process' USING ERRCODE = {busy}; END IF;"
            ).format(key=sql.Literal(self.history.lock_key()), busy=sql.Literal(LOCK_BUSY))
        condition = sql.SQL(""" AND checksum = {}""".format(_CHECKSUM) if with_checksum else "")
        done = sql.SQL(
            " IF {neg} EXISTS (SELECT FROM {history} WHERE version = {version} AND state = 'applied'{checksum})"
            " THEN RAISE EXCEPTION 'sqlmigrate: version {version} was {what} by another process'"
            " USING ERRCODE = {code}; END IF;"
        ).format(neg=sql.SQL("NOT" if applied else ""), history=self.history.ident, version=sql.SQL(_VERSION),
                 checksum=condition, what=sql.SQL("rolled back" if applied else "applied"),
                 code=sql.Literal(ALREADY_DONE))
        return sql.SQL("DO $sqlmigrate$ BEGIN {take}{done} END $sqlmigrate$").format(
            take=take, done=done if check else sql.SQL("")).as_string(self.conn)

    @property
    def reset(self) -> str:
        """Sent after each step's COMMIT or ROLLBACK, in the same message (so a transaction pooler
        runs it on the same server session): the next step sees a fresh session."""
        return _RESET

    def transaction(self, body: str, doing: str) -> None:
        """Run sqlmigrate's own ``body`` in one guarded transaction, waiting for the lock if busy."""
        from . import _execute as execute

        with translate(doing):
            self.in_turn(lambda: execute.run_own(self.conn, self.begin(), body, self.reset))

    def set_session_timeouts(self) -> None:
        """Session-level settings for a no-transaction step (which has no transaction to be local
        to); the reset after the step removes them."""
        from . import _execute as execute

        execute.send(self.conn, ";".join(f"SET {setting}" for setting in self._settings()))

    def _settings(self) -> list[str]:
        """sqlmigrate's own settings, as ``name = value``."""
        settings = ["application_name = 'sqlmigrate'"]
        if self.statement_timeout:
            settings.append(f"statement_timeout = {int(self.statement_timeout * 1000)}")
        if self.lock_wait:
            settings.append(f"lock_timeout = {max(1, int(self.lock_wait * 1000))}")
        if self.conn.info.server_version >= 140000:
            # The server notices within a second when this client dies, instead of running an
            # orphaned statement (and holding the lock) to its end.
            settings.append("client_connection_check_interval = 1000")
        return settings


@contextmanager
def open_session(database: Any, *, table: str, schema: str | None, lock_strategy: str = "auto",
                 lock_timeout: float, statement_timeout: float | None, lock_wait: float = 0,
                 lock_retries: int = 0) -> Iterator[Session]:
    """Connect (or adopt an open ``psycopg.Connection``), find the history, and close or hand the
    connection back on the way out."""
    from ._history import History

    if lock_strategy not in LOCK_STRATEGIES:
        # ``auto`` becomes ``session`` or ``transaction`` when the lock is first needed
        raise ConfigurationError(f"invalid lock strategy {lock_strategy!r}: one of {', '.join(LOCK_STRATEGIES)}")
    with _connected(database) as (conn, conninfo), translate("opening the session"):
        history = History.locate(conn, table, schema)
        yield Session(conn, history, conninfo=conninfo, strategy=lock_strategy, lock_timeout=lock_timeout,
                      statement_timeout=statement_timeout, lock_wait=lock_wait, lock_retries=lock_retries)


@contextmanager
def connection(database: Any) -> Iterator[psycopg.Connection]:
    """A connection to ``database`` (a connection string, a SQLAlchemy Engine or URL: closed
    afterwards; or the caller's open psycopg connection: handed back as it came), for work that needs
    no history or lock."""
    with _connected(database) as (conn, _):
        yield conn


@contextmanager
def _connected(database: Any) -> Iterator[tuple[psycopg.Connection, str | None]]:
    import psycopg

    if isinstance(database, psycopg.Connection):
        with _adopted(database) as conn:
            yield conn, None
        return
    from ._connection import conninfo_of, connect

    conninfo = conninfo_of(database)
    conn = connect(conninfo)
    try:
        yield conn, conninfo
    finally:
        conn.close()


@contextmanager
def _adopted(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """The caller's connection, in autocommit and without prepared statements (which a transaction
    pooler cannot keep) while sqlmigrate uses it; handed back as it came."""
    if conn.info.transaction_status != 0:  # IDLE
        raise ConfigurationError(
            "the connection passed to sqlmigrate has an open transaction; commit or roll it "
            "back first (sqlmigrate runs each migration in a transaction of its own)"
        )
    autocommit, threshold = conn.autocommit, conn.prepare_threshold
    conn.autocommit = True
    conn.prepare_threshold = None
    try:
        yield conn
    finally:
        if not conn.closed:
            try:
                # The isolation reset deallocated the server's prepared statements: let psycopg
                # forget its own (it does so when it sees this command).
                conn.execute("DEALLOCATE ALL")
            except Exception:
                pass
            conn.autocommit = autocommit
            conn.prepare_threshold = threshold


@contextmanager
def translate(doing: str) -> Iterator[None]:
    """A database error in sqlmigrate's own work becomes a :class:`SqlMigrateError` with a clear
    message and exit code (migrations' own errors are :class:`MigrationError` already)."""
    import psycopg

    try:
        yield
    except SqlMigrateError:
        raise
    except psycopg.Error as exc:
        raise database_error(exc, doing) from None


def database_error(exc: Exception, doing: str) -> SqlMigrateError:
    from ._connection import mask

    state = getattr(exc, "sqlstate", None)
    text = mask(str(exc).strip()) or type(exc).__name__
    if state == "42501":
        return PrivilegeError(
            f"permission denied while {doing}: {text}; the role needs USAGE and CREATE on the history's "
            "schema (or SELECT, INSERT, UPDATE and DELETE on an existing history table and its log)",
            state)
    if state == "25006":
        return PrivilegeError(
            f"the database is read-only ({text}) while {doing}: a read replica, a read-only transaction "
            "or default_transaction_read_only; point sqlmigrate at the primary with a role that may "
            "write", state)
    if (state or "").startswith("08") or state is None and isinstance(exc, psycopg_operational()):
        return ConnectError(f"lost the connection to the database while {doing}: {text}")
    return DatabaseError(f"the database refused {doing}: {text}" + (f" (SQLSTATE {state})" if state else ""),
                         state)


def psycopg_operational() -> type[Exception]:
    import psycopg

    return psycopg.OperationalError
