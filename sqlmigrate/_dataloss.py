"""Find what a rollback would destroy, and whether it holds data, in bounded time.

Before ``down`` runs a rollback file, :func:`find_data_loss` looks at its statements (already split,
each with its 1-based line) for ``DROP TABLE``, ``DROP SCHEMA ... CASCADE``, ``ALTER TABLE ... DROP
COLUMN``, ``TRUNCATE``, ``DELETE`` and ``DROP TYPE``/``DROP DOMAIN ... CASCADE``, resolves every name
through the server (search_path, quoting, case: never by guessing), and asks the server whether the
object holds data.

Cost is bounded whatever the table size: presence is an ``EXISTS`` probe (stops at the first row), an
exact count is only tried where the planner says the result is small and is itself capped at
:data:`EXACT_LIMIT` rows, and everything else is the planner's estimate, flagged as such. Every probe
runs under ``statement_timeout`` (which also bounds lock waits) inside a savepoint that is rolled
back, read-only; the whole call shares one time budget, split fairly between the objects, so one slow
probe cannot starve the others. The connection's transaction state is left exactly as it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # psycopg is imported lazily so that ``import sqlmigrate`` stays cheap
    import psycopg
    from psycopg import sql

log = logging.getLogger("sqlmigrate")

#: An exact count is given up to this many rows; beyond it the number is an estimate.
EXACT_LIMIT = 100_000
#: Only try the (capped) exact count when the planner expects at most this many rows: above it the
#: count would only confirm "more than EXACT_LIMIT" at the price of reading EXACT_LIMIT rows.
_COUNT_IF_ESTIMATE_BELOW = 10 * EXACT_LIMIT
#: A probe given less time than this is not started (statement_timeout=0 would mean "no limit").
_MIN_PROBE_S = 0.001

ROWS = "rows"
VALUES = "non-null values"


@dataclass(frozen=True)
class Finding:
    """One object a rollback would destroy that holds (or may hold) data."""

    action: str  # "DROP TABLE", "DROP COLUMN", "TRUNCATE", "DELETE", "DROP SCHEMA CASCADE", ...
    object: str  # display name as the server resolves it: public.users, "Mixed"."Tbl".col
    rows: int | None  # rows (table, DELETE) or non-null values (column); None if the check gave up
    estimated: bool  # rows is an estimate (planner), not an exact count
    gave_up: bool  # the bounded check ran out of time (or failed) before it could decide
    line: int  # 1-based line of the statement in the rollback file
    unit: str = ROWS  # what rows counts: "rows" or "non-null values"
    certain: bool = True  # data is known to be present; False: the check gave up before knowing
    spent_s: float = 0.0  # time the check of this object took (shown when it gave up)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "description": self.describe()}

    def describe(self) -> str:
        head = f"{self.action} {self.object}"
        if self.rows is None:
            what = "data present, count" if self.certain else "data may be present, check"
            return f"{head}: {what} gave up after {self.spent_s:.2f} s"
        unit = self.unit if self.rows != 1 else self.unit[:-1]
        if self.estimated:
            return f"{head}: ~{self.rows:,} {unit} (estimated)"
        return f"{head}: {self.rows:,} {unit} (exact)"


# --------------------------------------------------------------------------------------------------
# Parsing: which statements destroy what (names exactly as written, resolved later by the server)
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Name:
    parts: tuple[str, ...]  # raw tokens as written, quotes kept: ('"Mixed"', '"Tbl"')

    @property
    def text(self) -> str:
        # to_regclass()/to_regtype() parse this exactly as the server parses SQL, quotes included.
        return ".".join(self.parts)


@dataclass(frozen=True)
class _DropTables:
    names: tuple[_Name, ...]


@dataclass(frozen=True)
class _DropSchemas:
    names: tuple[_Name, ...]


@dataclass(frozen=True)
class _DropTypes:
    names: tuple[_Name, ...]
    keyword: str  # "TYPE" or "DOMAIN"


@dataclass(frozen=True)
class _DropColumns:
    table: _Name
    only: bool
    columns: tuple[str, ...]  # raw column tokens


@dataclass(frozen=True)
class _Truncate:
    tables: tuple[tuple[_Name, bool], ...]  # (name, ONLY)
    cascade: bool


@dataclass(frozen=True)
class _Delete:
    table: _Name
    only: bool
    alias: str | None  # raw alias token
    using: str | None  # text of the USING list
    where: str | None  # text of the WHERE condition
    prefix: str | None  # text of a leading WITH clause


@dataclass(frozen=True)
class _SetSearchPath:
    text: str


_Action = Any  # one of the dataclasses above


@dataclass
class _Tok:
    flat: int  # index into the flat token list (for slicing the original text)
    value: str
    upper: str  # upper case, inner whitespace collapsed ("IF EXISTS")
    name_like: bool
    quoted: bool


def _tokens(text: str) -> tuple[list[Any], list[_Tok]]:
    import sqlparse
    from sqlparse import tokens as T

    flat: list[Any] = []
    for stmt in sqlparse.parse(text):
        flat.extend(stmt.flatten())
    sig: list[_Tok] = []
    for i, t in enumerate(flat):
        if t.is_whitespace or t.ttype in T.Comment:
            continue
        v = t.value
        quoted = t.ttype in T.String.Symbol
        name_like = quoted or (
            (t.ttype in T.Name or t.ttype in T.Keyword) and not any(c.isspace() for c in v)
        )
        sig.append(_Tok(i, v, " ".join(v.upper().split()), name_like, quoted))
    return flat, sig


def fold_identifier(raw: str) -> str:
    """The name the server stores for an identifier written as ``raw``.

    Quoted: exact, with doubled quotes undone. Bare: ASCII letters lower-cased (the server's rule in
    UTF-8 databases; other characters are kept).
    """
    if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        return raw[1:-1].replace('""', '"')
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in raw)


class _Cursor:
    """A position in the significant tokens of one statement."""

    def __init__(self, flat: list[Any], sig: list[_Tok]) -> None:
        self.flat = flat
        self.sig = sig
        self.i = 0

    def peek(self, k: int = 0) -> _Tok | None:
        j = self.i + k
        return self.sig[j] if j < len(self.sig) else None

    def at(self, *words: str) -> bool:
        t = self.peek()
        return t is not None and t.upper in words

    def take(self, *words: str) -> bool:
        if self.at(*words):
            self.i += 1
            return True
        return False

    def take_if_exists(self) -> None:
        if self.take("IF EXISTS"):
            return
        if self.at("IF") and (nxt := self.peek(1)) is not None and nxt.upper == "EXISTS":
            self.i += 2

    def name(self) -> _Name | None:
        t = self.peek()
        if t is None or not t.name_like:
            return None
        parts = [t.value]
        self.i += 1
        while self.at(".") and (nxt := self.peek(1)) is not None and nxt.name_like:
            parts.append(nxt.value)
            self.i += 2
        return _Name(tuple(parts))

    def name_list(self) -> list[_Name]:
        names: list[_Name] = []
        while (n := self.name()) is not None:
            names.append(n)
            if not self.take(","):
                break
        return names

    def rest_upper(self) -> list[str]:
        return [t.upper for t in self.sig[self.i:]]

    def text(self, start_sig: int, end_sig: int) -> str:
        """Original text (comments and all) from significant token start_sig up to end_sig."""
        a = self.sig[start_sig].flat
        b = self.sig[end_sig].flat if end_sig < len(self.sig) else len(self.flat)
        return "".join(t.value for t in self.flat[a:b]).strip()


def _parse(text: str) -> list[_Action]:
    flat, sig = _tokens(text)
    while sig and sig[-1].upper == ";":
        sig.pop()
    if not sig:
        return []
    c = _Cursor(flat, sig)
    first = sig[0].upper
    if first == "DROP":
        return _parse_drop(c)
    if first == "ALTER":
        return _parse_alter(c)
    if first == "TRUNCATE":
        return _parse_truncate(c)
    if first in ("DELETE", "WITH"):
        return _parse_delete(c)
    if first in ("SET", "RESET"):
        c.i = 1
        c.take("SESSION", "LOCAL")
        t = c.peek()
        if t is not None and t.name_like and fold_identifier(t.value) == "search_path":
            return [_SetSearchPath(c.text(0, len(sig)))]
    return []


def _parse_drop(c: _Cursor) -> list[_Action]:
    c.i = 1
    kind = c.peek()
    if kind is None:
        return []
    c.i += 1
    if kind.upper not in ("TABLE", "SCHEMA", "TYPE", "DOMAIN"):
        return []  # views, materialized views, indexes...: no data of their own
    c.take_if_exists()
    names = tuple(c.name_list())
    cascade = "CASCADE" in c.rest_upper()
    if not names:
        return []
    if kind.upper == "TABLE":
        return [_DropTables(names)]
    if not cascade:
        # Without CASCADE the server refuses to drop a schema that has objects, or a type in use.
        return []
    if kind.upper == "SCHEMA":
        return [_DropSchemas(names)]
    return [_DropTypes(names, kind.upper)]


def _split_top_level(c: _Cursor, start: int) -> list[tuple[int, int]]:
    """Ranges [a, b) of significant tokens between commas at parenthesis depth 0."""
    ranges: list[tuple[int, int]] = []
    depth = 0
    a = start
    for j in range(start, len(c.sig)):
        u = c.sig[j].upper
        if u == "(":
            depth += 1
        elif u == ")":
            depth -= 1
        elif u == "," and depth == 0:
            ranges.append((a, j))
            a = j + 1
    ranges.append((a, len(c.sig)))
    return ranges


def _parse_alter(c: _Cursor) -> list[_Action]:
    c.i = 1
    if not c.take("TABLE"):
        return []
    c.take_if_exists()
    only = c.take("ONLY")
    table = c.name()
    if table is None:
        return []
    c.take("*")
    columns: list[str] = []
    for a, b in _split_top_level(c, c.i):
        sub = _Cursor(c.flat, c.sig[a:b])
        if not sub.take("DROP"):
            continue
        if not sub.take("COLUMN") and sub.at("CONSTRAINT"):
            continue
        sub.take_if_exists()
        t = sub.peek()
        if t is not None and t.name_like:
            columns.append(t.value)
    return [_DropColumns(table, only, tuple(columns))] if columns else []


def _parse_truncate(c: _Cursor) -> list[_Action]:
    c.i = 1
    c.take("TABLE")
    tables: list[tuple[_Name, bool]] = []
    while True:
        only = c.take("ONLY")
        n = c.name()
        if n is None:
            break
        c.take("*")
        tables.append((n, only))
        if not c.take(","):
            break
    cascade = "CASCADE" in c.rest_upper()
    return [_Truncate(tuple(tables), cascade)] if tables else []


def _parse_delete(c: _Cursor) -> list[_Action]:
    prefix: str | None = None
    start = 0
    if c.sig[0].upper == "WITH":
        depth = 0
        for j, t in enumerate(c.sig):
            if t.upper == "(":
                depth += 1
            elif t.upper == ")":
                depth -= 1
            elif depth == 0 and t.upper == "DELETE":
                start = j
                break
        else:
            return []  # WITH ... INSERT/UPDATE/SELECT
        prefix = c.text(0, start)
    c.i = start + 1
    if not c.take("FROM"):
        return []
    only = c.take("ONLY")
    table = c.name()
    if table is None:
        return []
    c.take("*")
    alias: str | None = None
    if c.take("AS"):
        after_as = c.peek()
        alias = after_as.value if after_as is not None and after_as.name_like else None
        c.i += 1
    elif (bare := c.peek()) is not None and bare.name_like and bare.upper not in ("USING", "WHERE", "RETURNING"):
        alias = bare.value
        c.i += 1
    # Clause boundaries at parenthesis depth 0.
    marks: dict[str, int] = {}
    depth = 0
    for j in range(c.i, len(c.sig)):
        u = c.sig[j].upper
        if u == "(":
            depth += 1
        elif u == ")":
            depth -= 1
        elif depth == 0 and u in ("USING", "WHERE", "RETURNING") and u not in marks:
            marks[u] = j
    end = marks.get("RETURNING", len(c.sig))
    using: str | None = None
    where: str | None = None
    if "USING" in marks:
        using = c.text(marks["USING"] + 1, marks.get("WHERE", end))
    if "WHERE" in marks:
        w = marks["WHERE"]
        if w + 1 < len(c.sig) and c.sig[w + 1].upper == "CURRENT":
            log.debug("DELETE ... WHERE CURRENT OF cannot be checked in advance; skipped")
            return []
        where = c.text(w + 1, end)
    return [_Delete(table, only, alias, using or None, where or None, prefix)]


# --------------------------------------------------------------------------------------------------
# Resolution (catalog only, no locks on user tables) and bounded probes
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Probe:
    """A question "does this query return any row, and how many?" about one destroyed object."""

    action: str
    display: str
    line: int
    unit: str
    body: sql.Composable  # SELECT 1 FROM ... : one row per destroyed row / non-null value
    prefix: sql.Composable | None = None  # a WITH clause the body needs


@dataclass
class _Table:
    oid: int
    nspname: str
    relname: str
    display: str


@dataclass
class _Ctx:
    conn: psycopg.Connection
    cur: psycopg.Cursor[Any]
    probes: list[_Probe] = field(default_factory=list)

    def query(self, q: Any, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]] | None:
        """A catalog query in a savepoint: None (logged) if the server rejects it."""
        import psycopg

        try:
            with self.conn.transaction():
                self.cur.execute(q, params)
                return self.cur.fetchall()
        except psycopg.Error as e:
            log.debug("data-loss check: catalog query failed: %s", e)
            return None


_TABLE_COLS = (
    "c.oid, n.nspname, c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname)"
)


def _resolve_table(ctx: _Ctx, name: _Name) -> _Table | None:
    rows = ctx.query(
        f"SELECT {_TABLE_COLS} FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'p')",
        (name.text,),
    )
    if not rows:
        return None  # missing (IF EXISTS), or not a table: nothing of its data to lose
    return _Table(*rows[0])


def _from(t: _Table, only: bool) -> sql.Composable:
    from psycopg import sql

    return sql.SQL("SELECT 1 FROM {}{}").format(
        sql.SQL("ONLY " if only else ""), sql.Identifier(t.nspname, t.relname)
    )


def _column_body(t: _Table, only: bool, attname: str) -> sql.Composable:
    from psycopg import sql

    # NOT (x IS NULL) rather than x IS NOT NULL: for a composite column, the latter is false as soon
    # as one field is null; for scalars the planner turns it into IS NOT NULL (indexable).
    return sql.SQL("{} WHERE NOT ({} IS NULL)").format(_from(t, only), sql.Identifier(attname))


def _type_columns(ctx: _Ctx, type_oids: Sequence[int], skip_namespaces: Sequence[int]
                  ) -> list[tuple[_Table, str, str]]:
    """Columns (outside skip_namespaces) whose type is one of type_oids, or a domain, array or range
    over one, recursively: what ``DROP TYPE ... CASCADE`` drops with the type."""
    rows = ctx.query(
        "WITH RECURSIVE ty(oid) AS ("
        "  SELECT unnest(%s::oid[])"
        "  UNION"
        "  SELECT t.oid FROM pg_type t, ty"
        "   WHERE t.typbasetype = ty.oid"
        "      OR t.oid = (SELECT b.typarray FROM pg_type b WHERE b.oid = ty.oid)"
        "      OR t.oid IN (SELECT r.rngtypid FROM pg_range r WHERE r.rngsubtype = ty.oid)"
        f") SELECT {_TABLE_COLS}, a.attname,"
        "   quote_ident(n.nspname) || '.' || quote_ident(c.relname) || '.' || quote_ident(a.attname)"
        " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE a.atttypid IN (SELECT oid FROM ty) AND a.attnum > 0 AND NOT a.attisdropped"
        # Inherited columns (partitions, children) are seen through the parent's probe.
        "   AND a.attinhcount = 0 AND c.relkind IN ('r', 'p')"
        "   AND NOT (c.relnamespace = ANY(%s::oid[]))"
        " ORDER BY 4, a.attnum",
        (list(type_oids), list(skip_namespaces)),
    )
    return [(_Table(r[0], r[1], r[2], r[3]), r[4], r[5]) for r in rows or []]


def _plan(ctx: _Ctx, action: _Action, line: int) -> None:
    """Resolve one parsed action through the catalogs and queue its probes."""
    from psycopg import sql

    add = ctx.probes.append
    if isinstance(action, _SetSearchPath):
        # Later names in the rollback resolve through the path it sets. Run it inside our outer
        # transaction (rolled back at the end, which undoes even a plain SET).
        try:
            with ctx.conn.transaction():
                ctx.cur.execute(sql.SQL(action.text))  # type: ignore[arg-type]  # the file's own SQL
        except Exception as e:  # noqa: BLE001  # a bad SET fails the rollback itself; not our call
            log.debug("data-loss check: %s failed: %s", action.text, e)
    elif isinstance(action, _DropTables):
        for name in action.names:
            if (t := _resolve_table(ctx, name)) is not None:
                # A partitioned parent or an inheritance parent drops its children's rows too:
                # selecting from it without ONLY counts them.
                add(_Probe("DROP TABLE", t.display, line, ROWS, _from(t, False)))
    elif isinstance(action, _Truncate):
        tables: list[tuple[_Table, bool]] = []
        for name, only in action.tables:
            if (t := _resolve_table(ctx, name)) is not None:
                tables.append((t, only))
                add(_Probe("TRUNCATE", t.display, line, ROWS, _from(t, only)))
        if action.cascade and tables:
            # TRUNCATE ... CASCADE also empties every table that references these by foreign key.
            base = [t.oid for t, _ in tables]
            rows = ctx.query(
                "WITH RECURSIVE r(oid) AS (SELECT unnest(%s::oid[])"
                "  UNION SELECT con.conrelid FROM pg_constraint con JOIN r ON con.confrelid = r.oid"
                "   WHERE con.contype = 'f')"
                f" SELECT {_TABLE_COLS} FROM r JOIN pg_class c ON c.oid = r.oid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.oid <> ALL(%s::oid[])"
                " ORDER BY 4",
                (base, base),
            )
            for r in rows or []:
                t = _Table(*r)
                add(_Probe("TRUNCATE", t.display, line, ROWS, _from(t, False)))
    elif isinstance(action, _DropColumns):
        t = _resolve_table(ctx, action.table)
        if t is None:
            return
        for raw in action.columns:
            rows = ctx.query(
                "SELECT a.attname, quote_ident(a.attname) FROM pg_attribute a"
                " WHERE a.attrelid = %s AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped",
                (t.oid, fold_identifier(raw)),
            )
            if rows:
                attname, quoted = rows[0]
                add(_Probe("DROP COLUMN", f"{t.display}.{quoted}", line, VALUES,
                           _column_body(t, action.only, attname)))
    elif isinstance(action, _Delete):
        t = _resolve_table(ctx, action.table)
        if t is None:
            return
        body = _from(t, action.only)
        if action.alias is not None:
            body = sql.SQL("{} AS {}").format(body, sql.Identifier(fold_identifier(action.alias)))
        # The condition is the rollback's own SQL, run as written but read-only and rolled back.
        # Newlines keep a trailing "--" comment in it from swallowing our closing parenthesis.
        if action.using is not None:
            # DELETE ... USING deletes each target row at most once: a semi-join, not a join.
            cond = sql.SQL("\n{}\n").format(sql.SQL(action.where)) if action.where else sql.SQL("true")
            body = sql.SQL("{} WHERE EXISTS (SELECT 1 FROM \n{}\n WHERE ({}))").format(
                body, sql.SQL(action.using), cond)
        elif action.where is not None:
            body = sql.SQL("{} WHERE (\n{}\n)").format(body, sql.SQL(action.where))
        prefix = sql.SQL(action.prefix) if action.prefix else None
        add(_Probe("DELETE", t.display, line, ROWS, body, prefix))
    elif isinstance(action, _DropSchemas):
        nsps: list[int] = []
        for name in action.names:
            if len(name.parts) != 1:
                continue
            rows = ctx.query("SELECT oid FROM pg_namespace WHERE nspname = %s",
                             (fold_identifier(name.parts[0]),))
            if rows:
                nsps.append(rows[0][0])
        if not nsps:
            return
        rows = ctx.query(
            f"SELECT {_TABLE_COLS} FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relnamespace = ANY(%s::oid[]) AND c.relkind IN ('r', 'p')"
            # A child whose parent goes too is counted through the parent.
            "   AND NOT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent"
            "                   WHERE i.inhrelid = c.oid AND p.relnamespace = ANY(%s::oid[]))"
            " ORDER BY 4",
            (nsps, nsps),
        )
        for r in rows or []:
            t = _Table(*r)
            add(_Probe("DROP SCHEMA CASCADE", t.display, line, ROWS, _from(t, False)))
        # Columns elsewhere whose type (enum, domain, a table's row type...) lives in the schema.
        types = ctx.query("SELECT oid FROM pg_type WHERE typnamespace = ANY(%s::oid[])", (nsps,))
        if types:
            for t, attname, display in _type_columns(ctx, [r[0] for r in types], nsps):
                add(_Probe("DROP SCHEMA CASCADE", display, line, VALUES, _column_body(t, False, attname)))
    elif isinstance(action, _DropTypes):
        oids: list[int] = []
        for name in action.names:
            rows = ctx.query("SELECT to_regtype(%s)::oid", (name.text,))
            if rows and rows[0][0] is not None:
                oids.append(rows[0][0])
        if oids:
            label = f"DROP {action.keyword} CASCADE"
            for t, attname, display in _type_columns(ctx, oids, []):
                add(_Probe(label, display, line, VALUES, _column_body(t, False, attname)))


def _measure(ctx: _Ctx, p: _Probe, share_end: float) -> Finding | None:
    """Presence, then the cheapest honest number, all before share_end."""
    import psycopg
    from psycopg import sql

    t0 = time.monotonic()
    cur = ctx.cur
    pre = sql.SQL("{} ").format(p.prefix) if p.prefix is not None else sql.SQL("")
    present: bool | None = None
    estimate: int | None = None
    count: int | None = None

    def arm() -> bool:
        """Give the next statement what is left of this object's share; False if nothing is."""
        left = share_end - time.monotonic()
        if left < _MIN_PROBE_S:
            return False
        cur.execute("SELECT set_config('statement_timeout', %s, true)", (f"{max(1, int(left * 1000))}ms",))
        return True

    try:
        with ctx.conn.transaction(force_rollback=True):
            # Read-only: the probe runs the rollback's own WHERE/USING text, which must not write.
            cur.execute("SELECT set_config('transaction_read_only', 'on', true)")
            if arm():
                cur.execute(sql.SQL("{}SELECT EXISTS ({})").format(pre, p.body))
                present = bool(cur.fetchone()[0])  # type: ignore[index]
                if present and arm():
                    cur.execute(sql.SQL("EXPLAIN (FORMAT JSON) {}{}").format(pre, p.body))
                    plan = cur.fetchone()[0]  # type: ignore[index]
                    estimate = int(plan[0]["Plan"]["Plan Rows"])
                    if estimate <= _COUNT_IF_ESTIMATE_BELOW and arm():
                        cur.execute(sql.SQL("{}SELECT count(*) FROM ({} LIMIT {}) AS s").format(
                            pre, p.body, sql.Literal(EXACT_LIMIT + 1)))
                        count = int(cur.fetchone()[0])  # type: ignore[index]
    except psycopg.errors.QueryCanceled:
        log.debug("data-loss check of %s timed out", p.display)
    except psycopg.Error as e:
        # E.g. the DELETE's condition names something the rollback creates first: cannot know.
        log.warning("data-loss check of %s (line %d) failed: %s", p.display, p.line, e)
    spent = time.monotonic() - t0

    def found(rows: int | None, estimated: bool, gave_up: bool, certain: bool = True) -> Finding:
        return Finding(p.action, p.display, rows, estimated, gave_up, p.line, p.unit, certain, spent)

    if present is None:
        return found(None, False, True, certain=False)
    if not present:
        return None
    if count is not None and count <= EXACT_LIMIT:
        return found(count, False, False)
    if count is not None:  # more than EXACT_LIMIT: the planner's number, but at least what we saw
        return found(max(estimate or 0, count), True, False)
    if estimate is not None:
        return found(max(estimate, 1), True, False)
    return found(None, False, True)


def find_data_loss(conn: psycopg.Connection, statements: Sequence[tuple[str, int]], *,
                   budget_s: float = 0.15) -> list[Finding]:
    """What the given rollback statements would destroy that holds (or may hold) data.

    ``statements`` are (statement text, 1-based line) in file order. The whole check takes about
    ``budget_s`` at most (plus a few catalog look-ups per statement), whatever the table sizes; an
    object whose check could not finish in its share is reported with ``gave_up=True``. Runs in a
    transaction (or, inside the caller's transaction, a savepoint) that is always rolled back.
    """
    import psycopg
    from psycopg.pq import TransactionStatus
    from psycopg.rows import tuple_row

    from sqlmigrate._errors import ConfigurationError, DatabaseError, PrivilegeError

    status = conn.info.transaction_status
    if status == TransactionStatus.INERROR:
        raise ConfigurationError("cannot check for data loss: the connection's transaction has failed;"
                                 " roll it back first")
    deadline = time.monotonic() + budget_s
    parsed: list[tuple[_Action, int]] = []
    for text, line in statements:
        try:
            parsed.extend((a, line) for a in _parse(text))
        except Exception as e:  # noqa: BLE001  # an unparsable statement is the server's to reject
            log.debug("data-loss check: could not parse statement at line %d: %s", line, e)
    if not parsed:
        return []
    findings: list[Finding] = []
    with conn.cursor(row_factory=tuple_row) as cur:
        ctx = _Ctx(conn, cur)
        try:
            with conn.transaction(force_rollback=True):
                for action, line in parsed:
                    _plan(ctx, action, line)
                probes = ctx.probes
                for k, p in enumerate(probes):
                    # A fair share of what is left: a fast probe leaves its unused time to the rest.
                    now = time.monotonic()
                    share_end = now + max(0.0, deadline - now) / (len(probes) - k)
                    f = _measure(ctx, p, share_end)
                    if f is not None:
                        findings.append(f)
        except psycopg.Error as e:
            # 42501 insufficient privilege, 25006 read-only transaction: the role's, not the server's
            error = PrivilegeError if e.sqlstate in ("42501", "25006") else DatabaseError
            raise error(f"data-loss check failed: {e}", e.sqlstate) from e
    for f in findings:
        log.debug("data loss: %s (line %d)", f.describe(), f.line)
    return findings
