"""Facts about statements, without a database: transaction control, statements that cannot run
in a transaction, the BEGIN/COMMIT wrapper, statements aimed at sqlmigrate's own tables, and the
cheap byte scans that find the few statements worth that look."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ._errors import MigrationFileError
from ._lexer import META_HINT, TRIVIA, Statement, tokens


_Tok = tuple[str, str]  # (kind, text); words upper-cased in .upper() checks by callers


def _tokens(text: str, limit: int | None = None) -> list[_Tok]:
    """Significant tokens (no whitespace or comments) of a statement's text."""
    out: list[_Tok] = []
    for kind, s, e in tokens(text):
        if kind in TRIVIA:
            continue
        out.append((kind, text[s:e]))
        if limit is not None and len(out) >= limit:
            break
    return out


def _text_of(stmt: Statement | str) -> str:
    return stmt.text if isinstance(stmt, Statement) else stmt


def _up(tok: _Tok | None) -> str:
    """A word token upper-cased; anything else as written (punctuation) or '' past the end."""
    if tok is None:
        return ""
    return tok[1].upper() if tok[0] == "word" else tok[1]


def _at(toks: Sequence[_Tok], i: int) -> str:
    return _up(toks[i]) if i < len(toks) else ""


_TX_FIRST = frozenset(("BEGIN", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE"))


def is_transaction_control(stmt: Statement | str) -> bool:
    """BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK, ABORT, SAVEPOINT, RELEASE, PREPARE
    TRANSACTION and COMMIT/ROLLBACK PREPARED.  (``BEGIN ATOMIC`` never starts a statement.)"""
    toks = _tokens(_text_of(stmt), 3)
    first = _at(toks, 0)
    if first in _TX_FIRST:
        return True
    if first == "START" and _at(toks, 1) == "TRANSACTION":
        return True
    # PREPARE TRANSACTION 'gid', not PREPARE transaction AS ... (a prepared statement so named).
    return first == "PREPARE" and _at(toks, 1) == "TRANSACTION" and len(toks) > 2 and toks[2][0] == "str"


def _skip_parens(toks: Sequence[_Tok], i: int) -> tuple[int, list[_Tok]]:
    """If toks[i] is '(', return the index after its ')' and the tokens inside."""
    if _at(toks, i) != "(":
        return i, []
    depth = 0
    for j in range(i, len(toks)):
        c = _at(toks, j)
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return j + 1, list(toks[i + 1:j])
    return len(toks), list(toks[i + 1:])


def _option_on(options: Sequence[_Tok], name: str) -> bool:
    """Is option ``name`` set in a parenthesised option list like ``(CONCURRENTLY, VERBOSE false)``?"""
    for k, tok in enumerate(options):
        if _up(tok) == name:
            value = _at(options, k + 1)
            return value.upper().strip("'") not in ("FALSE", "OFF", "0", "NO")
    return False


_WHY = "cannot run inside a transaction block"


def needs_no_transaction(stmt: Statement | str) -> str | None:
    """Why this statement cannot run inside a transaction block, or None if it can."""
    toks = _tokens(_text_of(stmt), 40)
    a, b, c = _at(toks, 0), _at(toks, 1), _at(toks, 2)
    why = _WHY
    if a == "CREATE":
        i = 2 if b == "UNIQUE" else 1
        if _at(toks, i) == "INDEX" and _at(toks, i + 1) == "CONCURRENTLY":
            return f"CREATE INDEX CONCURRENTLY {why}"
        if b in ("DATABASE", "TABLESPACE"):
            return f"CREATE {b} {why}"
    elif a == "DROP":
        if b == "INDEX" and c == "CONCURRENTLY":
            return f"DROP INDEX CONCURRENTLY {why}"
        if b in ("DATABASE", "TABLESPACE"):
            return f"DROP {b} {why}"
    elif a == "REINDEX":
        i, options = _skip_parens(toks, 1)
        kind = _at(toks, i)
        if _option_on(options, "CONCURRENTLY") or _at(toks, i + 1) == "CONCURRENTLY":
            return f"REINDEX CONCURRENTLY {why}"
        if kind in ("DATABASE", "SYSTEM", "SCHEMA"):
            return f"REINDEX {kind} {why}"
    elif a == "VACUUM":
        return f"VACUUM {why}"
    elif a == "ALTER":
        if b == "SYSTEM":
            return f"ALTER SYSTEM {why}"
        if b == "DATABASE" and _at(toks, 3) == "SET" and _at(toks, 4) == "TABLESPACE":
            return f"ALTER DATABASE ... SET TABLESPACE {why}"
    elif a == "CLUSTER":
        i, _ = _skip_parens(toks, 1)
        if _at(toks, i) == "VERBOSE":
            i += 1
        if i >= len(toks):
            return f"CLUSTER without a table name {why}"
    elif a in ("COMMIT", "ROLLBACK") and b == "PREPARED":
        return f"{a} PREPARED {why}"
    elif a == "DISCARD" and b == "ALL":
        return f"DISCARD ALL {why}"
    return None


@dataclass(frozen=True)
class TransactionProblem:
    """A statement that cannot be part of a transactional migration."""

    statement: Statement
    kind: str
    """``"transaction control"`` or ``"needs no-transaction"``."""
    message: str

    @property
    def line(self) -> int:
        return self.statement.line


def _is_savepoint(stmt: Statement) -> bool:
    """SAVEPOINT, RELEASE [SAVEPOINT] and ROLLBACK [WORK|TRANSACTION] TO [SAVEPOINT]."""
    w = stmt.keywords
    if w[:1] in (("SAVEPOINT",), ("RELEASE",)):
        return True
    return w[:1] in (("ROLLBACK",), ("ABORT",)) and "TO" in w[1:3]


def transaction_problem(stmt: Statement) -> TransactionProblem | None:
    """Why ``stmt`` cannot run in sqlmigrate's transaction (call after :func:`strip_wrapper`), with
    what to do instead; None if it can."""
    reason = needs_no_transaction(stmt)
    if reason is not None:
        what = reason[: -len(_WHY) - 1]
        return TransactionProblem(
            stmt, "needs no-transaction",
            f"{what} cannot run inside a transaction; add '-- sqlmigrate: no-transaction' as the first "
            "line of the file (it then runs statement by statement, without a transaction)")
    if not is_transaction_control(stmt):
        return None
    words = " ".join(stmt.text.split())  # as written, on one line
    words = words if len(words) <= 40 else words[:37] + "..."
    if _is_savepoint(stmt):
        return TransactionProblem(
            stmt, "transaction control",
            f"transaction control ({words}): savepoints are not needed here; remove it. The file "
            "already runs as one transaction, all or nothing (and without a transaction, under "
            "'-- sqlmigrate: no-transaction', a savepoint cannot work at all)")
    return TransactionProblem(
        stmt, "transaction control",
        f"transaction control ({words}) inside a migration that runs in a transaction: sqlmigrate "
        "wraps each file in one transaction itself. Remove it (a leading BEGIN with a trailing "
        "COMMIT is allowed), or add '-- sqlmigrate: no-transaction' as the first line to manage "
        "transactions yourself")


def transaction_problems(statements: Sequence[Statement]) -> list[TransactionProblem]:
    """Statements that make a file unfit to run inside sqlmigrate's transaction (call after
    :func:`strip_wrapper`): transaction control, and statements that need ``no-transaction``."""
    return [p for p in map(transaction_problem, statements) if p is not None]


def wrapper_kind(stmt: Statement) -> str | None:
    """``"begin"`` or ``"commit"`` if ``stmt`` can be half of a plain BEGIN;/COMMIT; wrapper."""
    words = _tokens(stmt.text, 4)
    if any(kind != "word" for kind, _ in words):
        return None
    w = tuple(t.upper() for _, t in words)
    if w in (("BEGIN",), ("BEGIN", "WORK"), ("BEGIN", "TRANSACTION"), ("START", "TRANSACTION")):
        return "begin"
    if w in (("COMMIT",), ("COMMIT", "WORK"), ("COMMIT", "TRANSACTION"),
             ("END",), ("END", "WORK"), ("END", "TRANSACTION")):
        return "commit"
    return None


def _blank(text: str, start: int, end: int) -> str:
    """text[start:end] with every character but line breaks replaced by a space."""
    return re.sub(r"[^\r\n]", " ", text[start:end])


def strip_wrapper(text: str, statements: Sequence[Statement],
                  path: Path | None = None) -> tuple[str, list[Statement]]:
    """Absorb a golang-migrate style ``BEGIN; ... COMMIT;`` wrapper.

    If the first statement is ``BEGIN [WORK|TRANSACTION]`` / ``START TRANSACTION`` and the last is
    ``COMMIT [WORK|TRANSACTION]`` / ``END``, return the text with exactly those two statements and
    their ';' blanked out (offsets and line numbers unchanged) and the statements in between.
    Only one of the pair raises :class:`MigrationFileError` naming its line; no wrapper returns the
    input unchanged."""
    stmts = list(statements)
    if not stmts:
        return text, stmts
    opening = wrapper_kind(stmts[0]) == "begin"
    closing = wrapper_kind(stmts[-1]) == "commit"
    if not opening and not closing:
        return text, stmts
    if opening and not closing:
        raise MigrationFileError(
            f"'{stmts[0].text}' opens a transaction that the file never commits; sqlmigrate runs "
            "each migration in a transaction itself: remove it, or end the file with COMMIT;",
            path, stmts[0].line)
    if closing and not opening:
        if len(stmts) > 1 and is_transaction_control(stmts[0]):
            raise MigrationFileError(
                f"'{' '.join(stmts[0].text.split())}' sets transaction options sqlmigrate cannot "
                "honour; only a plain 'BEGIN;' ... 'COMMIT;' wrapper is absorbed",
                path, stmts[0].line)
        raise MigrationFileError(
            f"'{stmts[-1].text}' commits a transaction the file never began; sqlmigrate runs each "
            "migration in a transaction itself: remove it, or start the file with BEGIN;",
            path, stmts[-1].line)
    pieces = []
    last = 0
    for stmt in (stmts[0], stmts[-1]):
        semi = _semicolon_after(text, stmt.end)
        pieces.append(text[last:stmt.start])
        pieces.append(_blank(text, stmt.start, stmt.end))
        last = stmt.end
        if semi is not None:
            pieces.append(text[stmt.end:semi] + " ")
            last = semi + 1
    pieces.append(text[last:])
    return "".join(pieces), stmts[1:-1]


def _semicolon_after(text: str, pos: int) -> int | None:
    for kind, s, _e in tokens(text, pos):
        if kind in TRIVIA:
            continue
        return s if kind == "semi" else None
    return None


# --------------------------------------------------------------------------------------------
# Cheap whole-file checks
# --------------------------------------------------------------------------------------------

_SCAN_WORDS = (
    "begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release", "prepare",
    "concurrently", "vacuum", "database", "tablespace", "system", "cluster", "discard", "reindex",
)


def _grouped(words: Sequence[str]) -> bytes:
    """``b(?:egin)|s(?:tart|ystem)|...``: the regex engine then skips every position whose byte
    cannot start a word without trying the alternatives (3x faster than a flat alternation)."""
    by_first: dict[str, list[str]] = {}
    for w in words:
        by_first.setdefault(w[0], []).append(re.escape(w[1:]))
    return "|".join(f"{c}(?:{'|'.join(rest)})" for c, rest in by_first.items()).encode()


# Run on ASCII-lowered UTF-8 bytes (PostgreSQL folds only ASCII letters of bare words).  Only the
# end of a word is checked by the regex; its start is checked in Python on the few hits, because a
# leading look-behind makes the engine several times slower.
_SCAN_RE = re.compile(b"(?:" + _grouped(_SCAN_WORDS) + rb")\b")
_IDBYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$") | frozenset(range(128, 256))
_CHUNK = 1 << 22


def _lowered_chunks(text: str, overlap: int, start: int = 0) -> Iterator[tuple[bool, bytes]]:
    """ASCII-lowered UTF-8 pieces of ``text`` (bounded memory), each starting one character early
    so a hit's preceding character is in the same piece, and overlapping the next by ``overlap``.
    Yields ``(first, piece)``; in all but the first piece, ignore hits at offset 0."""
    for first, _lo, piece in _located_chunks(text, overlap, start):
        yield first, piece


def _located_chunks(text: str, overlap: int, start: int = 0) -> Iterator[tuple[bool, int, bytes]]:
    """:func:`_lowered_chunks`, with the offset in ``text`` each piece starts at."""
    n = len(text)
    i = start
    while True:
        lo = max(start, i - 1)
        yield i == start, lo, text[lo:i + _CHUNK + overlap].encode("utf-8", "surrogatepass").lower()
        i += _CHUNK
        if i >= n:
            return


def _char_offsets(piece: bytes, lo: int, hits: list[int]) -> list[int]:
    """Offsets in the text of the (sorted) byte offsets ``hits`` of a piece that starts at ``lo``;
    each hit starts on a character (an ASCII letter)."""
    if piece.isascii():
        return [lo + k for k in hits]
    out = []
    chars, last = lo, 0
    for k in hits:  # decode each stretch once: linear, however many hits
        chars += len(piece[last:k].decode("utf-8", "surrogatepass"))
        last = k
        out.append(chars)
    return out


def word_scan(text: str, names: Sequence[str] = ()) -> tuple[list[int], list[list[int]]]:
    """The byte searches that decide which statements deserve a closer look, on one ASCII-lowered
    encoding of ``text``: the offsets of words that can make a statement matter to the checks
    (transaction control, statements that need no-transaction, the ``sqlmigrate`` of a directive),
    and for each of ``names`` the offsets where that identifier appears as a whole word, bare or
    double-quoted.  Most files have no hit at all.  False positives (a word in a string) are fine."""
    needles = [_needles(name) for name in names]
    overlap = max([16] + [len(x) + 1 for group in needles for x in group])
    risky: list[int] = []
    found: list[list[int]] = [[] for _ in names]
    pieces = ([(True, 0, text.encode("utf-8", "surrogatepass").lower())] if len(text) <= _CHUNK
              else _located_chunks(text, overlap))  # most texts: one piece, no generator
    for first, lo, piece in pieces:
        m = _SCAN_RE.search(piece)  # usually None: no iterator, no call
        hits = [] if m is None else _hits(piece, first, _SCAN_RE.finditer(piece, m.start()), word_start=True)
        if b"sqlmigrate" in piece:  # anywhere: it may follow "--" directly
            hits = sorted(hits + _hits(piece, first, _MARK_RE.finditer(piece), word_start=False))
        _extend(risky, _char_offsets(piece, lo, hits))
        for group, out in zip(needles, found):
            if any(needle in piece for needle in group):
                matches = re.finditer(b"|".join(map(re.escape, group)), piece)
                _extend(out, _char_offsets(piece, lo, _hits(piece, first, matches, word_start=True, whole=True)))
    return risky, found


def risky_offsets(text: str) -> list[int]:
    """The first half of :func:`word_scan`."""
    return word_scan(text)[0]


def name_offsets(text: str, name: str) -> list[int]:
    """The offsets of one name, as :func:`word_scan` finds them."""
    return word_scan(text, [name])[1][0]


_MARK_RE = re.compile(b"sqlmigrate")


@lru_cache(maxsize=64)
def _needles(name: str) -> tuple[bytes, ...]:
    needles: tuple[bytes, ...] = (name.encode("utf-8", "surrogatepass").lower(),)
    if '"' in name:
        needles = (name.replace('"', '""').encode("utf-8", "surrogatepass").lower(), *needles)  # longer first
    return needles


def _hits(piece: bytes, first: bool, matches: Iterator[re.Match[bytes]], *, word_start: bool,
          whole: bool = False) -> list[int]:
    hits = []
    for m in matches:
        k = m.start()
        if k == 0 and not first:
            continue  # seen by the previous piece
        if k > 0 and word_start and piece[k - 1] in _IDBYTES:
            continue
        if whole and m.end() < len(piece) and piece[m.end()] in _IDBYTES:
            continue
        hits.append(k)
    return hits


def _extend(out: list[int], offsets: list[int]) -> None:
    # Pieces overlap: a hit in the overlap is found twice.
    out.extend(o for o in offsets if not out or o > out[-1])


def needs_scan(text: str) -> bool:
    """False only if the file certainly holds no transaction control, no statement that needs
    ``no-transaction``, no psql meta-command and no ``sqlmigrate:`` directive, so it can be sent
    to the server whole without splitting.  False positives (a word in a string) are fine.

    A few regex searches over the whole text, no tokenising."""
    if "\\" in text and META_HINT.search(text) is not None:
        return True
    for first, piece in _lowered_chunks(text, 16):
        if b"sqlmigrate" in piece:
            return True
        for m in _SCAN_RE.finditer(piece):
            k = m.start()
            if k == 0:
                if first:
                    return True
                continue  # seen by the previous piece
            if piece[k - 1] not in _IDBYTES:
                return True
    return False


def mentions(text: str, name: str) -> bool:
    """Cheap, case-insensitive (ASCII): does identifier ``name`` appear as a whole word, bare or
    double-quoted?  False positives (in a string or comment, or another case) are fine."""
    needles = {name.encode("utf-8", "surrogatepass").lower()}
    if '"' in name:
        needles.add(name.replace('"', '""').encode("utf-8", "surrogatepass").lower())
    overlap = max(len(x) for x in needles) + 1
    for first, piece in _lowered_chunks(text, overlap):
        for needle in needles:
            k = piece.find(needle)
            while k >= 0:
                after = k + len(needle)
                if (k > 0 or first) and (k == 0 or piece[k - 1] not in _IDBYTES) and (
                        after >= len(piece) or piece[after] not in _IDBYTES):
                    return True
                k = piece.find(needle, k + 1)
    return False


def _ident(tok: _Tok) -> str | None:
    """The identifier a token denotes, as PostgreSQL stores it, or None."""
    kind, raw = tok
    if kind == "word":
        # PostgreSQL folds only ASCII letters of unquoted identifiers (in UTF-8 databases).
        return raw.translate(_ASCII_LOWER)
    if kind == "qid" and len(raw) >= 2 and raw.endswith('"'):
        return raw[1:-1].replace('""', '"')
    return None


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _qualified(toks: Sequence[_Tok], i: int) -> tuple[list[str], int]:
    """Parse ``a``, ``a.b`` or ``a.b.c`` at toks[i]; return the parts and the next index."""
    parts: list[str] = []
    while i < len(toks):
        name = _ident(toks[i])
        if name is None:
            break
        parts.append(name)
        i += 1
        if _at(toks, i) != ".":
            break
        i += 1
    return parts, i


def _name_matches(parts: Sequence[str], table: str, schema: str | None) -> bool:
    if not parts or parts[-1] != table:
        return False
    return len(parts) == 1 or schema is None or parts[-2] == schema


def _name_list(toks: Sequence[_Tok], i: int, table: str, schema: str | None, *,
               only: bool = False) -> bool:
    """Does the comma-separated list of (ONLY-prefixed, *-suffixed) names at toks[i] hold table?"""
    while i < len(toks):
        if only and _at(toks, i) == "ONLY":
            i += 1
        parts, i = _qualified(toks, i)
        if _name_matches(parts, table, schema):
            return True
        if _at(toks, i) == "*":
            i += 1
        if _at(toks, i) != ",":
            return False
        i += 1
    return False


def _skip_if_exists(toks: Sequence[_Tok], i: int) -> int:
    return i + 2 if _at(toks, i) == "IF" and _at(toks, i + 1) == "EXISTS" else i


def targets_table(stmt: Statement | str, table: str, schema: str | None = None) -> str | None:
    """If the statement would DROP, TRUNCATE, ALTER (or rename), DELETE FROM or UPDATE the table
    ``table`` (optionally qualified by ``schema``), or DROP SCHEMA ``schema`` ... CASCADE, return
    the verb (``"drop"``, ``"truncate"``, ``"alter"``, ``"rename"``, ``"delete from"``,
    ``"update"``, ``"drop schema"``); else None.  ``table`` and ``schema`` are names as stored
    (bare identifiers in the SQL fold to lower case, quoted ones compare exactly).  An unqualified
    name in the SQL counts as a match (it may resolve to ``schema`` through search_path); a
    qualified one must name ``schema`` unless ``schema`` is None."""
    text = _text_of(stmt)
    if not (mentions(text, table) or (schema is not None and mentions(text, schema))):
        return None  # the common case, without tokenising a possibly huge statement
    toks = _tokens(text)
    a, b = _at(toks, 0), _at(toks, 1)
    if a == "DROP" and b == "TABLE":
        return "drop" if _name_list(toks, _skip_if_exists(toks, 2), table, schema) else None
    if a == "TRUNCATE":
        i = 2 if b == "TABLE" else 1
        return "truncate" if _name_list(toks, i, table, schema, only=True) else None
    if a == "ALTER" and b == "TABLE":
        i = _skip_if_exists(toks, 2)
        if _at(toks, i) == "ONLY":
            i += 1
        parts, i = _qualified(toks, i)
        if not _name_matches(parts, table, schema):
            return None
        return "rename" if any(_up(t) == "RENAME" for t in toks[i:]) else "alter"
    if a == "DROP" and b == "SCHEMA":
        if schema is None or not any(_up(t) == "CASCADE" for t in toks):
            return None
        i = _skip_if_exists(toks, 2)
        while i < len(toks):
            if _ident(toks[i]) == schema:
                return "drop schema"
            i += 1
            if _at(toks, i) != ",":
                break
            i += 1
        return None
    # DELETE and UPDATE may sit in a WITH clause or a rule: look everywhere.
    for k, tok in enumerate(toks):
        if tok[0] != "word":
            continue
        w = tok[1].upper()
        if w == "DELETE" and _at(toks, k + 1) == "FROM":
            i = k + 2
            if _at(toks, i) == "ONLY":
                i += 1
            parts, _ = _qualified(toks, i)
            if _name_matches(parts, table, schema):
                return "delete from"
        elif w == "UPDATE":
            i = k + 1
            if _at(toks, i) == "ONLY":
                i += 1
            parts, i = _qualified(toks, i)
            if not _name_matches(parts, table, schema):
                continue
            if _at(toks, i) == "*":
                i += 1
            if _at(toks, i) == "AS":
                i += 1
            if _at(toks, i) != "SET" and i < len(toks) and _ident(toks[i]) is not None:
                i += 1  # alias
            if _at(toks, i) == "SET":
                return "update"
    return None



def contains_word(text: str, word: str, start: int = 0) -> bool:
    """Cheap: does ``word`` (lower-case ASCII) occur in ``text`` from ``start`` on, in any case?"""
    needle = word.encode()
    return any(needle in piece for _, piece in _lowered_chunks(text, len(needle), start))
