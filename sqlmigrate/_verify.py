"""``sqlmigrate verify``: prove that every rollback restores the schema, in a throwaway database.

For each migration, in version order: snapshot the schema, apply the migration, snapshot, run its
rollback, compare with the first snapshot, apply it again (later migrations build on it). Everything
runs through the core's own machinery (``script.prepare``, ``execute``, real history rows), so a
migration behaves here exactly as under ``up`` and ``down``.

The throwaway database is created on the server the given URL points to (through a maintenance
connection to the URL's own database, which is never otherwise touched) and always dropped, also
after a failure or Ctrl-C. Rollbacks run without the data-loss prompt: the throwaway database holds
no user data. The data-loss check still runs and is reported as information.
"""

from __future__ import annotations

import logging
import secrets
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _files as files
from ._config import DEFAULT_TABLE
from ._errors import ConfigurationError, DatabaseError, MigrationFileError, SqlMigrateError

if TYPE_CHECKING:
    import psycopg

    from ._history import History
    from ._script import Script
    from ._session import Session
    from ._snapshot import Difference, Snapshot

__all__ = ["MigrationReport", "VerifyReport", "verify", "SCRATCH_PREFIX"]

log = logging.getLogger("sqlmigrate")

#: Every throwaway database's name starts with this (then 12 random hex digits).
SCRATCH_PREFIX = "sqlmigrate_verify_"


@dataclass(frozen=True)
class MigrationReport:
    """What ``verify`` found for one migration. ``ok`` means: applied, rolled back, the schema was
    exactly as before, and applied again. ``info`` never makes a migration fail."""

    version: int
    label: str
    ok: bool
    #: readable lines: "no rollback file (write X)", "rollback failed: ...", "apply failed: ...",
    #: "re-apply failed: ...", and one line per schema difference the rollback left
    problems: tuple[str, ...] = ()
    #: data-loss findings of the rollback (what it would destroy on a database with data)
    info: tuple[str, ...] = ()
    #: the schema differences behind the difference lines in ``problems``
    differences: tuple[Difference, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "label": self.label,
            "ok": self.ok,
            "problems": list(self.problems),
            "info": list(self.info),
            "differences": [{"object": d.object, "change": d.change, "before": d.before, "after": d.after}
                            for d in self.differences],
        }


@dataclass(frozen=True)
class VerifyReport:
    migrations: tuple[MigrationReport, ...]
    #: labels of migrations never reached because an earlier one could not be (re-)applied
    not_verified: tuple[str, ...] = ()
    #: name of the database the checks ran in
    database: str = ""

    @property
    def ok(self) -> bool:
        return all(m.ok for m in self.migrations) and not self.not_verified

    @property
    def failed(self) -> list[MigrationReport]:
        return [m for m in self.migrations if not m.ok]

    def summary(self) -> str:
        total = len(self.migrations) + len(self.not_verified)
        if not total:
            return "no migrations to verify"
        if self.ok:
            return f"all {total} migration(s) are reversible"
        text = f"{len(self.failed)} of {total} migration(s) have problems"
        if self.not_verified:
            text += f", {len(self.not_verified)} not verified"
        return text

    def describe(self, *, only_problems: bool = False) -> str:
        """The report as readable text, one block per migration (``only_problems``: skip the ok ones
        without information)."""
        lines: list[str] = []
        for m in self.migrations:
            if only_problems and m.ok and not m.info:
                continue
            lines.append(f"{'ok' if m.ok else 'FAIL':<5} {m.label}")
            for p in m.problems:
                lines.append("      - " + p.replace("\n", "\n        "))
            for i in m.info:
                lines.append("      info: " + i.replace("\n", "\n        "))
        if self.not_verified:
            lines.append("not verified (an earlier migration could not be applied): "
                         + ", ".join(self.not_verified))
        lines.append(self.summary())
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "database": self.database,
            "migrations": [m.as_dict() for m in self.migrations],
            "not_verified": list(self.not_verified),
            "summary": self.summary(),
        }


def verify(database_url: str | None, directory: str | Path = "sql", *, scratch_database: str | None = None,
           table: str = DEFAULT_TABLE, schema: str | None = None,
           statement_timeout: float | None = None) -> VerifyReport:
    """Check every migration in ``directory`` for a rollback that restores the schema exactly.

    Runs in a new database ``sqlmigrate_verify_<random>`` on the server of ``database_url``, dropped
    afterwards whatever happens. With ``scratch_database`` (for servers where you may not create
    databases), runs there instead: it must hold no tables, is not dropped, and is emptied again
    afterwards by rolling the migrations back. Problems with the migrations are reported in the
    result; errors (migration files, connection, permissions) are raised. ``statement_timeout``
    (seconds) cancels any statement that runs longer, reported as a failure of its migration.
    """
    migrations = files.discover(directory)
    if scratch_database is not None:
        return _verify_in_scratch(scratch_database, migrations, table, schema, statement_timeout)
    if not database_url:
        raise ConfigurationError("verify needs a database URL (its server hosts the throwaway database) "
                                 "or --scratch-database")
    with throwaway_database(database_url) as (url, name), \
            _session(url, table, schema, statement_timeout) as s, s.locked():
        migrations_done, rest = _run(s, migrations)
    return VerifyReport(tuple(migrations_done), tuple(rest), name)


@contextmanager
def _session(url: str, table: str, schema: str | None, statement_timeout: float | None) -> Iterator[Session]:
    """A session of its own: verify is the only client of its database, so the session strategy."""
    from ._config import DEFAULT_LOCK_TIMEOUT
    from ._session import open_session, translate

    with open_session(url, table=table, schema=schema, lock_strategy="session", lock_timeout=DEFAULT_LOCK_TIMEOUT,
                      statement_timeout=statement_timeout) as s, translate("verifying"):
        yield s


# -- the throwaway database ------------------------------------------------------------------------


@contextmanager
def throwaway_database(server_url: str) -> Iterator[tuple[str, str]]:
    """Create an empty database on the server of ``server_url``; yield (its URL, its name); drop it
    on the way out, also after an exception or Ctrl-C."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from ._connection import normalize

    name = SCRATCH_PREFIX + secrets.token_hex(6)
    ident = sql.Identifier(name)
    # Ctrl-C between CREATE and the try below would leave the database behind: hold it until then.
    with _sigint_deferred(), _connect_admin(server_url) as admin:
        try:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(ident))
        except psycopg.Error as exc:
            message = f"could not create the throwaway database {name}: {str(exc).strip()}"
            if exc.sqlstate == "42501":
                raise ConfigurationError(
                    message + "; grant the CREATEDB privilege, or pass --scratch-database URL of an "
                    "empty database verify may use"
                ) from None
            raise DatabaseError(message, exc.sqlstate) from None
    log.info("created throwaway database %s", name)
    try:
        yield make_conninfo(normalize(server_url), dbname=name), name
    finally:
        # A second Ctrl-C must not leave the database behind: it waits until the drop is done.
        with _sigint_deferred():
            _drop(server_url, name)


def _connect_admin(server_url: str) -> psycopg.Connection:
    from ._connection import connect

    return connect(server_url)


def _drop(server_url: str, name: str) -> None:
    from psycopg import sql

    ident = sql.Identifier(name)
    try:
        with _connect_admin(server_url) as admin:
            if admin.info.server_version >= 130000:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
            else:
                # No FORCE before 13: end every session first (a cancelled statement may linger).
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                              " WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(ident))
    except Exception as exc:
        log.warning("could not drop the throwaway database %s: %s; drop it by hand with "
                    "DROP DATABASE %s", name, str(exc).strip(), name)
        return
    log.info("dropped throwaway database %s", name)


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C until the block is done, then raise it (main thread only: signals go there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


# -- a database the user provides -------------------------------------------------------------------


def _verify_in_scratch(url: str, migrations: Sequence[files.Migration], table: str,
                       schema: str | None, statement_timeout: float | None) -> VerifyReport:
    with _session(url, table, schema, statement_timeout) as s:
        name = s.conn.info.dbname
        _refuse_unless_empty(s.conn, s.history, name)
        with s.locked():
            try:
                done, rest = _run(s, migrations)
            finally:
                _empty_again(s, migrations, name)
    return VerifyReport(tuple(done), tuple(rest), name)


def _refuse_unless_empty(conn: psycopg.Connection, history: History, name: str) -> None:
    """Rollbacks run here without the data-loss prompt, so there must be no data to lose."""
    row = conn.execute(
        "SELECT string_agg(format('%%I.%%I', n.nspname, c.relname), ', ' ORDER BY n.nspname, c.relname)"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p', 'm', 'f', 'v')"
        " AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%%'"
        " AND NOT (n.nspname = %s AND c.relname = ANY(%s))",
        (history.schema, [history.table, history.log_table]),
    ).fetchone()
    found = row[0] if row else None
    if found or history.rows(conn):
        raise ConfigurationError(
            f"the scratch database {name} is not empty ({found or 'migrations are recorded as applied'}); "
            "verify runs rollbacks there without asking, so it only uses an empty database: "
            "create a new one, or leave out --scratch-database to let verify create and drop its own"
        )


def _empty_again(s: Session, migrations: Sequence[files.Migration], name: str) -> None:
    """Roll back, newest first, what ``verify`` left applied in the user's scratch database, so it
    can be used again."""
    from ._script import prepare

    try:
        from . import _execute as execute

        execute.rollback_if_open(s.conn, s.reset)
        applied = {r.version for r in s.rows()}
        for m in reversed(migrations):
            if m.version not in applied:
                continue
            if m.rollback is None:
                raise MigrationFileError(f"{m.label} has no rollback file")
            _revert(s, m, prepare(m.read_rollback(), m.rollback, protected=s.history.protected))
    except Exception as exc:
        log.warning("could not empty the scratch database %s again (%s); drop and re-create it before "
                    "the next verify", name, str(exc).strip().splitlines()[0] if str(exc).strip() else exc)


# -- the checks ----------------------------------------------------------------------------------------


def _run(s: Session, migrations: Sequence[files.Migration]) -> tuple[list[MigrationReport], list[str]]:
    """Check each migration in order; stop at the first that cannot be (re-)applied."""
    import psycopg

    from ._script import prepare
    from ._snapshot import diff, take

    conn, history = s.conn, s.history
    protected = history.protected
    # Every migration file is checked before the first one runs, as ``up`` does.
    scripts = [prepare(m.read(), m.path, protected=protected) for m in migrations]
    exclude = (history.table, history.log_table)

    def snapshot() -> Snapshot:
        return take(conn, exclude_tables=exclude)

    failures = (SqlMigrateError, psycopg.Error)
    reports: list[MigrationReport] = []
    current = snapshot()
    for i, (m, script) in enumerate(zip(migrations, scripts)):
        rest = [later.label for later in migrations[i + 1:]]
        before = current
        try:
            _apply(s, m, script)
        except failures as exc:
            reports.append(_report(m, [f"apply failed: {_text(exc)}"]))
            return reports, rest
        applied = current = snapshot()
        if m.rollback is None:
            reports.append(_report(m, [f"no rollback file (write {files.rollback_name(m)})"]))
            continue
        try:
            rollback = prepare(m.read_rollback(), m.rollback, protected=protected)
        except failures as exc:
            reports.append(_report(m, [f"rollback failed: {_text(exc)}"]))
            continue
        info = _data_loss(conn, rollback)
        try:
            _revert(s, m, rollback)
        except failures as exc:
            # A rollback without a transaction may have stopped part way: look again.
            current = snapshot()
            reports.append(_report(m, [f"rollback failed: {_text(exc)}"], info))
            continue
        differences = diff(before, snapshot())
        problems = [d.describe() for d in differences]
        try:
            _apply(s, m, script)
        except failures as exc:
            problems.append(f"re-apply failed: {_text(exc)}")
            reports.append(_report(m, problems, info, differences))
            return reports, rest
        current = snapshot()
        if not differences:
            # Only meaningful after a clean rollback: the second build must equal the first.
            problems += [_describe_reapply(d) for d in diff(applied, current)]
        reports.append(_report(m, problems, info, differences))
    return reports, []


def _report(m: files.Migration, problems: list[str], info: Sequence[str] = (),
            differences: Sequence[Difference] = ()) -> MigrationReport:
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        log.info("%s: NOT reversible: %s%s", m.label, problems[0].splitlines()[0], more)
    else:
        log.info("%s: reversible", m.label)
    return MigrationReport(m.version, m.label, not problems, tuple(problems), tuple(info), tuple(differences))


def _describe_reapply(d: Difference) -> str:
    if d.change == "missing":
        return f"after re-applying, {d.object} no longer exists (the first apply created it)"
    if d.change == "extra":
        return f"after re-applying, {d.object} exists (the first apply did not create it)"
    return f"after re-applying, {d.describe()}"


def _text(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__


def _data_loss(conn: psycopg.Connection, rollback: Script) -> list[str]:
    """What the rollback would destroy (here, only rows the migrations themselves inserted)."""
    from ._dataloss import find_data_loss

    try:
        findings = find_data_loss(conn, [(s.text, s.line) for s in rollback.statements])
    except Exception as exc:
        return [f"data-loss check failed: {_text(exc)}"]
    return [f"the rollback destroys data (line {f.line}): {f.describe()}" for f in findings]


def _apply(s: Session, m: files.Migration, script: Script) -> None:
    from ._step import Step, run

    run(s, Step(m, script, "up", m.checksum))


def _revert(s: Session, m: files.Migration, script: Script) -> None:
    from ._step import Step, run

    run(s, Step(m, script, "down", m.checksum))
