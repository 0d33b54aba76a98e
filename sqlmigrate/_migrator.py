"""The library API: :class:`Migrator`, and the ``up`` / ``ensure_current`` shortcuts.

Data flows one way: files -> plan -> execution -> history.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _files as files
from ._config import DEFAULT_LOCK_RETRIES, DEFAULT_LOCK_TIMEOUT, DEFAULT_LOCK_WAIT, DEFAULT_TABLE, lint_rules
from ._errors import ConfigurationError, HistoryError, NotCurrentError
from ._plan import MigrationStatus, State, Status

if TYPE_CHECKING:
    from ._dataloss import Finding
    from ._history import LogEntry
    from ._recovery import BaselineResult, RepairResult
    from ._rollback import OnDataLoss
    from ._script import Script
    from ._session import Session
    from ._step import Step

log = logging.getLogger("sqlmigrate")


@dataclass(frozen=True)
class StepResult:
    """One migration applied, or one rolled back (``direction``), or in a dry run, to be."""

    version: int
    name: str
    label: str
    direction: str
    duration_ms: float
    out_of_order: bool = False
    no_transaction: bool = False
    #: the SQL that runs; set by dry runs only
    sql: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Result:
    """What ``up`` or ``down`` did (or, in a dry run, would do), in the order it ran."""

    steps: tuple[StepResult, ...]
    dry_run: bool = False
    #: ``down`` only: what the rollbacks destroy (or, in a dry run, would destroy) that held data
    findings: tuple[Finding, ...] = ()

    def __len__(self) -> int:
        return len(self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {"steps": [s.as_dict() for s in self.steps], "dry_run": self.dry_run,
                "findings": [f.as_dict() for f in self.findings]}


class Migrator:
    """Migrations in ``directory`` against ``database``: a connection string, a SQLAlchemy ``Engine``
    or ``URL``, or an open ``psycopg.Connection`` (which sqlmigrate uses in autocommit mode and
    leaves open).

    ``lock_strategy`` says how concurrent runs are kept apart: ``"session"`` (an advisory lock held
    for the whole run; needs a direct or session-pooled connection), ``"transaction"`` (taken inside
    each migration's own transaction: for transaction poolers), ``"table"`` (a row lock, for engines
    whose advisory locks are stubs), or ``"auto"``, which detects a transaction pooler.
    """

    def __init__(
        self,
        database: Any,
        directory: str | Path = "sql",
        *,
        table: str = DEFAULT_TABLE,
        schema: str | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        statement_timeout: float | None = None,
        lock_strategy: str = "auto",
        lock_wait: float = DEFAULT_LOCK_WAIT,
        lock_retries: int = DEFAULT_LOCK_RETRIES,
        lint_disable: Collection[str] = (),
    ) -> None:
        self.database = database
        self.directory = Path(directory)
        self.table = table
        self.schema = schema
        self.lock_timeout = lock_timeout
        self.statement_timeout = statement_timeout
        self.lock_strategy = lock_strategy
        self.lock_wait = lock_wait
        self.lock_retries = lock_retries
        #: lint rules that ``up``'s pre-flight check leaves out (unknown names: ConfigurationError)
        self.lint_disable = lint_rules("lint_disable", lint_disable) if lint_disable else ()

    # -- public -----------------------------------------------------------------------------------

    def status(self) -> Status:
        """Every version with its state; reads the history, changes nothing, takes no lock."""
        from . import _plan as plan

        migrations = files.discover(self.directory)
        with self._session("reading the status") as s:
            return plan.compute(migrations, s.rows())

    def check(self) -> Status:
        """The status, raising :class:`NotCurrentError` unless the database matches the files exactly."""
        status = self.status()
        if not status.current:
            raise not_current(status)
        return status

    def up(self, *, to: int | None = None, dry_run: bool = False,
           allow_out_of_order: bool = False, strict: bool = False) -> Result:
        """Apply pending migrations in version order, each in its own transaction.

        The pending files are linted first (see :func:`sqlmigrate.lint`) and the findings logged as
        warnings; with ``strict``, an error-level finding raises :class:`LintError` before anything
        runs.

        Any number of processes may call this at once, directly or through a connection pooler:
        each migration runs exactly once, and the others wait and then find nothing to do.
        """
        from ._step import Step

        migrations = files.discover(self.directory)
        with self._session("applying migrations") as s:
            scripts: dict[int, Script] = {}
            if dry_run:
                # A dry run takes no lock: it must never make a running migration wait.
                return Result(tuple(
                    StepResult(e.version, e.name, e.label, "up", 0.0, e.state is State.OUT_OF_ORDER,
                               scripts[e.version].no_transaction, scripts[e.version].text)
                    for e in self._plan_up(s, migrations, scripts, to, allow_out_of_order)), dry_run=True)
            try:
                # Without the lock, to find "nothing to do" cheaply at every boot. What stops `up`
                # here (a failed migration, say) may be another process's work in progress: decided
                # again under the lock.
                work: list[MigrationStatus] | None = self._plan_up(s, migrations, scripts, to, allow_out_of_order)
            except HistoryError:
                work = None
            if work:
                self._preflight(s, [scripts[e.version] for e in work], strict, self.lint_disable)
            if work != []:
                no_transaction = work is None or any(scripts[e.version].no_transaction for e in work)
                with s.locked(no_transaction=no_transaction):
                    if work is None or not s.per_transaction:  # what is left to do now?
                        work = self._plan_up(s, migrations, scripts, to, allow_out_of_order)
                    self._refuse_no_transaction(s, [scripts[e.version] for e in work])
                    done = self._run_all(s, [
                        Step(e.migration, scripts[e.version], "up", e.migration.checksum,
                             out_of_order=e.state is State.OUT_OF_ORDER)
                        for e in work if e.migration is not None])
                    if done:
                        return Result(done)
            log.info("nothing to do: %s is up to date", s.history.display)
            return Result(())

    def down(self, steps: int = 1, *, to: int | None = None, confirm: bool = False, dry_run: bool = False,
             on_data_loss: OnDataLoss | None = None) -> Result:
        """Run the rollback files of the newest ``steps`` applied migrations (or of every one above
        version ``to``), newest first, each in one transaction with the removal of its history row.

        Nothing runs unless every chosen migration has a rollback file. If the rollbacks would
        destroy data that is present, :class:`DataLossError` (listing it) is raised before anything
        runs, unless ``confirm`` is true or ``on_data_loss(findings)`` returns true.
        """
        from . import _plan as plan
        from . import _rollback as rollback

        migrations = files.discover(self.directory)
        with self._session("rolling back migrations") as s:
            def planned() -> list[rollback.Planned]:
                chosen = rollback.plan_down(plan.compute(migrations, s.rows()), steps=steps, to=to)
                return rollback.prepare_steps(s.conn, s.history, chosen)

            if dry_run:
                # Like `up --dry-run`: no lock, so it never makes a running migration wait.
                work = planned()
                return Result(tuple(
                    StepResult(p.migration.version, p.migration.name, p.migration.label, "down", 0.0,
                               no_transaction=p.script.no_transaction, sql=p.script.text) for p in work),
                    dry_run=True, findings=tuple(rollback.all_findings(work)))
            work = planned()
            with s.locked(no_transaction=any(p.script.no_transaction for p in work)):
                if not s.per_transaction:
                    # Planned again under the lock: a concurrent `up` or `down` has finished by now.
                    # (Otherwise each rollback's guard checks that its migration is still applied.)
                    work = planned()
                if not work:
                    log.info("nothing to roll back in %s", s.history.display)
                    return Result(())
                findings = rollback.all_findings(work)
                if findings:
                    rollback.decide(work, findings, confirm, on_data_loss)
                self._refuse_no_transaction(s, [p.script for p in work])
                return Result(self._run_all(s, [p.step for p in work]), findings=tuple(findings))

    def baseline(self, version: int, *, force: bool = False) -> BaselineResult:
        """Record every migration up to ``version`` as applied without running it (marked as a
        baseline), for a database whose tables were built by other means. Refused when the history
        already has rows unless ``force`` (which only adds missing versions, never changes rows)."""
        from . import _recovery as recovery

        migrations = files.discover(self.directory)
        with self._session("recording a baseline") as s, s.locked():
            return recovery.baseline(s, migrations, version, force=force)

    def repair(self, versions: Iterable[int] | None = None, *, mark_applied: Iterable[int] = (),
               retry: Iterable[int] = (), accept_renamed: Iterable[int] = ()) -> RepairResult:
        """Accept the current checksum of modified migrations (``versions``, or all when nothing is
        named) and resolve failed no-transaction migrations: ``mark_applied`` (finished by hand) or
        ``retry`` (undone by hand; ``up`` runs it again). ``accept_renamed``: applied versions whose
        file now has another name, which is the migration that ran, renamed; without it such a
        version is left alone and returned in ``unresolved``. Each change is logged."""
        from . import _recovery as recovery

        migrations = files.discover(self.directory)
        with self._session("repairing the history") as s, s.locked(create=s.history_exists()):
            return recovery.repair(s, migrations, versions, mark_applied=mark_applied, retry=retry,
                                   accept_renamed=accept_renamed)

    def log(self, limit: int = 20) -> list[LogEntry]:
        """The newest ``limit`` rows of the append-only log, oldest first; takes no lock."""
        with self._session("reading the log") as s:
            return s.history.log_entries(s.conn, limit)

    # -- internals --------------------------------------------------------------------------------

    def _plan_up(self, s: Session, migrations: list[files.Migration], scripts: dict[int, Script],
                 to: int | None, allow_out_of_order: bool) -> list[MigrationStatus]:
        """What ``up`` runs, each file prepared (checked) before the first one runs."""
        from . import _plan as plan
        from ._script import prepare_files

        work = plan.plan_up(plan.compute(migrations, s.rows()), to=to, allow_out_of_order=allow_out_of_order)
        todo = [e.migration for e in work if e.migration is not None and e.version not in scripts]
        prepared = prepare_files([m.path for m in todo], protected=s.history.protected,
                                 checksums={m.path: m.checksum for m in todo})
        scripts.update(zip((m.version for m in todo), prepared))
        return work

    @staticmethod
    def _preflight(s: Session, scripts: list[Script], strict: bool, lint_disable: Collection[str]) -> None:
        """Lock hazards of what is about to run, priced on this database (its table sizes)."""
        from ._errors import LintError
        from ._lint import disabled_rules, lint_scripts
        from ._session import translate

        with translate("linting the pending migrations"):
            report = lint_scripts(scripts, s.conn, disabled=disabled_rules(lint_disable, s.lock_wait))
        for f in report.findings:
            if f.severity != "info":
                log.warning("lint: %s", f.describe().replace("\n", "\n  "))
        if strict and report.errors:
            raise LintError(
                f"--strict: {len(report.errors)} error-level lint finding(s) in the pending migrations; "
                "nothing was run. Follow each finding's safer recipe, or run without --strict",
                [f.describe() for f in report.errors])

    @staticmethod
    def _refuse_no_transaction(s: Session, scripts: list[Script]) -> None:
        """A no-transaction file spans many transactions: only a lock held by the session can cover
        it, which a transaction pooler cannot keep. Refused before anything runs."""
        if not s.per_transaction:
            return
        found = [str(sc.path) for sc in scripts if sc.no_transaction]
        if found:
            raise ConfigurationError(
                f"no-transaction migration(s) cannot run with lock strategy {s.strategy!r} (a transaction "
                f"pooler, or --lock-strategy): {', '.join(found)}; nothing was run. Run them through a "
                "direct or session-pooled URL (e.g. PgBouncer's session pool, or Supabase's port 5432), "
                "or pass --lock-strategy session when the URL is one"
            )

    def _run_all(self, s: Session, work: list[Step]) -> tuple[StepResult, ...]:
        from ._execute import progress
        from ._step import run as run_step

        done = []
        for i, step in enumerate(work, 1):
            progress(f"{'applying' if step.direction == 'up' else 'rolling back'} {step.migration.label} "
                     f"({i} of {len(work)})")
            ms = run_step(s, step)
            if ms is None:
                continue
            m = step.migration
            if step.direction == "up":
                log.info("applied %s (%s)%s", m.label, format_ms(ms), " out of order" if step.out_of_order else "")
            else:
                log.info("rolled back %s (%s)", m.label, format_ms(ms))
            done.append(StepResult(m.version, m.name, m.label, step.direction, ms, step.out_of_order,
                                   step.script.no_transaction))
        return tuple(done)

    @contextmanager
    def _session(self, doing: str) -> Iterator[Session]:
        from ._session import open_session, translate

        with open_session(self.database, table=self.table, schema=self.schema, lock_strategy=self.lock_strategy,
                          lock_timeout=self.lock_timeout, statement_timeout=self.statement_timeout,
                          lock_wait=self.lock_wait, lock_retries=self.lock_retries) as s, \
                translate(doing):
            yield s


def not_current(status: Status) -> NotCurrentError:
    parts = []
    for state, what in ((State.PENDING, "pending"), (State.OUT_OF_ORDER, "pending out of order"),
                        (State.MODIFIED, "modified since applied"), (State.MISSING, "applied but file missing"),
                        (State.RENAMED, "renamed since applied"), (State.FAILED, "failed part way")):
        labels = [f"{e.label} (applied as {e.applied_label})" if state is State.RENAMED else e.label
                  for e in status.having(state)]
        if labels:
            parts.append(f"{what}: {', '.join(labels)}")
    return NotCurrentError(
        "database is not current; " + "; ".join(parts),
        pending=[e.version for e in status.pending],
        modified=[e.version for e in status.having(State.MODIFIED)],
        missing=[e.version for e in status.having(State.MISSING)],
        failed=[e.version for e in status.having(State.FAILED)],
        out_of_order=[e.version for e in status.having(State.OUT_OF_ORDER)],
        renamed=[e.version for e in status.having(State.RENAMED)],
    )


def format_ms(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def up(
    database: Any,
    directory: str | Path = "sql",
    *,
    table: str = DEFAULT_TABLE,
    schema: str | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    statement_timeout: float | None = None,
    lock_strategy: str = "auto",
    lock_wait: float = DEFAULT_LOCK_WAIT,
    lock_retries: int = DEFAULT_LOCK_RETRIES,
    lint_disable: Collection[str] = (),
    to: int | None = None,
    dry_run: bool = False,
    allow_out_of_order: bool = False,
    strict: bool = False,
) -> Result:
    """Apply every pending migration in ``directory`` (up to version ``to``); see :class:`Migrator`
    for the options and :meth:`Migrator.up`."""
    return Migrator(database, directory, table=table, schema=schema, lock_timeout=lock_timeout,
                    statement_timeout=statement_timeout, lock_strategy=lock_strategy, lock_wait=lock_wait,
                    lock_retries=lock_retries, lint_disable=lint_disable).up(
        to=to, dry_run=dry_run, allow_out_of_order=allow_out_of_order, strict=strict)


def ensure_current(
    database: Any,
    directory: str | Path = "sql",
    *,
    table: str = DEFAULT_TABLE,
    schema: str | None = None,
    statement_timeout: float | None = None,
    drift: bool = False,
    schema_file: str | Path | None = None,
) -> Status:
    """Raise :class:`NotCurrentError` unless every migration in ``directory`` is applied unchanged;
    with ``drift``, also unless the live schema matches the schema file (``schema_file``, default
    ``<directory>/schema.sql``, written by ``sqlmigrate dump``).

    For application boot code that must not start against an old or hand-altered schema.
    """
    if not drift:
        return Migrator(database, directory, table=table, schema=schema, statement_timeout=statement_timeout).check()
    from ._schemafile import SCHEMA_FILE
    from ._schemafile import drift as find_drift
    from ._session import connection

    path = Path(schema_file) if schema_file is not None else Path(directory) / SCHEMA_FILE
    # One connection for both: boot code pays for one connect, not two.
    with connection(database) as conn:
        status = Migrator(conn, directory, table=table, schema=schema, statement_timeout=statement_timeout).check()
        found = find_drift(conn, path, table=table, schema=schema)
        if found:
            raise NotCurrentError(f"the database has drifted from {path}: "
                                  + "; ".join(d.describe() for d in found), drift=[d.describe() for d in found])
    return status
