"""The ``-- sqlmigrate: ...`` comments: directives at the top of a file, and
``-- sqlmigrate: allow <rule>, ...`` anywhere, which silences lint rules for one statement."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from ._errors import MigrationFileError
from ._classify import contains_word
from ._lexer import Statement, line_at, split, tokens

__all__ = ["KNOWN_DIRECTIVES", "Directives", "allowed_rules", "directives", "reject_late"]

KNOWN_DIRECTIVES = ("no-transaction",)
_DIRECTIVE = re.compile(r"--[ \t]*sqlmigrate[ \t]*:(.*)", re.I)
_DIRECTIVE_HIT = re.compile(r"sqlmigrate[ \t]*:", re.I)
# "allow" and its rule names, up to an optional "-- why" for the reader.
_ALLOW = re.compile(r"[ \t]*allow(?![^ \t,])([^-]*(?:-(?!-)[^-]*)*)", re.I)
_RULE_SEPARATORS = re.compile(r"[\s,]+")


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
    for kind, s, e in tokens(text, 0, head_end):
        if kind == "lc":
            m = _DIRECTIVE.match(text, s, e)
            if m is None or _allow(m, path, text, 1) is not None:
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
    """A directive comment from ``from_pos`` on (after the file's first statement) is an error;
    an allow comment is checked (its rules must exist). ``statements`` are the text's; ``line`` is
    the file line ``text`` starts on."""
    for kind, s, e, hit in _comments(text, statements, from_pos):
        m = _DIRECTIVE.match(text, s, e) if kind == "lc" else None
        if m is not None and _allow(m, path, text, line) is not None:
            continue
        if kind == "bc" and _ALLOW.match(text, _DIRECTIVE_HIT.match(text, hit).end(), e):  # type: ignore[union-attr]
            raise MigrationFileError("a '-- sqlmigrate: allow ...' comment must be a '--' line comment, "
                                     "not a /* block comment */", path, line + line_at(text, hit) - 1)
        _late(text, path, hit, line)


def allowed_rules(text: str, statements: Sequence[Statement], path: Path) -> dict[int, frozenset[str]]:
    """The lint rules each statement's allow comments silence, by the statement's ``start``.

    An allow comment belongs to the statement it is inside; else, written after a statement on the
    line where that statement ends, to that one; else to the next statement (the comment lines
    before a statement, where ``Statement.text`` does not reach)."""
    found: dict[int, frozenset[str]] = {}
    starts = [stmt.start for stmt in statements]
    for kind, s, e, _ in _comments(text, statements, 0):
        m = _DIRECTIVE.match(text, s, e) if kind == "lc" else None
        rules = None if m is None else _allow(m, path, text, 1)
        if not rules:
            continue
        k = bisect_right(starts, s) - 1
        if k < 0 or (s >= statements[k].end and "\n" in text[statements[k].end:s]):
            k += 1  # before statement k + 1
        if k < len(statements):
            found[starts[k]] = found.get(starts[k], frozenset()) | rules
    return found


def _comments(text: str, statements: Sequence[Statement],
              from_pos: int) -> Iterator[tuple[str, int, int, int]]:
    """The comment tokens from ``from_pos`` on that mention ``sqlmigrate:``, as ``(kind, start, end,
    offset of the mention)`` in ``text`` (kind "lc" or "bc")."""
    if not contains_word(text, "sqlmigrate", from_pos):
        return  # the common case, without a slow case-insensitive regex over the whole text
    hits = [m.start() for m in _DIRECTIVE_HIT.finditer(text, from_pos)]
    starts = [stmt.start for stmt in statements]
    # Rare: find out whether each hit is inside a comment or a string (not a comment).
    last = -1
    for hit in hits:
        if hit < last:
            continue  # a second hit in a comment already seen
        k = bisect_right(starts, hit) - 1
        stmt = statements[k] if k >= 0 else None
        if stmt is not None and hit < stmt.end:
            lo, hi = stmt.start, stmt.end
        else:  # between statements: only whitespace, comments and ';'
            lo = 0 if stmt is None else stmt.end
            hi = starts[k + 1] if k + 1 < len(starts) else len(text)
        for kind, s, e in tokens(text, lo, hi):
            if s <= hit < e:
                if kind in ("lc", "bc"):
                    last = e
                    yield kind, s, e, hit
                break


def _allow(m: re.Match[str], path: Path, text: str, line: int) -> frozenset[str] | None:
    """The rules of an allow comment (``m``: :data:`_DIRECTIVE` on it); None if it is another
    directive. Unknown or missing rule names are an error naming the file and line."""
    a = _ALLOW.match(m.group(1))
    if a is None:
        return None
    where = line + line_at(text, m.start()) - 1
    names = [n for n in _RULE_SEPARATORS.split(a.group(1).lower()) if n]
    if not names:
        raise MigrationFileError("'-- sqlmigrate: allow' names no rule: write the lint rules this "
                                 "statement may break, e.g. '-- sqlmigrate: allow ban-drop-column'",
                                 path, where)
    from ._lintrules import RULES  # only for a file that has an allow comment

    for name in names:
        if name not in RULES:
            raise MigrationFileError(f"unknown lint rule {name!r} in '-- sqlmigrate: allow'; known rules: "
                                     f"{', '.join(sorted(RULES))}", path, where)
    return frozenset(names)


def _late(text: str, path: Path, pos: int, line: int) -> NoReturn:
    raise MigrationFileError(
        "a '-- sqlmigrate:' directive after the first statement would be ignored; "
        "move it to the top of the file, before any statement", path, line + line_at(text, pos) - 1)
