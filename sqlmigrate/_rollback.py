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
    from ._migrator import Applied, Migrator, Result
    from ._script import Script

log = logging.getLogger("sqlmigrate")

#: Decides whether data may be destroyed: gets every finding of the whole plan, returns True to go on.
OnDataLoss = Callable[[list["Finding"]], bool]

#: Time the data-presence check of one rollback file may take (see dataloss.find_data_loss).
CHECK_BUDGET_S = 0.5


@dataclass(frozen=True)
class Step:
    """One rollback to run: the applied migration, its checked rollback script, and what it destroys."""

    entry: MigrationStatus
    script: Script
    findings: tuple[Finding, ...]

    @property
    def migration(self) -> files.Migration:
        assert self.entry.migration is not None  # plan_down refuses entries without a file
        return self.entry.migration


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


def prepare_steps(conn: psycopg.Connection, history: History, chosen: Sequence[MigrationStatus]) -> list[Step]:
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
            scripts.append(prepare(m.read_rollback(), m.rollback, protected=protected))
        except MigrationFileError as exc:
            problems.append(str(exc))
    if problems:
        raise MigrationFileError("nothing was rolled back:\n" + "\n".join(problems))
    # Every check looks at the database as it is now, before any rollback: an object one rollback
    # creates and an older one drops is not seen (it holds nothing yet).
    return [Step(e, s, tuple(find_data_loss(conn, [(st.text, st.line) for st in s.statements],
                                            budget_s=CHECK_BUDGET_S)))
            for e, s in zip(chosen, scripts)]


def all_findings(steps: Sequence[Step]) -> list[Finding]:
    return [f for s in steps for f in s.findings]


def data_loss_message(steps: Sequence[Step]) -> str:
    lines = ["rolling back would destroy data, so nothing was rolled back:"]
    for s in steps:
        for f in s.findings:
            lines.append(f"  {s.script.path.name}:{f.line}: {f.describe()}")
    lines.append("Back the data up if you need it, then confirm: down(confirm=True) in the API, "
                 "--yes on the command line")
    return "\n".join(lines)


def down(migrator: Migrator, *, steps: int = 1, to: int | None = None, confirm: bool = False,
         dry_run: bool = False, on_data_loss: OnDataLoss | None = None) -> Result:
    """See :meth:`sqlmigrate.Migrator.down`."""
    from . import _plan as plan
    from ._migrator import Applied, Result

    migrations = files.discover(migrator.directory)
    with migrator._session() as (conn, history):
        if dry_run:
            # Like `up --dry-run`: no lock, so it never makes a running migration wait.
            chosen = plan_down(plan.compute(migrations, history.rows(conn)), steps=steps, to=to)
            planned = prepare_steps(conn, history, chosen)
            return Result(tuple(
                Applied(p.migration.version, p.migration.name, p.migration.label, "down", 0.0,
                        no_transaction=p.script.no_transaction, sql=p.script.text) for p in planned),
                dry_run=True, findings=tuple(all_findings(planned)))
        with migrator._locked(conn, history):
            # The plan is made under the lock: a concurrent `up` or `down` has finished by now.
            chosen = plan_down(plan.compute(migrations, history.rows(conn)), steps=steps, to=to)
            if not chosen:
                log.info("nothing to roll back in %s", history.display)
                return Result(())
            planned = prepare_steps(conn, history, chosen)
            findings = all_findings(planned)
            if findings:
                _decide(planned, findings, confirm, on_data_loss)
            history.ensure(conn)
            done = tuple(_roll_back(migrator, conn, history, p) for p in planned)
            return Result(done, findings=tuple(findings))


def _decide(planned: Sequence[Step], findings: list[Finding], confirm: bool,
            on_data_loss: OnDataLoss | None) -> None:
    if confirm:
        for p in planned:
            for f in p.findings:
                log.warning("rolling back %s destroys data (confirmed): %s", p.migration.label, f.describe())
        return
    if on_data_loss is not None and on_data_loss(list(findings)):
        return
    raise DataLossError(data_loss_message(planned), findings)


def _roll_back(migrator: Migrator, conn: psycopg.Connection, history: History, step: Step) -> Applied:
    from . import _execute as execute
    from ._migrator import Applied, format_ms

    m = step.migration
    row = step.entry.row
    checksum = row.checksum if row is not None else m.checksum  # what was applied, for the log
    label = f"rollback of {m.label}"
    # What was destroyed with confirmation goes into the audit log with the rollback.
    detail = "; ".join(f.describe() for f in step.findings) or None
    if step.script.no_transaction:
        ms = _roll_back_no_transaction(migrator, conn, history, step, checksum, detail)
    else:
        record = history.record_removed(version=m.version, name=m.name, checksum=checksum, detail=detail)
        try:
            ms = execute.run_in_transaction(conn, step.script, label, record)
        except SqlMigrateError as exc:
            migrator._log_failure(conn, history, m, "down", exc)
            raise
    log.info("rolled back %s (%s)", m.label, format_ms(ms))
    return Applied(m.version, m.name, m.label, "down", ms, no_transaction=step.script.no_transaction)


def _roll_back_no_transaction(migrator: Migrator, conn: psycopg.Connection, history: History, step: Step,
                              checksum: str, detail: str | None) -> float:
    from . import _execute as execute

    m = step.migration
    history.mark_rollback_running(conn, m.version)
    try:
        ms = execute.run_without_transaction(conn, step.script, f"rollback of {m.label}", history, m.version,
                                             rollback=True)
    except SqlMigrateError as exc:
        migrator._log_failure(conn, history, m, "down", exc)
        raise
    history.write(conn, history.record_removed(version=m.version, name=m.name, checksum=checksum,
                                               detail=detail))
    return ms
