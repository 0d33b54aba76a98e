"""A new user's first hour with the command line (issue 14): `new` with any description, help that
explains itself, upper-case extensions, output piped into `head`, the embedded server's extensions,
relative paths in messages, empty configuration variables and malformed connection strings."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import sqlmigrate
from conftest import REPO


def _no_traceback(r) -> None:
    assert "Traceback" not in r.err + r.out and "Exception ignored" not in r.err, r


# -- new: any description, no database -------------------------------------------------------------


def test_new_with_free_text_descriptions_then_up_then_status(cli, tmp_path, conn):
    r = cli("new", "add modules data field", url=None)
    assert (r.code, r.err) == (0, ""), r
    assert r.out == ("created sql/0001_add_modules_data_field.sql\n"
                     "created sql/0001_add_modules_data_field.rollback.sql\n"), r
    r = cli("new", "描述性消息", url=None)
    assert (r.code, r.err) == (0, ""), r
    assert r.out == "created sql/0002_描述性消息.sql\ncreated sql/0002_描述性消息.rollback.sql\n", r
    sql = tmp_path / "sql"
    (sql / "0001_add_modules_data_field.sql").write_text("CREATE TABLE modules (data jsonb);\n")
    (sql / "0002_描述性消息.sql").write_text("CREATE TABLE 消息 (id int);\n", encoding="utf-8")

    r = cli("up")
    assert r.code == 0, r
    assert "applied 0001_add_modules_data_field (" in r.out and "applied 0002_描述性消息 (" in r.out, r
    r = cli("status")
    assert r.code == 0, r
    assert re.search(r"^applied +0002_描述性消息 ", r.out, re.M), r
    assert conn.execute("SELECT name FROM schema_migrations ORDER BY version").fetchall() == [
        ("add_modules_data_field",), ("描述性消息",)]
    assert conn.execute("SELECT to_regclass('消息') IS NOT NULL").fetchone() == (True,)


def test_new_refuses_a_description_without_letters_or_digits(cli, tmp_path):
    r = cli("new", "?!", url=None)
    _no_traceback(r)
    assert r.code == 2 and "has no letters or digits" in r.err, r
    assert not (tmp_path / "sql").exists() or list((tmp_path / "sql").iterdir()) == []


def test_new_needs_no_database(cli, tmp_path):
    # Variables that would stop any database command (set but empty, unreachable) do not matter.
    env = {"SQLMIGRATE_DATABASE_URL": "", "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"}
    r = cli("new", "create users", url=None, env=env)
    assert r.code == 0 and r.err == "", r
    assert "sqlmigrate:" not in r.out and "database" not in r.out, r
    assert not (tmp_path / ".sqlmigrate").exists()
    r = cli("new", "x", "--database", "postgresql://h/db", url=None)
    assert r.code == 2 and "unrecognized arguments: --database" in r.err, r


_DATABASE = {"--database", "--table", "--schema"}
_LOCK = {"--lock-timeout", "--lock-strategy"}
_STATEMENTS = {"--statement-timeout"}
# The shared options each command uses; the others must not appear in its --help.
_USES = {
    "new": set(),
    "up": _DATABASE | _LOCK | _STATEMENTS,
    "down": _DATABASE | _LOCK | _STATEMENTS,
    "status": _DATABASE,
    "check": _DATABASE,
    "baseline": _DATABASE | _LOCK,
    "repair": _DATABASE | _LOCK,
    "verify": _DATABASE | _STATEMENTS,
    "lint": _DATABASE,
}


@pytest.mark.parametrize("command", sorted(_USES))
def test_each_help_lists_only_the_options_it_uses_and_explains_itself(command):
    r = subprocess.run([sys.executable, "-m", "sqlmigrate", command, "--help"], capture_output=True, text=True,
                       cwd=REPO)
    assert r.returncode == 0 and r.stderr == ""
    listed = set(re.findall(r"^\s+(?:-\w, )?(--[\w-]+)", r.stdout, re.M))
    shared = _DATABASE | _LOCK | _STATEMENTS
    assert listed & shared == _USES[command] and {"--dir", "--quiet"} <= listed, r.stdout
    if "--database" in listed:
        # "connection string (see 'connection' below)": it is below.
        for text in ("connection: --database URL, else the environment variable SQLMIGRATE_DATABASE_URL, "
                     "else DATABASE_URL", "set but empty is an error", "postgresql://user@host:5432/dbname",
                     "host=db.example.com port=5432", "postgresql+psycopg2://", "PGPASSWORD", "embedded"):
            assert text in " ".join(r.stdout.split()) or text in r.stdout, (text, r.stdout)
    else:
        assert "connection" not in r.stdout and "database" not in r.stdout.replace("needs no database", "")
    assert "exit codes:" in r.stdout


def test_top_level_help_explains_connection_strings():
    r = subprocess.run([sys.executable, "-m", "sqlmigrate", "--help"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0
    assert "accepted spellings of a connection string" in r.stdout and "--lock-timeout" in r.stdout


# -- upper-case extensions -------------------------------------------------------------------------


def test_upper_case_extensions_are_applied(cli, tmp_path, conn):
    sql = tmp_path / "sql"
    sql.mkdir()
    (sql / "0005_create_e.SQL").write_text("CREATE TABLE e (id int);\n")
    (sql / "0005_create_e.ROLLBACK.SQL").write_text("DROP TABLE e;\n")
    (sql / "0006_create_f.Sql").write_text("CREATE TABLE f (id int);\n")
    r = cli("up")
    assert r.code == 0 and "applied 0005_create_e (" in r.out and "applied 0006_create_f (" in r.out, r
    r = cli("down", "--steps", "2")
    assert r.code == 2 and "0006_create_f has no rollback file; write 0006_create_f.rollback.sql" in r.err, r
    r = cli("down")
    assert r.code == 2, r
    (sql / "0006_create_f.rollback.sql").write_text("DROP TABLE f;\n")
    r = cli("down", "--steps", "2")
    assert r.code == 0, r
    assert conn.execute("SELECT to_regclass('e'), to_regclass('f')").fetchone() == (None, None)


# -- output piped into head ------------------------------------------------------------------------


def _piped(database_url: str, cwd: Path, args: str) -> subprocess.CompletedProcess[str]:
    """``sqlmigrate ARGS | head -1`` in bash, as a user types it; stderr gets sqlmigrate's own
    stderr and then its exit code."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLMIGRATE_DIR")}
    env["SQLMIGRATE_DATABASE_URL"] = database_url
    script = f'{shlex.quote(sys.executable)} -m sqlmigrate {args} | head -1; echo "exit=${{PIPESTATUS[0]}}" >&2'
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_status_json_into_head_ends_quietly(database_url, tmp_path):
    sql = tmp_path / "sql"
    sql.mkdir()
    for v in range(1, 1501):  # a JSON document far larger than a pipe's buffer
        (sql / f"{v:04d}_migration_number_{v}.sql").write_text(f"CREATE TABLE t{v} (id int);\n")
    r = _piped(database_url, tmp_path, "status --json")
    assert r.stdout == "{\n", r
    assert r.stderr == "exit=0\n", r.stderr


def test_dry_run_into_head_ends_quietly(database_url, tmp_path):
    sql = tmp_path / "sql"
    sql.mkdir()
    body = "".join(f"INSERT INTO t VALUES ({i}, 'some text to make the plan long');\n" for i in range(40))
    for v in range(1, 301):
        (sql / f"{v:04d}_m.sql").write_text(body)
    r = _piped(database_url, tmp_path, "up --dry-run")
    assert r.stdout.startswith("sqlmigrate: ") and r.stdout.count("\n") == 1, r
    assert r.stderr == "exit=0\n", r.stderr


def test_up_into_head_still_applies_everything(database_url, tmp_path, conn):
    sql = tmp_path / "sql"
    sql.mkdir()
    for v in range(1, 41):
        (sql / f"{v:04d}_m.sql").write_text(f"CREATE TABLE t{v} (id int);\n")
    r = _piped(database_url, tmp_path, "up")
    assert r.stderr == "exit=0\n", r.stderr
    assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (40,)


# -- the embedded server's extensions --------------------------------------------------------------


def test_missing_extension_on_the_embedded_server_gets_a_hint(cli, tmp_path):
    sql = tmp_path / "sql"
    sql.mkdir()
    (sql / "0001_uuids.sql").write_text('CREATE EXTENSION IF NOT EXISTS "uuid-ossp";\n')
    r = cli("up", url=None, timeout=300)  # no database configured: the embedded server
    _no_traceback(r)
    assert r.code == 1, r
    assert "no database configured: using the embedded PostgreSQL" in r.out, r
    assert 'error: sql/0001_uuids.sql:1: extension "uuid-ossp" is not available' in r.err, r
    assert 'hint: the embedded PostgreSQL (used because no database is configured) has no "uuid-ossp"' in r.err
    listed = " ".join(r.err.split())
    for name in ("pg_trgm", "citext", "hstore", "ltree", "vector"):
        assert f" {name}," in listed or f" {name}." in listed, r.err
    assert "pgcrypto" not in listed and "gen_random_uuid() is built into PostgreSQL 13" in listed
    assert "--database" in listed and "SQLMIGRATE_DATABASE_URL" in listed


def test_no_embedded_hint_on_a_configured_server(cli, tmp_path):
    sql = tmp_path / "sql"
    sql.mkdir()
    (sql / "0001_x.sql").write_text("CREATE EXTENSION no_such_extension_x;\n")
    r = cli("up")
    assert r.code == 1 and "no_such_extension_x" in r.err and "hint: the embedded" not in r.err, r


# -- paths relative to the working directory -------------------------------------------------------


def test_paths_in_messages_are_relative_to_the_working_directory(cli, tmp_path):
    sql = tmp_path / "sql"
    sql.mkdir()
    (sql / "0001_a.sql").write_text("CREATE TABLE a (id int);\nSELECT 1/0;\n")
    for args in ((), ("--dir", str(sql)), ("--dir", "sql")):
        r = cli("up", *args)
        assert r.code == 1, r
        assert r.err.startswith("error: sql/0001_a.sql:2: division by zero"), r
        assert "sqlmigrate: " in r.out and ", migrations in sql\n" in r.out, r
    (sql / "0002 b.sql").write_text("SELECT 1;\n")
    r = cli("up")
    assert r.code == 2 and r.err.startswith("error: sql/0002 b.sql: not a migration file name"), r
    # Outside the working directory, the absolute path.
    r = cli("up", "--dir", str(sql), cwd=REPO)
    assert r.code == 2 and f"error: {sql}/0002 b.sql: not a migration file name" in r.err, r


# -- empty configuration variables -----------------------------------------------------------------


@pytest.mark.parametrize("env, args, named", [
    ({"SQLMIGRATE_DATABASE_URL": ""}, (), "SQLMIGRATE_DATABASE_URL is set but empty"),
    ({"SQLMIGRATE_DATABASE_URL": "  "}, (), "SQLMIGRATE_DATABASE_URL is set but empty"),
    ({"DATABASE_URL": ""}, (), "DATABASE_URL is set but empty"),
    ({"SQLMIGRATE_DATABASE_URL": "", "DATABASE_URL": "REAL"}, (), "SQLMIGRATE_DATABASE_URL is set but empty"),
    ({}, ("--database", ""), "--database is empty"),
    ({"SQLMIGRATE_DIR": ""}, (), "SQLMIGRATE_DIR is set but empty"),
    ({}, ("--dir", ""), "--dir is set but empty"),
])
@pytest.mark.parametrize("command", ["up", "status"])
def test_an_empty_setting_is_an_error_never_the_embedded_server(cli, tmp_path, database_url, env, args,
                                                                  named, command):
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "0001_a.sql").write_text("CREATE TABLE a (id int);\n")
    env = {k: database_url if v == "REAL" else v for k, v in env.items()}
    url = None if "DIR" not in str(env) and "--dir" not in args else database_url
    r = cli(command, *args, url=url, env=env)
    _no_traceback(r)
    assert r.code == 2 and named in r.err, r
    assert not (tmp_path / ".sqlmigrate").exists()


def _readme_pre_deploy_script() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Pre-deploy step"):]
    return section[section.index("```sh\n") + len("```sh\n"):section.index("```\n", section.index("```sh\n") + 1)]


@pytest.mark.parametrize("database", [None, ""])
def test_readme_pre_deploy_script_refuses_without_a_database(tmp_path, database):
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "0001_a.sql").write_text("CREATE TABLE a (id int);\n")
    script = tmp_path / "pre-deploy.sh"
    script.write_text(_readme_pre_deploy_script())
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLMIGRATE_DATABASE_URL")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    if database is not None:
        env["DATABASE_URL"] = database
    r = subprocess.run(["sh", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "DATABASE_URL" in r.stderr, r
    assert not (tmp_path / ".sqlmigrate").exists() and not (tmp_path / "migrations.json").exists()


def test_readme_pre_deploy_script_migrates_the_database_it_is_given(tmp_path, database_url, conn):
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "0001_a.sql").write_text("CREATE TABLE a (id int);\n")
    script = tmp_path / "pre-deploy.sh"
    script.write_text(_readme_pre_deploy_script())
    env = {k: v for k, v in os.environ.items() if k not in ("SQLMIGRATE_DATABASE_URL",)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["DATABASE_URL"] = database_url
    r = subprocess.run(["sh", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r
    assert json.loads((tmp_path / "migrations.json").read_text())["current"] is True
    assert conn.execute("SELECT to_regclass('a') IS NOT NULL").fetchone() == (True,)


# -- malformed connection strings ------------------------------------------------------------------

_SECRET = "S3cr3tpw"


@pytest.mark.parametrize("url, fragments", [
    ("postgresql://h:notaport/db", ()),
    ("host=x port=", ()),
    ("postgresql://[::1", ()),
    (f"postgresql://u:{_SECRET}@h:notaport/db", (_SECRET,)),
    (f"host=x port= password={_SECRET}", (_SECRET,)),
    (f"postgresql://u:{_SECRET}@[::1", (_SECRET,)),
    ("postgresql://u:S3cr/3tpw@h/db", ("S3cr", "3tpw")),  # an unencoded '/' in the password
    ("postgresql://u:S3cr%zz3tpw@h/db", ("S3cr", "3tpw")),
    ("password=S3cr 3tpw host=h", ("S3cr", "3tpw")),  # an unquoted space in the password
    ("postgresql://h/db?passwrd=S3cr3tpw", (_SECRET,)),
])
def test_malformed_connection_string_is_a_configuration_error(cli, tmp_path, url, fragments):
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "0001_a.sql").write_text("SELECT 1;\n")
    r = cli("status", "--database", url, url=None)
    _no_traceback(r)
    assert r.code == 2, r
    assert r.err.startswith("error: --database: invalid database connection string: "), r
    assert "accepted spellings of a connection string" in r.err
    for fragment in fragments:
        assert fragment not in r.out + r.err, r
    r = cli("up", url=url)  # from the environment, named as such
    assert r.code == 2 and r.err.startswith("error: SQLMIGRATE_DATABASE_URL: invalid database connection"), r
    for fragment in fragments:
        assert fragment not in r.out + r.err, r
    with pytest.raises(sqlmigrate.ConfigurationError) as err:
        sqlmigrate.Migrator(url, tmp_path / "sql").status()
    chain, e = [], err.value  # the exception and every one it carries as cause or context
    while e is not None:
        chain.append(f"{e} {e.args!r}")
        e = e.__cause__ or e.__context__
    for fragment in fragments:
        assert fragment not in " ".join(chain), chain


def test_readme_lists_the_extensions_the_embedded_server_ships():
    from sqlmigrate import _embedded as embedded

    shipped = embedded.extensions()
    assert {"pg_trgm", "citext", "hstore", "ltree", "vector"} <= set(shipped)
    assert not {"pgcrypto", "uuid-ossp"} & set(shipped)
    readme = " ".join((REPO / "README.md").read_text().split())
    section = readme[readme.index("### The embedded server"):]
    listed = section[section.index("It ships these extensions: ") + len("It ships these extensions: "):]
    listed = listed[:listed.index(" (pgvector)")].replace(" and ", ", ")
    assert listed.split(", ") == shipped
