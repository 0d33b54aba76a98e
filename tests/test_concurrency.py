"""Many processes (app replicas booting together) running `up` at once: each migration exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import sqlmigrate


def _write_set(mdir) -> None:
    mdir.write("0001_runs.sql", "CREATE TABLE runs (version int, pid int DEFAULT pg_backend_pid());\n"
                                "INSERT INTO runs (version) VALUES (1);\n")
    mdir.write("0002_slow.sql", "SELECT pg_sleep(0.5);\nCREATE TABLE big AS SELECT g AS id FROM generate_series(1, 20000) g;\n"
                                "INSERT INTO runs (version) VALUES (2);\n")
    mdir.write("0003_index.sql", "-- sqlmigrate: no-transaction\n"
                                 "CREATE INDEX CONCURRENTLY big_id ON big (id);\n"
                                 "INSERT INTO runs (version) VALUES (3);\n")
    mdir.write("0004_after.sql", "ALTER TABLE big ADD COLUMN note text;\nINSERT INTO runs (version) VALUES (4);\n")


def _assert_each_ran_once(conn) -> None:
    assert conn.execute("SELECT version, count(*) FROM runs GROUP BY version ORDER BY version").fetchall() == [
        (1, 1), (2, 1), (3, 1), (4, 1)]
    assert conn.execute("SELECT version, state FROM schema_migrations ORDER BY version").fetchall() == [
        (1, "applied"), (2, "applied"), (3, "applied"), (4, "applied")]
    assert conn.execute("SELECT count(*) FROM schema_migrations_log WHERE direction = 'up' AND outcome = 'ok'"
                        ).fetchone() == (4,)
    assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'big_id'::regclass").fetchone() == (True,)


def test_eight_processes_apply_each_migration_once_including_create_index_concurrently(database_url, conn, mdir):
    _write_set(mdir)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    env["SQLMIGRATE_DATABASE_URL"] = database_url
    procs = [subprocess.Popen([sys.executable, "-m", "sqlmigrate", "up", "--dir", str(mdir), "--lock-timeout", "60"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    outputs = [p.communicate(timeout=120) for p in procs]
    codes = [p.returncode for p in procs]
    assert codes == [0] * 8, outputs
    # Exactly one process applied the migrations; the others found nothing to do.
    appliers = [out for out, _ in outputs if "applied 4 migration(s)" in out]
    assert len(appliers) == 1, outputs
    assert sum("nothing to do" in out for out, _ in outputs) == 7, outputs
    _assert_each_ran_once(conn)


def test_boot_code_in_threads(database_url, conn, mdir):
    _write_set(mdir)
    errors: list[BaseException] = []
    applied: list[int] = []

    def boot() -> None:
        try:
            applied.append(len(sqlmigrate.up(database_url, mdir.path, lock_timeout=60)))
            sqlmigrate.ensure_current(database_url, mdir.path)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=boot) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert sorted(applied) == [0] * 7 + [4]
    _assert_each_ran_once(conn)


def test_lock_timeout_gives_exit_5(cli, database_url, conn, mdir):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    from sqlmigrate._history import History

    key = History("public", "schema_migrations").lock_key()
    conn.execute("SELECT pg_advisory_lock(%s)", (key,))
    r = cli("up", "--dir", str(mdir), "--lock-timeout", "0.5")
    assert r.code == 5 and "lock" in r.err and "--lock-timeout" in r.err, r
    assert conn.execute("SELECT to_regclass('a')").fetchone() == (None,)
