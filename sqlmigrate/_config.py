"""Where settings come from: flags, then environment, then ``[tool.sqlmigrate]`` in pyproject.toml."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import ConfigurationError

DEFAULT_TABLE = "schema_migrations"
DEFAULT_LOCK_TIMEOUT = 300.0


@dataclass(frozen=True)
class Settings:
    directory: Path
    database: str | None
    table: str = DEFAULT_TABLE
    schema: str | None = None
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    statement_timeout: float | None = None


_PYPROJECT_KEYS = {"dir", "table", "schema", "lock_timeout", "statement_timeout"}


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


def database_from_env(env: Mapping[str, str]) -> str | None:
    return env.get("SQLMIGRATE_DATABASE_URL") or env.get("DATABASE_URL") or None


def resolve(
    *,
    directory: str | None = None,
    database: str | None = None,
    table: str | None = None,
    schema: str | None = None,
    lock_timeout: float | None = None,
    statement_timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    project = load_pyproject(cwd)
    raw_dir = directory or env.get("SQLMIGRATE_DIR") or project.get("dir") or "sql"
    path = Path(str(raw_dir))
    if not path.is_absolute():
        path = cwd / path
    schema = schema or project.get("schema")
    lock = lock_timeout if lock_timeout is not None else project.get("lock_timeout", DEFAULT_LOCK_TIMEOUT)
    stmt = statement_timeout if statement_timeout is not None else project.get("statement_timeout")
    return Settings(
        directory=path,
        database=database or database_from_env(env),
        table=_identifier("table", table or project.get("table") or DEFAULT_TABLE),
        schema=_identifier("schema", schema) if schema else None,
        lock_timeout=_seconds("lock_timeout", lock),
        statement_timeout=None if stmt is None else _seconds("statement_timeout", stmt),
    )


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
