"""`up` never stalls a busy table: each migration waits at most --lock-wait for a table lock, is
rolled back whole when it cannot get it, and is retried; the blocker is named."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest


def _blocker(database_url: str, hold_s: float) -> tuple[threading.Thread, list[int]]:
    """A session that reads table t in a transaction it keeps open for ``hold_s``: ALTER TABLE t
    queues behind its ACCESS SHARE lock."""
    started = threading.Event()
    pid: list[int] = []

    def run() -> None:
        with psycopg.connect(database_url) as c:  # not autocommit: the SELECT opens a transaction
            c.execute("SET application_name = 'report-job'")
            pid.append(c.execute("SELECT pg_backend_pid()").fetchone()[0])
            c.execute("SELECT count(*) FROM t").fetchone()
            started.set()
            time.sleep(hold_s)
            c.rollback()

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(10)
    return thread, pid


@pytest.fixture
def table_t(conn, mdir):
    conn.execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 10)")
    mdir.write("0001_add_c.sql", "ALTER TABLE t ADD COLUMN c int;\n")


def _has_column(conn) -> bool:
    return conn.execute("SELECT count(*) FROM information_schema.columns"
                        " WHERE table_name = 't' AND column_name = 'c'").fetchone() == (1,)


def test_a_migration_behind_a_long_transaction_is_retried_and_names_the_blocker(cli, conn, mdir, database_url,
                                                                                  table_t):
    thread, pid = _blocker(database_url, hold_s=1.5)
    try:
        r = cli("up", "--dir", str(mdir), "--lock-wait", "0.3", "--lock-retries", "8")
    finally:
        thread.join()
    assert r.code == 0, r
    # Each wait is a warning (stderr) naming the blocking session and its query.
    assert "retry 1 of 8" in r.err and f"pid {pid[0]}" in r.err and "report-job" in r.err, r
    assert "SELECT count(*) FROM t" in r.err and "applied 0001_add_c" in r.out, r
    assert _has_column(conn)
    assert conn.execute("SELECT version FROM schema_migrations").fetchall() == [(1,)]
    assert conn.execute("SELECT direction, outcome FROM schema_migrations_log").fetchall() == [("up", "ok")]


def test_when_the_retries_are_spent_nothing_is_applied_and_the_blocker_is_named(cli, conn, mdir, database_url,
                                                                                 table_t):
    thread, pid = _blocker(database_url, hold_s=8)
    try:
        r = cli("up", "--dir", str(mdir), "--lock-wait", "0.2", "--lock-retries", "1")
    finally:
        thread.join()
    assert r.code == 1, r
    assert "Traceback" not in r.err
    assert "2 attempts" in r.err and f"pid {pid[0]}" in r.err and "report-job" in r.err, r
    assert "0001_add_c.sql:1" in r.err and "SQLSTATE 55P03" in r.err, r
    assert not _has_column(conn)
    assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (0,)
    assert conn.execute("SELECT direction, outcome FROM schema_migrations_log").fetchall() == [("up", "failed")]


def _worst_wait_of_traffic(database_url: str, migrate) -> float:
    """The longest a client's query on t took (it queries every 100 ms) while ``migrate`` ran
    behind a 3 s transaction that holds a lock on t."""
    stop = threading.Event()
    waits: list[float] = []

    def traffic() -> None:
        with psycopg.connect(database_url, autocommit=True) as c:
            while not stop.is_set():
                started = time.monotonic()
                c.execute("SELECT count(*) FROM t").fetchone()
                waits.append(time.monotonic() - started)
                time.sleep(0.1)

    thread, _ = _blocker(database_url, hold_s=3)
    client = threading.Thread(target=traffic)
    client.start()
    try:
        migrate()
    finally:
        thread.join()
        stop.set()
        client.join()
    return max(waits)


def test_traffic_on_the_table_never_waits_longer_than_about_the_lock_wait(database_url, conn, mdir, table_t):
    import sqlmigrate

    # Control: waiting forever, the ALTER queues behind the reader and every query on t queues behind
    # the ALTER until the reader ends.
    stalled = _worst_wait_of_traffic(database_url, lambda: sqlmigrate.up(database_url, mdir.path, lock_wait=0))
    assert stalled > 1.5, stalled
    conn.execute("ALTER TABLE t DROP COLUMN c; DELETE FROM schema_migrations; DELETE FROM schema_migrations_log")
    # With the lock wait the ALTER gives way after 0.2 s, so traffic waits at most about that long.
    kept = _worst_wait_of_traffic(database_url,
                                  lambda: sqlmigrate.up(database_url, mdir.path, lock_wait=0.2, lock_retries=20))
    assert kept < 0.8, (kept, stalled)
    assert _has_column(conn)


def _writer(database_url: str, hold_s: float) -> threading.Thread:
    """A session with an uncommitted INSERT into t: CREATE INDEX CONCURRENTLY gets its table lock,
    creates the index, then waits for this transaction to end."""
    started = threading.Event()

    def run() -> None:
        with psycopg.connect(database_url) as c:
            c.execute("INSERT INTO t VALUES (-1)")
            started.set()
            time.sleep(hold_s)
            c.rollback()

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(10)
    return thread


def test_create_index_concurrently_behind_a_writer_drops_its_invalid_index_and_retries(cli, conn, mdir,
                                                                                       database_url):
    conn.execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 10)")
    mdir.write("0001_idx.sql", "-- sqlmigrate: no-transaction\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n")
    thread = _writer(database_url, hold_s=1.5)
    try:
        r = cli("up", "--dir", str(mdir), "--lock-wait", "0.3", "--lock-retries", "8")
    finally:
        thread.join()
    assert r.code == 0, r
    assert "left the INVALID index public.t_id, dropped before the retry" in r.err and "retry 1 of 8" in r.err, r
    assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_id'::regclass").fetchone() == (True,)
    assert conn.execute("SELECT state, statements_done FROM schema_migrations").fetchall() == [("applied", None)]


def test_a_failed_create_index_concurrently_names_the_invalid_index_it_left(cli, conn, mdir):
    conn.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (1)")
    mdir.write("0001_idx.sql", "-- sqlmigrate: no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY t_x ON t (x);\n")
    r = cli("up", "--dir", str(mdir))
    assert r.code == 1 and "Traceback" not in r.err, r
    assert "left the INVALID index public.t_x behind" in r.err, r
    assert "DROP INDEX CONCURRENTLY public.t_x;" in r.err and "0001_idx.sql:2" in r.err, r
    assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_x'::regclass").fetchone() == (False,)
