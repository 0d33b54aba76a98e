"""The one exception hierarchy of sqlmigrate.

Every error carries the process exit code the command line uses for it, so the CLI never has to
guess, and every message is already free of passwords (see :func:`sqlmigrate._connection.mask`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


class SqlMigrateError(Exception):
    """Base class of every error sqlmigrate raises."""

    exit_code: int = 1

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's own pickling calls ``cls(*self.args)``, which fails for a constructor with more
        # required arguments than the message (and re-renders a message built from its arguments).
        # Rebuilt without the constructor instead: the same args, the same attributes (and notes).
        return _restore, (type(self), self.args, self.__dict__)


def _restore(cls: type[SqlMigrateError], args: tuple[Any, ...], state: dict[str, Any]) -> SqlMigrateError:
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class ConfigurationError(SqlMigrateError):
    """A bad option, setting or command-line usage."""

    exit_code = 2


class MigrationFileError(SqlMigrateError):
    """A migration file (or the set of them) is malformed; found before the database is touched."""

    exit_code = 2

    def __init__(self, message: str, path: Path | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)


class HistoryError(SqlMigrateError):
    """The history table is unusable: another tool's table, or history that contradicts the files."""

    exit_code = 2


class OutOfOrderError(HistoryError):
    """A pending migration is older than the newest applied one."""

    def __init__(self, message: str, versions: Sequence[int]) -> None:
        self.versions = tuple(versions)
        super().__init__(message)


class MigrationError(SqlMigrateError):
    """A statement of a migration failed on the server."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        path: Path | None = None,
        line: int | None = None,
        statement: str | None = None,
        sqlstate: str | None = None,
        detail: str | None = None,
        hint: str | None = None,
        context: str | None = None,
    ) -> None:
        self.path = path
        self.context = context
        self.line = line
        self.statement = statement
        self.sqlstate = sqlstate
        self.detail = detail
        self.hint = hint
        self.server_message = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else f"{self.path}"
        parts = [f"{where}: {self.server_message}" if self.path is not None else self.server_message]
        if self.sqlstate:
            parts[0] += f" (SQLSTATE {self.sqlstate})"
        if self.detail:
            parts.append(f"DETAIL: {self.detail}")
        if self.hint:
            parts.append(f"HINT: {self.hint}")
        if self.context:
            parts.append(f"CONTEXT: {self.context}")
        if self.statement:
            stmt = self.statement if len(self.statement) <= 500 else self.statement[:500] + " ..."
            parts.append("statement:\n    " + stmt.replace("\n", "\n    "))
        return "\n".join(parts)


class NotCurrentError(SqlMigrateError):
    """The database does not match the migration files (raised by ``ensure_current`` and ``check``)."""

    exit_code = 3

    def __init__(self, message: str, *, pending: Sequence[int] = (), modified: Sequence[int] = (),
                 missing: Sequence[int] = (), failed: Sequence[int] = (),
                 out_of_order: Sequence[int] = (), renamed: Sequence[int] = (),
                 drift: Sequence[str] = ()) -> None:
        self.pending = tuple(pending)
        self.modified = tuple(modified)
        self.missing = tuple(missing)
        self.failed = tuple(failed)
        self.out_of_order = tuple(out_of_order)
        #: applied versions whose file now has another name
        self.renamed = tuple(renamed)
        #: ``ensure_current(..., drift=True)``: objects that differ from the schema file
        self.drift = tuple(drift)
        super().__init__(message)


class DataLossError(SqlMigrateError):
    """A rollback would destroy data that is present, and nobody confirmed it."""

    exit_code = 4

    def __init__(self, message: str, findings: Sequence[Any] = ()) -> None:
        self.findings = tuple(findings)
        super().__init__(message)


class ConnectError(SqlMigrateError):
    """Could not connect to the database."""

    exit_code = 5


class LockTimeoutError(SqlMigrateError):
    """Another process held the migration lock for longer than the lock timeout."""

    exit_code = 5


class DatabaseError(SqlMigrateError):
    """The database refused an operation of sqlmigrate's own (reading or writing its history, taking
    its lock), as opposed to a statement of a migration (:class:`MigrationError`)."""

    exit_code = 1

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        self.sqlstate = sqlstate
        super().__init__(message)


class PrivilegeError(DatabaseError):
    """The role may not do what sqlmigrate needs (a missing privilege, a read-only transaction): a
    configuration problem, fixed by a GRANT or another URL."""

    exit_code = 2


class LintError(SqlMigrateError):
    """``up --strict``: a pending migration has an error-level lint finding (a statement that would
    hold a strong lock on an existing table for long); nothing was run."""

    exit_code = 2

    def __init__(self, message: str, findings: Sequence[Any] = ()) -> None:
        self.findings = tuple(findings)
        super().__init__(message)
