"""The command line as a user runs it: output, exit codes, --json, connection handling."""

from __future__ import annotations

import json
import subprocess
import sys

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conftest import REPO


def test_up_prints_one_line_per_migration_and_is_then_a_noop(cli, mdir, conn):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    mdir.write("0002_b.sql", "CREATE TABLE b (id int);")
    r = cli("up", "--dir", str(mdir))
    assert r.code == 0, r
    lines = r.out.splitlines()
    assert any(l.startswith("applied 0001_a (") and l.endswith(" ms)") for l in lines), r
    assert any(l.startswith("applied 0002_b (") for l in lines), r
    assert "applied 2 migration(s)" in r.out
    r = cli("up", "--dir", str(mdir))
    assert r.code == 0 and "nothing to do" in r.out, r


def test_options_before_or_after_the_command(cli, mdir):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    assert cli("--dir", str(mdir), "up").code == 0
    r = cli("status", "--dir", str(mdir))
    assert r.code == 0 and "applied" in r.out and "0001_a" in r.out, r


def test_status_json_and_check_exit_codes(cli, mdir):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    mdir.write("0002_b.sql", "CREATE TABLE b (id int);")
    r = cli("check", "--dir", str(mdir))
    assert r.code == 3 and "pending: 0001_a, 0002_b" in r.err, r
    r = cli("check", "--json", "--dir", str(mdir))
    assert r.code == 3
    data = json.loads(r.out)
    assert data["current"] is False and data["pending"] == [1, 2]
    assert cli("up", "--to", "1", "--dir", str(mdir)).code == 0
    data = json.loads(cli("status", "--json", "--dir", str(mdir)).out)
    assert [(m["version"], m["state"]) for m in data["migrations"]] == [(1, "applied"), (2, "pending")]
    assert data["migrations"][0]["applied_at"] and data["migrations"][0]["execution_ms"] >= 0
    assert cli("up", "--dir", str(mdir)).code == 0
    r = cli("check", "--dir", str(mdir))
    assert r.code == 0 and "current" in r.out, r


def test_exit_1_on_failed_migration_with_location(cli, mdir):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);\nSELECT 1/0;\n")
    r = cli("up", "--dir", str(mdir))
    assert r.code == 1, r
    assert "0001_a.sql:2" in r.err and "division by zero" in r.err and "22012" in r.err
    assert "SELECT 1/0" in r.err


def test_exit_2_on_bad_files_and_usage(cli, mdir):
    mdir.write("0001 a.sql", "SELECT 1;")
    r = cli("up", "--dir", str(mdir))
    assert r.code == 2 and "0001 a.sql" in r.err, r
    r = cli("up", "--steps", "3")
    assert r.code == 2
    r = cli("frobnicate")
    assert r.code == 2


def test_exit_5_when_the_server_cannot_be_reached_and_no_password_leaks(cli, mdir):
    mdir.write("0001_a.sql", "SELECT 1;")
    secret = "S3cr3t-pa55word"
    url = f"postgresql://someone:{secret}@127.0.0.1:1/nodb?connect_timeout=2"
    r = cli("up", "--dir", str(mdir), "--database", url)
    assert r.code == 5, r
    assert "could not connect" in r.err
    assert secret not in r.out + r.err


def test_wrong_password_is_masked(cli, mdir, database_url):
    mdir.write("0001_a.sql", "SELECT 1;")
    secret = "hunter2-topsecret"
    params = conninfo_to_dict(database_url)
    params["user"] = "no_such_user_x"
    params["password"] = secret
    for url in (make_conninfo(**params),):
        r = cli("status", "--dir", str(mdir), "--database", url)
        assert r.code == 5, r
        assert secret not in r.out + r.err


def test_sqlalchemy_spelling_is_accepted(cli, mdir, server_url, database_url):
    params = conninfo_to_dict(database_url)
    if str(params.get("host", "")).startswith("/"):
        host = f"?host={params['host']}"
        url = f"postgresql+psycopg2://{params.get('user', 'postgres')}@/{params['dbname']}{host}"
    else:
        url = (f"postgresql+psycopg://{params.get('user', 'postgres')}@{params.get('host', 'localhost')}:"
               f"{params.get('port', 5432)}/{params['dbname']}")
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    r = cli("up", "--dir", str(mdir), "--database", url, url=None)
    assert r.code == 0, r


def test_database_url_env_is_used(cli, mdir, database_url):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    r = cli("up", "--dir", str(mdir), url=None, env={"DATABASE_URL": database_url})
    assert r.code == 0 and "applied 0001_a" in r.out, r


def test_pyproject_dir_setting(cli, tmp_path):
    project = tmp_path / "proj"
    (project / "db" / "migrations").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[tool.sqlmigrate]\ndir = "db/migrations"\n')
    (project / "db" / "migrations" / "0001_a.sql").write_text("CREATE TABLE a (id int);")
    r = cli("up", cwd=project)
    assert r.code == 0 and "applied 0001_a" in r.out, r


def test_quiet_prints_nothing_on_success(cli, mdir):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    r = cli("-q", "up", "--dir", str(mdir))
    assert r.code == 0 and r.out == "", r


def test_dry_run_prints_sql_and_changes_nothing(cli, mdir, conn):
    mdir.write("0001_a.sql", "CREATE TABLE dry (id int);")
    r = cli("up", "--dry-run", "--dir", str(mdir))
    assert r.code == 0 and "CREATE TABLE dry (id int);" in r.out and "would apply 0001_a" in r.out, r
    assert conn.execute("SELECT to_regclass('dry')").fetchone() == (None,)


def test_new_creates_files(cli, mdir):
    r = cli("new", "add_users", "--dir", str(mdir), url=None)
    assert r.code == 0, r
    assert sorted(p.name for p in mdir.path.iterdir()) == ["0001_add_users.rollback.sql", "0001_add_users.sql"]
    r = cli("new", "../../etc/evil", "--dir", str(mdir), url=None)  # a description: its slug stays inside
    assert r.code == 0 and "created sql/0002_etc_evil.sql" in r.out, r
    assert sorted(p.name for p in mdir.path.iterdir())[-2:] == ["0002_etc_evil.rollback.sql", "0002_etc_evil.sql"]


def test_embedded_database_refused_in_production(cli, mdir):
    mdir.write("0001_a.sql", "SELECT 1;")
    r = cli("up", "--dir", str(mdir), url=None, env={"SQLMIGRATE_ENV": "production"})
    assert r.code == 2 and "production" in r.err, r
    r = cli("up", "--dir", str(mdir), url=None, env={"ENVIRONMENT": "Production"})
    assert r.code == 2 and "production" in r.err, r


def test_help_documents_exit_codes():
    r = subprocess.run([sys.executable, "-m", "sqlmigrate", "--help"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0
    for code in ("0  success", "1  a migration failed", "3  check", "4  a rollback", "5  could not connect"):
        assert code in r.stdout


def test_import_is_cheap():
    code = ("import sys, sqlmigrate; heavy = [m for m in ('psycopg', 'sqlparse') if m in sys.modules]; "
            "print(','.join(heavy))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == ""
