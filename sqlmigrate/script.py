"""Preparing one file to run: directives, and the checks that must pass before execution.

A file that needs no statement-level look (the common case, decided by a cheap scan) is sent to the
server whole; only files that mention something risky are split into statements.
"""

from __future__ import annotations

from collections.abc import Sequence
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from . import sqltext
from .errors import MigrationFileError
from .sqltext import Statement


# Whitespace and comments only (nested block comments aside, which then simply run as an empty
# migration): anchored at the start, so a file with SQL fails on its first statement, cheaply.
_NOTHING_BUT_COMMENTS = re.compile(r"(?:\s+|--[^\n]*|/\*.*?\*/)*", re.DOTALL)


@dataclass(frozen=True)
class Script:
    """A migration or rollback file, checked and ready to send."""

    path: Path
    #: the text to send: the file's text with a BEGIN;/COMMIT; wrapper blanked out, so offsets and
    #: line numbers are still those of the file
    text: str
    no_transaction: bool

    @cached_property
    def statements(self) -> list[Statement]:
        # Only split when someone needs statements: a no-transaction run, or locating a failure.
        return sqltext.split(self.text)

    def statement_at(self, offset: int) -> Statement | None:
        """The statement containing character ``offset`` of :attr:`text`."""
        found = None
        for stmt in self.statements:
            if stmt.start > offset:
                break
            found = stmt
        return found


def prepare(text: str, path: Path, *, protected: Sequence[tuple[str, str]] = ()) -> Script:
    """Check ``text`` (the contents of ``path``) and return it ready to run.

    ``protected`` are (schema, table) pairs of sqlmigrate's own tables, which no migration may drop,
    truncate, rename, alter or delete from.
    """
    if not text.strip():
        raise MigrationFileError("is empty; write the migration or delete the file", path)
    if _NOTHING_BUT_COMMENTS.fullmatch(text):
        raise MigrationFileError("contains only comments; write the migration or delete the file", path)
    needs_scan = sqltext.needs_scan(text)
    touches_own = [pair for pair in protected if sqltext.mentions(text, pair[1])]
    if not needs_scan and not touches_own:
        return Script(path, text, no_transaction=False)

    statements = sqltext.split(text)
    lines = sqltext.meta_commands(text)
    if lines:
        raise MigrationFileError(
            "psql meta-command (a line starting with a backslash) is not SQL and cannot run here; "
            "remove it or rewrite it in SQL",
            path, lines[0],
        )
    open_construct = sqltext.unterminated(text)
    if open_construct:
        what, line = open_construct
        raise MigrationFileError(f"unterminated {what} starting here", path, line)
    for stmt in statements:
        for schema, table in touches_own:
            verb = sqltext.targets_table(stmt, table, schema)
            if verb:
                raise MigrationFileError(
                    f"this statement would {verb} {schema}.{table}, sqlmigrate's own history. Older "
                    f"migration tools used the same name; keep sqlmigrate's history elsewhere with "
                    f"--table (e.g. --table sqlmigrate_history), or remove the statement",
                    path, stmt.line,
                )
    directives = sqltext.directives(text, path)
    if directives.no_transaction:
        return Script(path, text, no_transaction=True)

    text, statements = sqltext.strip_wrapper(text, statements, path)
    for stmt in statements:
        if sqltext.is_transaction_control(stmt):
            raise MigrationFileError(
                f"transaction control ({' '.join(stmt.keywords[:2])}) inside a migration that runs in a "
                "transaction: sqlmigrate wraps each file in one transaction itself. Remove it, or add "
                "`-- sqlmigrate: no-transaction` as the first line to manage transactions yourself",
                path, stmt.line,
            )
        reason = sqltext.needs_no_transaction(stmt)
        if reason:
            raise MigrationFileError(
                f"{reason} cannot run inside a transaction; add `-- sqlmigrate: no-transaction` as the "
                "first line of the file (it then runs statement by statement, without a transaction)",
                path, stmt.line,
            )
    script = Script(path, text, no_transaction=False)
    script.__dict__["statements"] = statements  # already split: keep it (cached_property slot)
    return script
