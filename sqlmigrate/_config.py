"""Where settings come from: flags, then environment, then ``[tool.sqlmigrate]`` in pyproject.toml."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import ConfigurationError

DEFAULT_TABLE = "schema_migrations"
DEFAULT_LOCK_TIMEOUT = 300.0
#: Each migration's wait for a table lock (lock_timeout), then the retries of a migration that hit it.
DEFAULT_LOCK_WAIT = 5.0
DEFAULT_LOCK_RETRIES = 5


@dataclass(frozen=True)
class Settings:
    directory: Path
    database: str | None
    database_source: str | None = None  # "--database" or the environment variable it came from
    table: str = DEFAULT_TABLE
    schema: str | None = None
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    statement_timeout: float | None = None
    lock_strategy: str = "auto"
    lock_wait: float = DEFAULT_LOCK_WAIT
    lock_retries: int = DEFAULT_LOCK_RETRIES
    strict: bool = False  # `up` refuses on an error-level lint finding
    lint_disable: tuple[str, ...] = ()  # lint rules turned off for the project
    schema_file: Path | None = None  # `sqlmigrate dump`'s file; None: <directory>/schema.sql
    write_schema: bool = False  # `up` refreshes the schema file after applying something
    drift_schemas: tuple[str, ...] | None = None  # the schemas dump and drift cover; None: all

    @property
    def schema_path(self) -> Path:
        return self.schema_file if self.schema_file is not None else self.directory / "schema.sql"


_PYPROJECT_KEYS = {"dir", "table", "schema", "lock_timeout", "statement_timeout", "lock_strategy",
                  "lock_wait", "lock_retries", "strict", "lint_disable", "schema_file", "write_schema",
                  "drift_schemas"}
LOCK_STRATEGIES = ("auto", "session", "transaction", "table")


def load_pyproject(start: Path) -> Mapping[str, Any]:
    """``[tool.sqlmigrate]`` of the nearest pyproject.toml at or above ``start``, or ``{}``."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # the same parser, a dependency on Python 3.10
        import tomli as tomllib
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            try:
                with candidate.open("rb") as f:
                    data = tomllib.load(f)
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigurationError(f"{candidate}: cannot read: {exc}") from None
            section = data.get("tool", {}).get("sqlmigrate", {})
            unknown = set(section) - _PYPROJECT_KEYS
            if unknown:
                raise ConfigurationError(
                    f"{candidate}: unknown key(s) in [tool.sqlmigrate]: {', '.join(sorted(unknown))}; "
                    f"known: {', '.join(sorted(_PYPROJECT_KEYS))}"
                )
            return {k: v for k, v in section.items()}
    return {}


DATABASE_VARIABLES = ("SQLMIGRATE_DATABASE_URL", "DATABASE_URL")


def database_from_env(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The connection string and the variable it came from: the first of ``DATABASE_VARIABLES`` that
    is set. Set but empty is an error, never a fall-back: ``export SQLMIGRATE_DATABASE_URL=
    "$DATABASE_URL"`` with ``DATABASE_URL`` unset must not migrate some other database."""
    for i, var in enumerate(DATABASE_VARIABLES):
        if var not in env:
            continue
        if not env[var].strip():
            then = " or ".join([*DATABASE_VARIABLES[i + 1:], "the embedded development database"])
            raise ConfigurationError(
                f"{var} is set but empty, so it names no database; nothing was done. Set it to a "
                f"connection string (e.g. postgresql://user@host/dbname), or unset it to use {then}"
            )
        return env[var], var
    return None, None


def resolve(
    *,
    directory: str | None = None,
    database: str | None = None,
    table: str | None = None,
    schema: str | None = None,
    lock_timeout: float | None = None,
    statement_timeout: float | None = None,
    lock_strategy: str | None = None,
    lock_wait: float | None = None,
    lock_retries: int | None = None,
    strict: bool | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    with_database: bool = True,
) -> Settings:
    """The settings of one run. ``with_database=False`` (for ``new``) leaves the database unresolved:
    a command that needs none is not stopped by its configuration."""
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    project = load_pyproject(cwd)
    raw_dir = _first_set(("--dir", directory), ("SQLMIGRATE_DIR", env.get("SQLMIGRATE_DIR")),
                         ("[tool.sqlmigrate] dir", project.get("dir"))) or "sql"
    database_source: str | None = None
    if not with_database:
        database = None
    elif database is not None:
        database_source = "--database"
        if not database.strip():
            raise ConfigurationError("--database is empty: give a connection string, e.g. "
                                     "--database postgresql://user@host/dbname")
    else:
        database, database_source = database_from_env(env)
    path = Path(str(raw_dir))
    if not path.is_absolute():
        path = cwd / path
    schema = schema or project.get("schema")
    lock = lock_timeout if lock_timeout is not None else project.get("lock_timeout", DEFAULT_LOCK_TIMEOUT)
    stmt = statement_timeout if statement_timeout is not None else project.get("statement_timeout")
    return Settings(
        directory=path,
        database=database,
        database_source=database_source,
        table=_identifier("table", table or project.get("table") or DEFAULT_TABLE),
        schema=_identifier("schema", schema) if schema else None,
        lock_timeout=_seconds("lock_timeout", lock),
        statement_timeout=None if stmt is None else _seconds("statement_timeout", stmt),
        lock_strategy=_lock_strategy(lock_strategy or project.get("lock_strategy") or "auto"),
        lock_wait=_seconds("lock_wait", lock_wait if lock_wait is not None
                           else project.get("lock_wait", DEFAULT_LOCK_WAIT)),
        lock_retries=_count("lock_retries", lock_retries if lock_retries is not None
                            else project.get("lock_retries", DEFAULT_LOCK_RETRIES)),
        strict=strict if strict is not None else _flag("strict", project.get("strict", False)),
        lint_disable=lint_rules("[tool.sqlmigrate] lint_disable", project.get("lint_disable", [])),
        **_schema_file_settings(project, cwd, path),
    )


def _schema_file_settings(project: Mapping[str, Any], cwd: Path, directory: Path) -> dict[str, Any]:
    """schema_file (relative to the pyproject.toml's folder), write_schema and drift_schemas."""
    out: dict[str, Any] = {"write_schema": _flag("write_schema", project.get("write_schema", False))}
    raw = project.get("schema_file")
    if raw is not None:
        if not isinstance(raw, str) or not raw.strip() or not raw.endswith(".sql"):
            raise ConfigurationError(f"invalid [tool.sqlmigrate] schema_file {raw!r}: a path ending in .sql, "
                                     "relative to pyproject.toml, e.g. \"sql/schema.sql\"")
        folder = next((f for f in (cwd, *cwd.parents) if (f / "pyproject.toml").is_file()), cwd)
        out["schema_file"] = path = folder / raw
        # Discovery would take a file named like a migration for one.
        if path.parent.resolve() == directory.resolve() and re.match(r"^[0-9]+_", path.name):
            raise ConfigurationError(f"invalid [tool.sqlmigrate] schema_file {raw!r}: in the migration "
                                     "directory, a name that starts with <digits>_ is a migration's")
    schemas = project.get("drift_schemas")
    if schemas is not None:
        if isinstance(schemas, str) or not isinstance(schemas, list) or not schemas \
                or not all(isinstance(v, str) and v for v in schemas):
            raise ConfigurationError(f"invalid [tool.sqlmigrate] drift_schemas {schemas!r}: a list of "
                                     "schema names, e.g. [\"public\", \"app\"]")
        out["drift_schemas"] = tuple(sorted(set(schemas)))
    return out


def _flag(what: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"invalid [tool.sqlmigrate] {what} {value!r}: true or false")
    return value


def lint_rules(what: str, value: object) -> tuple[str, ...]:
    """Lint rule names, each one known; ``what`` names the setting in the message."""
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)) \
            or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(f"invalid {what} {value!r}: a list of rule names, e.g. "
                                 f"[\"ban-drop-column\"]; known: {_known_rules()}")
    if not value:
        return ()
    from ._lintrules import RULES  # only when rules are named: the import is not free

    unknown = [v for v in value if v not in RULES]
    if unknown:
        raise ConfigurationError(f"{what}: unknown lint rule(s) {', '.join(map(repr, unknown))}; "
                                 f"known: {_known_rules()}")
    return tuple(sorted(value))


def _known_rules() -> str:
    from ._lintrules import RULES

    return ", ".join(sorted(RULES))


def _count(what: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigurationError(f"invalid {what} {value!r}: a whole number, 0 or more")
    return value


def _lock_strategy(value: object) -> str:
    if value not in LOCK_STRATEGIES:
        raise ConfigurationError(f"invalid --lock-strategy {value!r}: one of {', '.join(LOCK_STRATEGIES)}")
    return str(value)


def _first_set(*candidates: tuple[str, object]) -> object:
    """The first value that is given (not ``None``), refusing an empty one by name."""
    for name, value in candidates:
        if value is None:
            continue
        if not str(value).strip():
            raise ConfigurationError(f"{name} is set but empty: give the migration directory, or leave it "
                                     "out to use the default (sql)")
        return value
    return None


def _identifier(what: str, value: object) -> str:
    text = str(value)
    # The log table is "<table>_log": keep both within PostgreSQL's 63-byte identifier limit.
    limit = 63 - len("_log") if what == "table" else 63
    if not text or len(text.encode("utf-8")) > limit or "\0" in text:
        raise ConfigurationError(f"invalid {what} name {text!r}: 1 to {limit} bytes, no NUL")
    return text


def _seconds(what: str, value: object) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigurationError(f"invalid {what} {value!r}: a number of seconds") from None
    if seconds < 0:
        raise ConfigurationError(f"invalid {what} {value!r}: must not be negative")
    return seconds
