"""The library API: :class:`Migrator`, and the ``up`` / ``ensure_current`` shortcuts.

Data flows one way: files -> plan -> execution -> history.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import _files as files
from ._config import DEFAULT_LOCK_TIMEOUT, DEFAULT_TABLE
from ._errors import ConfigurationError, NotCurrentError, SqlMigrateError
from ._plan import MigrationStatus, State, Status

if TYPE_CHECKING:
    import psycopg

    from ._dataloss import Finding
    from ._history import History, LogEntry
    from ._recovery import BaselineResult, RepairResult
    from ._rollback import OnDataLoss
    from ._script import Script

log = logging.getLogger("sqlmigrate")


@dataclass(frozen=True)
class Applied:
    """One migration that ran (or, in a dry run, would run)."""

    version: int
    name: str
    label: str
    direction: str
    duration_ms: float
    out_of_order: bool = False
    no_transaction: bool = False
    #: the SQL that runs; set by dry runs only
    sql: str | None = None


@dataclass(frozen=True)
class Result:
    applied: tuple[Applied, ...]
    dry_run: bool = False
    #: ``down`` only: what the rollbacks destroy (or, in a dry run, would destroy) that held data
    findings: tuple[Finding, ...] = ()

    def __len__(self) -> int:
        return len(self.applied)


class Migrator:
    """Migrations in ``directory`` against ``database`` (a connection string or an open
    ``psycopg.Connection``, which sqlmigrate uses in autocommit mode and leaves open)."""

    def __init__(
        self,
        database: str | psycopg.Connection,
        directory: str | Path = "sql",
        *,
        table: str = DEFAULT_TABLE,
        schema: str | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        statement_timeout: float | None = None,
    ) -> None:
        self.database = database
        self.directory = Path(directory)
        self.table = table
        self.schema = schema
        self.lock_timeout = lock_timeout
        self.statement_timeout = statement_timeout

    # -- public -----------------------------------------------------------------------------------

    def status(self) -> Status:
        """Every version with its state; reads the history, changes nothing, takes no lock."""
        from . import _plan as plan

        migrations = files.discover(self.directory)
        with self._session() as (conn, history):
            return plan.compute(migrations, history.rows(conn))

    def check(self) -> Status:
        """The status, raising :class:`NotCurrentError` unless the database matches the files exactly."""
        status = self.status()
        if not status.current:
            raise not_current(status)
        return status

    def up(self, *, to: int | None = None, dry_run: bool = False,
           allow_out_of_order: bool = False) -> Result:
        """Apply pending migrations in version order, each in its own transaction.

        Any number of processes may call this at once: an advisory lock makes each migration run
        exactly once, and the others wait and then find nothing to do.
        """
        from . import _plan as plan

        migrations = files.discover(self.directory)
        with self._session() as (conn, history):

            def planned() -> list[tuple[MigrationStatus, Script]]:
                # Every file that will run is checked before the first one runs.
                steps = plan.plan_up(plan.compute(migrations, history.rows(conn)), to=to,
                                     allow_out_of_order=allow_out_of_order)
                return list(zip(steps, self._prepare(history, steps)))

            if dry_run:
                # A dry run takes no lock: it must never make a running migration wait.
                return Result(tuple(
                    Applied(e.version, e.name, e.label, "up", 0.0, e.state is State.OUT_OF_ORDER,
                            s.no_transaction, s.text)
                    for e, s in planned()), dry_run=True)
            with self._locked(conn, history):
                history.ensure(conn)
                work = planned()
                if not work:
                    log.info("nothing to do: %s is up to date", history.display)
                return Result(tuple(self._apply(conn, history, e, s, f"{i} of {len(work)}")
                                    for i, (e, s) in enumerate(work, 1)))

    def down(self, steps: int = 1, *, to: int | None = None, confirm: bool = False, dry_run: bool = False,
             on_data_loss: OnDataLoss | None = None) -> Result:
        """Run the rollback files of the newest ``steps`` applied migrations (or of every one above
        version ``to``), newest first, each in one transaction with the removal of its history row.

        Nothing runs unless every chosen migration has a rollback file. If the rollbacks would
        destroy data that is present, :class:`DataLossError` (listing it) is raised before anything
        runs, unless ``confirm`` is true or ``on_data_loss(findings)`` returns true.
        """
        from . import _rollback as rollback

        return rollback.down(self, steps=steps, to=to, confirm=confirm, dry_run=dry_run,
                             on_data_loss=on_data_loss)

    def baseline(self, version: int, *, force: bool = False) -> BaselineResult:
        """Record every migration up to ``version`` as applied without running it (marked as a
        baseline), for a database whose tables were built by other means. Refused when the history
        already has rows unless ``force`` (which only adds missing versions, never changes rows)."""
        from . import _recovery as recovery

        migrations = files.discover(self.directory)
        with self._session() as (conn, history), self._locked(conn, history):
            history.ensure(conn)
            return recovery.baseline(conn, history, migrations, version, force=force)

    def repair(self, versions: Iterable[int] | None = None, *, mark_applied: Iterable[int] = (),
               retry: Iterable[int] = (), accept_renamed: Iterable[int] = ()) -> RepairResult:
        """Accept the current checksum of modified migrations (``versions``, or all when nothing is
        named) and resolve failed no-transaction migrations: ``mark_applied`` (finished by hand) or
        ``retry`` (undone by hand; ``up`` runs it again). ``accept_renamed``: applied versions whose
        file now has another name, which is the migration that ran, renamed; without it such a
        version is left alone and returned in ``unresolved``. Each change is logged."""
        from . import _recovery as recovery

        migrations = files.discover(self.directory)
        with self._session() as (conn, history), self._locked(conn, history):
            if history.exists(conn):
                history.ensure(conn)
            return recovery.repair(conn, history, migrations, versions, mark_applied=mark_applied,
                                   retry=retry, accept_renamed=accept_renamed)

    def log(self, limit: int = 20) -> list[LogEntry]:
        """The newest ``limit`` rows of the append-only log, oldest first; takes no lock."""
        with self._session() as (conn, history):
            return history.log_entries(conn, limit)

    # -- internals --------------------------------------------------------------------------------

    def _prepare(self, history: History, steps: list[MigrationStatus]) -> list[Script]:
        from ._script import prepare_file

        scripts = []
        for e in steps:
            assert e.migration is not None  # a pending entry always has its file
            scripts.append(prepare_file(e.migration.path, protected=history.protected,
                                        checksum=e.migration.checksum))
        return scripts

    def _apply(self, conn: psycopg.Connection, history: History, entry: MigrationStatus, script: Script,
               place: str) -> Applied:
        from . import _execute as execute

        m = entry.migration
        assert m is not None  # a pending entry always has its file
        execute.progress(f"applying {m.label} ({place})")
        late = entry.state is State.OUT_OF_ORDER
        if script.no_transaction:
            ms = self._apply_no_transaction(conn, history, m, script, late)
        else:
            record = history.record_applied(version=m.version, name=m.name, checksum=m.checksum,
                                            out_of_order=late)
            try:
                ms = execute.run_in_transaction(conn, script, m.label, record)
            except SqlMigrateError as exc:
                self._log_failure(conn, history, m, "up", exc)
                raise
        log.info("applied %s (%s)%s", m.label, format_ms(ms), " out of order" if late else "")
        return Applied(m.version, m.name, m.label, "up", ms, late, script.no_transaction)

    def _apply_no_transaction(self, conn: psycopg.Connection, history: History, m: files.Migration,
                              script: Script, late: bool) -> float:
        from . import _execute as execute

        history.mark_running(conn, version=m.version, name=m.name, checksum=m.checksum, out_of_order=late)
        try:
            ms = execute.run_without_transaction(conn, script, m.label, history, m.version)
        except SqlMigrateError as exc:
            self._log_failure(conn, history, m, "up", exc)
            raise
        history.write(conn, history.record_applied(
            version=m.version, name=m.name, checksum=m.checksum, out_of_order=late, execution_ms=round(ms)))
        return ms

    def _log_failure(self, conn: psycopg.Connection, history: History, m: files.Migration,
                     direction: str, exc: Exception) -> None:
        """The failure goes into the append-only log, after the rollback (a best effort: the
        connection may be what failed)."""
        from . import _execute as execute

        try:
            execute.rollback_if_open(conn)
            history.write(conn, history.log_row(version=m.version, name=m.name, direction=direction,
                                                outcome="failed", checksum=m.checksum, error=str(exc)))
        except Exception:
            log.warning("could not record the failure of %s in %s", m.label, history.log_table)

    @contextmanager
    def _session(self) -> Iterator[tuple[psycopg.Connection, History]]:
        from ._history import History

        with self._connection() as conn:
            if self.statement_timeout:
                conn.execute("SELECT set_config('statement_timeout', %s, false)",
                             (f"{int(self.statement_timeout * 1000)}ms",))
            yield conn, History.resolve(conn, self.table, self.schema)

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        if not isinstance(self.database, str):
            conn = self.database
            if conn.info.transaction_status != 0:  # IDLE
                raise ConfigurationError(
                    "the connection passed to sqlmigrate has an open transaction; commit or roll it "
                    "back first (sqlmigrate runs each migration in a transaction of its own)"
                )
            autocommit = conn.autocommit
            conn.autocommit = True
            try:
                yield conn
            finally:
                if not conn.closed:
                    conn.autocommit = autocommit
            return
        from ._connection import connect

        conn = connect(self.database)
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _locked(self, conn: psycopg.Connection, history: History) -> Iterator[None]:
        from . import _lock as lock

        key = history.lock_key()
        lock.acquire(conn, key, self.lock_timeout, history.display)
        try:
            yield
        finally:
            try:
                lock.release(conn, key)
            except Exception:
                pass  # closing the session releases it too


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


def up(database: str | psycopg.Connection, directory: str | Path = "sql", **options: object) -> Result:
    """Apply every pending migration in ``directory``; see :meth:`Migrator.up`."""
    return Migrator(database, directory, **options).up()  # type: ignore[arg-type]


def ensure_current(database: str | psycopg.Connection, directory: str | Path = "sql",
                   **options: object) -> Status:
    """Raise :class:`NotCurrentError` unless every migration in ``directory`` is applied unchanged.

    For application boot code that must not start against an old schema.
    """
    return Migrator(database, directory, **options).check()  # type: ignore[arg-type]
