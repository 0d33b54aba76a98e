"""The README's FastAPI example (examples/fastapi_app.py), booted for real: its lifespan migrates the
test database in a worker thread, then the app serves a table the migrations created."""

from __future__ import annotations

import importlib.util
import shutil
import uuid
from pathlib import Path
from types import ModuleType

import pytest

import sqlmigrate

pytest.importorskip("fastapi")
pytest.importorskip("httpx")  # fastapi.testclient needs it
pytest.importorskip("sqlalchemy")

from fastapi.testclient import TestClient  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _sqlalchemy_url(database_url: str) -> str:
    """The test database as an application's settings would spell it."""
    import sqlalchemy
    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(database_url)
    host, port = p.get("host"), str(p.get("port") or 5432)
    if host and host.startswith("/"):  # a Unix socket: SQLAlchemy takes its directory as ?host=
        url = sqlalchemy.URL.create("postgresql+psycopg", username=p.get("user"), password=p.get("password"),
                                    database=p["dbname"], query={"host": host, "port": port})
    else:
        url = sqlalchemy.URL.create("postgresql+psycopg", username=p.get("user"), password=p.get("password"),
                                    host=host, port=int(port), database=p["dbname"])
    return url.render_as_string(hide_password=False)


def load_app(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    """The example as a user has it: the module and its sql/ folder, imported with DATABASE_URL set."""
    shutil.copy(EXAMPLES / "fastapi_app.py", tmp_path / "fastapi_app.py")
    shutil.copytree(EXAMPLES / "sql", tmp_path / "sql")
    monkeypatch.setenv("DATABASE_URL", _sqlalchemy_url(database_url))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location(f"fastapi_app_{uuid.uuid4().hex}", tmp_path / "fastapi_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_app_migrates_in_its_lifespan_and_serves_the_migrated_table(tmp_path, database_url, conn,
                                                                        monkeypatch):
    app = load_app(tmp_path, database_url, monkeypatch)
    assert conn.execute("SELECT to_regclass('notes')").fetchone() == (None,)  # importing ran nothing

    with TestClient(app.app) as client:  # runs the lifespan: up in a worker thread, then ensure_current
        response = client.get("/notes")
    assert response.status_code == 200
    assert response.json() == [{"id": 1, "body": "migrated at boot"}]
    assert conn.execute("SELECT version, name FROM schema_migrations").fetchall() == [(1, "create_notes")]

    # A second replica booting finds nothing to do and serves the same data.
    replica = tmp_path / "replica"
    replica.mkdir()
    second = load_app(replica, database_url, monkeypatch)
    with TestClient(second.app) as client:
        assert client.get("/notes").json() == [{"id": 1, "body": "migrated at boot"}]
    assert conn.execute("SELECT count(*) FROM schema_migrations_log WHERE direction = 'up'").fetchone() == (1,)


def test_the_app_does_not_start_on_a_database_that_is_not_migrated(tmp_path, database_url, conn, monkeypatch):
    app = load_app(tmp_path, database_url, monkeypatch, MIGRATE_AT_BOOT="0")
    with pytest.raises(sqlmigrate.NotCurrentError, match="pending: 0001_create_notes") as caught:
        with TestClient(app.app):
            pass
    assert caught.value.pending == (1,)
    assert conn.execute("SELECT to_regclass('notes')").fetchone() == (None,)
    app.engine.dispose()


def test_the_readme_shows_exactly_this_example():
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    assert "```python\n" + (EXAMPLES / "fastapi_app.py").read_text(encoding="utf-8") + "```\n" in readme
