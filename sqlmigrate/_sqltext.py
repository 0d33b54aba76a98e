"""Understanding SQL text without a database: one pass over a text gives its statements and the
facts every check of a migration file reads.

The work is split along its jobs: :mod:`._lexer` (tokens, statement boundaries, meta-commands,
unterminated constructs), :mod:`._directives` (``-- sqlmigrate:`` comments) and :mod:`._classify`
(what a statement is: transaction control, needs no-transaction, aimed at sqlmigrate's tables).
:func:`analyse` puts them together: two cheap byte scans find the few statements worth a closer
look (most files have none), one lexing pass finds the statements, and only the flagged
statements are classified.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from ._classify import (
    TransactionProblem,
    is_transaction_control,
    mentions,
    name_offsets,
    needs_no_transaction,
    needs_scan,
    risky_offsets,
    strip_wrapper,
    targets_table,
    transaction_problem,
    transaction_problems,
    word_scan,
    wrapper_kind,
)
from ._directives import KNOWN_DIRECTIVES, Directives, directives, reject_late
from ._lexer import (
    META_HINT,
    Scan,
    Statement,
    iter_statements,
    lex,
    line_at,
    meta_commands,
    scan,
    split,
    unterminated,
)

__all__ = [
    "KNOWN_DIRECTIVES",
    "Directives",
    "Facts",
    "Flagged",
    "Protected",
    "Scan",
    "Statement",
    "TransactionProblem",
    "Triage",
    "analyse",
    "directives",
    "is_transaction_control",
    "iter_statements",
    "lex",
    "line_at",
    "mentions",
    "meta_commands",
    "needs_no_transaction",
    "needs_scan",
    "reject_late",
    "scan",
    "split",
    "strip_wrapper",
    "targets_table",
    "transaction_problem",
    "transaction_problems",
    "triage",
    "unterminated",
    "word_scan",
    "wrapper_kind",
]

#: (schema, table) of sqlmigrate's own tables; schema None when not known yet (before connecting):
#: then any schema matches.
Protected = Sequence[tuple["str | None", str]]


@dataclass(frozen=True)
class Triage:
    """What the cheap byte scans of a text found (no lexing)."""

    #: offsets of words that can make a statement matter (transaction control, no-transaction
    #: statements, directive comments)
    risky: list[int]
    #: the protected tables the text names, each with the offsets where it does
    touched: list[tuple[tuple[str | None, str], list[int]]]
    #: some line may start with a backslash (a psql meta-command)
    meta: bool

    @property
    def plain(self) -> bool:
        """Nothing to look at statement by statement: the text can be sent as it is."""
        return not self.risky and not self.touched and not self.meta


def triage(text: str, protected: Protected = ()) -> Triage:
    risky, named = word_scan(text, [table for _, table in protected])
    touched = [(pair, offsets) for pair, offsets in zip(protected, named) if offsets]
    meta = "\\" in text and META_HINT.search(text) is not None  # str.find first: 100x faster than re
    return Triage(risky, touched, meta)


@dataclass(frozen=True)
class Flagged:
    """A statement the byte scans pointed at, classified."""

    index: int
    statement: Statement
    #: why it cannot run in sqlmigrate's transaction, with the remedy; None if it can
    problem: TransactionProblem | None
    #: (verb, "schema.table") for each protected table it would drop, alter, truncate, delete from...
    touches: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Facts:
    """Everything one pass over a text finds; the checks read only this."""

    statements: list[Statement]
    #: lines (of the text) of psql meta-commands
    meta_lines: tuple[int, ...]
    #: (kind, line) of a string, quoted identifier, dollar quote or comment the text ends inside
    unterminated: tuple[str, int] | None
    #: the statements worth a closer look, in order
    flagged: tuple[Flagged, ...]


def analyse(text: str, protected: Protected = (), *, found: Triage | None = None,
            lexed: tuple[list[Statement], list[int], tuple[str, int] | None] | None = None) -> Facts:
    """The one pass over ``text``. ``found`` and ``lexed`` are the byte scans' and the lexer's
    results when the caller already has them (streaming lexes a buffer, then checks part of it)."""
    found = triage(text, protected) if found is None else found
    statements, meta, open_ = lex(text) if lexed is None else lexed
    return Facts(
        statements,
        tuple(sorted({line_at(text, off) for off in meta})),
        None if open_ is None else (open_[0], line_at(text, open_[1])),
        _flag(statements, found),
    )


def _flag(statements: list[Statement], found: Triage) -> tuple[Flagged, ...]:
    if not found.risky and not found.touched:
        return ()
    starts = [s.start for s in statements]

    def holding(offsets: list[int]) -> set[int]:
        out = set()
        for off in offsets:
            k = bisect_right(starts, off) - 1
            if k >= 0 and off < statements[k].end:
                out.add(k)
        return out

    risky = holding(found.risky)
    touched = [(pair, holding(offsets)) for pair, offsets in found.touched]
    flagged = []
    for k in sorted(risky.union(*(ks for _, ks in touched))):
        stmt = statements[k]
        touches = []
        for (schema, table), ks in touched:
            verb = targets_table(stmt, table, schema) if k in ks else None
            if verb:
                touches.append((verb, table if schema is None else f"{schema}.{table}"))
        flagged.append(Flagged(k, stmt, transaction_problem(stmt) if k in risky else None, tuple(touches)))
    return tuple(flagged)
