"""Comparing the files with the history: what is applied, pending, modified, missing, failed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from typing import TYPE_CHECKING

from ._errors import HistoryError, OutOfOrderError

if TYPE_CHECKING:
    from ._files import Migration
    from ._history import Row

# Mirror history.APPLIED and history.ROLLBACK_RUNNING, so that planning does not import psycopg.
_APPLIED = "applied"
_ROLLBACK_RUNNING = "rollback in progress"


class State(str, Enum):
    APPLIED = "applied"
    PENDING = "pending"
    #: pending, but older than the newest applied migration
    OUT_OF_ORDER = "out-of-order"
    #: applied, but the file changed since
    MODIFIED = "modified"
    #: applied, but the file at its version now has another name: maybe another migration altogether
    RENAMED = "renamed"
    #: applied, but the file is gone
    MISSING = "missing"
    #: a no-transaction migration that began and did not finish
    FAILED = "failed"


@dataclass(frozen=True)
class MigrationStatus:
    version: int
    name: str
    state: State
    migration: Migration | None
    row: Row | None
    #: digits of the versions in the directory's file names, to name a migration whose file is gone
    width: int = 0

    @property
    def label(self) -> str:
        """The file name without ``.sql``; for a missing file, as it would be spelled."""
        if self.migration is not None:
            return self.migration.label
        return f"{str(self.version).zfill(self.width)}_{self.name}"

    @property
    def applied_name(self) -> str | None:
        """The name the history recorded (for :attr:`State.RENAMED`, not the file's)."""
        return self.row.name if self.row is not None else None

    @property
    def applied_label(self) -> str | None:
        """The file name (without ``.sql``) the history recorded, spelled like the file's."""
        if self.row is None:
            return None
        digits = self.migration.label.split("_", 1)[0] if self.migration else str(self.version).zfill(self.width)
        return f"{digits}_{self.row.name}"

    @property
    def note(self) -> str | None:
        """What a user must know beyond the state: why it failed, or which names differ."""
        if self.state is State.FAILED:
            return describe_failure(self)
        if self.state is State.RENAMED and self.migration is not None and self.row is not None:
            same = "same text" if self.row.checksum == self.migration.checksum else "different text"
            return (f"applied as {self.applied_label}; the file at version {self.version} is now "
                    f"{self.label} ({same})")
        return None

    def as_dict(self) -> dict[str, Any]:
        row = self.row
        return {
            "version": self.version,
            "name": self.name,
            "applied_name": self.applied_name,
            "state": self.state.value,
            "note": self.note,
            "file": str(self.migration.path) if self.migration else None,
            "applied_at": row.applied_at.isoformat() if row else None,
            "execution_ms": row.execution_ms if row else None,
            "applied_by": row.applied_by if row else None,
            "applied_out_of_order": row.out_of_order if row else False,
            "baseline": row.baseline if row else False,
            "checksum": self.migration.checksum if self.migration else None,
            "applied_checksum": row.checksum if row else None,
            "error": row.error if row else None,
        }


@dataclass(frozen=True)
class Status:
    entries: tuple[MigrationStatus, ...]

    def having(self, *states: State) -> list[MigrationStatus]:
        return [e for e in self.entries if e.state in states]

    @property
    def pending(self) -> list[MigrationStatus]:
        return self.having(State.PENDING, State.OUT_OF_ORDER)

    @property
    def current(self) -> bool:
        """True when the database matches the files exactly."""
        return all(e.state is State.APPLIED for e in self.entries)

    @property
    def applied_at_newest(self) -> datetime | None:
        times = [e.row.applied_at for e in self.entries if e.row is not None]
        return max(times) if times else None

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for e in self.entries:
            counts[e.state.value] = counts.get(e.state.value, 0) + 1
        return ", ".join(f"{n} {state}" for state, n in counts.items()) or "no migrations"

    def as_dict(self) -> dict[str, Any]:
        return {
            "current": self.current,
            "migrations": [e.as_dict() for e in self.entries],
            **{state.value.replace("-", "_"): [e.version for e in self.having(state)]
               for state in State if state is not State.APPLIED},
        }


def compute(migrations: Sequence[Migration], rows: Sequence[Row]) -> Status:
    by_version = {r.version: r for r in rows}
    newest_applied = max((r.version for r in rows), default=None)
    entries: list[MigrationStatus] = []
    for m in migrations:
        row = by_version.pop(m.version, None)
        if row is None:
            late = newest_applied is not None and m.version < newest_applied
            state = State.OUT_OF_ORDER if late else State.PENDING
        elif row.state != _APPLIED:
            state = State.FAILED
        elif row.name != m.name:
            state = State.RENAMED
        elif row.checksum != m.checksum:
            state = State.MODIFIED
        else:
            state = State.APPLIED
        entries.append(MigrationStatus(m.version, m.name, state, m, row))
    width = len(migrations[-1].filename.split("_", 1)[0]) if migrations else 0
    for row in by_version.values():
        state = State.FAILED if row.state != _APPLIED else State.MISSING
        entries.append(MigrationStatus(row.version, row.name, state, None, row, width))
    entries.sort(key=lambda e: e.version)
    return Status(tuple(entries))


def describe_failure(entry: MigrationStatus) -> str:
    """What ran and what did not, for a no-transaction migration that stopped part way."""
    row = entry.row
    if row is None:
        return "no history row"
    done = row.statements_done or 0
    if row.state == "failed" and row.error:
        # The error says "[rollback ]statement N of M (line L) failed; K completed: <server error>";
        # only its first line (file:line: message): the failing statement follows on later lines.
        head, sep, rest = row.error.partition(": ")
        if sep and (head.startswith("statement ") or head.startswith("rollback statement ")):
            return f"{head}, the statements after it did not run: {rest.splitlines()[0]}"
        return f"{done} statement(s) completed, then: {row.error.splitlines()[0]}"
    ran = f"statement(s) 1-{done} completed" if done else "no statement completed"
    what = "its rollback" if row.error == _ROLLBACK_RUNNING else "its process"
    return (f"{what} stopped (killed, crashed or disconnected) during statement {done + 1}: {ran}, "
            f"statement {done + 1} may or may not have taken effect, and the statements after it did not run")


def renamed_remedy(e: MigrationStatus) -> str:
    """The ways out for a :attr:`State.RENAMED` entry."""
    return (f"If {e.label} is the migration that ran, renamed, run `sqlmigrate repair --accept-renamed "
            f"{e.version}` to record its new name; if it is another migration, restore "
            f"{e.applied_label}.sql and give {e.label} a version of its own")


def plan_up(status: Status, *, to: int | None = None, allow_out_of_order: bool = False) -> list[MigrationStatus]:
    """The migrations ``up`` applies, in order; raises when the history forbids going on."""
    failed = status.having(State.FAILED)
    if failed:
        e = failed[0]
        raise HistoryError(
            f"migration {e.label} ran without a transaction and did not finish: {describe_failure(e)}. "
            "Nothing more runs until it is resolved; fix the database by hand, then either run "
            f"`sqlmigrate repair --applied {e.version}` (you completed its remaining statements: record it "
            f"as applied) or `sqlmigrate repair --retry {e.version}` (you undid what it did: `up` runs it "
            "again from its first statement)"
        )
    renamed = status.having(State.RENAMED)
    if renamed:
        raise HistoryError("applied version(s) whose file now has another name: "
                           + "; ".join(f"{e.note}. {renamed_remedy(e)}" for e in renamed))
    modified = status.having(State.MODIFIED)
    if modified:
        names = ", ".join(e.label for e in modified)
        raise HistoryError(
            f"applied migration(s) changed since they ran: {names}. sqlmigrate does not re-run edited "
            "migrations: restore the files, or put the change in a new migration and run "
            "`sqlmigrate repair` to accept the edited text"
        )
    pending = [e for e in status.pending if to is None or e.version <= to]
    late = [e for e in pending if e.state is State.OUT_OF_ORDER]
    if late and not allow_out_of_order:
        newest = max(e.version for e in status.entries if e.row is not None)
        names = ", ".join(e.label for e in late)
        raise OutOfOrderError(
            f"pending migration(s) older than the newest applied one ({newest}): {names}. "
            "Renumber them above it, or apply them as they are with --allow-out-of-order",
            [e.version for e in late],
        )
    return pending
