"""The lint rules: which statements lock or rewrite a table that traffic is using, or break code that
still runs against the old schema; each with its severity, the lock it takes and a safer recipe.

Rule names follow squawk's where squawk has the rule, so a team that knows one knows the other.
Severity: ``error`` for a statement that holds a lock blocking reads or writes of an existing table
for as long as a scan, an index build or a rewrite takes (or that cannot succeed); ``warning`` for a
compatibility hazard or a brief lock that can still queue traffic; ``info`` for what cannot hurt
(e.g. the table does not exist yet on the database looked at).

This module knows no database: :class:`Checker` walks the statements of the files in order and
remembers what they create, so a table created earlier in the same run is new and exempt.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from . import _lintsql as q
from ._lintsql import Name

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITIES = (ERROR, WARNING, INFO)

ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
SHARE = "SHARE"
SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"
SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE"

#: Lock modes from weakest to strongest, with the modes held by others that each one waits for
#: (PostgreSQL's conflict table, in pg_locks' spelling).
CONFLICTS: dict[str, frozenset[str]] = {
    "ACCESS SHARE": frozenset({"AccessExclusiveLock"}),
    "ROW SHARE": frozenset({"ExclusiveLock", "AccessExclusiveLock"}),
    "ROW EXCLUSIVE": frozenset({"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock",
                                "AccessExclusiveLock"}),
    SHARE_UPDATE_EXCLUSIVE: frozenset({"ShareUpdateExclusiveLock", "ShareLock", "ShareRowExclusiveLock",
                                       "ExclusiveLock", "AccessExclusiveLock"}),
    SHARE: frozenset({"RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareRowExclusiveLock",
                      "ExclusiveLock", "AccessExclusiveLock"}),
    SHARE_ROW_EXCLUSIVE: frozenset({"RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareLock",
                                    "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"}),
    "EXCLUSIVE": frozenset({"RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareLock",
                            "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"}),
    ACCESS_EXCLUSIVE: frozenset({"AccessShareLock", "RowShareLock", "RowExclusiveLock",
                                 "ShareUpdateExclusiveLock", "ShareLock", "ShareRowExclusiveLock",
                                 "ExclusiveLock", "AccessExclusiveLock"}),
}
_STRENGTH = {mode: k for k, mode in enumerate(CONFLICTS)}


def stronger(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return a if _STRENGTH[a] >= _STRENGTH[b] else b


# What the statement costs on a big table; the database facts turn this into "rewrites 38 GB".
REWRITE, SCAN, BUILD, FAILS, BRIEF, NONE = "rewrite", "scan", "build", "fails", "brief", "none"


@dataclass(frozen=True)
class Rule:
    name: str
    severity: str
    work: str
    recipe: str


_NO_TX = "in its own migration whose first line is `-- sqlmigrate: no-transaction`"
_CONCURRENT_INDEX = (f"CREATE INDEX CONCURRENTLY {_NO_TX}, after `SET lock_timeout = '5s';`; if it fails it "
                     "leaves an INVALID index: DROP INDEX CONCURRENTLY it and run the migration again")

RULES: dict[str, Rule] = {r.name: r for r in (
    Rule("require-concurrent-index-creation", ERROR, BUILD, _CONCURRENT_INDEX),
    Rule("require-concurrent-index-deletion", WARNING, BRIEF, f"DROP INDEX CONCURRENTLY {_NO_TX}"),
    Rule("constraint-missing-not-valid", ERROR, SCAN,
         "ADD CONSTRAINT ... NOT VALID (instant: only new rows are checked), then "
         "`ALTER TABLE ... VALIDATE CONSTRAINT ...` in a later migration: it scans under SHARE UPDATE "
         "EXCLUSIVE, so reads and writes go on"),
    Rule("adding-not-nullable-field", ERROR, SCAN,
         "ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT c in a later "
         "migration; then SET NOT NULL (PostgreSQL 12+ trusts the validated CHECK and skips the scan) "
         "and DROP CONSTRAINT c"),
    Rule("adding-required-field", ERROR, FAILS,
         "add the column with a constant DEFAULT (no rewrite since PostgreSQL 11), or add it nullable, "
         "backfill in batches and then follow adding-not-nullable-field's recipe"),
    Rule("changing-column-type", ERROR, REWRITE,
         "add a new column, backfill it in batches, move reads and writes to it, then drop the old "
         "one (only binary-compatible changes, e.g. varchar(n) to text or to a larger n, skip the "
         "rewrite)"),
    Rule("adding-field-with-volatile-default", ERROR, REWRITE,
         "add the column without a default (or with a constant or now(): no rewrite since PostgreSQL "
         "11), then `ALTER COLUMN ... SET DEFAULT ...` for new rows and backfill existing rows in "
         "batches"),
    Rule("renaming-column", WARNING, BRIEF,
         "add the new column, write both, move the readers, and drop the old column in a later "
         "release"),
    Rule("renaming-table", WARNING, BRIEF,
         "rename it and create a view with the old name until no running code uses it"),
    Rule("ban-drop-column", WARNING, BRIEF,
         "first deploy code that no longer reads or writes the column, then drop it in a later "
         "migration"),
    Rule("ban-drop-table", WARNING, BRIEF,
         "first deploy code that no longer uses the table, then drop it in a later migration"),
    Rule("require-lock-timeout", WARNING, NONE,
         "start the file with `SET lock_timeout = '5s';` so a statement that queues behind a long "
         "transaction gives up instead of stalling every query on the table"),
    Rule("ban-vacuum-full", ERROR, REWRITE,
         "plain VACUUM (no exclusive lock), or pg_repack / pg_squeeze to give space back online"),
    Rule("ban-cluster", ERROR, REWRITE, "pg_repack --order-by, which reorders the table online"),
    Rule("require-concurrent-reindex", ERROR, BUILD,
         f"REINDEX ... CONCURRENTLY (PostgreSQL 12+) {_NO_TX}"),
    Rule("adding-primary-key", ERROR, BUILD,
         f"CREATE UNIQUE INDEX CONCURRENTLY {_NO_TX}, then `ALTER TABLE ... ADD CONSTRAINT pk PRIMARY KEY "
         "USING INDEX ...` (its columns must be NOT NULL already: see adding-not-nullable-field)"),
    Rule("disallowed-unique-constraint", ERROR, BUILD,
         f"CREATE UNIQUE INDEX CONCURRENTLY {_NO_TX}, then `ALTER TABLE ... ADD CONSTRAINT ... UNIQUE "
         "USING INDEX ...`"),
    Rule("ban-concurrent-index-in-transaction", ERROR, NONE,
         f"move the statement {_NO_TX}"),
    Rule("statement-too-large", INFO, NONE, "lint this statement by reading it"),
)}


@dataclass(frozen=True)
class Hazard:
    """A rule that fired on one statement, before any database facts."""

    rule: Rule
    message: str
    mode: str | None  # the lock mode the statement takes on ``table``
    table: Name | None = None
    index: Name | None = None  # when only the index is named (DROP INDEX, REINDEX INDEX)
    others: tuple[Name, ...] = ()  # also locked (a foreign key's referenced table)
    severity: str | None = None  # overrides the rule's

    @property
    def level(self) -> str:
        return self.severity or self.rule.severity


@dataclass(frozen=True)
class Lock:
    """The table lock one statement takes (for the report, and to look for blockers)."""

    mode: str
    table: Name | None
    index: Name | None = None


def statement_lock(op: q.Op) -> list[Lock]:
    """The table-level locks ``op`` takes on tables that may already exist."""
    if isinstance(op, q.CreateIndex):
        return [Lock(SHARE_UPDATE_EXCLUSIVE if op.concurrently else SHARE, op.table)]
    if isinstance(op, q.DropIndex):
        mode = SHARE_UPDATE_EXCLUSIVE if op.concurrently else ACCESS_EXCLUSIVE
        return [Lock(mode, None, ix) for ix in op.indexes]
    if isinstance(op, q.DropTable):
        return [Lock(ACCESS_EXCLUSIVE, t) for t in op.tables]
    if isinstance(op, q.AlterTable):
        strongest: str | None = None
        others: list[Lock] = []
        for a in op.actions:
            strongest = stronger(strongest, _action_mode(a))
            if a.references is not None:
                others.append(Lock(SHARE_ROW_EXCLUSIVE, a.references))
        return [Lock(strongest or ACCESS_EXCLUSIVE, op.table), *others]
    if isinstance(op, q.Vacuum):
        mode = ACCESS_EXCLUSIVE if op.full else SHARE_UPDATE_EXCLUSIVE
        return [Lock(mode, t) for t in op.tables]
    if isinstance(op, q.Cluster) and op.table is not None:
        return [Lock(ACCESS_EXCLUSIVE, op.table)]
    if isinstance(op, q.Reindex) and op.name is not None and op.kind in ("TABLE", "INDEX"):
        mode = SHARE_UPDATE_EXCLUSIVE if op.concurrently else SHARE
        return [Lock(mode, op.name) if op.kind == "TABLE" else Lock(mode, None, op.name)]
    return []


def _action_mode(a: q.Action) -> str:
    if a.kind in ("validate", "lighter"):
        return SHARE_UPDATE_EXCLUSIVE
    if a.kind == "add constraint" and a.ctype == "foreign key":
        return SHARE_ROW_EXCLUSIVE
    return ACCESS_EXCLUSIVE


@dataclass
class Checker:
    """Runs the rules over the statements of a set of files, in order."""

    disabled: frozenset[str] = frozenset()
    new_tables: dict[str, list[Name]] = field(default_factory=dict)  # by unqualified name
    new_indexes: dict[str, list[Name]] = field(default_factory=dict)
    # Per file:
    no_transaction: bool = False
    lock_timeout: bool = False
    warned_timeout: bool = False
    not_valid_here: dict[tuple[str, str], str] = field(default_factory=dict)  # (table, constraint)
    # -> the lock its ADD ... NOT VALID took
    # Across files:
    not_null_checks: dict[tuple[str, str], str] = field(default_factory=dict)  # (table, constraint)
    # -> column of a CHECK (col IS NOT NULL) added NOT VALID
    not_null_checked: set[tuple[str, str]] = field(default_factory=set)  # (table, column), validated

    def begin_file(self, no_transaction: bool) -> None:
        self.no_transaction = no_transaction
        self.lock_timeout = self.warned_timeout = False
        self.not_valid_here = {}

    def is_new(self, table: Name) -> bool:
        return any(table.same(t) for t in self.new_tables.get(table.folded[-1], ()))

    def check(self, op: q.Op, allow: frozenset[str] = frozenset()) -> list[Hazard]:
        """The hazards of ``op``, but those of disabled rules and of the rules in ``allow`` (the
        statement's ``-- sqlmigrate: allow`` comments)."""
        off = self.disabled | allow if allow else self.disabled
        found = [h for h in self._hazards(op) if h.rule.name not in off]
        self._remember(op)
        return found

    def _hazards(self, op: q.Op) -> Iterator[Hazard]:
        if isinstance(op, q.SetLockTimeout):
            self.lock_timeout = op.enabled
            return
        locks = [lk for lk in statement_lock(op) if lk.table is None or not self.is_new(lk.table)]
        if self.no_transaction and locks and not self.lock_timeout and not self.warned_timeout:
            self.warned_timeout = True
            lk = locks[0]
            yield Hazard(RULES["require-lock-timeout"],
                         "this no-transaction migration takes a table lock without a lock timeout: "
                         "queued behind a long transaction, it makes every query on the table wait",
                         lk.mode, lk.table, lk.index)
        if isinstance(op, q.CreateIndex):
            yield from self._create_index(op)
        elif isinstance(op, q.DropIndex):
            yield from self._drop_index(op)
        elif isinstance(op, q.DropTable):
            for t in op.tables:
                if not self.is_new(t):
                    yield Hazard(RULES["ban-drop-table"], f"dropping table {t.shown} breaks running code "
                                 "that still uses it", ACCESS_EXCLUSIVE, t)
        elif isinstance(op, q.AlterTable):
            yield from self._alter(op)
        elif isinstance(op, q.Vacuum) and op.full:
            for t in op.tables or (None,):  # type: ignore[assignment]
                yield Hazard(RULES["ban-vacuum-full"], "VACUUM FULL rewrites the table under an ACCESS "
                             "EXCLUSIVE lock: no reads or writes until it is done", ACCESS_EXCLUSIVE, t)
        elif isinstance(op, q.Cluster):
            yield Hazard(RULES["ban-cluster"], "CLUSTER rewrites the table under an ACCESS EXCLUSIVE "
                         "lock: no reads or writes until it is done", ACCESS_EXCLUSIVE, op.table)
        elif isinstance(op, q.Reindex):
            yield from self._reindex(op)

    def _concurrently_in_transaction(self, what: str, mode: str, table: Name | None,
                                     index: Name | None = None) -> Iterator[Hazard]:
        if not self.no_transaction:
            yield Hazard(RULES["ban-concurrent-index-in-transaction"],
                         f"{what} cannot run inside a transaction block, and this migration runs in one: "
                         "it fails", mode, table, index)

    def _create_index(self, op: q.CreateIndex) -> Iterator[Hazard]:
        if op.concurrently:
            yield from self._concurrently_in_transaction("CREATE INDEX CONCURRENTLY",
                                                         SHARE_UPDATE_EXCLUSIVE, op.table)
        elif not self.is_new(op.table):
            yield Hazard(RULES["require-concurrent-index-creation"],
                         f"CREATE {'UNIQUE ' if op.unique else ''}INDEX without CONCURRENTLY holds a SHARE "
                         f"lock on {op.table.shown} for the whole build: every INSERT, UPDATE and DELETE "
                         "waits", SHARE, op.table)

    def _drop_index(self, op: q.DropIndex) -> Iterator[Hazard]:
        if op.concurrently:
            yield from self._concurrently_in_transaction(
                "DROP INDEX CONCURRENTLY", SHARE_UPDATE_EXCLUSIVE, None, op.indexes[0])
            return
        for ix in op.indexes:
            if not any(ix.same(n) for n in self.new_indexes.get(ix.folded[-1], ())):
                yield Hazard(RULES["require-concurrent-index-deletion"],
                             f"DROP INDEX {ix.shown} without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on "
                             "its table: it waits for every open transaction on it, and all queries queue "
                             "behind it", ACCESS_EXCLUSIVE, None, ix)

    def _reindex(self, op: q.Reindex) -> Iterator[Hazard]:
        table = op.name if op.kind == "TABLE" else None
        index = op.name if op.kind == "INDEX" else None
        if op.concurrently:
            yield from self._concurrently_in_transaction("REINDEX CONCURRENTLY", SHARE_UPDATE_EXCLUSIVE,
                                                         table, index)
        elif table is None or not self.is_new(table):
            what = f"{op.kind} {op.name.shown}" if op.name is not None else op.kind
            yield Hazard(RULES["require-concurrent-reindex"],
                         f"REINDEX {what} without CONCURRENTLY blocks writes to the table (SHARE lock) and "
                         "reads that use the index (ACCESS EXCLUSIVE on it) while it rebuilds",
                         SHARE, table, index)

    def _alter(self, op: q.AlterTable) -> Iterator[Hazard]:
        t = op.table
        if self.is_new(t):
            return
        mode = statement_lock(op)[0].mode
        key = t.folded[-1]
        for a in op.actions:
            col = a.column or "?"
            if a.kind == "add column":
                yield from self._add_column(t, a, mode)
            elif a.kind == "type":
                yield Hazard(RULES["changing-column-type"],
                             f"changing the type of {t.shown}.{col} rewrites the table and all its indexes "
                             "under an ACCESS EXCLUSIVE lock", mode, t)
            elif a.kind == "set not null":
                if (key, col) not in self.not_null_checked:
                    yield Hazard(RULES["adding-not-nullable-field"],
                                 f"SET NOT NULL on {t.shown}.{col} scans the whole table under an ACCESS "
                                 "EXCLUSIVE lock (no validated CHECK (... IS NOT NULL) to use)", mode, t)
            elif a.kind == "add constraint":
                yield from self._add_constraint(t, a, mode)
            elif a.kind == "validate":
                held = self.not_valid_here.get((key, a.constraint or ""))
                if not self.no_transaction and held is not None:
                    yield Hazard(RULES["constraint-missing-not-valid"],
                                 f"VALIDATE CONSTRAINT {a.constraint} in the same transaction as its ADD "
                                 f"... NOT VALID: the {held} lock the ADD took is held during the "
                                 "validation scan", held, t, severity=WARNING)
            elif a.kind == "rename column":
                yield Hazard(RULES["renaming-column"], f"renaming {t.shown}.{col} breaks running code that "
                             "still uses the old name", mode, t)
            elif a.kind == "rename table":
                yield Hazard(RULES["renaming-table"], f"renaming table {t.shown} breaks running code that "
                             "still uses the old name", mode, t)
            elif a.kind == "drop column":
                yield Hazard(RULES["ban-drop-column"], f"dropping {t.shown}.{col} breaks running code that "
                             "still reads or writes it", mode, t)

    def _add_column(self, t: Name, a: q.Action, mode: str) -> Iterator[Hazard]:
        col = a.column or "?"
        if a.rewrite is not None:
            yield Hazard(RULES["adding-field-with-volatile-default"],
                         f"adding {t.shown}.{col} rewrites the table under an ACCESS EXCLUSIVE lock: "
                         f"{a.rewrite}", mode, t)
        elif a.not_null and not a.has_default:
            yield Hazard(RULES["adding-required-field"],
                         f"adding {t.shown}.{col} NOT NULL without a DEFAULT fails as soon as the table "
                         "has a row", mode, t)
        if a.ctype == "primary key":
            yield Hazard(RULES["adding-primary-key"], f"a PRIMARY KEY column on {t.shown} builds a unique "
                         "index under an ACCESS EXCLUSIVE lock", mode, t)
        elif a.ctype == "unique":
            yield Hazard(RULES["disallowed-unique-constraint"], f"a UNIQUE column on {t.shown} builds a "
                         "unique index under an ACCESS EXCLUSIVE lock", mode, t)
        elif a.ctype in ("check", "foreign key"):
            yield from self._add_constraint(t, a, mode)

    def _add_constraint(self, t: Name, a: q.Action, mode: str) -> Iterator[Hazard]:
        what = f"{a.constraint} " if a.constraint else ""
        if a.ctype == "check" and not a.not_valid:
            yield Hazard(RULES["constraint-missing-not-valid"],
                         f"adding CHECK constraint {what}checks every row of {t.shown} under an ACCESS "
                         "EXCLUSIVE lock", mode, t)
        elif a.ctype == "foreign key" and not a.not_valid:
            ref = f" and {a.references.shown}" if a.references else ""
            yield Hazard(RULES["constraint-missing-not-valid"],
                         f"adding FOREIGN KEY {what}checks every row of {t.shown} while holding SHARE ROW "
                         f"EXCLUSIVE locks on {t.shown}{ref}: writes to both wait", mode, t,
                         others=(a.references,) if a.references else ())
        elif a.ctype == "primary key" and not a.using_index:
            yield Hazard(RULES["adding-primary-key"], f"adding a PRIMARY KEY to {t.shown} builds a unique "
                         "index (and checks NOT NULL) under an ACCESS EXCLUSIVE lock", mode, t)
        elif a.ctype == "unique" and not a.using_index:
            yield Hazard(RULES["disallowed-unique-constraint"], f"adding UNIQUE constraint {what}to "
                         f"{t.shown} builds a unique index under an ACCESS EXCLUSIVE lock", mode, t)

    def _remember(self, op: q.Op) -> None:
        if isinstance(op, q.CreateTable):
            self.new_tables.setdefault(op.table.folded[-1], []).append(op.table)
        elif isinstance(op, q.CreateIndex) and op.index is not None:
            schema = op.table.parts[:-1] if len(op.index.parts) == 1 else ()
            index = Name((*schema, *op.index.parts))
            self.new_indexes.setdefault(index.folded[-1], []).append(index)
        elif isinstance(op, q.AlterTable):
            key = op.table.folded[-1]
            for a in op.actions:
                name = (key, a.constraint or "")
                if a.kind == "add constraint" and a.not_valid:
                    self.not_valid_here[name] = _action_mode(a)
                    if a.checks_not_null:
                        self.not_null_checks[name] = a.checks_not_null
                elif a.kind == "add constraint" and a.checks_not_null:
                    self.not_null_checked.add((key, a.checks_not_null))
                elif a.kind == "validate" and name in self.not_null_checks:
                    self.not_null_checked.add((key, self.not_null_checks.pop(name)))
