"""Lexing SQL text without a database: tokens, and statement boundaries in one pass.

Files of up to 100 MB of ``INSERT`` statements go through here, so the splitter never loops over
characters in Python: one compiled regular expression consumes everything that cannot end a
statement (plain text, closed strings, quoted identifiers, line comments) in C, with possessive
quantifiers so the regex engine keeps no backtracking state, and Python only handles the rare
tokens that need judgement (``;``, dollar quotes, block comments, backslashes, unterminated
quotes).  ``CREATE FUNCTION/PROCEDURE`` statements, whose ``BEGIN ATOMIC ... END`` bodies contain
semicolons, take a slower token-by-token path that tracks nesting the way psql does.

The lexical rules are PostgreSQL's with ``standard_conforming_strings`` on: ``'...'`` with ``''``,
``E'...'`` with backslash escapes, ``"..."`` identifiers with ``""``, ``$tag$...$tag$`` dollar
quotes (``$1`` and ``a$b`` are not), ``--`` comments (ended by LF or CR, as the server ends them)
and nested ``/* */`` comments.  The text is the file's own, CR and CRLF line ends included; line
numbers count ``\\n``, so CRLF files number like their LF checkout.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

__all__ = ["META_HINT", "TRIVIA", "Scan", "Statement", "iter_statements", "lex", "line_at", "meta_commands", "scan", "split",
           "tokens", "unterminated"]

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
        f"(?:[{_WS}]++|--[^\n\r]*+)*+((?:{_BODY_ALTERNATIVES})*+)", re.S)
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
_LEAD = re.compile(rf"(?:[{_WS}]+{_P}|--[^\n\r]*{_P})*{_P}")

# Full tokenizer for the slow paths (routine bodies, classification, trailing-comment trimming).
_TOKEN = re.compile(
    "|".join(
        [
            rf"(?P<ws>[{_WS}]+)",
            r"(?P<lc>--[^\n\r]*)",
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
META_HINT = re.compile(r"^[ \t\r\f\v]*\\", re.M)


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
    """End of a psql input line (psql reads lines up to LF)."""
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def _comment_end(text: str, pos: int) -> int:
    """End of a ``--`` comment: the server ends it at LF or at CR."""
    end = _eol(text, pos)
    cr = text.find("\r", pos, end)
    return end if cr < 0 else cr


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


def tokens(text: str, pos: int = 0, endpos: int | None = None,
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


TRIVIA = frozenset(("ws", "lc", "bc"))


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
        tok = next(tokens(text, start, None, st))
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
    for kind, s, e in tokens(text, pos, endpos):
        if kind in TRIVIA:
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
    for kind, s, e in tokens(text, pos, None, st):
        if kind in TRIVIA:
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
                    e = _comment_end(text, p)
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


def lex(text: str) -> tuple[list[Statement], list[int], tuple[str, int] | None]:
    """The one pass: the statements, the offsets of psql meta-commands, and ``(kind, offset)`` of a
    construct the text ends inside (None if it ends outside any)."""
    st = _State()
    statements = list(_statements(text, st))
    return statements, st.meta, st.unterminated


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
    if "\\" not in text or META_HINT.search(text) is None:  # str.find is 100x faster than re
        return []
    return list(scan(text).meta_commands)


def unterminated(text: str) -> tuple[str, int] | None:
    """``("string"|"quoted identifier"|"dollar-quoted string"|"comment", line)`` if the file ends
    inside one (line of where it began), else None."""
    return scan(text).unterminated

