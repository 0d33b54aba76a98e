"""`down` and the data-presence warning, against the real server (API, CLI and a real terminal)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

import sqlmigrate
from sqlmigrate import DataLossError, Finding
from sqlmigrate._errors import ConfigurationError, HistoryError, MigrationError, MigrationFileError


def versions(conn: psycopg.Connection) -> list[int]:
    return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()]


def log_rows(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT version, direction, outcome FROM schema_migrations_log ORDER BY id").fetchall()


def exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def three(mdir) -> None:
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    mdir.write("0001_a.rollback.sql", "DROP TABLE a;")
    mdir.write("0002_b.sql", "CREATE TABLE b (id int);")
    mdir.write("0002_b.rollback.sql", "DROP TABLE b;")
    mdir.write("0003_c.sql", "CREATE TABLE c (id int);")
    mdir.write("0003_c.rollback.sql", "DROP TABLE c;")


# ---- API: steps, order, history ---------------------------------------------------------------------

def test_down_one_step_by_default_then_steps_and_to(database_url, conn, mdir):
    three(mdir)
    m = sqlmigrate.Migrator(database_url, mdir.path)
    m.up()
    r = m.down()
    assert [(a.label, a.direction) for a in r.steps] == [("0003_c", "down")] and r.findings == ()
    assert versions(conn) == [1, 2] and not exists(conn, "c")
    m.up()
    r = m.down(2)
    assert [a.label for a in r.steps] == ["0003_c", "0002_b"]  # newest first
    assert versions(conn) == [1] and not exists(conn, "b") and exists(conn, "a")
    m.up()
    r = m.down(to=1)
    assert [a.label for a in r.steps] == ["0003_c", "0002_b"] and versions(conn) == [1]
    r = m.down(to=0)
    assert [a.label for a in r.steps] == ["0001_a"] and versions(conn) == []
    assert m.down().steps == ()  # nothing applied: nothing to do
    downs = [r for r in log_rows(conn) if r[1] == "down"]
    assert downs == [(3, "down", "ok"), (3, "down", "ok"), (2, "down", "ok"), (3, "down", "ok"),
                     (2, "down", "ok"), (1, "down", "ok")]
    m.up()  # rolled-back migrations are pending again
    assert versions(conn) == [1, 2, 3]


def test_steps_beyond_applied_rolls_back_all_and_bad_arguments_refused(database_url, conn, mdir):
    three(mdir)
    m = sqlmigrate.Migrator(database_url, mdir.path)
    m.up(to=2)
    with pytest.raises(ConfigurationError):
        m.down(0)
    with pytest.raises(ConfigurationError):
        m.down(2, to=1)
    assert [a.label for a in m.down(5).steps] == ["0002_b", "0001_a"]
    assert versions(conn) == []


def test_missing_rollback_file_stops_before_anything_runs(database_url, conn, mdir):
    three(mdir)
    m = sqlmigrate.Migrator(database_url, mdir.path)
    m.up()
    (mdir.path / "0002_b.rollback.sql").unlink()
    with pytest.raises(HistoryError) as err:
        m.down(2)
    assert "0002_b.rollback.sql" in str(err.value) and "nothing was rolled back" in str(err.value)
    assert versions(conn) == [1, 2, 3] and exists(conn, "c")  # 0003 was not rolled back either


def test_updown_spelling_names_the_down_file_to_write(database_url, conn, mdir):
    mdir.write("0001_a.up.sql", "CREATE TABLE a (id int);")
    sqlmigrate.up(database_url, mdir.path)
    with pytest.raises(HistoryError, match=r"0001_a\.down\.sql"):
        sqlmigrate.Migrator(database_url, mdir.path).down()
    mdir.write("0001_a.down.sql", "DROP TABLE a;")
    sqlmigrate.Migrator(database_url, mdir.path).down()
    assert versions(conn) == [] and not exists(conn, "a")


def test_missing_migration_file_stops_and_names_files(database_url, conn, mdir):
    three(mdir)
    sqlmigrate.up(database_url, mdir.path)
    (mdir.path / "0003_c.sql").unlink()
    (mdir.path / "0003_c.rollback.sql").unlink()
    with pytest.raises(HistoryError, match=r"0003_c.*file is gone.*0003_c\.rollback\.sql"):
        sqlmigrate.Migrator(database_url, mdir.path).down()
    assert versions(conn) == [1, 2, 3]


def test_failed_no_transaction_migration_points_to_repair(database_url, conn, mdir):
    mdir.write("0001_a.sql", "-- sqlmigrate: no-transaction\nCREATE TABLE a (id int);\nSELECT 1/0;\n")
    mdir.write("0001_a.rollback.sql", "DROP TABLE a;")
    with pytest.raises(MigrationError):
        sqlmigrate.up(database_url, mdir.path)
    with pytest.raises(HistoryError, match=r"repair --applied 1.*repair --retry 1"):
        sqlmigrate.Migrator(database_url, mdir.path).down()
    assert exists(conn, "a")


def test_failing_rollback_leaves_schema_and_history_and_logs_failure(database_url, conn, mdir):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    mdir.write("0001_a.rollback.sql", "DROP TABLE a;\nDROP TABLE nope;\n")
    sqlmigrate.up(database_url, mdir.path)
    with pytest.raises(MigrationError) as err:
        sqlmigrate.Migrator(database_url, mdir.path).down()
    assert err.value.line == 2 and err.value.path.name == "0001_a.rollback.sql"
    assert exists(conn, "a") and versions(conn) == [1]  # all or nothing
    assert log_rows(conn)[-1] == (1, "down", "failed")


def test_no_transaction_rollback_runs_statement_by_statement(database_url, conn, mdir):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);\nCREATE INDEX a_id ON a (id);")
    mdir.write("0001_a.rollback.sql",
               "-- sqlmigrate: no-transaction\nDROP INDEX CONCURRENTLY a_id;\nDROP TABLE a;\n")
    sqlmigrate.up(database_url, mdir.path)
    r = sqlmigrate.Migrator(database_url, mdir.path).down()
    assert r.steps[0].no_transaction
    assert versions(conn) == [] and not exists(conn, "a") and log_rows(conn)[-1] == (1, "down", "ok")


def test_failed_no_transaction_rollback_marks_migration_failed(database_url, conn, mdir):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);\nCREATE TABLE a2 (id int);")
    mdir.write("0001_a.rollback.sql",
               "-- sqlmigrate: no-transaction\nDROP TABLE a2;\nDROP TABLE nope;\nDROP TABLE a;\n")
    sqlmigrate.up(database_url, mdir.path)
    m = sqlmigrate.Migrator(database_url, mdir.path)
    with pytest.raises(MigrationError):
        m.down()
    assert not exists(conn, "a2") and exists(conn, "a")  # half done, as no-transaction means
    state, error = conn.execute("SELECT state, error FROM schema_migrations WHERE version = 1").fetchone()
    assert state == "failed" and "rollback" in error and "line 3" in error
    assert m.status().entries[0].state is sqlmigrate.State.FAILED
    assert log_rows(conn)[-1] == (1, "down", "failed")


def test_rollback_touching_the_history_table_is_refused(database_url, conn, mdir):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    mdir.write("0001_a.rollback.sql", "DROP TABLE a;\nDROP TABLE schema_migrations;\n")
    sqlmigrate.up(database_url, mdir.path)
    with pytest.raises(MigrationFileError, match="--table"):
        sqlmigrate.Migrator(database_url, mdir.path).down()
    assert exists(conn, "a") and versions(conn) == [1]


# ---- API: data loss ---------------------------------------------------------------------------------

@pytest.fixture
def with_data(database_url, conn, mdir):
    mdir.write("0001_t.sql", "CREATE TABLE t (id int, note text);")
    mdir.write("0001_t.rollback.sql", "DROP TABLE t;")
    mdir.write("0002_col.sql", "ALTER TABLE t ADD COLUMN extra text;")
    mdir.write("0002_col.rollback.sql", "ALTER TABLE t DROP COLUMN extra;")
    sqlmigrate.up(database_url, mdir.path)
    conn.execute("INSERT INTO t VALUES (1, 'x', 'kept'), (2, 'y', NULL), (3, 'z', 'kept')")
    return sqlmigrate.Migrator(database_url, mdir.path)


def test_data_loss_raises_and_leaves_everything_intact(with_data, conn):
    with pytest.raises(DataLossError) as err:
        with_data.down(2)
    assert err.value.exit_code == 4
    assert [(f.action, f.object, f.rows, f.estimated) for f in err.value.findings] == [
        ("DROP COLUMN", "public.t.extra", 2, False), ("DROP TABLE", "public.t", 3, False)]
    assert all(isinstance(f, Finding) for f in err.value.findings)
    assert "public.t.extra" in str(err.value) and "0001_t.rollback.sql:1" in str(err.value)
    assert "confirm=True" in str(err.value)
    # Nothing ran: not even the first step, whose own check is part of the same refusal.
    assert conn.execute("SELECT count(*), count(extra) FROM t").fetchone() == (3, 2)
    assert versions(conn) == [1, 2]
    assert [r for r in log_rows(conn) if r[1] == "down"] == []


def test_confirm_proceeds_and_reports_findings(with_data, conn):
    r = with_data.down(2, confirm=True)
    assert [a.label for a in r.steps] == ["0002_col", "0001_t"]
    assert [f.object for f in r.findings] == ["public.t.extra", "public.t"]
    assert not exists(conn, "t") and versions(conn) == []
    # The audit log keeps what was destroyed with confirmation, with each rollback.
    assert conn.execute("SELECT version, detail FROM schema_migrations_log WHERE direction = 'down'"
                        " ORDER BY id").fetchall() == [
        (2, "DROP COLUMN public.t.extra: 2 non-null values (exact)"),
        (1, "DROP TABLE public.t: 3 rows (exact)")]


def test_callback_decides(with_data, conn):
    seen: list[list[Finding]] = []

    def no(findings: list[Finding]) -> bool:
        seen.append(findings)
        return False

    with pytest.raises(DataLossError):
        with_data.down(on_data_loss=no)
    assert [f.object for f in seen[0]] == ["public.t.extra"]
    assert conn.execute("SELECT count(extra) FROM t").fetchone() == (2,)
    r = with_data.down(on_data_loss=lambda findings: True)
    assert [a.label for a in r.steps] == ["0002_col"]
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (3,) and versions(conn) == [1]


def test_empty_objects_need_no_confirmation(database_url, conn, mdir):
    mdir.write("0001_t.sql", "CREATE TABLE t (id int, extra text);")
    mdir.write("0001_t.rollback.sql", "ALTER TABLE t DROP COLUMN extra;\nDELETE FROM t WHERE id > 10;\n"
                                      "DROP TABLE t;")
    sqlmigrate.up(database_url, mdir.path)
    conn.execute("INSERT INTO t (id) VALUES (1)")  # extra all NULL, no id > 10: only the DROP TABLE has data
    with pytest.raises(DataLossError) as err:
        sqlmigrate.Migrator(database_url, mdir.path).down()
    assert [f.action for f in err.value.findings] == ["DROP TABLE"]
    conn.execute("TRUNCATE t")
    r = sqlmigrate.Migrator(database_url, mdir.path).down()
    assert r.findings == () and not exists(conn, "t")


def test_dry_run_shows_findings_and_sql_and_changes_nothing(with_data, conn):
    r = with_data.down(2, dry_run=True)
    assert r.dry_run and [a.label for a in r.steps] == ["0002_col", "0001_t"]
    assert r.steps[1].sql == "DROP TABLE t;"
    assert [f.object for f in r.findings] == ["public.t.extra", "public.t"]
    assert versions(conn) == [1, 2] and conn.execute("SELECT count(*) FROM t").fetchone() == (3,)


# ---- CLI -------------------------------------------------------------------------------------------

QUOTED_UP = 'CREATE SCHEMA "Sales";\nCREATE TABLE "Sales"."Order Lines" (id int, "Qty" int);\n'
QUOTED_DOWN = 'ALTER TABLE "Sales"."Order Lines" DROP COLUMN "Qty";\nDROP TABLE "Sales"."Order Lines";\n' \
              'DROP SCHEMA "Sales";\n'


@pytest.fixture
def quoted(cli, mdir, conn):
    mdir.write("0001_sales.sql", QUOTED_UP)
    mdir.write("0001_sales.rollback.sql", QUOTED_DOWN)
    r = cli("up", "--dir", str(mdir))
    assert r.code == 0, r
    conn.execute('INSERT INTO "Sales"."Order Lines" VALUES (1, 5), (2, NULL)')
    return mdir


def test_cli_without_terminal_refuses_with_exit_4_and_keeps_everything(cli, quoted, conn):
    r = cli("down", "--dir", str(quoted))
    assert r.code == 4, r
    assert '"Sales"."Order Lines"."Qty": 1 non-null value (exact)' in r.err, r
    assert 'DROP TABLE "Sales"."Order Lines": 2 rows (exact)' in r.err, r
    assert "--yes" in r.err and "rolled back" not in r.out
    assert conn.execute('SELECT count(*), count("Qty") FROM "Sales"."Order Lines"').fetchone() == (2, 1)
    assert versions(conn) == [1]


def test_cli_yes_proceeds(cli, quoted, conn):
    r = cli("down", "--yes", "--dir", str(quoted))
    assert r.code == 0, r
    assert "rolled back 0001_sales" in r.out and '"Sales"."Order Lines"' in r.err
    assert conn.execute("SELECT to_regnamespace('\"Sales\"')").fetchone() == (None,)
    assert versions(conn) == [] and log_rows(conn)[-1] == (1, "down", "ok")


def test_cli_dry_run_prints_plan_warning_and_sql(cli, quoted, conn):
    r = cli("down", "--dry-run", "--dir", str(quoted))
    assert r.code == 0, r
    assert "would roll back 0001_sales" in r.out and 'DROP SCHEMA "Sales";' in r.out
    assert 'DROP TABLE "Sales"."Order Lines": 2 rows (exact)' in r.err
    assert conn.execute('SELECT count(*) FROM "Sales"."Order Lines"').fetchone() == (2,) and versions(conn) == [1]


def test_cli_without_data_needs_no_confirmation_and_steps_to(cli, mdir, conn):
    three(mdir)
    assert cli("up", "--dir", str(mdir)).code == 0
    r = cli("down", "--steps", "2", "--dir", str(mdir))
    assert r.code == 0 and "rolled back 0003_c" in r.out and "rolled back 0002_b" in r.out, r
    assert r.err == "" and versions(conn) == [1]
    r = cli("down", "--to", "0", "--dir", str(mdir))
    assert r.code == 0 and versions(conn) == [], r
    r = cli("down", "--dir", str(mdir))
    assert r.code == 0 and "nothing to roll back" in r.out, r
    r = cli("down", "--steps", "1", "--to", "1", "--dir", str(mdir))
    assert r.code == 2, r


def test_cli_missing_rollback_exit_2_names_file(cli, mdir, conn):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    assert cli("up", "--dir", str(mdir)).code == 0
    r = cli("down", "--dir", str(mdir))
    assert r.code == 2 and "0001_a.rollback.sql" in r.err, r
    assert exists(conn, "a")


def _in_terminal(args: list[str], env: dict[str, str], cwd: Path, answer: str) -> tuple[int, str]:
    """Run the CLI with stdin/stdout/stderr on a pseudo-terminal, answer the prompt, return (code, output)."""
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "sqlmigrate", *args], stdin=slave, stdout=slave,
                            stderr=slave, env=env, cwd=cwd, close_fds=True)
    os.close(slave)
    output = b""
    answered = False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            if not answered and b"Type 'yes'" in output:
                os.write(master, answer.encode() + b"\n")
                answered = True
            if proc.poll() is not None and not ready:
                break
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, output.decode(errors="replace")


def _terminal_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLMIGRATE_DIR")}
    env["SQLMIGRATE_DATABASE_URL"] = database_url
    return env


@pytest.mark.parametrize("answer", ["no", "y", "YES please", ""])
def test_terminal_prompt_refuses_anything_but_yes(database_url, quoted, conn, tmp_path, answer):
    code, output = _in_terminal(["down", "--dir", str(quoted)], _terminal_env(database_url), tmp_path, answer)
    assert code == 4, output
    assert "Type 'yes' to destroy this data:" in output and "not confirmed" in output, output
    assert conn.execute('SELECT count(*) FROM "Sales"."Order Lines"').fetchone() == (2,) and versions(conn) == [1]


def test_terminal_prompt_accepts_yes(database_url, quoted, conn, tmp_path):
    code, output = _in_terminal(["down", "--dir", str(quoted)], _terminal_env(database_url), tmp_path, "yes")
    assert code == 0, output
    assert 'DROP TABLE "Sales"."Order Lines": 2 rows (exact)' in output and "rolled back 0001_sales" in output
    assert versions(conn) == [] and conn.execute("SELECT to_regnamespace('\"Sales\"')").fetchone() == (None,)
