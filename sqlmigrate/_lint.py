"""``lint``: the locks each statement of a set of migrations takes, and its known hazards, each with
a rule name, a severity and a safer recipe; with a database, also each touched table's size and
estimated rows, what the statement costs there, and who would block it right now.

The static part (:mod:`._lintsql`, :mod:`._lintrules`) needs no database. With one
(:mod:`._lintdb`), tables are resolved only when a statement locks one that the set of files did
not create itself, so a set of plain ``CREATE TABLE`` migrations costs no round trip.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _lintrules as rules, _lintsql as q, _sqltext as sqltext
from ._classify import contains_word
from ._directives import allowed_rules
from ._errors import MigrationFileError
from ._lintrules import ERROR, INFO, RULES, SEVERITIES, WARNING, Hazard, Lock

if TYPE_CHECKING:
    import psycopg

    from ._lintdb import Blocker, Facts, TableFacts
    from ._script import Script

log = logging.getLogger("sqlmigrate")

__all__ = ["LintFinding", "LintReport", "LockedTable", "RULES", "disabled_rules", "lint", "lint_scripts", "lint_sources"]

#: Statements longer than this are not parsed (an info finding says so).
MAX_STATEMENT = 100_000
#: A transaction open longer than this is reported as a possible blocker even without a lock on a
#: touched table (CREATE INDEX CONCURRENTLY waits for every older transaction).
LONG_TRANSACTION_S = 60.0


@dataclass(frozen=True)
class LintFinding:
    """One hazard of one statement."""

    file: str
    line: int
    statement: str  # its first line
    rule: str
    severity: str  # "error", "warning" or "info"
    lock: str | None  # e.g. "ACCESS EXCLUSIVE on public.users"
    message: str
    recipe: str
    # With a database:
    table: str | None = None  # as the server names it
    table_bytes: int | None = None
    estimated_rows: int | None = None
    cost: str | None = None  # e.g. "rewrites 38 GB (120 M rows) under ACCESS EXCLUSIVE"
    cost_rank: int | None = None  # 1 = the most expensive finding on this database

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def describe(self) -> str:
        head = f"{self.file}:{self.line}  {self.severity} {self.rule}"
        if self.lock:
            head += f"  {self.lock}"
        lines = [head, f"    {self.statement}", f"    {self.message}"]
        if self.cost:
            lines.append(f"    on this database: {self.cost}")
        lines.append(f"    safer: {self.recipe}")
        return "\n".join(lines)


@dataclass(frozen=True)
class LockedTable:
    """A table lock one statement takes on a table that exists (or may exist) already."""

    file: str
    line: int
    statement: str
    lock: str  # "SHARE on public.users"

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class LintReport:
    files: tuple[str, ...]
    findings: tuple[LintFinding, ...]  # by cost on the database when there is one, else file order
    locks: tuple[LockedTable, ...] = ()
    blockers: tuple[Blocker, ...] = ()
    database: bool = False  # facts from a live database are included

    @property
    def errors(self) -> tuple[LintFinding, ...]:
        return tuple(f for f in self.findings if f.severity == ERROR)

    @property
    def warnings(self) -> tuple[LintFinding, ...]:
        return tuple(f for f in self.findings if f.severity == WARNING)

    def summary(self) -> str:
        counts = {s: sum(f.severity == s for f in self.findings) for s in SEVERITIES}
        found = ", ".join(f"{n} {s}{'s' if n != 1 and s != INFO else ''}" for s, n in counts.items() if n)
        return f"{len(self.files)} file(s): {found or 'no findings'}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": list(self.files),
            "database": self.database,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "findings": [f.as_dict() for f in self.findings],
            "locks": [lk.as_dict() for lk in self.locks],
            "blockers": [b.as_dict() for b in self.blockers],
        }


def lint(paths: Sequence[Path | str], database: str | psycopg.Connection | None = None, *,
         disabled: Collection[str] = (), long_transaction_s: float = LONG_TRANSACTION_S) -> LintReport:
    """Lint migration files, in the order given (a table created by an earlier file is new for the
    later ones). ``database``: a connection string or an open connection (left as it was) to add
    that database's facts; None for the static findings only. ``disabled``: rule names to skip."""
    from . import _files as files

    sources = []
    for p in paths:
        path = Path(p)
        try:
            sources.append((path, files.read_text(path)))
        except OSError as e:
            raise MigrationFileError(f"cannot read: {e.strerror or e}", path) from None
    return lint_sources(sources, database, disabled=disabled, long_transaction_s=long_transaction_s)


def disabled_rules(lint_disable: Collection[str], lock_wait: float) -> set[str]:
    """The rules to skip for files that ``up`` runs with ``lock_wait``: sqlmigrate sets lock_timeout
    itself then (``--lock-wait``), so the files need not."""
    return {*lint_disable, "require-lock-timeout"} if lock_wait else set(lint_disable)


def lint_sources(sources: Sequence[tuple[Path, str]], database: str | psycopg.Connection | None = None,
                 *, disabled: Collection[str] = (),
                 long_transaction_s: float = LONG_TRANSACTION_S) -> LintReport:
    """:func:`lint` for texts already read: ``(path, text)`` pairs, e.g. the prepared scripts of
    ``up`` (``[(s.path, s.text) for s in scripts if not s.streamed]``)."""
    checker = _checker(disabled)
    found = [_File(path, text, checker) for path, text in sources]
    return _report(found, database, long_transaction_s)


def _checker(disabled: Collection[str]) -> rules.Checker:
    unknown = set(disabled) - set(RULES)
    if unknown:
        from ._errors import ConfigurationError

        raise ConfigurationError(f"unknown lint rule(s): {', '.join(sorted(unknown))}; "
                                 f"known: {', '.join(sorted(RULES))}")
    return rules.Checker(frozenset(disabled))


def _report(found: list[_File], database: str | psycopg.Connection | None,
            long_transaction_s: float = LONG_TRANSACTION_S) -> LintReport:
    names = tuple(f.path for f in found)
    if database is None or not any(f.needs_facts for f in found):
        findings = [f.finding(h, s) for f in found for s in f.statements for h in s.hazards]
        locks = [lk for f in found for lk in f.locked()]
        return LintReport(names, tuple(findings), tuple(locks), database=database is not None)
    return _with_database(names, found, database, long_transaction_s)


def lint_scripts(scripts: Sequence[Script], database: str | psycopg.Connection | None = None, *,
                 disabled: Collection[str] = ()) -> LintReport:
    """``up``'s pre-flight: lint the scripts it is about to run, in order. A streamed file (over 4 MB:
    a data load) is skipped rather than read whole. No database round trip is made unless a statement
    locks a table that the scripts did not create themselves."""
    checker = _checker(disabled)
    # The scripts' own lexing (which ``up`` needs anyway) is reused: no second pass over the files.
    return _report([_File(s.path, s.text, checker, s.statements, s.no_transaction)
                    for s in scripts if not s.streamed], database)


class _Statement:
    __slots__ = ("line", "first", "op", "hazards", "locks")

    def __init__(self, stmt: sqltext.Statement) -> None:
        self.line = stmt.line
        self.first = _first_line(stmt.text)
        self.op: q.Op | None = None
        self.hazards: list[Hazard] = []
        self.locks: list[Lock] = []


class _File:
    """One file's statements, with the hazards and locks the rules found in them."""

    def __init__(self, path: Path, text: str, checker: rules.Checker,
                 statements: Iterable[sqltext.Statement] | None = None, no_transaction: bool | None = None) -> None:
        self.path = str(path)
        if no_transaction is None:
            no_transaction = sqltext.directives(text, path).no_transaction
        checker.begin_file(no_transaction)
        self.statements: list[_Statement] = []
        allowed: dict[int, frozenset[str]] = {}
        if contains_word(text, "sqlmigrate"):  # rare: the file may have allow comments
            statements = sqltext.split(text) if statements is None else list(statements)
            allowed = allowed_rules(text, statements, path)
        for stmt in sqltext.iter_statements(text) if statements is None else statements:
            if q.first_word(stmt.text) not in q.INTERESTING:
                continue
            s = _Statement(stmt)
            allow = allowed.get(stmt.start, frozenset()) if allowed else frozenset()
            if len(stmt.text) > MAX_STATEMENT and not stmt.text[:7].upper().startswith("CREATE"):
                if "statement-too-large" not in checker.disabled | allow:
                    s.hazards.append(Hazard(RULES["statement-too-large"],
                                            f"not linted: longer than {MAX_STATEMENT:,} characters", None))
            else:
                s.op = q.parse(stmt.text)
                if s.op is not None:
                    s.hazards = checker.check(s.op, allow)
                    s.locks = [lk for lk in rules.statement_lock(s.op)
                               if lk.table is None or not checker.is_new(lk.table)]
            if s.hazards or s.locks or isinstance(s.op, q.SetSearchPath):
                self.statements.append(s)

    @property
    def needs_facts(self) -> bool:
        return any(s.locks for s in self.statements)

    def finding(self, h: Hazard, stmt: _Statement) -> LintFinding:
        return LintFinding(self.path, stmt.line, stmt.first, h.rule.name, h.level, _lock_text(h),
                           h.message, h.rule.recipe)

    def locked(self) -> list[LockedTable]:
        return [LockedTable(self.path, s.line, s.first, _lock_text(lk) or "") for s in self.statements
                for lk in s.locks]


def _lock_text(h: Hazard | Lock, table: str | None = None) -> str | None:
    if h.mode is None:
        return None
    if table is not None:
        where = table
    elif h.table is not None:
        where = h.table.shown
    elif h.index is not None:
        where = f"the table of index {h.index.shown}"
    else:
        return h.mode
    others = getattr(h, "others", ())
    return f"{h.mode} on {where}" + "".join(f" and {o.shown}" for o in others)


def _first_line(text: str) -> str:
    line = text.split("\n", 1)[0].rstrip()
    return line if len(line) <= 120 else line[:117] + "..."


# ------------------------------------------------------------------------------------------------
# With a database
# ------------------------------------------------------------------------------------------------

def _with_database(names: tuple[str, ...], found: list[_File], database: str | psycopg.Connection,
                   long_transaction_s: float) -> LintReport:
    from . import _lintdb as lintdb

    if isinstance(database, str):
        from ._session import connection

        with connection(database) as conn:
            return _with_database(names, found, conn, long_transaction_s)
    findings: list[LintFinding] = []
    locks: list[LockedTable] = []
    touched: dict[int, str] = {}
    with lintdb.facts(database) as facts:
        for f in found:
            with facts.file():
                for s in f.statements:
                    if isinstance(s.op, q.SetSearchPath):
                        facts.set_search_path(s.op.text)
                        continue
                    for lk in s.locks:
                        t = _resolve(facts, lk)
                        if t is not None:
                            touched.setdefault(t.oid, t.name)
                            locks.append(LockedTable(f.path, s.line, s.first, _lock_text(lk, t.name) or ""))
                    findings.extend(_costed(f, s, h, facts) for h in s.hazards)
        blockers = facts.blockers(list(touched), long_transaction_s)
    return LintReport(names, _ranked(findings), tuple(locks), tuple(blockers), database=True)


def _resolve(facts: Facts, h: Hazard | Lock) -> TableFacts | None:
    if h.table is not None:
        return facts.table(h.table)
    if h.index is not None:
        return facts.table_of_index(h.index)
    return None


def _costed(f: _File, s: _Statement, h: Hazard, facts: Facts) -> LintFinding:
    base = f.finding(h, s)
    if h.table is None and h.index is None:
        return base
    t = _resolve(facts, h)
    if t is None:
        if h.rule.name in ("require-lock-timeout", "ban-concurrent-index-in-transaction"):
            return base
        what = h.table.shown if h.table is not None else f"the table of index {h.index.shown}"  # type: ignore[union-attr]
        return replace(base, severity=INFO,
                       message=f"{base.message} ({what} does not exist on this database yet: nothing "
                               "to lock there)")
    return replace(base, table=t.name, table_bytes=t.size_bytes, estimated_rows=t.rows,
                   lock=_lock_text(h, t.name), cost=_cost(h, t))


def _cost(h: Hazard, t: TableFacts) -> str:
    size = "unknown size" if t.size_bytes is None else format_bytes(t.size_bytes)
    rows = "an unknown number of rows (never analyzed)" if t.rows is None else f"~{format_count(t.rows)} rows"
    work = h.rule.work
    if work == rules.REWRITE:
        return f"rewrites {size} ({rows}) under {h.mode}"
    if work == rules.SCAN:
        return f"scans {rows} ({size}) under {h.mode}"
    if work == rules.BUILD:
        return f"builds an index over {rows} ({size}) under {h.mode}"
    if work == rules.FAILS:
        return "fails: the table has rows" if t.rows else f"{rows} ({size}): fails if any row exists"
    return f"{size}, {rows}; the {h.mode} lock itself is brief once granted"


def _weight(f: LintFinding) -> int:
    """What ranks first: bytes the statement reads or writes while holding its lock."""
    if f.table_bytes is None or RULES[f.rule].work not in (rules.REWRITE, rules.SCAN, rules.BUILD):
        return 0
    return f.table_bytes if f.severity != INFO else 0


def _ranked(findings: list[LintFinding]) -> tuple[LintFinding, ...]:
    order = {s: k for k, s in enumerate(SEVERITIES)}
    ranked = sorted(findings, key=lambda f: (-_weight(f), order[f.severity]))  # stable: file order
    return tuple(replace(f, cost_rank=k) for k, f in enumerate(ranked, 1))


def format_bytes(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{n} bytes" if unit == "bytes" else f"{size:.1f} {unit}".replace(".0 ", " ")
        size /= 1024
    return f"{n} bytes"  # pragma: no cover


def format_count(n: int) -> str:
    for limit, unit in ((10**9, "G"), (10**6, "M"), (10**3, "k")):
        if n >= limit:
            return f"{n / limit:.1f} {unit}".replace(".0 ", " ")
    return str(n)
