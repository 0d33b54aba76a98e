"""Understanding SQL text without a database: statement splitting, directives and classification.

Files of up to 100 MB of ``INSERT`` statements go through here, so the splitter never loops over
characters in Python: one compiled regular expression consumes everything that cannot end a
statement (plain text, closed strings, quoted identifiers, line comments) in C, with possessive
quantifiers so the regex engine keeps no backtracking state, and Python only handles the rare
tokens that need judgement (``;``, dollar quotes, block comments, backslashes, unterminated
quotes).  ``CREATE FUNCTION/PROCEDURE`` statements, whose ``BEGIN ATOMIC ... END`` bodies contain
semicolons, take a slower token-by-token path that tracks nesting the way psql does.

The lexical rules are PostgreSQL's with ``standard_conforming_strings`` on: ``'...'`` with ``''``,
``E'...'`` with backslash escapes, ``"..."`` identifiers with ``""``, ``$tag$...$tag$`` dollar
quotes (``$1`` and ``a$b`` are not), ``--`` comments and nested ``/* */`` comments.  Line numbers
count ``\\n``, so CRLF files number like their LF checkout.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from sqlmigrate._errors import MigrationFileError

__all__ = [
    "Directives",
    "Scan",
    "Statement",
    "TransactionProblem",
    "directives",
    "is_transaction_control",
    "iter_statements",
    "line_at",
    "mentions",
    "meta_commands",
    "needs_no_transaction",
    "needs_scan",
    "scan",
    "split",
    "strip_wrapper",
    "targets_table",
    "transaction_problems",
    "unterminated",
]

# --------------------------------------------------------------------------------------------
# Lexical building blocks
# --------------------------------------------------------------------------------------------

# PostgreSQL's whitespace; NOT Python's str.isspace(), which would also eat U+00A0 and friends
# that PostgreSQL treats as identifier characters.
_WS = " \t\n\r\f\v"
# Identifier characters as PostgreSQL sees them: ASCII letters, digits, _ and $, and every
# character >= 0x80.  Written as negated ASCII classes, which compile ~10x faster than a
# \x80-\U0010ffff range.  Use each inside [...].
_IDC = r"^\x00-\x23\x25-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f"  # continues an identifier
_IDSTART = r"^\x00-\x40\x5b-\x5e\x60\x7b-\x7f"  # starts one: no digits, no $
_TAG = r"[^\x00-\x40\x5b-\x5e\x60\x7b-\x7f][^\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]*"  # $tag$: no $

# Possessive quantifiers (Python 3.11+) let the engine drop backtracking state as it goes: with
# plain greedy repetition a 9 MB statement costs ~300 MB of regex stack.  On 3.10 the outer
# repetition is done by a Python loop instead (slower, same result).
_POSSESSIVE = sys.version_info >= (3, 11)
_P = "+" if _POSSESSIVE else ""

_BODY_ALTERNATIVES = "|".join(
    [
        # Anything that cannot start a token needing attention.  Letters are in here, so an E'...'
        # string is recognised by looking behind the quote.
        rf"[^'\";$/\\\-]+{_P}",
        # Comments are left to Python, which must know where the last one of a statement ends.
        r"-(?!-)",
        r"/(?!\*)",
        # E'...' (backslash escapes): a quote preceded by an E that does not continue an identifier.
        rf"(?<=[Ee])(?<![{_IDC}][Ee])'[^'\\]*{_P}(?:(?:\\.|'')[^'\\]*{_P})*{_P}'(?!')",
        # '...' and U&'...', B'...', X'...', N'...', or a quote after an identifier (date'2020-01-01').
        # A closing quote is never followed by another (that would be an escaped quote): without
        # possessive quantifiers (3.10) the engine would otherwise backtrack into a wrong split.
        rf"(?:(?<![Ee])|(?<=[{_IDC}][Ee]))'[^']*{_P}(?:''[^']*{_P})*{_P}'(?!')",
        rf"\"[^\"]*{_P}(?:\"\"[^\"]*{_P})*{_P}\"(?!\")",
        # A $ continuing an identifier (a$b) or not opening a dollar quote ($1) is plain text.
        rf"(?<=[{_IDC}])\$",
        rf"\$(?!{_TAG}\$|\$)",
    ]
)
if _POSSESSIVE:
    _BODY = re.compile(f"(?:{_BODY_ALTERNATIVES})*+", re.S)

    def _body_end(text: str, pos: int) -> int:
        return _BODY.match(text, pos).end()  # type: ignore[union-attr]  # matches the empty string

    # Whitespace and line comments, then a statement's body (group 1 starts at the statement):
    # one regex call per statement in the common case.
    _STMT: re.Pattern[str] | None = re.compile(
        f"(?:[{_WS}]++|--[^\n]*+)*+((?:{_BODY_ALTERNATIVES})*+)", re.S)
else:  # pragma: no cover - exercised only on Python 3.10
    _BODY = re.compile(f"(?:{_BODY_ALTERNATIVES})", re.S)
    _STMT = None

    def _body_end(text: str, pos: int) -> int:
        match = _BODY.match
        while True:
            m = match(text, pos)
            if m is None or m.end() == pos:
                return pos
            pos = m.end()


# Whitespace and line comments between statements.
_LEAD = re.compile(rf"(?:[{_WS}]+{_P}|--[^\n]*{_P})*{_P}")

# Full tokenizer for the slow paths (routine bodies, classification, trailing-comment trimming).
_TOKEN = re.compile(
    "|".join(
        [
            rf"(?P<ws>[{_WS}]+)",
            r"(?P<lc>--[^\n]*)",
            r"(?P<bc>/\*)",
            r"(?P<es>[Ee]'[^'\\]*(?:(?:\\.?|'')[^'\\]*)*(?:'|(?P<ues>)))",
            rf"(?P<word>[{_IDSTART}][{_IDC}]*)",
            r"(?P<str>'[^']*(?:''[^']*)*(?:'|(?P<ustr>)))",
            r"(?P<qid>\"[^\"]*(?:\"\"[^\"]*)*(?:\"|(?P<uqid>)))",
            rf"(?P<dq>\$(?:{_TAG})?\$)",
            r"(?P<param>\$\d+)",
            r"(?P<num>\d[\w.]*)",
            r"(?P<semi>;)",
            r"(?P<bs>\\)",
            r"(?P<op>.)",
        ]
    ),
    re.S,
)
_IDCHAR = re.compile(f"[{_IDC}]")
_DOLLAR_OPEN = re.compile(rf"\$(?:{_TAG})?\$")
_COMMENT_MARK = re.compile(r"/\*|\*/")
_META_HINT = re.compile(r"^[ \t\r\f\v]*\\", re.M)


class _State:
    """What a scan noticed on the way: psql meta-commands and an unterminated construct."""

    __slots__ = ("meta", "unterminated")

    def __init__(self) -> None:
        self.meta: list[int] = []  # offsets of the backslashes
        self.unterminated: tuple[str, int] | None = None  # (kind, offset of its start)


def _is_line_start(text: str, pos: int) -> bool:
    line_start = text.rfind("\n", 0, pos) + 1
    return not text[line_start:pos].strip(" \t\r\f\v")


def _eol(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def _block_comment_end(text: str, pos: int, st: _State | None) -> int:
    """End of the (nested) block comment starting at ``pos``; len(text) if it never closes."""
    depth = 1
    search = _COMMENT_MARK.search
    p = pos + 2
    while True:
        m = search(text, p)
        if m is None:
            if st is not None and st.unterminated is None:
                st.unterminated = ("comment", pos)
            return len(text)
        p = m.end()
        if m.group() == "/*":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return p


def _dollar_end(text: str, pos: int, tag: str, st: _State | None) -> int:
    close = text.find(tag, pos + len(tag))
    if close < 0:
        if st is not None and st.unterminated is None:
            st.unterminated = ("dollar-quoted string", pos)
        return len(text)
    return close + len(tag)


def _lex(text: str, pos: int = 0, endpos: int | None = None,
         st: _State | None = None) -> Iterator[tuple[str, int, int]]:
    """Yield ``(kind, start, end)`` tokens; kinds are the group names of ``_TOKEN`` plus
    ``meta`` (a psql meta-command line).  Block comments and dollar quotes are whole tokens."""
    n = len(text) if endpos is None else endpos
    match = _TOKEN.match
    while pos < n:
        m = match(text, pos, n)
        assert m is not None  # the last alternative matches any character
        kind = m.lastgroup
        end = m.end()
        if kind == "bc":
            end = min(_block_comment_end(text, pos, st), n)
        elif kind == "dq":
            end = min(_dollar_end(text, pos, m.group(), st), n)
        elif kind in ("es", "str", "qid"):
            if kind == "es":
                kind = "str"  # an E'...' string is a string
            if end == len(text) and (m.group("ues") is not None or m.group("ustr") is not None
                                     or m.group("uqid") is not None):
                if st is not None and st.unterminated is None:
                    st.unterminated = ("quoted identifier" if kind == "qid" else "string", pos)
        elif kind == "bs" and _is_line_start(text, pos):
            if st is not None:
                st.meta.append(pos)
            kind = "meta"
            end = min(_eol(text, pos), n)
        elif kind == "bs":
            kind = "op"
        yield kind, pos, end  # type: ignore[misc]
        pos = end


_TRIVIA = frozenset(("ws", "lc", "bc"))


def _attention(text: str, p: int, st: _State) -> int:
    """Handle the token at ``p`` that the fast regex stopped at (never ``;``); return where to go on."""
    c = text[p]
    if c == "/":  # the regex lets every '/' through except '/*'
        return _block_comment_end(text, p, st)
    if c == "$":
        m = _DOLLAR_OPEN.match(text, p)
        if m is None:  # pragma: no cover - the regex consumes every other '$'
            return p + 1
        return _dollar_end(text, p, m.group(), st)
    if c == "\\":
        if _is_line_start(text, p):
            st.meta.append(p)
            return _eol(text, p)
        return p + 1
    if c in "'\"":
        start = p
        if c == "'" and p and text[p - 1] in "eE" and (p < 2 or not _IDCHAR.match(text, p - 2)):
            start = p - 1
        # Only reached for a quote that does not close (or on Python 3.10): let the tokenizer decide.
        tok = next(_lex(text, start, None, st))
        return max(tok[2], p + 1)
    return p + 1  # pragma: no cover - defensive, the regex consumes everything else


def _skip_lead(text: str, pos: int, st: _State) -> int:
    """Skip whitespace, comments and empty statements; return the start of the next statement."""
    n = len(text)
    lead = _LEAD.match
    while True:
        pos = lead(text, pos).end()  # type: ignore[union-attr]  # the pattern matches the empty string
        if pos >= n:
            return n
        c = text[pos]
        if c == ";":
            pos += 1
        elif c == "/" and text.startswith("/*", pos):
            pos = _block_comment_end(text, pos, st)
        else:
            return pos


def _leading_words(text: str, pos: int, limit: int, endpos: int | None = None) -> list[str]:
    """The first ``limit`` bare words from ``pos``, stopping at the first token that is not one."""
    words: list[str] = []
    for kind, s, e in _lex(text, pos, endpos):
        if kind in _TRIVIA:
            continue
        if kind != "word":
            break
        words.append(text[s:e].upper())
        if len(words) >= limit:
            break
    return words


def _is_routine(text: str, pos: int) -> bool:
    """Does the statement at ``pos`` start ``CREATE [OR REPLACE] {FUNCTION|PROCEDURE}``?"""
    w = _leading_words(text, pos, 4)
    if len(w) < 2 or w[0] != "CREATE":
        return False
    if w[1] in ("FUNCTION", "PROCEDURE"):
        return True
    return len(w) == 4 and w[1] == "OR" and w[2] == "REPLACE" and w[3] in ("FUNCTION", "PROCEDURE")


def _routine_end(text: str, pos: int, st: _State) -> tuple[int, int]:
    """Position of the ';' ending a CREATE FUNCTION/PROCEDURE statement, tracking ``BEGIN ATOMIC``
    bodies as psql does: at parenthesis depth 0, BEGIN opens, CASE opens inside a BEGIN, END closes;
    a ';' ends the statement only at depth 0 outside parentheses.  Returns that position (or
    len(text)) and the end of the statement's last token."""
    depth = 0
    parens = 0
    last = pos
    for kind, s, e in _lex(text, pos, None, st):
        if kind in _TRIVIA:
            continue
        if kind == "semi" and parens == 0 and depth == 0:
            return s, last
        last = e
        if kind == "word":
            if parens == 0 and 3 <= e - s <= 5:
                w = text[s:e].lower()
                if w == "begin":
                    depth += 1
                elif w == "case":
                    if depth >= 1:
                        depth += 1
                elif w == "end":
                    if depth > 0:
                        depth -= 1
        elif kind == "op":
            c = text[s]
            if c == "(":
                parens += 1
            elif c == ")" and parens > 0:
                parens -= 1
    return len(text), last


def _rstrip(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1] in _WS:
        end -= 1
    return end


def _statements(text: str, st: _State) -> Iterator[Statement]:
    """Yield every statement; the core of the splitter.

    This loop runs once per statement of files with millions of them: keep it lean."""
    n = len(text)
    stmt_match = None if _STMT is None else _STMT.match
    body_end = _body_end
    ws = _WS
    count = text.count
    new = object.__new__
    cls = Statement
    line = 1
    last = 0
    pos = 1 if text.startswith("\ufeff") else 0  # a BOM is not part of the first statement
    while True:
        if stmt_match is not None:
            m = stmt_match(text, pos)
            assert m is not None  # every alternative can match the empty string
            start = m.start(1)
            p = m.end()  # the body is already scanned up to its first token needing attention
        else:
            start = p = -1
        if start < 0 or (start < n and text[start] in ";/"):  # '/*' or an empty statement: slow
            start = _skip_lead(text, pos, st)
            p = body_end(text, start)
        if start >= n:
            return
        c = text[start]
        if (c == "c" or c == "C") and text[start:start + 6].lower() == "create" and _is_routine(text, start):
            p, end = _routine_end(text, start, st)
        else:
            comments: list[tuple[int, int]] | None = None
            while p < n and text[p] != ";":
                c = text[p]
                if c == "-":  # the regex stops at '--' only
                    e = _eol(text, p)
                elif c == "/" and text.startswith("/*", p):
                    e = _block_comment_end(text, p, st)
                else:
                    p = body_end(text, _attention(text, p, st))
                    continue
                if comments is None:
                    comments = []
                comments.append((p, e))
                p = body_end(text, e)
            end = p
            while text[end - 1] in ws:  # never runs past start: text[start] is not whitespace
                end -= 1
            # Trailing comments are not part of the statement.
            while comments and comments[-1][1] >= end:
                end = _rstrip(text, start, comments.pop()[0])
        if p >= n and st.unterminated is not None:
            end = n  # the file ends inside this statement's string/comment: keep it whole
        if end > start:
            line += count("\n", last, start)
            last = start
            # Statement(...) with its frozen-dataclass __init__ costs twice as much, per statement.
            stmt = new(cls)
            d = stmt.__dict__
            d["text"] = text[start:end]
            d["start"] = start
            d["line"] = line
            yield stmt
        pos = p + 1


# --------------------------------------------------------------------------------------------
# Public API: splitting
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    """One SQL statement of a file, as written there."""

    text: str
    """Exact source text from its first token to the last token before its terminating ';'."""
    start: int
    """Offset of ``text[0]`` in the file text: ``file_text[start:start + len(text)] == text``."""
    line: int
    """1-based line of ``start``."""

    @property
    def end(self) -> int:
        """Offset just past the statement's last character."""
        return self.start + len(self.text)

    @cached_property
    def keywords(self) -> tuple[str, ...]:
        """The leading bare words (up to 4) outside comments, upper-cased, e.g.
        ``('CREATE', 'UNIQUE', 'INDEX', 'CONCURRENTLY')``; stops at the first other token."""
        return tuple(_leading_words(self.text, 0, 4))


@dataclass(frozen=True)
class Scan:
    """Everything one pass over a file finds."""

    statements: tuple[Statement, ...]
    meta_commands: tuple[int, ...]
    """Lines of psql meta-commands."""
    unterminated: tuple[str, int] | None
    """``(kind, line)`` if the file ends inside a string, quoted identifier, dollar quote or comment."""


def line_at(text: str, offset: int) -> int:
    """1-based line number of the 0-based character ``offset``."""
    return text.count("\n", 0, offset) + 1


def iter_statements(text: str) -> Iterator[Statement]:
    """Yield the statements of ``text`` lazily, in order (memory beyond the input: one statement)."""
    return _statements(text, _State())


def split(text: str) -> list[Statement]:
    """All statements of ``text``, in order."""
    return list(_statements(text, _State()))


def scan(text: str) -> Scan:
    """Statements, meta-command lines and an unterminated construct, in a single pass."""
    st = _State()
    statements = tuple(_statements(text, st))
    return Scan(
        statements,
        tuple(sorted({line_at(text, off) for off in st.meta})),
        None if st.unterminated is None else (st.unterminated[0], line_at(text, st.unterminated[1])),
    )


def meta_commands(text: str) -> list[int]:
    """Lines of psql meta-commands (a line whose first non-blank character is a backslash, outside
    any string, quoted identifier or comment); ``[]`` if there are none."""
    if "\\" not in text or _META_HINT.search(text) is None:  # str.find is 100x faster than re
        return []
    return list(scan(text).meta_commands)


def unterminated(text: str) -> tuple[str, int] | None:
    """``("string"|"quoted identifier"|"dollar-quoted string"|"comment", line)`` if the file ends
    inside one (line of where it began), else None."""
    return scan(text).unterminated


# --------------------------------------------------------------------------------------------
# Directives
# --------------------------------------------------------------------------------------------

KNOWN_DIRECTIVES = ("no-transaction",)
_DIRECTIVE = re.compile(r"--[ \t]*sqlmigrate[ \t]*:(.*)", re.I)
_DIRECTIVE_HIT = re.compile(r"sqlmigrate[ \t]*:", re.I)


@dataclass(frozen=True)
class Directives:
    """The ``-- sqlmigrate: ...`` settings of one file."""

    no_transaction: bool = False


def _known_list() -> str:
    return ", ".join(f"'-- sqlmigrate: {d}'" for d in KNOWN_DIRECTIVES)


def directives(text: str, path: Path) -> Directives:
    """Read the directive comments at the top of a file (before its first statement).

    ``-- sqlmigrate: no-transaction`` (case-insensitive, flexible spaces) is the only directive.
    An unknown directive, one inside a block comment, or one after the first statement (where it
    would silently be ignored) raises :class:`MigrationFileError` naming the file and line."""
    first = next(iter_statements(text), None)
    head_end = len(text) if first is None else first.start
    no_transaction = False
    for kind, s, e in _lex(text, 0, head_end):
        if kind == "lc":
            m = _DIRECTIVE.match(text, s, e)
            if m is None:
                continue
            value = " ".join(m.group(1).split()).lower()
            if value == "no-transaction":
                no_transaction = True
            else:
                raise MigrationFileError(
                    f"unknown directive '-- sqlmigrate: {m.group(1).strip()}'; known directives: "
                    f"{_known_list()}", path, line_at(text, s))
        elif kind == "bc" and _DIRECTIVE_HIT.search(text, s, e):
            raise MigrationFileError(
                "a sqlmigrate directive must be a '--' line comment, not a /* block comment */; "
                f"known directives: {_known_list()}", path, line_at(text, s))
    if first is not None:
        _reject_late_directives(text, path, first.start)
    return Directives(no_transaction=no_transaction)


def _reject_late_directives(text: str, path: Path, from_pos: int) -> None:
    if not any(b"sqlmigrate" in piece for _, piece in _lowered_chunks(text, 16, from_pos)):
        return  # the common case, without a slow case-insensitive regex over the whole file
    hits = [m.start() for m in _DIRECTIVE_HIT.finditer(text, from_pos)]
    if not hits:
        return
    # Rare: find out whether each hit is inside a comment (an error) or a string (fine).
    k = 0
    for stmt in iter_statements(text):
        while k < len(hits) and hits[k] < stmt.end:
            hit = hits[k]
            if hit < stmt.start:
                # Between statements there is only whitespace, comments and ';': a comment.
                _late(text, path, hit)
            for kind, s, e in _lex(stmt.text):
                if s <= hit - stmt.start < e:
                    if kind in ("lc", "bc"):
                        _late(text, path, hit)
                    break
            k += 1
        if k == len(hits):
            return
    _late(text, path, hits[k])  # in a comment after the last statement


def _late(text: str, path: Path, pos: int) -> None:
    raise MigrationFileError(
        "a '-- sqlmigrate:' directive after the first statement would be ignored; "
        "move it to the top of the file, before any statement", path, line_at(text, pos))


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------

_Tok = tuple[str, str]  # (kind, text); words upper-cased in .upper() checks by callers


def _tokens(text: str, limit: int | None = None) -> list[_Tok]:
    """Significant tokens (no whitespace or comments) of a statement's text."""
    out: list[_Tok] = []
    for kind, s, e in _lex(text):
        if kind in _TRIVIA:
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


def needs_no_transaction(stmt: Statement | str) -> str | None:
    """Why this statement cannot run inside a transaction block, or None if it can."""
    toks = _tokens(_text_of(stmt), 40)
    a, b, c = _at(toks, 0), _at(toks, 1), _at(toks, 2)
    why = "cannot run inside a transaction block"
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


def transaction_problems(statements: Sequence[Statement]) -> list[TransactionProblem]:
    """Statements that make a file unfit to run inside sqlmigrate's transaction (call after
    :func:`strip_wrapper`): transaction control, and statements that need ``no-transaction``."""
    problems: list[TransactionProblem] = []
    for stmt in statements:
        reason = needs_no_transaction(stmt)
        if reason is not None:
            problems.append(TransactionProblem(
                stmt, "needs no-transaction",
                f"{reason}; add '-- sqlmigrate: no-transaction' as the first line of the file "
                "to run it statement by statement outside a transaction"))
        elif is_transaction_control(stmt):
            problems.append(TransactionProblem(
                stmt, "transaction control",
                f"'{' '.join(stmt.keywords[:2]) or stmt.text[:20]}' controls the transaction, but "
                "sqlmigrate runs each migration in its own transaction; remove it (a leading BEGIN "
                "with a trailing COMMIT is allowed), or add '-- sqlmigrate: no-transaction'"))
    return problems


def _wrapper_kind(stmt: Statement) -> str | None:
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
    opening = _wrapper_kind(stmts[0]) == "begin"
    closing = _wrapper_kind(stmts[-1]) == "commit"
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
    for kind, s, _e in _lex(text, pos):
        if kind in _TRIVIA:
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
    n = len(text)
    i = start
    while True:
        lo = max(start, i - 1)
        yield i == start, text[lo:i + _CHUNK + overlap].encode("utf-8", "surrogatepass").lower()
        i += _CHUNK
        if i >= n:
            return


def needs_scan(text: str) -> bool:
    """False only if the file certainly holds no transaction control, no statement that needs
    ``no-transaction``, no psql meta-command and no ``sqlmigrate:`` directive, so it can be sent
    to the server whole without splitting.  False positives (a word in a string) are fine.

    A few regex searches over the whole text, no tokenising."""
    if "\\" in text and _META_HINT.search(text) is not None:
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
