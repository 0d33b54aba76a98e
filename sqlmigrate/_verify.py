"""``sqlmigrate verify``: prove that every rollback restores the schema, in a throwaway database.

For each migration, in version order: snapshot the schema, apply the migration, run its rollback,
compare the schema with the snapshot, apply it again (later migrations build on it). Every step
runs through the core's one executor (``_step.run``, real history rows, a fresh session state for
each file, as psql would run it), so a migration behaves here exactly as under ``up`` and ``down``.
A step that leaves the database in no known state (its rollback or its re-apply failed) is
reported, and the database is rebuilt from scratch up to that migration to check the next one.

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
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _files as files
from ._config import DEFAULT_TABLE
from ._errors import ConfigurationError, DatabaseError, SqlMigrateError

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
    #: differences that are no reversibility problem (a date/time constant PostgreSQL folded into a
    #: view when it was created): reported, but ``ok`` stays true
    lesser: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "label": self.label,
            "ok": self.ok,
            "problems": list(self.problems),
            "lesser": list(self.lesser),
            "info": list(self.info),
            "differences": [{"object": d.object, "change": d.change, "before": d.before, "after": d.after,
                             "lesser": d.lesser} for d in self.differences],
        }


@dataclass(frozen=True)
class VerifyReport:
    migrations: tuple[MigrationReport, ...]
    #: labels of migrations never reached because an earlier one could not be applied
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
        lesser = sum(len(m.lesser) for m in self.migrations)
        more = f" ({lesser} lesser finding{'s' if lesser > 1 else ''})" if lesser else ""
        if self.ok:
            return f"all {total} migration(s) are reversible{more}"
        text = f"{len(self.failed)} of {total} migration(s) have problems"
        if self.not_verified:
            text += f", {len(self.not_verified)} not verified"
        return text + more

    def describe(self, *, only_problems: bool = False) -> str:
        """The report as readable text, one block per migration (``only_problems``: skip the ok ones
        without information)."""
        lines: list[str] = []
        for m in self.migrations:
            if only_problems and m.ok and not m.info and not m.lesser:
                continue
            lines.append(f"{'ok' if m.ok else 'FAIL':<5} {m.label}")
            for p in m.problems:
                lines.append("      - " + p.replace("\n", "\n        "))
            for p in m.lesser:
                lines.append("      lesser: " + p.replace("\n", "\n        "))
            for i in m.info:
                lines.append("      info: " + i.replace("\n", "\n        "))
        if self.not_verified:
            lines.append("not verified (an earlier migration could not be applied, or the database rebuilt): "
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
    afterwards. A step that cannot be verified (its rollback or its re-apply fails) is reported, the
    database is rebuilt up to that migration from scratch, and the next migration is checked, so
    one run reports every problem of the history. Problems with the migrations are reported in the
    result; errors (migration files, connection, permissions) are raised. ``statement_timeout``
    (seconds) cancels any statement that runs longer, reported as a failure of its migration.
    """
    migrations = files.discover(directory)
    options = (table, schema, statement_timeout)
    if scratch_database is not None:
        return _verify_in_scratch(scratch_database, migrations, options)
    if not database_url:
        raise ConfigurationError("verify needs a database URL (its server hosts the throwaway database) "
                                 "or --scratch-database")
    server_url = database_url
    with throwaway_database(server_url) as (url, name):
        def recreate() -> None:
            _drop(server_url, name, quiet=True)
            _create(server_url, name)

        with _Workspace(url, options, recreate) as ws:
            done, rest = _run(ws, migrations)
    return VerifyReport(tuple(done), tuple(rest), name)


_Options = tuple[str, str | None, float | None]  # table, schema, statement timeout


class _Workspace:
    """The database verify works in, the session it holds there (with the migration lock), and how
    to start it over: ``wipe`` empties the database while no session is open."""

    def __init__(self, url: str, options: _Options, wipe: Callable[[], None]) -> None:
        self.url = url
        self.options = options
        self._wipe = wipe
        self._stack = ExitStack()
        self.s: Session
        self._reader: psycopg.Connection
        #: the newest snapshot taken: the next one reads again only what changed since
        self._last: Snapshot | None = None

    def __enter__(self) -> _Workspace:
        self._open()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _open(self) -> None:
        s = self._stack.enter_context(_session(self.url, *self.options))
        self._stack.enter_context(s.locked())
        self.s = s
        self._reader = self._stack.enter_context(_reader(self.url))
        self._last = None

    def start_over(self) -> None:
        """An empty database again, with a new session (nothing of the old one survives)."""
        self._stack.close()
        self._wipe()
        self._open()

    def snapshot(self) -> Snapshot:
        """The schema as the steps committed it, read on a connection of its own (with prepared
        statements, which the session's reset after every step would deallocate)."""
        from ._session import translate
        from ._snapshot import take

        with translate("reading the schema"):
            self._last = take(self._reader, exclude_tables=self.s.history.own_tables,
                              previous=self._last, pinned=True)
        return self._last


@contextmanager
def _reader(url: str) -> Iterator[psycopg.Connection]:
    from ._connection import connect
    from ._snapshot import pin_settings

    conn = connect(url)
    try:
        # The snapshot's queries are large and run hundreds of times: plan them once.
        conn.prepare_threshold = 0
        if conn.info.server_version >= 120000:
            conn.execute("SET plan_cache_mode = force_generic_plan")
        pin_settings(conn)
        yield conn
    finally:
        conn.close()


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
    from psycopg.conninfo import make_conninfo

    from ._connection import normalize

    name = SCRATCH_PREFIX + secrets.token_hex(6)
    # Ctrl-C between CREATE and the try below would leave the database behind: hold it until then.
    with _sigint_deferred():
        _create(server_url, name)
    log.info("created throwaway database %s", name)
    try:
        yield make_conninfo(normalize(server_url), dbname=name), name
    finally:
        # A second Ctrl-C must not leave the database behind: it waits until the drop is done.
        with _sigint_deferred():
            _drop(server_url, name)


def _create(server_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with _connect_admin(server_url) as admin:
        try:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            message = f"could not create the throwaway database {name}: {str(exc).strip()}"
            if exc.sqlstate == "42501":
                raise ConfigurationError(
                    message + "; grant the CREATEDB privilege, or pass --scratch-database URL of an "
                    "empty database verify may use"
                ) from None
            raise DatabaseError(message, exc.sqlstate) from None


def _connect_admin(server_url: str) -> psycopg.Connection:
    from ._connection import connect

    return connect(server_url)


def _drop(server_url: str, name: str, *, quiet: bool = False) -> None:
    """Drop the throwaway database; ``quiet``: to re-create it, where a failure is the caller's."""
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
        if quiet:
            raise
        log.warning("could not drop the throwaway database %s: %s; drop it by hand with "
                    "DROP DATABASE %s", name, str(exc).strip(), name)
        return
    if not quiet:
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


def _verify_in_scratch(url: str, migrations: Sequence[files.Migration], options: _Options) -> VerifyReport:
    from ._snapshot import take

    table, schema, statement_timeout = options
    with _session(url, table, schema, statement_timeout) as s:
        name = s.conn.info.dbname
        _refuse_unless_empty(s.conn, s.history, name)
        empty = take(s.conn, exclude_tables=s.history.own_tables)
        history = s.history

    def wipe() -> None:
        _wipe(url, history, empty, name)

    with _Workspace(url, options, wipe) as ws:
        try:
            done, rest = _run(ws, migrations)
        finally:
            try:
                ws.start_over()
            except Exception as exc:
                log.warning("could not empty the scratch database %s again (%s); drop and re-create it "
                            "before the next verify", name, _text(exc).splitlines()[0])
    return VerifyReport(tuple(done), tuple(rest), name)


def _refuse_unless_empty(conn: psycopg.Connection, history: History, name: str) -> None:
    """Rollbacks run here without the data-loss prompt, so there must be no data to lose."""
    row = conn.execute(
        "SELECT string_agg(format('%%I.%%I', n.nspname, c.relname), ', ' ORDER BY n.nspname, c.relname)"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p', 'm', 'f', 'v')"
        " AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%%'"
        " AND NOT (n.nspname = %s AND c.relname = ANY(%s))",
        (history.schema, list(history.own_tables)),
    ).fetchone()
    found = row[0] if row else None
    if found or history.rows(conn):
        raise ConfigurationError(
            f"the scratch database {name} is not empty ({found or 'migrations are recorded as applied'}); "
            "verify runs rollbacks there without asking, so it only uses an empty database: "
            "create a new one, or leave out --scratch-database to let verify create and drop its own"
        )


# What each kind of top-level object in a snapshot is dropped with, in this order (a schema's
# CASCADE takes what is in it; an extension's, what uses its types).
_DROP_ORDER = ("event trigger", "schema", "extension", "materialized view", "view", "foreign table", "table",
               "sequence", "procedure", "aggregate", "function", "type")


def _wipe(url: str, history: History, empty: Snapshot, name: str) -> None:
    """Drop what the migrations created in the user's scratch database (whatever a snapshot sees
    that was not there at the start) and clear the history; refuse to go on if that is not enough."""
    from psycopg import sql

    from ._snapshot import diff, take

    exclude = history.own_tables
    with _connect_admin(url) as conn:
        now = take(conn, exclude_tables=exclude)
        statements = []
        for kind in _DROP_ORDER:
            for key, props in now.objects.items():
                if key.startswith(kind + " ") and key not in empty.objects and key not in now.parents:
                    what = "DOMAIN" if kind == "type" and props.get("kind") == "domain" else kind.upper()
                    # Identities are made of quote_ident()ed names: valid SQL as they are.
                    statements.append(f"DROP {what} IF EXISTS {key[len(kind) + 1:]} CASCADE")
        statements.append(sql.SQL("DELETE FROM {}").format(history.ident).as_string(conn))
        for statement in statements:
            conn.execute(statement.encode())
        left = diff(empty, take(conn, exclude_tables=exclude))
    if left:
        raise ConfigurationError(
            f"could not empty the scratch database {name} to rebuild it: "
            + "; ".join(d.describe() for d in left[:5]) + "; use a throwaway database (leave out "
            "--scratch-database) or drop and re-create it")
    log.info("emptied scratch database %s", name)


# -- the checks ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    report: MigrationReport
    #: the schema after the check, when it is known without another snapshot
    after: Snapshot | None = None
    #: the database is in no known state: rebuild it up to this migration before going on
    rebuild: bool = False
    #: the migration itself cannot be applied: later ones, which build on it, cannot be checked
    stop: bool = False


def _run(ws: _Workspace, migrations: Sequence[files.Migration]) -> tuple[list[MigrationReport], list[str]]:
    """Check each migration in order. After a step that leaves the database in no known state (its
    rollback or its re-apply failed), rebuild it from scratch up to that migration and go on; stop
    only at a migration that cannot be applied at all."""
    from ._script import prepare

    # Every migration file is checked before the first one runs, as ``up`` does.
    scripts = [prepare(m.read(), m.path, protected=ws.s.history.protected) for m in migrations]
    reports: list[MigrationReport] = []
    current: Snapshot | None = None
    failures = _failures()
    for i, (m, script) in enumerate(zip(migrations, scripts)):
        outcome = _check(ws, m, script, current)
        reports.append(outcome.report)
        rest = [later.label for later in migrations[i + 1:]]
        if outcome.stop:
            return reports, rest
        current = outcome.after
        if outcome.rebuild and rest:
            log.info("%s: rebuilding the database from scratch up to %s, to go on", m.label, m.label)
            try:
                ws.start_over()
                for earlier, earlier_script in zip(migrations[:i + 1], scripts):
                    _apply(ws.s, earlier, earlier_script)
            except failures as exc:
                problem = f"could not rebuild the database up to {m.label} to go on: {_text(exc)}"
                reports[-1] = replace(outcome.report, ok=False, problems=outcome.report.problems + (problem,))
                return reports, rest
    return reports, []


def _failures() -> tuple[type[Exception], ...]:
    """What a migration's own failure looks like (psycopg is imported only on use)."""
    import psycopg

    return (SqlMigrateError, psycopg.Error)


def _check(ws: _Workspace, m: files.Migration, script: Script, before: Snapshot | None) -> _Outcome:
    """Apply ``m``, roll it back, compare the schema with ``before``, apply it again."""
    from ._rollback import empty_note
    from ._script import prepare
    from ._snapshot import diff

    s = ws.s
    failures = _failures()
    rollback: Script | None = None
    unreadable: str | None = None
    if m.rollback is not None:
        try:
            rollback = prepare(m.read_rollback(), m.rollback, protected=s.history.protected, rollback=True)
        except failures as exc:
            unreadable = f"rollback failed: {_text(exc)}"
    # A migration and rollback that only change rows need no schema comparison, so no snapshot.
    data_only = rollback is not None and _data_only(script) and _data_only(rollback)
    if before is None and not data_only:
        before = ws.snapshot()
    try:
        _apply(s, m, script)
    except failures as exc:
        return _Outcome(_report(m, [f"apply failed: {_text(exc)}"]), stop=True)
    if rollback is None:
        return _Outcome(_report(m, [unreadable or f"no rollback file (write {files.rollback_name(m)})"]))
    info = [empty_note(m)] if rollback.empty else _data_loss(s.conn, rollback)
    try:
        _revert(s, m, rollback)
    except failures as exc:
        # A rollback in a transaction failed as a whole: the migration is still applied, as before.
        # One without a transaction may have stopped part way: start over.
        return _Outcome(_report(m, [f"rollback failed: {_text(exc)}"], info), rebuild=rollback.no_transaction)
    differences = [] if data_only or before is None else diff(before, ws.snapshot())
    problems = [d.describe() for d in differences if not d.lesser]
    lesser = [d.describe() for d in differences if d.lesser]
    try:
        _apply(s, m, script)
    except failures as exc:
        problems.append(f"re-apply failed: {_text(exc)}")
        return _Outcome(_report(m, problems, info, differences, lesser), rebuild=True)
    return _Outcome(_report(m, problems, info, differences, lesser), after=before if data_only else None)


# Statements that change rows, not the schema. (A trigger or a function they call could run DDL; a
# data migration that does so is rare enough to pay for with one missed comparison.)
_DATA_VERBS = frozenset({"INSERT", "UPDATE", "DELETE"})


def _data_only(script: Script) -> bool:
    """True when every statement of ``script`` only changes data: the schema needs no comparison."""
    return not script.no_transaction and all(st.keywords[:1] and st.keywords[0] in _DATA_VERBS
                                             for st in script.statements)


def _report(m: files.Migration, problems: list[str], info: Sequence[str] = (),
            differences: Sequence[Difference] = (), lesser: Sequence[str] = ()) -> MigrationReport:
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        log.info("%s: NOT reversible: %s%s", m.label, problems[0].splitlines()[0], more)
    else:
        log.info("%s: reversible", m.label)
    for line in lesser:
        log.info("%s: lesser: %s", m.label, line.splitlines()[0])
    for line in info:
        if line.startswith("rollback of "):
            log.info("%s: %s", m.label, line)
    return MigrationReport(m.version, m.label, not problems, tuple(problems), tuple(info), tuple(differences),
                           tuple(lesser))


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
