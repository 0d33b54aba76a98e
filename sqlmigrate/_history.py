"""The history table (what is applied) and the append-only log (everything that happened)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from psycopg import sql

from ._errors import HistoryError

if TYPE_CHECKING:
    import psycopg

# States of a history row. "running" and "failed" only occur for no-transaction migrations: a
# transactional migration either commits together with its "applied" row or leaves no row at all.
APPLIED, RUNNING, FAILED = "applied", "running", "failed"
#: the error text of a "running" row whose rollback (not its migration) was under way
ROLLBACK_RUNNING = "rollback in progress"

_HISTORY_COLUMNS = {"version", "name", "checksum", "applied_at", "execution_ms", "applied_by", "state",
                    "baseline", "out_of_order", "statements_done", "error"}
_LOG_COLUMNS = {"id", "version", "name", "direction", "outcome", "checksum", "error", "started_at",
                "finished_at", "execution_ms", "db_user", "client_host", "client_pid", "os_user", "detail"}


@dataclass(frozen=True)
class Row:
    """One row of the history table."""

    version: int
    name: str
    checksum: str
    applied_at: datetime
    execution_ms: int
    applied_by: str
    state: str
    baseline: bool
    out_of_order: bool
    statements_done: int | None
    error: str | None


@dataclass(frozen=True)
class LogEntry:
    id: int
    version: int | None
    name: str | None
    direction: str
    outcome: str
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    execution_ms: int | None
    db_user: str
    client_host: str | None
    client_pid: int | None
    detail: str | None

    def as_dict(self) -> dict[str, object]:
        from dataclasses import asdict

        d = asdict(self)
        for key in ("started_at", "finished_at"):
            d[key] = d[key].isoformat() if d[key] is not None else None
        return d


def own_tables(table: str) -> tuple[str, ...]:
    """Every table sqlmigrate may keep beside a history table named ``table``: the history, its log,
    the ``table`` strategy's lock row and the last clean drift check. Never part of the user's schema
    (not dumped, never drift, not compared by ``verify``)."""
    return (table, f"{table}_log", f"{table}_lock", f"{table}_drift")


class History:
    """Names and SQL of one history table and its log, ``<table>`` and ``<table>_log``, in ``schema``."""

    def __init__(self, schema: str, table: str) -> None:
        self.schema = schema
        self.table = table
        self.log_table = f"{table}_log"
        self.ident = sql.Identifier(schema, table)
        self.log_ident = sql.Identifier(schema, self.log_table)
        #: the one-row table whose row lock is the migration lock of the ``table`` strategy
        self.lock_ident = sql.Identifier(schema, f"{table}_lock")
        #: the one-row table that remembers the last drift check that found none
        self.drift_ident = sql.Identifier(schema, f"{table}_drift")
        #: the tables of :func:`own_tables`
        self.own_tables = own_tables(table)

    @classmethod
    def locate(cls, conn: psycopg.Connection, table: str, schema: str | None) -> History:
        """Where the history is: ``schema`` if given; else the first schema of search_path that
        already has a table of that name (so a migration that creates a schema earlier in
        search_path does not move it); else the first existing schema of search_path."""
        if schema is not None:
            return cls(schema, table)
        row = conn.execute(
            "SELECT coalesce((SELECT s.name FROM unnest(current_schemas(false)) WITH ORDINALITY s(name, i)"
            " JOIN pg_namespace n ON n.nspname = s.name"
            " JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = %s AND c.relkind IN ('r', 'p')"
            " ORDER BY s.i LIMIT 1), current_schema())", (table,)).fetchone()
        if row is None or row[0] is None:
            raise HistoryError(
                "no schema to keep the history table in: search_path names no existing schema; "
                "pass --schema or fix search_path"
            )
        return cls(row[0], table)

    @property
    def display(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def protected(self) -> list[tuple[str, str]]:
        """(schema, table) of both tables: no migration may drop, truncate, rename, alter or delete
        from them."""
        return [(self.schema, self.table), (self.schema, self.log_table)]

    def lock_key(self) -> int:
        """The advisory lock key: one per history table, so independent migration sets never block
        each other."""
        import hashlib

        digest = hashlib.sha256(f"sqlmigrate:{self.schema}.{self.table}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    # -- creating and checking --------------------------------------------------------------------

    def existing_columns(self, conn: psycopg.Connection) -> tuple[set[str] | None, set[str] | None]:
        """Column names of the history and log tables, or None where a table does not exist."""
        rows = conn.execute(
            "SELECT c.relname, a.attname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
            " WHERE n.nspname = %s AND c.relname = ANY(%s)",
            (self.schema, [self.table, self.log_table]),
        ).fetchall()
        history: set[str] | None = None
        log: set[str] | None = None
        for relname, attname in rows:
            target = set() if attname is None else {attname}
            if relname == self.table:
                history = (history or set()) | target
            else:
                log = (log or set()) | target
        return history, log

    def exists(self, conn: psycopg.Connection) -> bool:
        history, log = self.existing_columns(conn)
        self._check_shape(history, log)
        return history is not None

    def _check_shape(self, history: set[str] | None, log: set[str] | None) -> None:
        for name, have, want in ((self.table, history, _HISTORY_COLUMNS), (self.log_table, log, _LOG_COLUMNS)):
            if have is not None and not want <= have:
                raise HistoryError(
                    f"table {self.schema}.{name} exists but was not created by sqlmigrate "
                    f"(its columns: {', '.join(sorted(have)) or 'none'}{_guess_owner(have)}); "
                    "sqlmigrate never alters another tool's table. Keep sqlmigrate's history elsewhere "
                    "with --table (e.g. --table sqlmigrate_history) or [tool.sqlmigrate] table"
                )

    def ready(self, conn: psycopg.Connection) -> bool:
        """Both tables exist (and are sqlmigrate's: another tool's table raises)."""
        history, log = self.existing_columns(conn)
        self._check_shape(history, log)
        return history is not None and log is not None

    def create_sql(self, conn: psycopg.Connection) -> str:
        """The DDL that creates both tables (and the schema, only when it does not exist: a role
        that may only CREATE in its schema can still run everything). Run it under the lock:
        concurrent CREATE TABLE IF NOT EXISTS can still collide in pg_type."""
        row = conn.execute("SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = %s)", (self.schema,)).fetchone()
        schema = sql.SQL("" if row and row[0] else "CREATE SCHEMA IF NOT EXISTS {};").format(
            sql.Identifier(self.schema))
        return (schema + _CREATE.format(history=self.ident, log=self.log_ident)).as_string(conn)

    def ensure_lock_table(self, conn: psycopg.Connection) -> None:
        """The ``table`` strategy's lock row, created once (a concurrent creator wins harmlessly)."""
        if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (self.lock_ident.as_string(conn),)).fetchone() == (True,):
            return
        _create_once(conn, sql.SQL("CREATE TABLE IF NOT EXISTS {} (id int PRIMARY KEY CHECK (id = 1));"
                                   "INSERT INTO {} VALUES (1) ON CONFLICT DO NOTHING").format(self.lock_ident, self.lock_ident))

    def ensure_drift_table(self, conn: psycopg.Connection) -> bool:
        """Whether the one-row table of the last clean drift check is there, made now beside an existing
        history when the role may create tables in its schema (a psycopg error when it may not after
        all, e.g. in a read-only transaction). Its name must fit PostgreSQL's 63 bytes."""
        if len(f"{self.table}_drift".encode()) > 63:
            return False
        row = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL AND has_schema_privilege(%s, 'CREATE')",
            (self.drift_ident.as_string(conn), self.ident.as_string(conn), self.schema)).fetchone()
        if row is None or row[0] or not row[1]:
            return bool(row and row[0])
        _create_once(conn, sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (id int PRIMARY KEY CHECK (id = 1), schema_file text NOT NULL,"
            " fingerprint text NOT NULL, checked_at timestamptz NOT NULL DEFAULT now())").format(self.drift_ident))
        return True

    # -- reading ----------------------------------------------------------------------------------

    def rows(self, conn: psycopg.Connection) -> list[Row]:
        """Every history row in version order; [] when the table does not exist yet."""
        from psycopg import errors

        query = sql.SQL(
            "SELECT version, name, checksum, applied_at, execution_ms, applied_by, state, baseline,"
            " out_of_order, statements_done, error FROM {} ORDER BY version"
        ).format(self.ident)
        # Just read: one round trip on the boot-time path. Only a missing or foreign table needs a
        # look at the catalog (which raises for a foreign one).
        try:
            cur = conn.execute(query)
        except (errors.UndefinedTable, errors.UndefinedColumn, errors.InvalidSchemaName):
            if not self.exists(conn):
                return []
            cur = conn.execute(query)  # a concurrent `up` created it in the meantime
        return [Row(*r) for r in cur.fetchall()]

    def log_entries(self, conn: psycopg.Connection, limit: int = 50) -> list[LogEntry]:
        _, log = self.existing_columns(conn)
        if log is None:
            return []
        cur = conn.execute(sql.SQL(
            "SELECT id, version, name, direction, outcome, error, started_at, finished_at, execution_ms,"
            " db_user, client_host, client_pid, detail FROM {} ORDER BY id DESC LIMIT %s"
        ).format(self.log_ident), (limit,))
        return [LogEntry(*r) for r in reversed(cur.fetchall())]

    # -- writing: SQL fragments that ride in the same message as the migration --------------------

    def record_applied(self, *, version: int, name: str, checksum: str, out_of_order: bool,
                       baseline: bool = False, execution_ms: int | None = None) -> sql.Composed:
        """Insert the "applied" history row and its log row. Without ``execution_ms`` it is measured
        by the server from the start of the transaction, so the whole migration costs one round trip;
        a no-transaction migration passes its own (it spans many transactions)."""
        elapsed = sql.Literal(execution_ms) if execution_ms is not None else _ELAPSED_MS
        started = sql.SQL("now() - make_interval(secs => {} / 1000.0)").format(elapsed)
        return sql.SQL(
            "INSERT INTO {history} (version, name, checksum, applied_at, execution_ms, state, baseline,"
            " out_of_order) VALUES ({version}, {name}, {checksum}, clock_timestamp(), {elapsed}, 'applied',"
            " {baseline}, {ooo})"
            " ON CONFLICT (version) DO UPDATE SET name = EXCLUDED.name, checksum = EXCLUDED.checksum,"
            " applied_at = EXCLUDED.applied_at, execution_ms = EXCLUDED.execution_ms,"
            " applied_by = EXCLUDED.applied_by, state = 'applied', baseline = EXCLUDED.baseline,"
            " out_of_order = EXCLUDED.out_of_order, statements_done = NULL, error = NULL;"
            "{log}"
        ).format(
            history=self.ident, version=sql.Literal(version), name=sql.Literal(name),
            checksum=sql.Literal(checksum), elapsed=elapsed, baseline=sql.Literal(baseline),
            ooo=sql.Literal(out_of_order),
            log=self.log_row(version=version, name=name, checksum=checksum,
                             direction="baseline" if baseline else "up", outcome="ok",
                             detail="out of order" if out_of_order else None,
                             execution_ms=execution_ms,
                             started_at=started if execution_ms is not None else None),
        )

    def record_removed(self, *, version: int, name: str, checksum: str | None,
                       detail: str | None = None) -> sql.Composed:
        """Delete the history row of a rolled-back migration and log it (``detail``: e.g. the data
        the rollback destroyed with confirmation)."""
        return sql.SQL("DELETE FROM {history} WHERE version = {version};{log}").format(
            history=self.ident, version=sql.Literal(version),
            log=self.log_row(version=version, name=name, checksum=checksum, direction="down", outcome="ok",
                             detail=detail),
        )

    def log_row(self, *, version: int | None, name: str | None, direction: str, outcome: str,
                checksum: str | None = None, error: str | None = None, detail: str | None = None,
                started_at: datetime | sql.Composable | None = None,
                execution_ms: int | None = None) -> sql.Composed:
        """An INSERT of one log row. Without ``started_at`` the server's transaction start is used."""
        if started_at is None:
            started_at = sql.SQL("now()")
        elif not isinstance(started_at, sql.Composable):
            started_at = sql.Literal(started_at)
        client = _client()
        return sql.SQL(
            "INSERT INTO {log} (version, name, direction, outcome, checksum, error, started_at, finished_at,"
            " execution_ms, client_host, client_pid, os_user, detail) VALUES ({values}, clock_timestamp(),"
            " {elapsed}, {host}, {pid}, {os_user}, {detail});"
        ).format(
            log=self.log_ident,
            values=sql.SQL(", ").join(map(sql.Literal, (version, name, direction, outcome, checksum, error))
                                      ) + sql.SQL(", ") + started_at,
            elapsed=sql.Literal(execution_ms) if execution_ms is not None else _ELAPSED_MS,
            host=sql.Literal(client.host), pid=sql.Literal(client.pid), os_user=sql.Literal(client.user),
            detail=sql.Literal(detail),
        )

    # -- writing: no-transaction progress ---------------------------------------------------------

    def mark_running(self, conn: psycopg.Connection, *, version: int, name: str, checksum: str,
                     out_of_order: bool) -> None:
        conn.execute(sql.SQL(
            "INSERT INTO {} (version, name, checksum, state, out_of_order, statements_done)"
            " VALUES (%s, %s, %s, 'running', %s, 0)"
            " ON CONFLICT (version) DO UPDATE SET state = 'running', checksum = EXCLUDED.checksum,"
            " name = EXCLUDED.name, statements_done = 0, error = NULL, applied_at = now(),"
            " applied_by = current_user, out_of_order = EXCLUDED.out_of_order"
        ).format(self.ident), (version, name, checksum, out_of_order))

    def mark_rollback_running(self, conn: psycopg.Connection, version: int) -> None:
        """Until a no-transaction rollback's last statement is done the schema is half rolled back: a
        crash must leave a failed migration that `up` and `check` refuse, not one that looks applied."""
        conn.execute(sql.SQL(
            "UPDATE {} SET state = 'running', error = %s, statements_done = 0 WHERE version = %s"
        ).format(self.ident), (ROLLBACK_RUNNING, version))

    def mark_progress(self, conn: psycopg.Connection, version: int, done: int) -> None:
        conn.execute(sql.SQL("UPDATE {} SET statements_done = %s WHERE version = %s").format(self.ident),
                     (done, version))

    def mark_failed(self, conn: psycopg.Connection, version: int, error: str) -> None:
        conn.execute(sql.SQL("UPDATE {} SET state = 'failed', error = %s WHERE version = %s").format(self.ident),
                     (error, version))

    def write(self, conn: psycopg.Connection, statement: sql.Composed) -> None:
        conn.execute(statement)


_CREATE = sql.SQL(
    "CREATE TABLE IF NOT EXISTS {history} ("
    " version bigint PRIMARY KEY,"
    " name text NOT NULL,"
    " checksum text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now(),"
    " execution_ms bigint NOT NULL DEFAULT 0,"
    " applied_by text NOT NULL DEFAULT current_user,"
    " state text NOT NULL DEFAULT 'applied' CHECK (state IN ('applied', 'running', 'failed')),"
    " baseline boolean NOT NULL DEFAULT false,"
    " out_of_order boolean NOT NULL DEFAULT false,"
    " statements_done integer,"
    " error text);"
    "CREATE TABLE IF NOT EXISTS {log} ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " version bigint,"
    " name text,"
    " direction text NOT NULL,"
    " outcome text NOT NULL,"
    " checksum text,"
    " error text,"
    " started_at timestamptz NOT NULL,"
    " finished_at timestamptz,"
    " execution_ms bigint,"
    " db_user text NOT NULL DEFAULT current_user,"
    " client_host text,"
    " client_pid integer,"
    " os_user text,"
    " detail text)"
)

def _create_once(conn: psycopg.Connection, ddl: sql.Composed) -> None:
    """Run ``CREATE TABLE IF NOT EXISTS`` DDL; a concurrent creator that got there first (its row in
    pg_type collides with ours) is as good as our own."""
    from psycopg import errors

    try:
        conn.execute(ddl)
    except (errors.UniqueViolation, errors.DuplicateTable):
        pass


# Milliseconds since the start of the current transaction (for a multi-statement message without
# BEGIN, since the message arrived), measured on the server.
_ELAPSED_MS = sql.SQL("round(extract(epoch FROM clock_timestamp() - now()) * 1000)::bigint")


@dataclass(frozen=True)
class _Client:
    host: str
    pid: int
    user: str | None


_client_seen: _Client | None = None


def _client() -> _Client:
    """Who runs sqlmigrate, for the log; looked up once per process (a fork gets its own)."""
    global _client_seen
    if _client_seen is not None and _client_seen.pid == os.getpid():
        return _client_seen
    import getpass  # only when a log row is written: not on the boot-time status path
    import socket

    try:
        user: str | None = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = None
    _client_seen = _Client(socket.gethostname(), os.getpid(), user)
    return _client_seen


def _guess_owner(columns: set[str]) -> str:
    if {"version", "dirty"} <= columns:
        return "; it looks like golang-migrate's"
    if columns == {"version"}:
        return "; it looks like Rails' or dbmate's"
    if "installed_rank" in columns:
        return "; it looks like Flyway's"
    return ""
