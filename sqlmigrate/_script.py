"""Preparing one file to run: directives, and the checks that must pass before execution.

A file that needs no statement-level look (the common case, decided by a cheap scan) is sent to the
server whole; only files that mention something risky are split into statements. Files larger than
:data:`STREAM_ABOVE` are never held in memory whole: they are read, checked and sent in chunks cut at
statement boundaries, each chunk checked (in a background thread) while the server runs the previous
one.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from . import _files as files, _sqltext as sqltext
from ._errors import MigrationFileError
from ._sqltext import Statement

#: Files above this many bytes are streamed in chunks of about :data:`CHUNK` characters.
STREAM_ABOVE = 4 << 20
CHUNK = 256 << 10

# Whitespace and comments only (nested block comments aside, which then simply run as an empty
# migration): anchored at the start, so a file with SQL fails on its first statement, cheaply.
_NOTHING_BUT_COMMENTS = re.compile(r"(?:\s+|--[^\n]*|/\*.*?\*/)*", re.DOTALL)

Protected = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Chunk:
    """A run of whole statements of a file, sent as one message."""

    #: the text to send (a BEGIN;/COMMIT; wrapper blanked out, so offsets and lines stay the file's)
    text: str
    #: line of the file on which ``text`` starts
    line: int
    known_statements: list[Statement] | None = field(default=None, repr=False, compare=False)

    @cached_property
    def statements(self) -> list[Statement]:
        """The statements of this chunk, offsets and lines relative to it. Split only on demand: to
        locate a failure, or to run a no-transaction file."""
        if self.known_statements is not None:
            return self.known_statements
        return sqltext.split(self.text)

    def statement_at(self, offset: int) -> Statement | None:
        """The statement containing character ``offset`` of :attr:`text`."""
        found = None
        for stmt in self.statements:
            if stmt.start > offset:
                break
            found = stmt
        return found

    def file_line(self, chunk_line: int) -> int:
        return self.line + chunk_line - 1


@dataclass(frozen=True)
class Script:
    """A migration or rollback file, checked and ready to send."""

    path: Path
    no_transaction: bool
    #: the whole checked text, or None for a streamed file (read, checked and sent chunk by chunk)
    source: Chunk | None = None
    protected: tuple[tuple[str, str], ...] = ()
    #: checksum the streamed text must have (the one recorded in the history)
    checksum: str | None = None
    #: the cheap scan found nothing that needs statement-level handling
    plain: bool = False

    @property
    def streamed(self) -> bool:
        return self.source is None

    @cached_property
    def text(self) -> str:
        """The whole text to send. For a streamed file this reads it whole: for dry runs only."""
        if self.source is not None:
            return self.source.text
        return "".join(chunk.text for chunk in self.chunks())

    @property
    def statements(self) -> list[Statement]:
        return self._whole.statements

    def statement_at(self, offset: int) -> Statement | None:
        return self._whole.statement_at(offset)

    @cached_property
    def _whole(self) -> Chunk:
        return self.source if self.source is not None else Chunk(self.text, 1)

    def chunks(self) -> Iterator[Chunk]:
        if self.source is not None:
            yield self.source
            return
        yield from _pipelined(_stream_chunks(self.path, self.protected, self.checksum))


def prepare(text: str, path: Path, *, protected: Protected = ()) -> Script:
    """Check ``text`` (the contents of ``path``) and return it ready to run.

    ``protected`` are (schema, table) pairs of sqlmigrate's own tables, which no migration may drop,
    truncate, rename, alter or delete from.
    """
    if not text.strip():
        raise MigrationFileError("is empty; write the migration or delete the file", path)
    if _NOTHING_BUT_COMMENTS.fullmatch(text):
        raise MigrationFileError("contains only comments; write the migration or delete the file", path)
    if not sqltext.needs_scan(text) and not _mentions_protected(text, protected):
        return Script(path, False, Chunk(text, 1), plain=True)
    if sqltext.directives(text, path).no_transaction:
        _check_whole_file(text, path)
        return Script(path, True, Chunk(text, 1))
    chunk, _ = _check_chunk(Chunk(text, 1), path, protected, first=True, last=True)
    _check_whole_file(chunk.text, path)
    return Script(path, False, chunk)


def prepare_file(path: Path, *, protected: Protected = (), checksum: str | None = None) -> Script:
    """Like :func:`prepare` for a file on disk; a large transactional file is streamed, and its checks
    happen chunk by chunk as it runs (a failed check rolls the whole migration back)."""
    if path.stat().st_size <= STREAM_ABOVE:
        return prepare(files.read_text(path), path, protected=protected)
    head = next(files.iter_text(path, chunk_size=64 << 10), "")
    if sqltext.directives(head, path).no_transaction:
        # Statement by statement anyway: the statements are needed whole.
        return prepare(files.read_text(path), path, protected=protected)
    return Script(path, False, None, tuple(protected), checksum)


def _mentions_protected(text: str, protected: Protected) -> bool:
    return any(sqltext.mentions(text, table) for _, table in protected)


def _check_whole_file(text: str, path: Path) -> None:
    """Checks that need the whole text; done up front for files in memory, so that a problem is
    reported before anything runs."""
    lines = sqltext.meta_commands(text)
    if lines:
        raise _meta_command(path, lines[0])
    open_construct = sqltext.unterminated(text)
    if open_construct:
        what, line = open_construct
        raise MigrationFileError(f"unterminated {what} starting here", path, line)


def _meta_command(path: Path, line: int) -> MigrationFileError:
    return MigrationFileError(
        "psql meta-command (a line starting with a backslash) is not SQL and cannot run here; "
        "remove it or rewrite it in SQL",
        path, line,
    )


def _check_chunk(chunk: Chunk, path: Path, protected: Protected, *, first: bool,
                 last: bool) -> tuple[Chunk, int | None]:
    """Check the statements of one chunk of a transactional file; return it with a BEGIN;/COMMIT;
    wrapper (first statement of the file, last statement of the file) blanked out, and the file
    line of a wrapper half found when the chunk holds only one end of the file."""
    text = chunk.text
    scan = sqltext.needs_scan(text)
    touched = [pair for pair in protected if sqltext.mentions(text, pair[1])]
    if not scan and not touched:
        return chunk, None
    statements = chunk.statements
    for stmt in statements:
        for schema, table in touched:
            verb = sqltext.targets_table(stmt, table, schema)
            if verb:
                raise MigrationFileError(
                    f"this statement would {verb} {schema}.{table}, sqlmigrate's own history. Older "
                    f"migration tools used the same name; keep sqlmigrate's history elsewhere with "
                    f"--table (e.g. --table sqlmigrate_history), or remove the statement",
                    path, chunk.file_line(stmt.line),
                )
    if not scan:
        return chunk, None
    lines = sqltext.meta_commands(text)
    if lines:
        raise _meta_command(path, chunk.file_line(lines[0]))
    if first:
        sqltext.directives(text, path)  # a misplaced or unknown directive is an error
    text, statements, half = _strip_wrapper(text, statements, path, first=first, last=last)
    for stmt in statements:
        if sqltext.is_transaction_control(stmt):
            raise MigrationFileError(
                f"transaction control ({' '.join(stmt.keywords[:2])}) inside a migration that runs in a "
                "transaction: sqlmigrate wraps each file in one transaction itself. Remove it, or add "
                "`-- sqlmigrate: no-transaction` as the first line to manage transactions yourself",
                path, chunk.file_line(stmt.line),
            )
        reason = sqltext.needs_no_transaction(stmt)
        if reason:
            raise MigrationFileError(
                f"{reason} cannot run inside a transaction; add `-- sqlmigrate: no-transaction` as the "
                "first line of the file (it then runs statement by statement, without a transaction)",
                path, chunk.file_line(stmt.line),
            )
    return Chunk(text, chunk.line, statements), None if half is None else chunk.file_line(half)


def _strip_wrapper(text: str, statements: list[Statement], path: Path, *, first: bool,
                   last: bool) -> tuple[str, list[Statement], int | None]:
    """The golang-migrate BEGIN;/COMMIT; wrapper: its first half can only be in the file's first
    chunk and its second half in the last one. Returns the text, the remaining statements and, when
    only one end of the file is in this chunk, the chunk line of the half blanked out (the caller
    checks that the other end had the matching half)."""
    if first and last:
        return (*sqltext.strip_wrapper(text, statements, path), None)
    if not statements:
        return text, statements, None
    # Only one end of the file is in this chunk: check that end by itself, as if the other end held
    # the matching half.
    if first and sqltext.is_transaction_control(statements[0]):
        probe = statements[0].text + ";\nCOMMIT;"
        stripped, _ = sqltext.strip_wrapper(probe, sqltext.split(probe), path)
        if not stripped.strip():
            s = statements[0]
            end = text.index(";", s.end) + 1
            return text[:s.start] + _blank(text[s.start:end]) + text[end:], statements[1:], s.line
    if last and sqltext.is_transaction_control(statements[-1]):
        probe = "BEGIN;\n" + statements[-1].text + ";"
        stripped, _ = sqltext.strip_wrapper(probe, sqltext.split(probe), path)
        if not stripped.strip():
            s = statements[-1]
            end = text.find(";", s.end)
            end = len(text) if end < 0 else end + 1
            return text[:s.start] + _blank(text[s.start:end]) + text[end:], statements[:-1], s.line
    return text, statements, None


def _blank(text: str) -> str:
    return "".join(c if c == "\n" else " " for c in text)


def _stream_chunks(path: Path, protected: Protected, checksum: str | None) -> Iterator[Chunk]:
    """Read ``path`` and yield checked chunks of whole statements.

    The last statement of a buffer is always carried over to the next one: it may be cut off, and
    the file's last statement must be checked knowing it is the last (the COMMIT of a wrapper).
    """
    import hashlib

    digest = hashlib.sha256()
    buffer = ""
    line = 1
    first = True
    opened: int | None = None  # line of a wrapper BEGIN blanked out of the first chunk
    # The first chunk is smaller: the server starts working sooner.
    pieces = files.iter_text(path, chunk_size=max(1, CHUNK // 4))
    while True:
        piece = next(pieces, None)
        if piece is not None:
            digest.update(piece.encode("utf-8"))
            buffer += piece
            if len(buffer) < (CHUNK // 4 if first else CHUNK):
                continue
            statements = sqltext.split(buffer)
            if len(statements) < 2:
                continue  # one statement longer than a chunk: keep reading until it ends
            cut = statements[-1].start
            chunk = Chunk(buffer[:cut], line, statements[:-1])
        else:
            if checksum is not None and digest.hexdigest() != checksum:
                raise MigrationFileError("changed while it was being applied; run the command again", path)
            if not buffer.strip():
                return
            chunk = Chunk(buffer, line)
            cut = len(buffer)
        checked, half = _check_chunk(chunk, path, protected, first=first, last=piece is None)
        if first:
            opened = half
        elif piece is None and (opened is None) != (half is None):
            raise MigrationFileError(
                "the file opens with BEGIN but does not end with COMMIT; add the COMMIT, or remove the "
                "BEGIN (sqlmigrate runs the file in a transaction anyway)" if opened is not None else
                "the file ends with COMMIT but does not open with BEGIN; remove it, or wrap the whole file",
                path, opened if opened is not None else half,
            )
        yield checked
        first = False
        line += buffer.count("\n", 0, cut)
        buffer = buffer[cut:]
        if piece is None:
            return


_DONE = object()


def _pipelined(chunks: Iterator[Chunk], depth: int = 2) -> Iterator[Chunk]:
    """Produce ``chunks`` in a background thread, ``depth`` ahead of the consumer, so reading and
    checking chunk n+1 overlaps with the server running chunk n. Exceptions arrive in order.

    The consumer may leave at any time (a failed chunk, Ctrl-C, closing the iterator): the reader
    then stops within one chunk's work, even when it was blocked on a full queue."""
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        # Never block for good: the consumer may be gone and never take another item.
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # the open file, at once, in the thread that runs the generator

    worker = threading.Thread(target=produce, name="sqlmigrate-reader", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()
