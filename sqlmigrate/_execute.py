"""Sending a prepared script to the server and locating any failure in the file.

A transactional script costs two round trips: ``BEGIN`` plus the whole file in one simple-query
message, then the history and log rows plus ``COMMIT``. The file is never mixed into one message
with sqlmigrate's own SQL, so nothing in it (an unterminated quote, say) can change how ours parses.
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg import pq, sql

from ._errors import MigrationError
from ._script import Chunk, Script
from ._sqltext import Statement, line_at

if TYPE_CHECKING:
    import psycopg

    from ._history import History

log = logging.getLogger("sqlmigrate")


def progress(text: str) -> None:
    """A transient progress message: the command line shows it on a terminal, as a status line
    that the next message replaces; a DEBUG record for every other handler."""
    log.debug(text, extra={"sqlmigrate_progress": True})


@dataclass(frozen=True)
class _ServerError:
    """A failed message: how many statements completed before it, and the server's diagnostics."""

    completed: int
    message: str
    sqlstate: str | None
    detail: str | None
    hint: str | None
    context: str | None
    position: int | None


class _Failed(Exception):
    def __init__(self, error: _ServerError) -> None:
        self.error = error
        super().__init__(error.message)


def send(conn: psycopg.Connection, query: str) -> None:
    """Run ``query`` (any number of statements) over the simple-query protocol, in one round trip.

    Unlike ``cursor.execute`` this counts the statements that completed before an error, which is
    how a runtime error (which carries no position) is traced back to its line. Waiting happens in
    psycopg's wait loop (the GIL is released, Ctrl-C cancels the query on the server).
    """
    import psycopg

    pgconn = conn.pgconn
    encoding = conn.info.encoding
    try:
        pgconn.send_query(query.encode(encoding))
        _flush(pgconn)
        results = _fetch_results(conn)
    except psycopg.Error as exc:  # only the connection itself fails here; SQL errors are results
        raise _Failed(_ServerError(0, str(exc).strip() or "connection to the server was lost",
                                   "08006", None, None, None, None)) from None
    if pgconn.status != pq.ConnStatus.OK:
        raise _Failed(_ServerError(len(results), _text(pgconn.error_message, encoding).strip()
                                   or "connection to the server was lost", "08006", None, None, None, None))
    for completed, result in enumerate(results):
        if result.status == pq.ExecStatus.FATAL_ERROR:
            raise _Failed(_server_error(result, completed, encoding))


def _server_error(result: pq.abc.PGresult, completed: int, encoding: str) -> _ServerError:
    def field(code: pq.DiagnosticField) -> str | None:
        value = result.error_field(code)
        return _text(value, encoding) if value is not None else None

    position = field(pq.DiagnosticField.STATEMENT_POSITION)
    return _ServerError(
        completed,
        field(pq.DiagnosticField.MESSAGE_PRIMARY) or _text(result.error_message, encoding).strip(),
        field(pq.DiagnosticField.SQLSTATE),
        field(pq.DiagnosticField.MESSAGE_DETAIL),
        field(pq.DiagnosticField.MESSAGE_HINT),
        field(pq.DiagnosticField.CONTEXT),
        int(position) if position else None,
    )


def _fetch_results(conn: psycopg.Connection) -> list[pq.abc.PGresult]:
    """Every result of the message just sent, in order. psycopg's C fetch loop keeps a 100,000
    statement data migration as cheap as psycopg's own ``execute``; without it, a Python loop."""
    if _fetch_many is not None:
        return conn.wait(_fetch_many(conn.pgconn))
    pgconn = conn.pgconn
    results: list[pq.abc.PGresult] = []
    try:
        while True:
            _wait_result(pgconn)
            result = pgconn.get_result()
            if result is None:
                return results
            results.append(result)
    except KeyboardInterrupt:
        _cancel(conn)
        raise


def _load_fetch_many() -> Callable[[pq.abc.PGconn], Any] | None:
    # An internal of psycopg (stable since 3.0); the fallback above keeps working should it move.
    try:
        from psycopg.generators import fetch_many
    except ImportError:
        return None
    return fetch_many  # type: ignore[no-any-return]


_fetch_many = _load_fetch_many()


def _text(value: bytes, encoding: str) -> str:
    return value.decode(encoding, "replace")


def _flush(pgconn: pq.abc.PGconn) -> None:
    while pgconn.flush():
        readable, _, _ = select.select([pgconn.socket], [pgconn.socket], [])
        if readable:
            pgconn.consume_input()


def _wait_result(pgconn: pq.abc.PGconn) -> None:
    pgconn.consume_input()
    while pgconn.is_busy():
        select.select([pgconn.socket], [], [])
        pgconn.consume_input()


def _cancel(conn: psycopg.Connection) -> None:
    """Ctrl-C while the server works: cancel the query and drain, so the connection stays usable."""
    try:
        conn.cancel_safe() if hasattr(conn, "cancel_safe") else conn.cancel()
        while conn.pgconn.get_result() is not None:
            pass
    except Exception:  # the interrupt matters more than a tidy connection
        pass


def rollback_if_open(conn: psycopg.Connection, reset: str = "") -> None:
    """End a failed step: roll back its transaction if open, and reset the session (``reset``)."""
    if conn.closed or conn.pgconn.status != pq.ConnStatus.OK:
        return
    open_ = conn.pgconn.transaction_status != pq.TransactionStatus.IDLE
    if open_ or reset:
        send(conn, ";".join(filter(None, ("ROLLBACK" if open_ else "", reset))))


#: SQLSTATEs of the guard that opens every step's transaction (see _session): the migration lock is
#: held by another session; the history row is not what the step expects (another process did it).
LOCK_BUSY, ALREADY_DONE = "SM001", "SM002"


class GuardFailed(Exception):
    """A step's guard refused it; nothing of the step ran."""

    def __init__(self, sqlstate: str) -> None:
        self.busy = sqlstate == LOCK_BUSY
        super().__init__(sqlstate)


def _guard_failed(err: _ServerError, begin_statements: int) -> GuardFailed | None:
    if err.sqlstate in (LOCK_BUSY, ALREADY_DONE) and err.completed < begin_statements:
        return GuardFailed(err.sqlstate)
    return None


def run_in_transaction(conn: psycopg.Connection, script: Script, label: str, record: sql.Composable, *,
                       begin: Sequence[str], reset: str) -> float:
    """Run ``script`` and ``record`` (history and log rows) in one transaction opened by the
    ``begin`` statements (BEGIN, settings, guard), then ``reset`` the session; return elapsed ms.

    On failure the transaction is rolled back and a :class:`MigrationError` naming the file, line and
    statement is raised; :class:`GuardFailed` when the guard refused the step.
    """
    started = time.perf_counter()
    prefix = ";".join(begin) + ";\n"
    skipped = len(begin)
    closing = record.as_string(conn) + "COMMIT;" + reset
    if _fits_one_message(script):
        _run_in_one_message(conn, script, label, prefix, skipped, closing, reset)
        return (time.perf_counter() - started) * 1000
    total = script.path.stat().st_size if script.streamed else 0
    sent = 0
    try:
        for chunk in script.chunks():
            if total:
                progress(f"{label}: {min(99, sent * 100 // total)}% of {total / 1e6:.0f} MB")
            try:
                send(conn, prefix + chunk.text)
            except _Failed as exc:
                raise _locate(exc.error, script, chunk, label, offset=len(prefix), skipped=skipped) from None
            prefix, skipped = "", 0
            sent += len(chunk.text)
        if prefix:  # a streamed file that turned out to be empty
            _send_own(conn, prefix, skipped)
    except BaseException:
        rollback_if_open(conn, reset)
        raise
    try:
        send(conn, closing)
    except _Failed as exc:
        rollback_if_open(conn, reset)
        raise _record_failed(exc.error, label) from None
    return (time.perf_counter() - started) * 1000


def _send_own(conn: psycopg.Connection, text: str, begin_statements: int) -> None:
    try:
        send(conn, text)
    except _Failed as exc:
        raise _guard_failed(exc.error, begin_statements) or _record_failed(exc.error, "the step") from None


def run_own(conn: psycopg.Connection, begin: Sequence[str], body: str, reset: str) -> None:
    """Run sqlmigrate's own ``body`` in one transaction opened by ``begin``; psycopg errors pass
    through (the session layer turns them into sqlmigrate's), :class:`GuardFailed` when refused."""
    import psycopg

    try:
        conn.execute(";".join([*begin, body, "COMMIT", reset]).encode())
    except psycopg.Error as exc:
        rollback_if_open(conn, reset)
        if exc.sqlstate in (LOCK_BUSY, ALREADY_DONE):
            raise GuardFailed(exc.sqlstate) from None
        raise


# A small plain file shares one message with its history row and COMMIT: one round trip per
# migration. Only when the cheap scan found nothing special and the lexer finds the file ends outside
# any string, comment or dollar quote, so nothing in it can change how sqlmigrate's own SQL parses.
_ONE_MESSAGE_MAX = 64 << 10
_SEPARATOR = "\n;\n"


def _fits_one_message(script: Script) -> bool:
    source = script.source
    return (script.plain and source is not None and len(source.text) <= _ONE_MESSAGE_MAX
            and script.unterminated is None)


def _run_in_one_message(conn: psycopg.Connection, script: Script, label: str, prefix: str, skipped: int,
                        closing: str, reset: str) -> None:
    chunk = script.source
    assert chunk is not None
    try:
        send(conn, prefix + chunk.text + _SEPARATOR + closing)
    except _Failed as exc:
        rollback_if_open(conn, reset)
        err = exc.error
        # Past the file's own text (by position, or by count of completed statements): ours failed.
        # (An error at the separator is the file's: its last statement was cut short.)
        lost = bool(err.sqlstate and err.sqlstate.startswith("08"))
        if not lost and ((err.position or 0) - 1 >= len(prefix) + len(chunk.text) + len(_SEPARATOR) or (
                err.position is None and err.completed - skipped >= len(chunk.statements))):
            raise _record_failed(err, label) from None
        raise _locate(err, script, chunk, label, offset=len(prefix), skipped=skipped) from None


def _record_failed(err: _ServerError, label: str) -> MigrationError:
    return MigrationError(
        f"{label} ran, but recording it in the history failed, so it was rolled back: {err.message}",
        sqlstate=err.sqlstate, detail=err.detail, hint=err.hint,
    )


def run_statement(conn: psycopg.Connection, script: Script, index: int, label: str) -> None:
    """Run statement ``index`` of a no-transaction script on its own (autocommit)."""
    stmt = script.statements[index]
    try:
        send(conn, stmt.text)
    except _Failed as exc:
        raise _error(exc.error, script, label, stmt.line, stmt.text) from None


#: Decides about a failed statement of a no-transaction script: None to run it again, or the error
#: to raise (the one given, or one that says more).
OnFailure = Callable[[Statement, MigrationError], "MigrationError | None"]


def run_without_transaction(conn: psycopg.Connection, script: Script, label: str, history: History,
                            version: int, *, rollback: bool = False, on_failure: OnFailure | None = None) -> float:
    """Run a no-transaction script statement by statement; return elapsed ms.

    The caller has marked the history row "running"; each completed statement is counted in it, so
    a crash or a failure leaves a row saying exactly how far the file got.
    """
    started = time.perf_counter()
    statements = script.statements
    for i, stmt in enumerate(statements):
        try:
            while True:
                try:
                    run_statement(conn, script, i, label)
                    break
                except MigrationError as failed:
                    error = on_failure(stmt, failed) if on_failure is not None else failed
                    if error is not None:
                        raise error from None
        except MigrationError as exc:
            what = "rollback statement" if rollback else "statement"
            try:
                history.mark_failed(conn, version, f"{what} {i + 1} of {len(statements)} (line {stmt.line}) "
                                                   f"failed; {i} completed: {exc}")
            except Exception:
                log.warning("could not record the failure of %s in the history", label)
            raise
        history.mark_progress(conn, version, i + 1)
    return (time.perf_counter() - started) * 1000


def _locate(err: _ServerError, script: Script, chunk: Chunk, label: str, *, offset: int,
            skipped: int) -> MigrationError | GuardFailed:
    """Turn a server error for one chunk of ``script`` into an error naming its line and statement.

    A syntax error carries the character position; a runtime error does not, but the number of
    statements that completed before it (less ``skipped`` of our own) is the failing one's index.
    """
    guard = _guard_failed(err, skipped)
    if guard is not None:
        return guard
    if err.sqlstate and err.sqlstate.startswith("08"):
        return _error(err, script, label, None, None)
    if err.position is not None and err.position - 1 >= offset:
        # "at end of input" points past the text: the culprit is its last statement.
        pos = min(err.position - 1 - offset, max(0, len(chunk.text.rstrip()) - 1))
        stmt = chunk.statement_at(pos)
        return _error(err, script, label, chunk.file_line(line_at(chunk.text, pos)), stmt.text if stmt else None)
    index = err.completed - skipped
    statements = chunk.statements
    if 0 <= index < len(statements):
        stmt = statements[index]
        return _error(err, script, label, chunk.file_line(stmt.line), stmt.text)
    return _error(err, script, label, None, None)


def _error(err: _ServerError, script: Script, label: str, line: int | None, statement: str | None) -> MigrationError:
    message = err.message
    if err.sqlstate and err.sqlstate.startswith("08"):
        message = f"connection to the server was lost while running {label}: {message}"
    return MigrationError(
        message, path=script.path, line=line, statement=statement, sqlstate=err.sqlstate,
        detail=err.detail, hint=err.hint, context=err.context,
    )
