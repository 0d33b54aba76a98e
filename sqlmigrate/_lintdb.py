"""What only the live database knows, for ``lint``: does a table exist, how big is it, how many rows
does the planner think it has, and which sessions would block a lock on it right now.

Names resolve exactly as the data-loss check resolves them (``to_regclass`` under the session's
``search_path``, and the ``SET search_path`` statements of the file up to that point). Everything
runs inside a transaction that is rolled back, under a short ``lock_timeout`` and
``statement_timeout``: looking must never make traffic wait.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _dataloss as dataloss
from ._errors import ConfigurationError, DatabaseError, PrivilegeError
from ._lintsql import Name

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("sqlmigrate")


@dataclass(frozen=True)
class TableFacts:
    oid: int
    name: str  # as the server displays it: public.users, "Mixed"."Tbl"
    size_bytes: int | None  # table, indexes and TOAST; None if it could not be measured
    rows: int | None  # the planner's estimate (pg_class.reltuples); None if never analyzed


@dataclass(frozen=True)
class Blocker:
    """A session whose transaction would block (or delay) a migration's lock right now."""

    pid: int
    user: str | None
    application: str | None
    state: str | None
    transaction_seconds: float | None
    query: str  # first line of its current or last query
    locks: tuple[tuple[str, str], ...]  # (table, mode as in pg_locks) held on touched tables

    def as_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "user": self.user, "application": self.application,
                "state": self.state, "transaction_seconds": self.transaction_seconds,
                "query": self.query, "locks": [{"table": t, "mode": m} for t, m in self.locks]}

    def describe(self) -> str:
        age = "" if self.transaction_seconds is None else \
            f", transaction open {_duration(self.transaction_seconds)}"
        held = "; holds " + ", ".join(f"{m} on {t}" for t, m in self.locks) if self.locks else ""
        return (f"pid {self.pid} (user {self.user}, application {self.application or '-'}, "
                f"{self.state}{age}){held}: {self.query}")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Facts:
    """Table facts from one connection, inside a transaction that is always rolled back."""

    def __init__(self, conn: psycopg.Connection, cur: psycopg.Cursor[Any]) -> None:
        self.conn = conn
        self.cur = cur
        self.ctx = dataloss._Ctx(conn, cur)
        self.measured: dict[int, TableFacts] = {}
        self.partitions = conn.info.server_version >= 120000

    @contextmanager
    def file(self) -> Iterator[None]:
        """One migration's view of names: its own ``SET search_path`` is undone afterwards."""
        with self.conn.transaction(force_rollback=True):
            yield

    def set_search_path(self, statement: str) -> None:
        import psycopg
        from psycopg import sql

        try:
            with self.conn.transaction():
                self.cur.execute(sql.SQL(statement))  # type: ignore[arg-type]  # the file's own SET
        except psycopg.Error as e:  # a bad SET fails the migration itself: not lint's to report
            log.debug("lint: %s failed: %s", statement, e)

    def table(self, name: Name) -> TableFacts | None:
        """The table ``name`` resolves to now, or None if there is none (yet)."""
        found = dataloss._resolve_table(self.ctx, dataloss._Name(name.parts))
        return None if found is None else self._measure(found.oid, found.display)

    def table_of_index(self, index: Name) -> TableFacts | None:
        rows = self.ctx.query(
            "SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname)"
            " FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.indexrelid = to_regclass(%s)",
            (index.shown,))
        return self._measure(rows[0][0], rows[0][1]) if rows else None

    def _measure(self, oid: int, display: str) -> TableFacts:
        if oid not in self.measured:
            size, rows = self._size(oid)
            self.measured[oid] = TableFacts(oid, display, size, rows)
        return self.measured[oid]

    def _size(self, oid: int) -> tuple[int | None, int | None]:
        # A partitioned table's own size is 0: add up its partitions.
        members = "SELECT %s::oid"
        params: tuple[int, ...] = (oid,)
        if self.partitions:  # pg_partition_tree() is empty for a table outside any partition tree
            members += " UNION SELECT relid FROM pg_partition_tree(%s::oid::regclass)"
            params = (oid, oid)
        # reltuples is -1 (PostgreSQL 14+) for a table never vacuumed or analyzed: unknown.
        rows = self.ctx.query(
            f"SELECT sum(pg_total_relation_size(c.oid))::bigint,"
            f" sum(c.reltuples) FILTER (WHERE c.reltuples >= 0)::bigint"
            f" FROM pg_class c WHERE c.oid IN ({members})", params)
        if rows is None:
            # pg_total_relation_size waits for a lock an ALTER may hold: count pages instead.
            rows = self.ctx.query(
                "SELECT sum(c.relpages::bigint * current_setting('block_size')::bigint"
                "   + coalesce((SELECT sum(x.relpages) FROM pg_index i JOIN pg_class x"
                "               ON x.oid = i.indexrelid WHERE i.indrelid = c.oid), 0)"
                "     * current_setting('block_size')::bigint)::bigint,"
                " sum(c.reltuples) FILTER (WHERE c.reltuples >= 0)::bigint"
                f" FROM pg_class c WHERE c.oid IN ({members})", params)
        if not rows:
            return None, None
        return rows[0][0], rows[0][1]

    def blockers(self, oids: Sequence[int], older_than_s: float) -> list[Blocker]:
        """Sessions of this database, other than ours, that hold a lock on one of ``oids`` or
        whose transaction has been open longer than ``older_than_s``."""
        rows = self.ctx.query(
            "SELECT a.pid, a.usename, a.application_name, a.state,"
            "  extract(epoch FROM clock_timestamp() - a.xact_start)::float8, a.query,"
            "  coalesce(array_agg(l.relation::regclass::text ORDER BY l.relation, l.mode)"
            "           FILTER (WHERE l.relation IS NOT NULL), '{}'),"
            "  coalesce(array_agg(l.mode ORDER BY l.relation, l.mode)"
            "           FILTER (WHERE l.relation IS NOT NULL), '{}')"
            " FROM pg_stat_activity a"
            " LEFT JOIN pg_locks l ON l.pid = a.pid AND l.granted AND l.locktype = 'relation'"
            "  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            "  AND l.relation = ANY(%s::oid[])"
            " WHERE a.pid <> pg_backend_pid() AND a.datname = current_database()"
            "  AND a.xact_start IS NOT NULL"
            " GROUP BY a.pid, a.usename, a.application_name, a.state, a.xact_start, a.query"
            " HAVING count(l.relation) > 0 OR a.xact_start < clock_timestamp() - make_interval(secs => %s)"
            " ORDER BY a.xact_start",
            (list(oids), older_than_s))
        return [Blocker(r[0], r[1], r[2], r[3], r[4], _first_line(r[5] or ""), tuple(zip(r[6], r[7])))
                for r in rows or []]


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


@contextmanager
def facts(conn: psycopg.Connection) -> Iterator[Facts]:
    """A :class:`Facts` over ``conn``, whose transaction state is left exactly as it was."""
    import psycopg
    from psycopg.pq import TransactionStatus
    from psycopg.rows import tuple_row

    if conn.info.transaction_status == TransactionStatus.INERROR:
        raise ConfigurationError("cannot lint against the database: the connection's transaction has "
                                 "failed; roll it back first")
    try:
        with conn.cursor(row_factory=tuple_row) as cur, conn.transaction(force_rollback=True):
            cur.execute("SELECT set_config('lock_timeout', '200ms', true),"
                        " set_config('statement_timeout', '5s', true),"
                        " set_config('transaction_read_only', 'on', true)")
            yield Facts(conn, cur)
    except psycopg.Error as e:
        # 42501 insufficient privilege, 25006 read-only transaction: the role's, not the server's
        error = PrivilegeError if e.sqlstate in ("42501", "25006") else DatabaseError
        raise error(f"lint: reading table facts failed: {e}", e.sqlstate) from e
