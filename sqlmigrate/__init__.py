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
    from ._migrator import Applied, Migrator, Result, ensure_current, up
    from ._plan import MigrationStatus, State, Status

__version__ = "0.2.0.dev0"  # the one place the version is defined (pyproject reads it)

__all__ = [
    "Applied", "ConfigurationError", "ConnectError", "DataLossError", "Finding", "HistoryError", "LockTimeoutError",
    "MigrationError", "MigrationFileError", "MigrationStatus", "Migrator", "NotCurrentError",
    "OutOfOrderError", "Result", "SqlMigrateError", "State", "Status", "ensure_current", "up",
]

_LAZY = {
    "Applied": "migrator", "Migrator": "migrator", "Result": "migrator", "ensure_current": "migrator",
    "up": "migrator", "Finding": "dataloss", "MigrationStatus": "plan", "State": "plan", "Status": "plan",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sqlmigrate' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"._{module}", __name__), name)
    globals()[name] = value
    return value
