"""baseline, repair, status --log, out-of-order, and recovering from a no-transaction migration that
failed or was killed part way; against the real server, through the CLI where a user would be."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import psycopg
import pytest

import sqlmigrate
from sqlmigrate._errors import ConfigurationError, HistoryError
from sqlmigrate._history import History


def history(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("SELECT version, state, baseline, out_of_order FROM schema_migrations ORDER BY version"
                        ).fetchall()


def log_rows(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("SELECT version, direction, outcome FROM schema_migrations_log ORDER BY id").fetchall()


def checksum(database_url: str, mdir, version: int) -> str:
    status = sqlmigrate.Migrator(database_url, mdir.path).status()
    return next(e.migration.checksum for e in status.entries if e.version == version)


def exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


# -- baseline ---------------------------------------------------------------------------------------


def test_baseline_records_without_running_then_up_applies_the_rest(cli, conn, mdir, database_url):
    conn.execute("CREATE TABLE a (id int); CREATE TABLE b (id int)")  # built by other means
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    mdir.write("0002_b.sql", "CREATE TABLE b (id int);")
    mdir.write("0003_c.sql", "CREATE TABLE c (id int);")
    r = cli("baseline", "2", "--dir", str(mdir))
    assert r.code == 0, r
    assert "0001_a" in r.out and "0002_b" in r.out and "without running" in r.out
    assert history(conn) == [(1, "applied", True, False), (2, "applied", True, False)]
    assert conn.execute("SELECT version, checksum, execution_ms FROM schema_migrations ORDER BY version"
                        ).fetchall() == [(1, checksum(database_url, mdir, 1), 0), (2, checksum(database_url, mdir, 2), 0)]
    assert conn.execute("SELECT version, direction, outcome, execution_ms, detail LIKE 'baseline up to 2%',"
                        " db_user = current_user, client_pid IS NOT NULL FROM schema_migrations_log ORDER BY id"
                        ).fetchall() == [(1, "baseline", "ok", 0, True, True, True),
                                         (2, "baseline", "ok", 0, True, True, True)]
    r = cli("status", "--dir", str(mdir))
    assert "(baseline)" in r.out and "pending      0003_c" in r.out, r
    r = cli("up", "--dir", str(mdir))
    assert r.code == 0 and "applied 1 migration(s)" in r.out, r
    assert exists(conn, "c")
    assert cli("check", "--dir", str(mdir)).code == 0


def test_baseline_refuses_existing_history_unless_forced_and_never_changes_rows(cli, conn, mdir):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    mdir.write("0003_c.sql", "CREATE TABLE c (id int);")
    assert cli("up", "--dir", str(mdir)).code == 0
    conn.execute("CREATE TABLE b (id int)")
    mdir.write("0002_b.sql", "CREATE TABLE b (id int);")
    before = conn.execute("SELECT * FROM schema_migrations ORDER BY version").fetchall()
    r = cli("baseline", "2", "--dir", str(mdir))
    assert r.code == 2, r
    assert "already has history" in r.err and "--force" in r.err and "newest 3" in r.err
    assert conn.execute("SELECT * FROM schema_migrations ORDER BY version").fetchall() == before
    r = cli("baseline", "2", "--force", "--dir", str(mdir))
    assert r.code == 0, r
    after = conn.execute("SELECT * FROM schema_migrations ORDER BY version").fetchall()
    assert [after[0], after[2]] == before  # existing rows untouched
    assert history(conn)[1] == (2, "applied", True, False)
    assert log_rows(conn)[-1] == (2, "baseline", "ok")
    assert cli("check", "--dir", str(mdir)).code == 0


def test_baseline_library_api_and_nothing_to_baseline(database_url, conn, mdir):
    mdir.write("0005_a.sql", "CREATE TABLE a (id int);")
    m = sqlmigrate.Migrator(database_url, mdir.path)
    with pytest.raises(ConfigurationError, match="no migration file has a version at or below 4"):
        m.baseline(4)
    result = m.baseline(99)  # any version: every file at or below it
    assert [b.label for b in result.recorded] == ["0005_a"] and result.version == 99
    assert not exists(conn, "a")
    again = m.baseline(99, force=True)
    assert again.recorded == () and again.kept == (5,)


# -- out of order -----------------------------------------------------------------------------------


def test_out_of_order_is_named_by_check_and_up_and_recorded_when_allowed(cli, conn, mdir):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    mdir.write("0003_c.sql", "CREATE TABLE c (id int);")
    assert cli("up", "--dir", str(mdir)).code == 0
    mdir.write("0002_b.sql", "CREATE TABLE b (id int);")
    r = cli("check", "--dir", str(mdir))
    assert r.code == 3 and "pending out of order: 0002_b" in r.err, r
    r = cli("status", "--dir", str(mdir))
    assert "out-of-order 0002_b" in r.out, r
    r = cli("up", "--dir", str(mdir))
    assert r.code == 2 and "0002_b" in r.err and "--allow-out-of-order" in r.err, r
    assert not exists(conn, "b")
    r = cli("up", "--allow-out-of-order", "--dir", str(mdir))
    assert r.code == 0 and "out of order" in r.out, r
    assert history(conn)[1] == (2, "applied", False, True)
    assert conn.execute("SELECT detail FROM schema_migrations_log WHERE version = 2").fetchone() == ("out of order",)
    assert "(applied out of order)" in cli("status", "--dir", str(mdir)).out


# -- modified and missing ---------------------------------------------------------------------------


def test_modified_and_missing_are_named_and_repair_accepts_checksums(cli, conn, mdir, database_url):
    a = mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    b = mdir.write("0002_b.sql", "CREATE TABLE b (id int);")
    c = mdir.write("0003_c.sql", "CREATE TABLE c (id int);")
    assert cli("up", "--dir", str(mdir)).code == 0
    old_a, old_b = checksum(database_url, mdir, 1), checksum(database_url, mdir, 2)
    a.write_text("-- reformatted\nCREATE TABLE a (id int);\n")
    b.write_text("CREATE TABLE b (id int);  -- comment\n")
    c.unlink()
    r = cli("status", "--dir", str(mdir))
    assert "modified     0001_a" in r.out and "modified     0002_b" in r.out and "missing      0003_c" in r.out, r
    r = cli("check", "--dir", str(mdir))
    assert r.code == 3 and "modified since applied: 0001_a, 0002_b" in r.err
    assert "applied but file missing: 0003_c" in r.err, r

    r = cli("repair", "1", "--dir", str(mdir))  # only the named one
    new_a = checksum(database_url, mdir, 1)
    assert r.code == 0 and f"checksum {old_a} -> {new_a}" in r.out and "0002_b" not in r.out, r
    assert conn.execute("SELECT checksum FROM schema_migrations WHERE version = 2").fetchone() == (old_b,)
    r = cli("repair", "--dir", str(mdir))  # all modified ones
    assert r.code == 0 and f"checksum {old_b} -> {checksum(database_url, mdir, 2)}" in r.out, r
    assert conn.execute("SELECT version, direction, outcome, checksum, detail FROM schema_migrations_log"
                        " WHERE direction = 'repair' ORDER BY id").fetchall() == [
        (1, "repair", "ok", new_a, f"accepted the edited file: checksum {old_a} -> {new_a}"),
        (2, "repair", "ok", checksum(database_url, mdir, 2),
         f"accepted the edited file: checksum {old_b} -> {checksum(database_url, mdir, 2)}")]
    r = cli("status", "--dir", str(mdir))
    assert "applied      0001_a" in r.out and "applied      0002_b" in r.out and "missing      0003_c" in r.out
    # A missing file has no checksum to accept: repair says so and changes nothing.
    r = cli("repair", "3", "--dir", str(mdir))
    assert r.code == 2 and "file is gone" in r.err, r
    r = cli("repair", "--dir", str(mdir))
    assert r.code == 0 and "nothing to repair" in r.out, r
    assert cli("check", "--dir", str(mdir)).code == 3  # still missing


# -- failed no-transaction migrations ---------------------------------------------------------------


def test_failed_no_transaction_migration_guidance_and_retry(cli, conn, mdir):
    mdir.write("0001_t.sql", "CREATE TABLE t (id int);")
    nt = mdir.write("0002_nt.sql", "-- sqlmigrate: no-transaction\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n"
                                   "CREATE INDEX CONCURRENTLY t_x ON t (nope);\nVACUUM t;\n")
    mdir.write("0003_after.sql", "CREATE TABLE after (id int);")
    r = cli("up", "--dir", str(mdir))
    assert r.code == 1 and "0002_nt.sql:3" in r.err, r
    assert conn.execute("SELECT version, direction, outcome, error LIKE '%%nope%%', db_user = current_user,"
                        " client_host, client_pid IS NOT NULL, execution_ms IS NOT NULL"
                        " FROM schema_migrations_log WHERE outcome = 'failed'").fetchall() == [
        (2, "up", "failed", True, True, socket.gethostname(), True, True)]

    r = cli("status", "--dir", str(mdir))
    assert "failed       0002_nt" in r.out and "statement 2 of 3 (line 3) failed; 1 completed" in r.out, r
    r = cli("up", "--dir", str(mdir))
    assert r.code == 2, r
    for fragment in ("0002_nt", "statement 2 of 3 (line 3) failed", "did not run",
                     "sqlmigrate repair --applied 2", "sqlmigrate repair --retry 2"):
        assert fragment in r.err, (fragment, r)
    assert not exists(conn, "after")
    r = cli("check", "--dir", str(mdir))
    assert r.code == 3 and "failed part way: 0002_nt" in r.err, r

    # Plain repair never resolves a failure implicitly; it explains the two choices.
    r = cli("repair", "--dir", str(mdir))
    assert r.code == 2 and "--applied 2" in r.err and "--retry 2" in r.err, r
    r = cli("repair", "2", "--dir", str(mdir))
    assert r.code == 2 and "--applied 2" in r.err, r
    assert history(conn)[1][1] == "failed"
    r = cli("repair", "--applied", "1", "--dir", str(mdir))
    assert r.code == 2 and "0001_t is applied, not failed part way" in r.err, r

    # The user undoes the half-done work and fixes the file, then asks for a retry.
    conn.execute("DROP INDEX t_id")
    nt.write_text("-- sqlmigrate: no-transaction\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n"
                  "CREATE INDEX CONCURRENTLY t_x ON t (id);\nVACUUM t;\n")
    r = cli("repair", "--retry", "2", "--dir", str(mdir))
    assert r.code == 0 and "0002_nt" in r.out, r
    assert [v for v, *_ in history(conn)] == [1]
    assert conn.execute("SELECT detail FROM schema_migrations_log WHERE direction = 'repair'").fetchone()[0] \
        .startswith("cleared after it stopped part way (statement 2 of 3 (line 3) failed")
    r = cli("up", "--dir", str(mdir))
    assert r.code == 0 and "applied 2 migration(s)" in r.out, r
    assert exists(conn, "t_x") and exists(conn, "after")
    assert cli("check", "--dir", str(mdir)).code == 0


def _wait_for(predicate, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("resolution", ["applied", "retry"])
def test_sigkill_during_no_transaction_migration_then_repair_and_resume(cli, conn, mdir, database_url, resolution):
    mdir.write("0001_t.sql", "CREATE TABLE t (id int);\nINSERT INTO t SELECT generate_series(1, 100);\n")
    nt = mdir.write("0002_idx.sql", "-- sqlmigrate: no-transaction\n"
                                    "CREATE INDEX CONCURRENTLY t_id ON t (id);\n"
                                    "SELECT pg_sleep(30);\n"
                                    "CREATE INDEX CONCURRENTLY t_id2 ON t (id);\n")
    mdir.write("0003_after.sql", "CREATE TABLE after (id int);")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLMIGRATE_DIR")}
    env["SQLMIGRATE_DATABASE_URL"] = database_url
    proc = subprocess.Popen([sys.executable, "-m", "sqlmigrate", "up", "--dir", str(mdir)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def reached_sleep() -> bool:
            if not exists(conn, "schema_migrations"):
                return False
            row = conn.execute("SELECT statements_done FROM schema_migrations WHERE version = 2").fetchone()
            return bool(row and row[0] is not None and row[0] >= 1)

        _wait_for(reached_sleep, "the first statement of 0002_idx to complete")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    r = cli("status", "--dir", str(mdir))
    assert r.code == 0 and "failed       0002_idx" in r.out, r
    assert "stopped (killed, crashed or disconnected) during statement 2: statement(s) 1-1 completed" in r.out, r
    # The server notices within a second that the client is gone (client_connection_check_interval,
    # PostgreSQL 14+) and ends its session inside pg_sleep, releasing the migration lock: no orphan
    # holds up the next deploy for the rest of its statement.
    if conn.info.server_version < 140000:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                     " WHERE datname = current_database() AND application_name = 'sqlmigrate'")
    _wait_for(lambda: conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                   " AND application_name = 'sqlmigrate'").fetchone() == (0,), "the orphan",
              timeout=10)

    r = cli("up", "--dir", str(mdir))
    assert r.code == 2, r
    for fragment in ("0002_idx", "during statement 2", "1-1 completed", "did not run",
                     "repair --applied 2", "repair --retry 2"):
        assert fragment in r.err, (fragment, r)
    assert not exists(conn, "after") and not exists(conn, "t_id2")

    if resolution == "applied":
        conn.execute("CREATE INDEX t_id2 ON t (id)")  # finish the rest by hand
        r = cli("repair", "--applied", "2", "--dir", str(mdir))
        assert r.code == 0 and "marked applied by hand" in r.out, r
        assert conn.execute("SELECT state, statements_done, error, baseline FROM schema_migrations"
                            " WHERE version = 2").fetchone() == ("applied", None, None, False)
        r = cli("up", "--dir", str(mdir))
        assert r.code == 0 and "applied 1 migration(s)" in r.out, r
    else:
        conn.execute("DROP INDEX t_id")  # undo what ran, and drop the sleep from the file
        nt.write_text(nt.read_text().replace("SELECT pg_sleep(30);\n", ""))
        r = cli("repair", "--retry", "2", "--dir", str(mdir))
        assert r.code == 0, r
        r = cli("up", "--dir", str(mdir))
        assert r.code == 0 and "applied 2 migration(s)" in r.out, r
        assert exists(conn, "t_id")
    assert exists(conn, "t_id2") and exists(conn, "after")
    assert cli("check", "--dir", str(mdir)).code == 0
    detail = conn.execute("SELECT detail FROM schema_migrations_log WHERE direction = 'repair'").fetchone()[0]
    assert "during statement 2" in detail


def test_repair_library_api(database_url, conn, mdir):
    mdir.write("0001_t.sql", "CREATE TABLE t (id int);")
    mdir.write("0002_nt.sql", "-- sqlmigrate: no-transaction\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n"
                              "SELECT 1/0;\n")
    with pytest.raises(sqlmigrate.MigrationError):
        sqlmigrate.up(database_url, mdir.path)
    m = sqlmigrate.Migrator(database_url, mdir.path)
    result = m.repair()
    assert result.repaired == () and [u.version for u in result.unresolved] == [2]
    assert "repair --applied 2" in result.unresolved[0].guidance
    with pytest.raises(ConfigurationError, match="both --applied and --retry"):
        m.repair(mark_applied=[2], retry=[2])
    with pytest.raises(HistoryError, match="version 7 is not in"):
        m.repair(retry=[7])
    result = m.repair(mark_applied=[2])
    assert [(r.version, r.action) for r in result.repaired] == [(2, "applied")] and result.unresolved == ()
    assert m.check().current


def test_repair_on_a_database_without_history_creates_nothing(database_url, conn, mdir):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    assert sqlmigrate.Migrator(database_url, mdir.path).repair() == sqlmigrate.Migrator(
        database_url, mdir.path).repair()
    assert not exists(conn, "schema_migrations")


# -- status --log -----------------------------------------------------------------------------------


def test_status_log_shows_recent_entries_with_who(cli, conn, mdir):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    mdir.write("0002_b.sql", "SELECT 1/0;")
    assert cli("up", "--dir", str(mdir)).code == 1
    r = cli("status", "--log", "--dir", str(mdir))
    assert r.code == 0, r
    lines = r.out[r.out.index("log (newest 2)"):].splitlines()
    user = conn.execute("SELECT current_user").fetchone()[0]
    assert " up       ok      0001_a " in lines[1] and f"{user}@{socket.gethostname()} pid " in lines[1], r
    assert " up       failed  0002_b " in lines[2] and "error: " in lines[3] and "division by zero" in lines[3], r
    r = cli("status", "--log", "1", "--dir", str(mdir))
    assert "log (newest 1)" in r.out and "1_a" not in r.out.split("log (newest 1)")[1], r
    data = json.loads(cli("status", "--json", "--log", "5", "--dir", str(mdir)).out)
    assert [(e["version"], e["direction"], e["outcome"]) for e in data["log"]] == [(1, "up", "ok"), (2, "up", "failed")]
    assert data["log"][0]["client_host"] == socket.gethostname() and data["log"][0]["db_user"] == user
    assert data["migrations"][0]["state"] == "applied"


def test_no_transaction_timing_is_recorded(database_url, conn, mdir):
    mdir.write("0001_nt.sql", "-- sqlmigrate: no-transaction\nSELECT pg_sleep(0.3);\nSELECT 1;\n")
    sqlmigrate.up(database_url, mdir.path)
    assert conn.execute("SELECT execution_ms >= 300 FROM schema_migrations").fetchone() == (True,)
    assert conn.execute("SELECT execution_ms >= 300, finished_at - started_at >= interval '300 ms'"
                        " FROM schema_migrations_log").fetchone() == (True, True)


# -- dry run ----------------------------------------------------------------------------------------


def test_dry_run_completes_while_another_session_holds_the_migration_lock(cli, conn, mdir):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    conn.execute("SELECT pg_advisory_lock(%s)", (History("public", "schema_migrations").lock_key(),))
    started = time.monotonic()
    r = cli("up", "--dry-run", "--lock-timeout", "5", "--dir", str(mdir))
    assert r.code == 0 and "would apply 0001_a" in r.out and "CREATE TABLE a" in r.out, r
    assert time.monotonic() - started < 5  # it never waited for the lock
    assert not exists(conn, "a") and not exists(conn, "schema_migrations")


# -- an applied version whose file now has another name ----------------------------------------------


def _renamed_setup(cli, mdir, conn, text: str = "CREATE TABLE tricky (id int);"):
    """``0001_create_a`` applied; the directory now has ``0001_tricky`` at that version instead."""
    a = mdir.write("0001_create_a.sql", "CREATE TABLE a (id int);")
    mdir.write("0001_create_a.rollback.sql", "DROP TABLE a;")
    assert cli("up", "--dir", str(mdir)).code == 0
    a.unlink()
    (mdir.path / "0001_create_a.rollback.sql").unlink()
    mdir.write("0001_tricky.sql", text)
    mdir.write("0001_tricky.rollback.sql", "DROP TABLE tricky;")
    return conn.execute("SELECT name, checksum FROM schema_migrations WHERE version = 1").fetchone()


def test_status_and_check_name_both_the_recorded_and_the_file_name(cli, conn, mdir):
    _renamed_setup(cli, mdir, conn)
    r = cli("status", "--dir", str(mdir))
    assert "renamed      0001_tricky" in r.out, r
    assert "applied as 0001_create_a; the file at version 1 is now 0001_tricky (different text)" in r.out, r
    (entry,) = json.loads(cli("status", "--json", "--dir", str(mdir)).out)["migrations"]
    assert (entry["state"], entry["name"], entry["applied_name"]) == ("renamed", "tricky", "create_a")
    assert "applied as 0001_create_a" in entry["note"]
    assert json.loads(cli("status", "--json", "--dir", str(mdir)).out)["renamed"] == [1]
    r = cli("check", "--dir", str(mdir))
    assert r.code == 3 and "renamed since applied: 0001_tricky (applied as 0001_create_a)" in r.err, r
    # up runs nothing: the file at an applied version is not the one that ran
    r = cli("up", "--dir", str(mdir))
    assert r.code == 2 and "0001_create_a" in r.err and "repair --accept-renamed 1" in r.err, r
    assert not exists(conn, "tricky")
    # down would run the rollback of a file that never ran
    r = cli("down", "--yes", "--dir", str(mdir))
    assert r.code == 2 and "0001_create_a" in r.err and "0001_tricky" in r.err, r
    assert exists(conn, "a") and history(conn) == [(1, "applied", False, False)]


def test_plain_repair_never_adopts_a_file_of_another_name(cli, conn, mdir):
    before = _renamed_setup(cli, mdir, conn)
    r = cli("repair", "--dir", str(mdir))
    assert r.code == 2, r
    assert "0001_create_a" in r.err and "0001_tricky" in r.err and "left as it is" in r.err, r
    assert "sqlmigrate repair --accept-renamed 1" in r.err, r
    r = cli("repair", "1", "--dir", str(mdir))
    assert r.code == 2 and "sqlmigrate repair --accept-renamed 1" in r.err, r
    assert conn.execute("SELECT name, checksum FROM schema_migrations WHERE version = 1").fetchone() == before
    assert [row for row in log_rows(conn) if row[1] == "repair"] == []
    assert cli("check", "--dir", str(mdir)).code == 3

    r = cli("repair", "--accept-renamed", "1", "--dir", str(mdir))
    assert r.code == 0 and "0001_create_a" in r.out and "0001_tricky" in r.out, r
    name, new_checksum = conn.execute("SELECT name, checksum FROM schema_migrations WHERE version = 1").fetchone()
    assert name == "tricky" and new_checksum != before[1]
    (detail,) = conn.execute("SELECT detail FROM schema_migrations_log WHERE direction = 'repair'").fetchone()
    assert "0001_tricky" in detail and "0001_create_a" in detail
    assert cli("check", "--dir", str(mdir)).code == 0
    assert not exists(conn, "tricky")  # adopted, as asked, not run


def test_repair_api_accept_renamed(database_url, conn, mdir, cli):
    before = _renamed_setup(cli, mdir, conn, text="CREATE TABLE a (id int);")  # the same text, renamed
    m = sqlmigrate.Migrator(database_url, mdir.path)
    (entry,) = m.status().entries
    assert entry.state is sqlmigrate.State.RENAMED and (entry.name, entry.applied_name) == ("tricky", "create_a")
    assert entry.note == "applied as 0001_create_a; the file at version 1 is now 0001_tricky (same text)"
    with pytest.raises(sqlmigrate.NotCurrentError) as caught:
        m.check()
    assert caught.value.renamed == (1,)

    result = m.repair()
    assert result.repaired == ()
    (left,) = result.unresolved
    assert (left.version, left.reason) == (1, "renamed") and "repair --accept-renamed 1" in left.guidance
    with pytest.raises(HistoryError, match="accept-renamed 1"):
        m.repair([1])
    assert conn.execute("SELECT name, checksum FROM schema_migrations WHERE version = 1").fetchone() == before

    result = m.repair(accept_renamed=[1])
    (done,) = result.repaired
    assert (done.version, done.action, done.label) == (1, "renamed", "0001_tricky")
    assert done.old_checksum == done.new_checksum == before[1]  # the same text: only the name changes
    assert conn.execute("SELECT name, checksum FROM schema_migrations WHERE version = 1").fetchone() == (
        "tricky", before[1])
    assert m.check().current
    with pytest.raises(HistoryError, match="0001_tricky is applied, not renamed"):
        m.repair(accept_renamed=[1])
