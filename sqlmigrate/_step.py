"""The one executor: running a step (a migration, or its rollback) in either mode and recording it.

``up``, ``down`` and ``verify`` all run their steps here. A transactional step runs in one
transaction together with its history and log rows, opened by the session's guard; a
``no-transaction`` step runs statement by statement under the session's run lock, with a history
row saying how far it got. Either way the session is reset afterwards, as if each file had run in
a fresh psql session.
"""

from __future__ import annotations

import logging
import random
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from psycopg import sql

from . import _execute as execute
from ._errors import MigrationError, SqlMigrateError

if TYPE_CHECKING:
    import psycopg

    from ._files import Migration
    from ._script import Script
    from ._session import Session
    from ._sqltext import Statement

log = logging.getLogger("sqlmigrate")


@dataclass(frozen=True)
class Step:
    """One file to run: a migration (``up``) or its rollback (``down``)."""

    migration: Migration
    script: Script
    direction: str  # "up" | "down"
    #: the checksum to record (up) or that the history row must still have (down)
    checksum: str
    out_of_order: bool = False
    #: what the rollback destroyed with confirmation, for the log
    detail: str | None = None

    @property
    def label(self) -> str:
        return self.migration.label if self.direction == "up" else f"rollback of {self.migration.label}"


def run(session: Session, step: Step) -> float | None:
    """Run ``step``; return its duration in ms, or None when another process already did it."""
    try:
        if step.script.no_transaction:
            return _run_without_transaction(session, step)
        return _run_in_transaction(session, step)
    except SqlMigrateError as exc:
        _log_failure(session, step, exc)
        raise


def _record(session: Session, step: Step, execution_ms: int | None = None) -> sql.Composed:
    m, history = step.migration, session.history
    if step.direction == "up":
        return history.record_applied(version=m.version, name=m.name, checksum=step.checksum,
                                      out_of_order=step.out_of_order, execution_ms=execution_ms)
    return history.record_removed(version=m.version, name=m.name, checksum=step.checksum, detail=step.detail)


def _run_in_transaction(session: Session, step: Step) -> float | None:
    up = step.direction == "up"
    begin = session.begin(step.migration.version, applied=not up, checksum=None if up else step.checksum)
    retries = 0
    while True:
        try:
            return session.in_turn(lambda: execute.run_in_transaction(
                session.conn, step.script, step.label, _record(session, step), begin=begin, reset=session.reset))
        except execute.GuardFailed:
            log.info("%s: already done by another process", step.label)
            return None
        except MigrationError as exc:
            if exc.sqlstate != _LOCK_NOT_AVAILABLE or not session.lock_wait:
                raise
            # Rolled back whole: nothing of it remains, so it can simply run again.
            blockers = _blockers(session, step)
            if retries >= session.lock_retries:
                raise _gave_up(exc, session, retries, blockers) from None
            retries += 1
            pause = _pause(retries)
            log.warning("%s waited %g s for a lock%s and was rolled back; blocked by %s; retry %d of %d in %.1f s",
                        step.label, session.lock_wait, f" at line {exc.line}" if exc.line else "",
                        "; ".join(blockers) or "a session that has finished since", retries,
                        session.lock_retries, pause)
            time.sleep(pause)


class _StatementRetry:
    """A statement of a no-transaction file that hit the lock wait runs again where that is safe:
    a plain statement ran in a transaction of its own and was rolled back whole; a failed
    ``CREATE INDEX CONCURRENTLY`` leaves an INVALID index, which is ours (the history says this
    statement never completed) and is dropped first. Any other failure of such a statement is
    reported with the INVALID index it left and the command that removes it."""

    def __init__(self, session: Session, step: Step) -> None:
        self.session, self.step, self.retries = session, step, 0

    def __call__(self, stmt: Statement, exc: MigrationError) -> MigrationError | None:
        conn = self.session.conn
        index = _concurrent_index(stmt.text)
        found = _invalid_index(conn, index) if index else None
        if exc.sqlstate != _LOCK_NOT_AVAILABLE or not self.session.lock_wait or _MULTI_STEP.match(stmt.text):
            return _with_invalid_index(exc, conn, found)
        while self.retries < self.session.lock_retries:
            self.retries += 1
            pause = _pause(self.retries)
            log.warning("%s: the statement at line %s waited %g s for a lock%s; retry %d of %d in %.1f s",
                        self.step.label, stmt.line, self.session.lock_wait,
                        f" and left the INVALID index {_name(conn, found)}, dropped before the retry"
                        if found else "",
                        self.retries, self.session.lock_retries, pause)
            time.sleep(pause)
            if found is None or _drop_index(conn, found):
                return None
        return _with_invalid_index(exc, conn, found)


def _with_invalid_index(exc: MigrationError, conn: psycopg.Connection,
                        found: tuple[str, str] | None) -> MigrationError:
    if found is None:
        return exc
    name = _name(conn, found)
    return MigrationError(
        f"{exc.server_message}; it left the INVALID index {name} behind, which slows writes and serves "
        f"no query: remove it with DROP INDEX CONCURRENTLY {name};",
        path=exc.path, line=exc.line, statement=exc.statement, sqlstate=exc.sqlstate,
        detail=exc.detail, hint=exc.hint, context=exc.context)


def _name(conn: psycopg.Connection, found: tuple[str, str]) -> str:
    """schema.name as a user would type it: quoted only where it must be."""
    return ".".join(part if re.fullmatch(r"[a-z_][a-z0-9_$]*", part) else sql.Identifier(part).as_string(conn)
                    for part in found)


def _drop_index(conn: psycopg.Connection, found: tuple[str, str]) -> bool:
    """Drop an INVALID index our statement left; False when the drop itself hit the lock wait."""
    import psycopg

    try:
        conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(*found)))
    except psycopg.Error as exc:
        if exc.sqlstate != _LOCK_NOT_AVAILABLE:
            raise
        return False
    return True


# Statements that span transactions and leave more than an INVALID index of their own name behind.
_LEADING = r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*"  # whitespace and comments before a statement
_MULTI_STEP = re.compile(_LEADING + r"(REINDEX\b.*\bCONCURRENTLY|DROP\s+INDEX\s+CONCURRENTLY)",
                         re.IGNORECASE | re.DOTALL)
_CREATE_INDEX_CONCURRENTLY = re.compile(
    _LEADING + r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r'((?:"(?:[^"]|"")+"|[^\s("]+)(?:\.(?:"(?:[^"]|"")+"|[^\s("]+))?)\s+ON\b', re.IGNORECASE | re.DOTALL)


def _concurrent_index(text: str) -> str | None:
    found = _CREATE_INDEX_CONCURRENTLY.match(text)
    return found.group(1) if found else None


def _invalid_index(conn: psycopg.Connection, name: str) -> tuple[str, str] | None:
    """(schema, name) of the index ``name`` (as written in the statement) if it is INVALID."""
    try:
        row = conn.execute("SELECT n.nspname, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                           " JOIN pg_namespace n ON n.oid = c.relnamespace"
                           " WHERE i.indexrelid = to_regclass(%s) AND NOT i.indisvalid", (name,)).fetchone()
    except Exception:  # the report must not hide the statement's own error
        return None
    return (str(row[0]), str(row[1])) if row else None


_LOCK_NOT_AVAILABLE = "55P03"
_MAX_PAUSE = 30.0


def _pause(retry: int) -> float:
    """Seconds before retry number ``retry``: 1, 2, 4 ... 30, with jitter so waiters spread out."""
    return min(_MAX_PAUSE, 2.0 ** (retry - 1)) * random.uniform(0.5, 1.5)


def _blockers(session: Session, step: Step) -> list[str]:
    """Who holds a lock on the tables the step touches, or has a long transaction open (a best
    effort: the report is for the user, the retry does not depend on it)."""
    from ._lint import lint_scripts

    try:
        return [b.describe() for b in lint_scripts([step.script], session.conn).blockers]
    except Exception as exc:
        log.debug("could not look up the blocking sessions: %s", exc)
        return []


def _gave_up(exc: MigrationError, session: Session, retries: int, blockers: list[str]) -> MigrationError:
    who = "; ".join(blockers) or "a session that has finished since"
    return MigrationError(
        f"{exc.server_message}: every attempt waited {session.lock_wait:g} s for a lock and was rolled back "
        f"whole ({retries + 1} attempt{'s' if retries else ''}); blocked by {who}",
        path=exc.path, line=exc.line, statement=exc.statement, sqlstate=exc.sqlstate, detail=exc.detail,
        hint="end or wait out the blocking transaction, then run again; or raise --lock-wait / "
             "--lock-retries (--lock-wait 0 waits forever, stalling that table's traffic meanwhile)",
        context=exc.context)


def _run_without_transaction(session: Session, step: Step) -> float:
    conn, history, m = session.conn, session.history, step.migration
    if step.direction == "up":
        history.mark_running(conn, version=m.version, name=m.name, checksum=step.checksum,
                             out_of_order=step.out_of_order)
    else:
        history.mark_rollback_running(conn, m.version)
    session.set_session_timeouts()
    try:
        ms = execute.run_without_transaction(conn, step.script, step.label, history, m.version,
                                             rollback=step.direction == "down",
                                             on_failure=_StatementRetry(session, step))
    finally:
        execute.rollback_if_open(conn, session.reset)
    history.write(conn, _record(session, step, round(ms)))
    return ms


def _log_failure(session: Session, step: Step, exc: Exception) -> None:
    """The failure goes into the append-only log, after the rollback (a best effort: the
    connection may be what failed)."""
    m, history = step.migration, session.history
    try:
        execute.rollback_if_open(session.conn)
        history.write(session.conn, history.log_row(version=m.version, name=m.name, direction=step.direction,
                                                    outcome="failed", checksum=step.checksum, error=str(exc)))
    except Exception:
        log.warning("could not record the failure of %s in %s", m.label, history.log_table)
