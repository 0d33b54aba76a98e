"""``down``: running the rollback files of the newest applied migrations, newest first.

Everything that can stop a rollback is decided before the first one runs: which migrations go (a
missing migration or rollback file, or a half-done no-transaction migration, stops the whole plan),
every rollback file is checked, and what all of them together would destroy is found and confirmed
(or refused) up front. Then each rollback runs in one transaction together with the removal of its
history row and its log row, or, with the ``no-transaction`` directive, statement by statement.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import _files as files
from ._errors import ConfigurationError, DataLossError, HistoryError, MigrationFileError, SqlMigrateError
from ._plan import MigrationStatus, State, Status, renamed_remedy

if TYPE_CHECKING:
    import psycopg

    from ._dataloss import Finding
    from ._history import History
    from ._step import Step
    from ._script import Script

log = logging.getLogger("sqlmigrate")

#: Decides whether data may be destroyed: gets every finding of the whole plan, returns True to go on.
OnDataLoss = Callable[[list["Finding"]], bool]

#: Time the data-presence check of one rollback file may take (see dataloss.find_data_loss).
CHECK_BUDGET_S = 0.5


@dataclass(frozen=True)
class Planned:
    """One rollback to run: the applied migration, its checked rollback script, and what it destroys."""

    entry: MigrationStatus
    script: Script
    findings: tuple[Finding, ...]

    @property
    def migration(self) -> files.Migration:
        assert self.entry.migration is not None  # plan_down refuses entries without a file
        return self.entry.migration

    @property
    def step(self) -> Step:
        """The step the executor runs; the log gets what was applied (the recorded checksum) and
        what was destroyed with confirmation."""
        from ._step import Step

        row = self.entry.row
        return Step(self.migration, self.script, "down",
                    row.checksum if row is not None else self.migration.checksum,
                    detail="; ".join(f.describe() for f in self.findings) or None)


def plan_down(status: Status, *, steps: int = 1, to: int | None = None) -> list[MigrationStatus]:
    """The applied migrations ``down`` rolls back, newest first; raises when one cannot be rolled back.

    ``to=V`` selects every applied migration above version V; otherwise the newest ``steps``.
    """
    if to is not None and steps != 1:
        raise ConfigurationError("pass either a number of steps or a target version (--to), not both")
    if to is None and steps < 1:
        raise ConfigurationError(f"--steps must be 1 or more (got {steps})")
    applied = sorted((e for e in status.entries if e.row is not None), key=lambda e: e.version, reverse=True)
    if to is not None:
        chosen = [e for e in applied if e.version > to]
    else:
        chosen = applied[:steps]
        if len(applied) < steps:
            log.info("only %d migration(s) are applied; rolling back all of them", len(applied))

    problems: list[str] = []
    for e in chosen:
        if e.state is State.FAILED:
            row = e.row
            problems.append(
                f"migration {e.label} began without a transaction and did not finish"
                f"{f' ({row.error.splitlines()[0]})' if row is not None and row.error else ''}; it cannot "
                "be rolled back automatically. Fix the database by hand, then run "
                f"`sqlmigrate repair --applied {e.version}` (you completed it: `down` can then roll it "
                f"back) or `sqlmigrate repair --retry {e.version}` (you undid what it did: nothing is "
                "left to roll back)"
            )
        elif e.state is State.RENAMED:
            # Its rollback file belongs to the file now at that version, which may never have run.
            problems.append(f"migration {e.note}; its rollback may undo something else. {renamed_remedy(e)}")
        elif e.migration is None:
            stem = e.label
            problems.append(
                f"migration {stem} (version {e.version}) is applied but its file is gone from the "
                f"migration directory; restore {stem}.sql and write its rollback {stem}.rollback.sql "
                "beside it"
            )
        elif e.migration.rollback is None:
            problems.append(
                f"{e.migration.path}: migration {e.label} has no rollback file; write "
                f"{files.rollback_name(e.migration)} beside it to make it reversible"
            )
    if problems:
        raise HistoryError("nothing was rolled back:\n" + "\n".join(problems))
    for e in chosen:
        if e.state is State.MODIFIED:
            log.warning("migration %s changed since it was applied; its rollback undoes the file as it is "
                        "now, which may differ from what ran", e.label)
    return chosen


def prepare_steps(conn: psycopg.Connection, history: History, chosen: Sequence[MigrationStatus]) -> list[Planned]:
    """Check every rollback file and find what it destroys, before any of them runs."""
    from ._dataloss import find_data_loss
    from ._script import prepare

    protected = history.protected
    scripts: list[Script] = []
    problems: list[str] = []
    for e in chosen:
        m = e.migration
        assert m is not None and m.rollback is not None
        try:
            scripts.append(prepare(m.read_rollback(), m.rollback, protected=protected, rollback=True))
            if scripts[-1].empty:
                log.info("%s", empty_note(m))
        except MigrationFileError as exc:
            problems.append(str(exc))
    if problems:
        raise MigrationFileError("nothing was rolled back:\n" + "\n".join(problems))
    # Every check looks at the database as it is now, before any rollback: an object one rollback
    # creates and an older one drops is not seen (it holds nothing yet).
    return [Planned(e, s, tuple(find_data_loss(conn, [(st.text, st.line) for st in s.statements],
                                            budget_s=CHECK_BUDGET_S)))
            for e, s in zip(chosen, scripts)]


def empty_note(m: files.Migration) -> str:
    return f"rollback of {m.label} is empty: nothing to undo"


def all_findings(steps: Sequence[Planned]) -> list[Finding]:
    return [f for s in steps for f in s.findings]


def data_loss_message(steps: Sequence[Planned]) -> str:
    lines = ["rolling back would destroy data, so nothing was rolled back:"]
    for s in steps:
        for f in s.findings:
            lines.append(f"  {s.script.path.name}:{f.line}: {f.describe()}")
    lines.append("Back the data up if you need it, then confirm: down(confirm=True) in the API, "
                 "--yes on the command line")
    return "\n".join(lines)


def decide(planned: Sequence[Planned], findings: list[Finding], confirm: bool,
            on_data_loss: OnDataLoss | None) -> None:
    if confirm:
        for p in planned:
            for f in p.findings:
                log.warning("rolling back %s destroys data (confirmed): %s", p.migration.label, f.describe())
        return
    if on_data_loss is not None and on_data_loss(list(findings)):
        return
    raise DataLossError(data_loss_message(planned), findings)
