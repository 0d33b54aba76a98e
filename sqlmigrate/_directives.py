"""The ``-- sqlmigrate: ...`` directive comments at the top of a file."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from ._errors import MigrationFileError
from ._classify import contains_word
from ._lexer import Statement, _lex, line_at, split

__all__ = ["KNOWN_DIRECTIVES", "Directives", "directives", "reject_late"]

KNOWN_DIRECTIVES = ("no-transaction",)
_DIRECTIVE = re.compile(r"--[ \t]*sqlmigrate[ \t]*:(.*)", re.I)
_DIRECTIVE_HIT = re.compile(r"sqlmigrate[ \t]*:", re.I)


@dataclass(frozen=True)
class Directives:
    """The ``-- sqlmigrate: ...`` settings of one file."""

    no_transaction: bool = False


def _known_list() -> str:
    return ", ".join(f"'-- sqlmigrate: {d}'" for d in KNOWN_DIRECTIVES)


def directives(text: str, path: Path, statements: Sequence[Statement] | None = None) -> Directives:
    """Read the directive comments at the top of a file (before its first statement).

    ``-- sqlmigrate: no-transaction`` (case-insensitive, flexible spaces) is the only directive.
    An unknown directive, one inside a block comment, or one after the first statement (where it
    would silently be ignored) raises :class:`MigrationFileError` naming the file and line.
    ``statements`` are the text's statements when the caller has them (no second pass)."""
    if statements is None:
        statements = split(text)
    head_end = statements[0].start if statements else len(text)
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
    if statements:
        reject_late(text, path, statements, statements[0].start)
    return Directives(no_transaction=no_transaction)


def reject_late(text: str, path: Path, statements: Sequence[Statement], from_pos: int = 0,
                line: int = 1) -> None:
    """A directive comment from ``from_pos`` on (after the file's first statement) is an error.
    ``statements`` are the text's; ``line`` is the file line ``text`` starts on."""
    if not contains_word(text, "sqlmigrate", from_pos):
        return  # the common case, without a slow case-insensitive regex over the whole text
    hits = [m.start() for m in _DIRECTIVE_HIT.finditer(text, from_pos)]
    starts = [stmt.start for stmt in statements]
    # Rare: find out whether each hit is inside a comment (an error) or a string (fine).
    for hit in hits:
        k = bisect_right(starts, hit) - 1
        stmt = statements[k] if k >= 0 else None
        if stmt is None or hit >= stmt.end:
            # Between statements there is only whitespace, comments and ';': a comment.
            _late(text, path, hit, line)
        for kind, s, e in _lex(stmt.text):
            if s <= hit - stmt.start < e:
                if kind in ("lc", "bc"):
                    _late(text, path, hit, line)
                break


def _late(text: str, path: Path, pos: int, line: int) -> NoReturn:
    raise MigrationFileError(
        "a '-- sqlmigrate:' directive after the first statement would be ignored; "
        "move it to the top of the file, before any statement", path, line + line_at(text, pos) - 1)
