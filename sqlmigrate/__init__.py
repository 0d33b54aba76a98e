"""sqlmigrate: raw-SQL versioned migrations for PostgreSQL.

``import sqlmigrate`` is cheap: psycopg and sqlparse are imported only when a database or a SQL
file is touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._errors import (
    ConfigurationError,
    ConnectError,
    DatabaseError,
    DataLossError,
    HistoryError,
    LintError,
    LockTimeoutError,
    MigrationError,
    MigrationFileError,
    NotCurrentError,
    OutOfOrderError,
    PrivilegeError,
    SqlMigrateError,
)

if TYPE_CHECKING:
    from ._dataloss import Finding
    from ._history import LogEntry
    from ._lint import LintFinding, LintReport, lint
    from ._migrator import Migrator, Result, StepResult, ensure_current, up
    from ._plan import MigrationStatus, State, Status
    from ._recovery import Baselined, BaselineResult, Repaired, RepairResult, Unresolved
    from ._schemafile import Drift, DumpResult, drift, dump, snapshot
    from ._snapshot import Difference, Snapshot, diff
    from ._verify import MigrationReport, VerifyReport, verify

__version__ = "0.2.0.dev0"  # the one place the version is defined (pyproject reads it)

__all__ = [
    # the API
    "Migrator", "diff", "drift", "dump", "ensure_current", "lint", "snapshot", "up", "verify",
    # results, and the types they are made of
    "BaselineResult", "Baselined", "Difference", "Drift", "DumpResult", "Finding", "LintFinding", "LintReport", "LogEntry", "MigrationReport", "MigrationStatus",
    "RepairResult", "Repaired", "Result", "Snapshot", "State", "Status", "StepResult", "Unresolved", "VerifyReport",
    # errors
    "ConfigurationError", "ConnectError", "DataLossError", "DatabaseError", "HistoryError", "LintError",
    "LockTimeoutError", "MigrationError", "MigrationFileError", "NotCurrentError", "OutOfOrderError",
    "PrivilegeError", "SqlMigrateError",
]

# Imported on first use: each of these modules pulls in psycopg or sqlparse.
_LAZY = {
    "Migrator": "migrator", "Result": "migrator", "StepResult": "migrator", "ensure_current": "migrator",
    "up": "migrator",
    "MigrationStatus": "plan", "State": "plan", "Status": "plan",
    "BaselineResult": "recovery", "Baselined": "recovery", "RepairResult": "recovery",
    "Repaired": "recovery", "Unresolved": "recovery",
    "LogEntry": "history",
    "MigrationReport": "verify", "VerifyReport": "verify", "verify": "verify",
    "Finding": "dataloss",
    "LintFinding": "lint", "LintReport": "lint", "lint": "lint",
    "Drift": "schemafile", "DumpResult": "schemafile", "drift": "schemafile", "dump": "schemafile",
    "snapshot": "schemafile",
    "Difference": "snapshot", "Snapshot": "snapshot", "diff": "snapshot",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sqlmigrate' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"._{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    # What is public, not the helpers this module happens to import (TYPE_CHECKING, Any, ...).
    return sorted({*__all__, *(n for n in globals() if n.startswith("__"))})
