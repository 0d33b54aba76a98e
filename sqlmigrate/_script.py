"""Preparing one file to run: directives, and the checks that must pass before execution.

Every check reads the facts of one pass over the text (:func:`._sqltext.analyse`). A file in which
the cheap byte scans find nothing worth a closer look (the common case) is sent to the server
whole, lexed only if the executor needs its statements. Files larger than :data:`STREAM_ABOVE` are
never held in memory whole: they are read, checked and sent in chunks cut at statement boundaries,
each chunk checked (in a background thread) while the server runs the previous one.

The text that runs is the file's own, byte for byte (only a leading UTF-8 BOM is not sent); only
the checksum normalises line endings.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from . import _files as files, _sqltext as sqltext
from ._errors import MigrationFileError
from ._sqltext import Facts, Protected, Statement

__all__ = ["CHUNK", "STREAM_ABOVE", "Chunk", "Script", "prepare", "prepare_file", "prepare_files"]

#: Files above this many bytes are streamed in chunks of about :data:`CHUNK` characters.
STREAM_ABOVE = 4 << 20
CHUNK = 256 << 10

# Whitespace and comments only (nested block comments aside, which then simply run as an empty
# migration): anchored at the start, so a file with SQL fails on its first statement, cheaply.
_NOTHING_BUT_COMMENTS = re.compile(r"(?:\s+|--[^\n\r]*|/\*.*?\*/)*", re.DOTALL)

_Lexed = tuple[list[Statement], list[int], "tuple[str, int] | None"]


@dataclass(frozen=True)
class Chunk:
    """A run of whole statements of a file, sent as one message."""

    #: the text to send (a BEGIN;/COMMIT; wrapper blanked out, so offsets and lines stay the file's)
    text: str
    #: line of the file on which ``text`` starts
    line: int
    known_statements: list[Statement] | None = field(default=None, repr=False, compare=False)
    known_unterminated: tuple[str, int] | None = field(default=None, repr=False, compare=False)

    @cached_property
    def _lexed(self) -> tuple[list[Statement], tuple[str, int] | None]:
        if self.known_statements is not None:
            return self.known_statements, self.known_unterminated
        statements, _, open_ = sqltext.lex(self.text)
        return statements, None if open_ is None else (open_[0], sqltext.line_at(self.text, open_[1]))

    @property
    def statements(self) -> list[Statement]:
        """The statements of this chunk, offsets and lines relative to it. For a file sent whole
        without a closer look, lexed only on demand: to locate a failure, or to run it in one
        message with sqlmigrate's own SQL."""
        return self._lexed[0]

    @property
    def unterminated(self) -> tuple[str, int] | None:
        """(kind, chunk line) of a string, quoted identifier, dollar quote or comment the text
        ends inside; None if it ends outside any."""
        return self._lexed[1]

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
    protected: tuple[tuple[str | None, str], ...] = ()
    #: checksum the streamed text must have (the one recorded in the history)
    checksum: str | None = None
    #: the cheap scans found nothing that needs statement-level handling
    plain: bool = False
    #: a rollback file that is empty or only comments: nothing to undo
    empty: bool = False

    @property
    def streamed(self) -> bool:
        return self.source is None

    @property
    def unterminated(self) -> tuple[str, int] | None:
        """See :attr:`Chunk.unterminated`; None for a streamed file (whose checks refuse one)."""
        return None if self.source is None else self.source.unterminated

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


def prepare(text: str, path: Path, *, protected: Protected = (), rollback: bool = False) -> Script:
    """Check ``text`` (the contents of ``path``) and return it ready to run. Needs no database.

    ``protected`` are (schema, table) pairs of sqlmigrate's own tables, which no migration may drop,
    truncate, rename, alter or delete from (schema None: any schema). An empty or comment-only
    migration is an error; an empty or comment-only ``rollback`` means "nothing to undo" (``empty``).
    """
    if rollback and _NOTHING_BUT_COMMENTS.fullmatch(text):
        return Script(path, False, Chunk(text, 1), plain=True, empty=True)
    if not text.strip():
        raise MigrationFileError("is empty; write the migration or delete the file", path)
    if _NOTHING_BUT_COMMENTS.fullmatch(text):
        raise MigrationFileError("contains only comments; write the migration or delete the file", path)
    found = sqltext.triage(text, protected)
    if found.plain:
        return Script(path, False, Chunk(text, 1), plain=True)
    facts = sqltext.analyse(text, found=found)
    _refuse_meta_commands(facts, path, 1)
    no_transaction = sqltext.directives(text, path, facts.statements).no_transaction
    _refuse_touching_history(facts, path, 1)
    if no_transaction:
        chunk = Chunk(text, 1, facts.statements, facts.unterminated)
    else:
        chunk, _, _ = _check_transactional(text, 1, facts, path, first=True, last=True)
    _refuse_unterminated(facts, path)
    return Script(path, no_transaction, chunk)


def prepare_file(path: Path, *, protected: Protected = (), checksum: str | None = None) -> Script:
    """Like :func:`prepare` for a file on disk; a large transactional file is streamed, and its checks
    happen chunk by chunk as it runs (a failed check rolls the whole migration back). Needs no
    database."""
    if path.stat().st_size <= STREAM_ABOVE:
        return prepare(files.read_text(path), path, protected=protected)
    head = next(files.iter_text(path, chunk_size=64 << 10), "")
    if sqltext.directives(head, path).no_transaction:
        # Statement by statement anyway: the statements are needed whole.
        return prepare(files.read_text(path), path, protected=protected)
    return Script(path, False, None, tuple(protected), checksum)


def prepare_files(paths: Iterable[Path], *, protected: Protected = (),
                  checksums: Mapping[Path, str] | None = None) -> list[Script]:
    """:func:`prepare_file` for every file (``checksums``: what each streamed file's text must
    have), before anything touches the database: the problems of all files are reported together
    in one :class:`MigrationFileError`, as discovery reports its own; a single problem is raised
    as it is, naming its file and line. (A streamed file's statements beyond its head are checked
    as it runs.)"""
    scripts: list[Script] = []
    problems: list[MigrationFileError] = []
    for path in paths:
        try:
            scripts.append(prepare_file(path, protected=protected,
                                        checksum=None if checksums is None else checksums.get(path)))
        except MigrationFileError as exc:
            problems.append(exc)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise MigrationFileError(f"{len(problems)} migration files need fixing:\n"
                                 + "\n".join(str(p) for p in problems))
    return scripts


def _refuse_meta_commands(facts: Facts, path: Path, line: int) -> None:
    if facts.meta_lines:
        raise MigrationFileError(
            "psql meta-command (a line starting with a backslash) is not SQL and cannot run here; "
            "remove it or rewrite it in SQL",
            path, line + facts.meta_lines[0] - 1,
        )


def _refuse_touching_history(facts: Facts, path: Path, line: int) -> None:
    for flagged in facts.flagged:
        for verb, name in flagged.touches:
            raise MigrationFileError(
                f"this statement would {verb} {name}, sqlmigrate's own history. Older migration tools "
                f"used the same name; keep sqlmigrate's history elsewhere with --table (e.g. --table "
                f"sqlmigrate_history), or remove the statement",
                path, line + flagged.statement.line - 1,
            )


def _refuse_unterminated(facts: Facts, path: Path) -> None:
    if facts.unterminated:
        what, line = facts.unterminated
        raise MigrationFileError(f"unterminated {what} starting here", path, line)


def _check_transactional(text: str, line: int, facts: Facts, path: Path, *, first: bool,
                         last: bool) -> tuple[Chunk, int | None, int | None]:
    """Check the statements of (a chunk of) a transactional file: no transaction control, nothing
    that cannot run in a transaction. Returns the chunk with a BEGIN;/COMMIT; wrapper blanked out,
    and the file lines of the wrapper's opening and closing halves found in it."""
    statements = facts.statements
    if not facts.flagged:
        return Chunk(text, line, statements, facts.unterminated), None, None
    text, kept, opening, closing = _strip_wrapper(text, statements, path, first=first, last=last)
    for flagged in facts.flagged:
        problem = flagged.problem
        if problem is not None and flagged.statement is not opening and flagged.statement is not closing:
            raise MigrationFileError(problem.message, path, line + problem.line - 1)
    return (Chunk(text, line, kept, facts.unterminated),
            None if opening is None else line + opening.line - 1,
            None if closing is None else line + closing.line - 1)


def _strip_wrapper(text: str, statements: list[Statement], path: Path, *, first: bool, last: bool
                   ) -> tuple[str, list[Statement], Statement | None, Statement | None]:
    """The golang-migrate BEGIN;/COMMIT; wrapper: its first half can only open the file's first
    chunk and its second half end the last one. Returns the text with the halves found blanked out,
    the remaining statements, and the halves."""
    if first and last:
        stripped, kept = sqltext.strip_wrapper(text, statements, path)
        if len(kept) == len(statements):
            return text, statements, None, None
        return stripped, kept, statements[0], statements[-1]
    # Only one end of the file is here: blank its half, if any; the caller matches the two ends.
    opening = closing = None
    kept = statements
    if first and statements and sqltext.wrapper_kind(statements[0]) == "begin":
        opening = statements[0]
        text, kept = _blank_statement(text, opening), kept[1:]
    if last and kept and sqltext.wrapper_kind(kept[-1]) == "commit":
        closing = kept[-1]
        text, kept = _blank_statement(text, closing), kept[:-1]
    return text, kept, opening, closing


def _blank_statement(text: str, stmt: Statement) -> str:
    """``text`` with ``stmt`` and its ';' made spaces (line breaks kept, so lines stay the file's)."""
    end = text.find(";", stmt.end)
    end = len(text) if end < 0 else end + 1
    return text[:stmt.start] + re.sub(r"[^\r\n]", " ", text[stmt.start:end]) + text[end:]


def _stream_chunks(path: Path, protected: Protected, checksum: str | None) -> Iterator[Chunk]:
    """Read ``path`` and yield checked chunks of whole statements.

    The last statement of a buffer is always carried over to the next one: it may be cut off, and
    the file's last statement must be checked knowing it is the last (the COMMIT of a wrapper).
    A statement longer than a chunk is lexed again only once the buffer has doubled since the last
    try, so a long statement costs time linear in its length, not quadratic.
    """
    import hashlib

    digest = hashlib.sha256()
    normalise = files.Normaliser()
    buffer = ""
    line = 1
    first = True
    opened: int | None = None  # file line of a wrapper BEGIN blanked out of the first chunk
    # The first chunk is smaller: the server starts working sooner.
    want = max(1, CHUNK // 4)
    pieces = files.iter_text(path, chunk_size=want)
    while True:
        piece = next(pieces, None)
        if piece is not None:
            digest.update(normalise(piece).encode("utf-8"))
            buffer += piece
            if len(buffer) < want:
                continue
            lexed = sqltext.lex(buffer)
            statements = lexed[0]
            if len(statements) < 2:
                want = 2 * len(buffer)  # one statement longer than a chunk: read on until it ends
                continue
            want = CHUNK
            cut = statements[-1].start
            text = buffer[:cut]
            lexed = (statements[:-1], [m for m in lexed[1] if m < cut], None)
        else:
            digest.update(normalise("", final=True).encode("utf-8"))
            if checksum is not None and digest.hexdigest() != checksum:
                raise MigrationFileError("changed while it was being applied; run the command again", path)
            if not buffer.strip():
                return
            text, cut, lexed = buffer, len(buffer), sqltext.lex(buffer)
        checked, half_open, half_close = _check_piece(text, line, lexed, path, protected,
                                                      first=first, last=piece is None)
        if first:
            opened = half_open
        if piece is None and (opened is None) != (half_close is None):
            raise MigrationFileError(
                "the file opens with BEGIN but does not end with COMMIT; add the COMMIT, or remove the "
                "BEGIN (sqlmigrate runs the file in a transaction anyway)" if opened is not None else
                "the file ends with COMMIT but does not open with BEGIN; remove it, or wrap the whole file",
                path, opened if opened is not None else half_close,
            )
        yield checked
        first = False
        line += buffer.count("\n", 0, cut)
        buffer = buffer[cut:]
        if piece is None:
            return


def _check_piece(text: str, line: int, lexed: _Lexed, path: Path, protected: Protected, *,
                 first: bool, last: bool) -> tuple[Chunk, int | None, int | None]:
    """The checks of a transactional file, on one chunk of it (starting on file line ``line``)."""
    found = sqltext.triage(text, protected)
    facts = sqltext.analyse(text, found=found, lexed=lexed)
    if found.plain:
        return Chunk(text, line, facts.statements, facts.unterminated), None, None
    _refuse_meta_commands(facts, path, line)
    if first:
        sqltext.directives(text, path, facts.statements)  # a misplaced or unknown directive is an error
    elif found.risky:
        sqltext.reject_late(text, path, facts.statements, 0, line)
    _refuse_touching_history(facts, path, line)
    chunk, opened, closed = _check_transactional(text, line, facts, path, first=first, last=last)
    if last:
        _refuse_unterminated(facts, path)
    return chunk, opened, closed


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
