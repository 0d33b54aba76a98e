"""Exactly once wherever it is deployed (SPEC section 7, issue 10): behind a real PgBouncer in
transaction and session pooling mode, with a least-privilege role, with search_path ``app, public``,
with session state that must not leak between migrations, and with failures outside a migration."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import sqlmigrate

POOL_SIZE = 4  # tests/pgbouncer.py: default_pool_size
ROUND_DEADLINE = 60.0  # a healthy round takes seconds; a lock left on a pooled session hangs it


# -- helpers ----------------------------------------------------------------------------------------


def _env(url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "SQLMIGRATE_DATABASE_URL", "SQLMIGRATE_DIR")}
    if url is not None:
        env["SQLMIGRATE_DATABASE_URL"] = url
    return env


def run_many(n: int, url: str, mdir, *args: str, cwd: Path) -> list[tuple[int, str, str]]:
    """``n`` OS processes running ``sqlmigrate up`` at once; (exit code, stdout, stderr) of each. A
    process still running after ROUND_DEADLINE is killed and reported as exit -9."""
    cmd = [sys.executable, "-m", "sqlmigrate", "up", "--dir", str(mdir), "--lock-timeout", "120", *args]
    procs = [subprocess.Popen(cmd, env=_env(url), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(n)]
    deadline = time.monotonic() + ROUND_DEADLINE
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            err += f"\n[killed by the test: still running after {ROUND_DEADLINE:g} s]"
        results.append((p.returncode, out, err))
    return results


def assert_all_ok(results: list[tuple[int, str, str]]) -> None:
    bad = [r for r in results if r[0] != 0 or "Traceback" in r[2] or "prepared statement" in r[2]]
    assert not bad, f"{len(bad)} of {len(results)} processes failed; first:\nexit {bad[0][0]}\n{bad[0][2][-3000:]}"


def write_ledger(mdir, first: int, last: int) -> None:
    """Migrations that each add their own version to a ledger: a count above 1 is a migration run twice."""
    for v in range(first, last + 1):
        text = "CREATE TABLE ledger (v int NOT NULL, pid int DEFAULT pg_backend_pid());\n" if v == 1 else ""
        if v % 7 == 0:
            text += "SELECT pg_sleep(0.05);\n"  # widen the window in which other processes compete
        text += f"INSERT INTO ledger (v) VALUES ({v});\n"
        mdir.write(f"{v:04d}_step_{v}.sql", text)


def assert_each_applied_once(conn: psycopg.Connection, last: int) -> None:
    counts = dict(conn.execute("SELECT v, count(*) FROM ledger GROUP BY v").fetchall())
    twice = {v: c for v, c in counts.items() if c != 1}
    assert not twice, f"migrations run more than once (version: runs): {twice}"
    assert sorted(counts) == list(range(1, last + 1))
    rows = conn.execute("SELECT version, count(*), min(state), max(state) FROM schema_migrations "
                        "GROUP BY version ORDER BY version").fetchall()
    assert rows == [(v, 1, "applied", "applied") for v in range(1, last + 1)]


def advisory_locks(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT l.pid, l.classid, l.objid, a.state, a.application_name FROM pg_locks l"
        " LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory'"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())").fetchall()


SESSION_SETTINGS = ("application_name", "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout",
                    "client_connection_check_interval")


def default_settings(database_url: str) -> dict[str, str]:
    """What a fresh session of an application sees (the server's and database's defaults)."""
    with psycopg.connect(database_url, autocommit=True) as c:
        return {name: c.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0]
                for name in SESSION_SETTINGS}


def pooled_session_settings(pool_url: str) -> list[dict[str, str]]:
    """The settings on every server session of the pool, as the pool's next clients get them: POOL_SIZE
    clients each hold a transaction open at once, so each one is on a different server session."""
    clients = [psycopg.connect(pool_url, prepare_threshold=None) for _ in range(POOL_SIZE)]
    try:
        seen = []
        for c in clients:
            seen.append({name: c.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0]
                         for name in SESSION_SETTINGS})
        pids = {c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in clients}
        assert len(pids) == POOL_SIZE, "the check did not reach every server session of the pool"
        return seen
    finally:
        for c in clients:
            c.close()


def no_traceback(result) -> None:
    assert "Traceback" not in result.err and "Traceback" not in result.out, result


def exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def history(conn: psycopg.Connection) -> list[tuple[int, str]]:
    if not exists(conn, "public.schema_migrations"):
        return []
    return conn.execute("SELECT version, state FROM public.schema_migrations ORDER BY version").fetchall()


# -- the pooler itself ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_pgbouncer_fixture_pools_the_test_database(request, mode, conn, database_url):
    url = request.getfixturevalue(f"pgbouncer_{mode}_url")
    port = int(conninfo_to_dict(url)["port"])
    # A session pool gives each client a server session of its own until it disconnects.
    clients = [psycopg.connect(url, autocommit=True) for _ in range(POOL_SIZE * (2 if mode == "transaction" else 1))]
    try:
        for c in clients:
            assert c.info.port == port
            assert c.execute("SELECT 1, current_database()").fetchone() == (1, conninfo_to_dict(database_url)["dbname"])
        # At most 4 server sessions (for 8 clients in transaction mode): connections go through a pooler.
        servers = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                               " AND pid <> pg_backend_pid()").fetchone()[0]
        assert 1 <= servers <= POOL_SIZE
    finally:
        for c in clients:
            c.close()
    # The clients are gone and the pool keeps their server sessions for the next ones.
    time.sleep(0.2)
    kept = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND pid <> pg_backend_pid()").fetchone()[0]
    assert 1 <= kept <= POOL_SIZE


# -- a. sixteen processes through a transaction pooler, three rounds --------------------------------


def test_sixteen_processes_through_transaction_pooler_apply_each_migration_once(
        pgbouncer_transaction_url, database_url, conn, mdir, tmp_path, cli):
    pool = pgbouncer_transaction_url
    defaults = default_settings(database_url)
    rounds = [(30, ()), (40, ("--statement-timeout", "30")), (50, ())]
    previous = 0
    for number, (last, extra) in enumerate(rounds, 1):
        write_ledger(mdir, previous + 1, last)
        started = time.monotonic()
        results = run_many(16, pool, mdir, *extra, cwd=tmp_path)
        took = time.monotonic() - started
        assert_all_ok(results)
        assert_each_applied_once(conn, last)
        assert advisory_locks(conn) == [], f"round {number}: a migration lock was left on a server session"
        leaked = [s for s in pooled_session_settings(pool) if s != defaults]
        assert not leaked, f"round {number}: sqlmigrate's settings left on pooled sessions: {leaked} " \
                           f"(defaults {defaults})"
        print(f"round {number}: 16 processes, {last - previous} new migrations, {took:.1f} s")
        previous = last
    # A later deploy, directly or through the pool, finds nothing to do at once.
    direct = cli("up", "--dir", str(mdir), "--lock-timeout", "5")
    assert direct.code == 0 and "nothing to do" in direct.out, direct
    pooled = cli("check", "--dir", str(mdir), url=pool)
    assert pooled.code == 0, pooled
    no_traceback(pooled)


# -- b. session pooling and direct ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["session", "direct"])
def test_concurrent_up_through_session_pooler_and_direct_apply_each_migration_once(
        request, path, database_url, conn, mdir, tmp_path):
    url = request.getfixturevalue("pgbouncer_session_url") if path == "session" else database_url
    defaults = default_settings(database_url)
    write_ledger(mdir, 1, 20)
    mdir.write("0021_index.sql", "-- sqlmigrate: no-transaction\nCREATE INDEX CONCURRENTLY ledger_v ON ledger (v);\n"
                                 "INSERT INTO ledger (v) VALUES (21);\n")
    write_ledger(mdir, 22, 25)
    results = run_many(6, url, mdir, "--statement-timeout", "30", cwd=tmp_path)
    assert_all_ok(results)
    assert_each_applied_once(conn, 25)
    assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'ledger_v'::regclass").fetchone() == (True,)
    assert advisory_locks(conn) == []
    if path == "session":
        leaked = [s for s in pooled_session_settings(url) if s != defaults]
        assert not leaked, f"sqlmigrate's settings left on pooled sessions: {leaked} (defaults {defaults})"


# -- c. no-transaction migrations behind a transaction pooler ----------------------------------------


def _with_concurrent_index(mdir) -> None:
    mdir.write("0001_table.sql", "CREATE TABLE items (id int);\nINSERT INTO items VALUES (1), (2);\n")
    mdir.write("0002_index.sql", "-- sqlmigrate: no-transaction\nCREATE INDEX CONCURRENTLY items_id ON items (id);\n")
    mdir.write("0003_after.sql", "ALTER TABLE items ADD COLUMN note text;\n")


def test_no_transaction_migration_through_transaction_pooler_is_refused_before_anything_runs(
        pgbouncer_transaction_url, conn, mdir, cli):
    _with_concurrent_index(mdir)
    r = cli("up", "--dir", str(mdir), url=pgbouncer_transaction_url)
    assert r.code == 2, r
    no_traceback(r)
    assert "0002" in r.err, r
    assert "direct" in r.err and "session" in r.err and "--lock-strategy" in r.err, r
    # Refused up front: not even the transactional migration before it ran.
    assert not exists(conn, "public.items")
    assert [row for row in history(conn) if row[1] == "applied"] == []
    assert advisory_locks(conn) == []


def test_no_transaction_migration_through_session_pooler_runs(pgbouncer_session_url, conn, mdir, cli):
    _with_concurrent_index(mdir)
    r = cli("up", "--dir", str(mdir), url=pgbouncer_session_url)
    assert r.code == 0, r
    no_traceback(r)
    assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_id'::regclass").fetchone() == (True,)
    assert history(conn) == [(1, "applied"), (2, "applied"), (3, "applied")]


# -- d. --lock-strategy -----------------------------------------------------------------------------


def test_every_lock_strategy_is_accepted_and_a_bogus_one_is_a_usage_error(conn, mdir, cli):
    for v, strategy in enumerate(["session", "transaction", "table", "auto"], 1):
        write_ledger(mdir, v, v)
        r = cli("up", "--dir", str(mdir), "--lock-strategy", strategy)
        assert r.code == 0, (strategy, r)
        no_traceback(r)
        assert_each_applied_once(conn, v)
    write_ledger(mdir, 5, 5)
    r = cli("up", "--dir", str(mdir), "--lock-strategy", "bogus")
    assert r.code == 2, r
    assert "--lock-strategy" in r.err, r
    assert history(conn)[-1] == (4, "applied")


@pytest.mark.parametrize("strategy,path", [("transaction", "direct"), ("transaction", "pooled"),
                                           ("table", "pooled")])
def test_eight_processes_with_a_lock_strategy_apply_each_migration_once(
        request, strategy, path, database_url, conn, mdir, tmp_path):
    url = request.getfixturevalue("pgbouncer_transaction_url") if path == "pooled" else database_url
    write_ledger(mdir, 1, 25)
    results = run_many(8, url, mdir, "--lock-strategy", strategy, cwd=tmp_path)
    assert_all_ok(results)
    assert_each_applied_once(conn, 25)
    assert advisory_locks(conn) == []


# -- e. least privilege -----------------------------------------------------------------------------


def test_role_with_only_usage_and_create_on_its_schema_runs_every_command(make_role, conn, mdir, cli):
    url = make_role("REVOKE CREATE ON DATABASE {db} FROM PUBLIC",
                    "GRANT USAGE, CREATE ON SCHEMA public TO {role}")
    role = conninfo_to_dict(url)["user"]
    assert conn.execute("SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = %s", (role,)).fetchone() == (False,)
    assert conn.execute("SELECT has_database_privilege(%s, current_database(), 'CREATE')", (role,)).fetchone() == (False,)
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    mdir.write("0001_a.rollback.sql", "DROP TABLE a;")
    mdir.write("0002_b.sql", "CREATE TABLE b (id int);\nCREATE INDEX b_id ON b (id);")
    mdir.write("0002_b.rollback.sql", "DROP TABLE b;")

    for args, code in [(("up",), 0), (("status",), 0), (("check",), 0), (("down", "--yes"), 0),
                       (("check",), 3), (("status",), 0), (("up",), 0), (("check",), 0)]:
        r = cli(*args, "--dir", str(mdir), url=url)
        assert r.code == code, (args, r)
        no_traceback(r)
    assert history(conn) == [(1, "applied"), (2, "applied")]
    assert conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'schema_migrations'"
                        ).fetchone() == (role,)


# -- f. search_path app, public ----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["alter-database", "url-options"])
def test_history_is_found_where_it_is_after_a_migration_creates_a_schema_earlier_in_search_path(
        how, database_url, conn, mdir, cli):
    if how == "alter-database":
        conn.execute(sql.SQL("ALTER DATABASE {} SET search_path = app, public").format(
            sql.Identifier(conn.info.dbname)))
        url = database_url
    else:
        url = make_conninfo(database_url, options="-csearch_path=app,public")
    mdir.write("0001_schema.sql", "CREATE SCHEMA IF NOT EXISTS app;\n")
    mdir.write("0002_table.sql", "CREATE TABLE things (id int);\n")

    r = cli("up", "--dir", str(mdir), url=url)
    assert r.code == 0, r
    r = cli("check", "--dir", str(mdir), url=url)
    assert r.code == 0, r
    r = cli("up", "--dir", str(mdir), url=url)
    assert r.code == 0 and "nothing to do" in r.out, r
    no_traceback(r)
    assert conn.execute("SELECT table_schema FROM information_schema.tables WHERE table_name = 'schema_migrations'"
                        ).fetchall() == [("public",)]
    assert history(conn) == [(1, "applied"), (2, "applied")]
    assert exists(conn, "app.things")


# -- g. session isolation between migrations of one run ----------------------------------------------


def _leaky(mdir) -> None:
    observe = "INSERT INTO seen SELECT current_setting('work_mem'), current_setting('search_path');\n"
    mdir.write("0001_set.sql", "SET work_mem = '1234kB';\nSET search_path = nowhere, public;\nCREATE TABLE a (x int);\n")
    mdir.write("0001_set.rollback.sql", "DROP TABLE a;\n")
    mdir.write("0002_seen.sql", "CREATE TABLE seen (work_mem text, search_path text);\n" + observe)
    mdir.write("0002_seen.rollback.sql", "DROP TABLE seen;\n")
    mdir.write("0003_temp.sql", "CREATE TEMPORARY TABLE t (x int);\nSET work_mem = '2222kB';\nCREATE TABLE t3 (x int);\n")
    mdir.write("0003_temp.rollback.sql", "DROP TABLE t3;\n")
    mdir.write("0004_temp.sql", "CREATE TEMPORARY TABLE t (x int);\nCREATE TABLE t4 (x int);\n" + observe)
    mdir.write("0004_temp.rollback.sql", "DROP TABLE t4;\n")
    mdir.write("0005_prepare.sql", "PREPARE p AS SELECT 1;\nCREATE TABLE t5 (x int);\n")
    mdir.write("0005_prepare.rollback.sql", "CREATE TEMPORARY TABLE d (x int);\nPREPARE q AS SELECT 2;\n"
                                            "DROP TABLE t5;\n" + observe)
    mdir.write("0006_prepare.sql", "PREPARE p AS SELECT 2;\nCREATE TABLE t6 (x int);\n")
    mdir.write("0006_prepare.rollback.sql", "SET work_mem = '4321kB';\nSET search_path = nowhere, public;\n"
                                            "CREATE TEMPORARY TABLE d (x int);\nPREPARE q AS SELECT 1;\nDROP TABLE t6;\n")


@pytest.mark.parametrize("via", ["api", "cli"])
def test_each_migration_sees_a_fresh_session_in_up_and_down(via, database_url, conn, mdir, cli):
    with psycopg.connect(database_url, autocommit=True) as fresh:
        default = (fresh.execute("SHOW work_mem").fetchone()[0], fresh.execute("SHOW search_path").fetchone()[0])
    _leaky(mdir)

    if via == "api":
        sqlmigrate.up(database_url, mdir.path)
    else:
        r = cli("up", "--dir", str(mdir))
        assert r.code == 0, r
        no_traceback(r)
    assert history(conn) == [(v, "applied") for v in range(1, 7)]
    assert conn.execute("SELECT * FROM seen").fetchall() == [default, default]

    if via == "api":
        sqlmigrate.Migrator(database_url, mdir.path).down(2, confirm=True)
    else:
        r = cli("down", "--steps", "2", "--yes", "--dir", str(mdir))
        assert r.code == 0, r
        no_traceback(r)
    assert history(conn) == [(v, "applied") for v in range(1, 5)]
    assert not exists(conn, "public.t5") and not exists(conn, "public.t6")
    assert conn.execute("SELECT * FROM seen").fetchall() == [default, default, default]


# -- h. errors outside a migration --------------------------------------------------------------------


def test_no_select_on_the_history_table_is_a_privilege_error(make_role, conn, mdir, cli):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    assert cli("up", "--dir", str(mdir)).code == 0
    url = make_role("GRANT USAGE ON SCHEMA public TO {role}")

    r = cli("status", "--dir", str(mdir), url=url)
    assert r.code == 2, r
    no_traceback(r)
    assert "schema_migrations" in r.err and ("permission" in r.err or "privilege" in r.err), r

    with pytest.raises(sqlmigrate.SqlMigrateError) as caught:
        sqlmigrate.Migrator(url, mdir.path).status()
    assert type(caught.value).__name__ == "PrivilegeError" and caught.value.exit_code == 2
    assert caught.value.__class__ is getattr(sqlmigrate, "PrivilegeError", None)


@pytest.mark.parametrize("how", ["role-setting", "url-option"])
def test_read_only_transactions_are_a_clear_error(how, make_role, database_url, conn, mdir, cli):
    if how == "role-setting":
        url = make_role("GRANT USAGE, CREATE ON SCHEMA public TO {role}",
                        "ALTER ROLE {role} SET default_transaction_read_only = on")
    else:
        url = make_conninfo(database_url, options="-cdefault_transaction_read_only=on")
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")

    r = cli("up", "--dir", str(mdir), url=url)
    assert r.code == 2, r
    no_traceback(r)
    assert "read-only" in r.err, r
    assert not exists(conn, "public.a") and history(conn) == []

    with pytest.raises(sqlmigrate.SqlMigrateError) as caught:
        sqlmigrate.up(url, mdir.path)
    assert caught.value.exit_code == 2 and "read-only" in str(caught.value)


@pytest.mark.parametrize("url", ["postgresql://host:notaport/db", "host=127.0.0.1 port=notaport dbname=x",
                                 "host=x dbname", "postgresql://127.0.0.1:5432/x?sslmode=bogus"])
def test_malformed_connection_string_is_a_usage_error(url, mdir, cli):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    for command in ("up", "status"):
        r = cli(command, "--dir", str(mdir), url=url, timeout=60)
        assert r.code == 2, (command, r)
        no_traceback(r)
        assert r.err.startswith("error:") or "\nerror:" in r.err, r


def test_connection_lost_during_a_run_is_a_clear_error(database_url, conn, mdir, tmp_path):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    mdir.write("0002_sleep.sql", "SELECT pg_sleep(20);\nCREATE TABLE b (id int);\n")
    mdir.write("0003_c.sql", "CREATE TABLE c (id int);")
    proc = subprocess.Popen([sys.executable, "-m", "sqlmigrate", "up", "--dir", str(mdir)], env=_env(database_url),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        killed = False
        while not killed and time.monotonic() < deadline and proc.poll() is None:
            rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                                " AND query LIKE '%pg_sleep(20)%'").fetchall()
            killed = bool(rows)
            time.sleep(0.05)
        assert killed, "the runner's backend was never seen running 0002"
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode in (1, 5), (proc.returncode, out, err)
    assert "Traceback" not in err, err
    assert "connection" in err.lower() and any(w in err.lower() for w in ("lost", "closed", "terminat")), err
    assert (1, "applied") in history(conn)
    assert (2, "applied") not in history(conn) and not exists(conn, "public.b") and not exists(conn, "public.c")


def _backends(conn: psycopg.Connection, where: str) -> list[int]:
    return [r[0] for r in conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        f" AND {where}").fetchall()]


def test_connection_lost_while_waiting_for_the_migration_lock_is_a_clear_error(database_url, conn, mdir, tmp_path):
    mdir.write("0001_sleep.sql", "SELECT pg_sleep(20);\nCREATE TABLE a (id int);\n")
    cmd = [sys.executable, "-m", "sqlmigrate", "up", "--dir", str(mdir), "--lock-timeout", "60"]
    popen = dict(env=_env(database_url), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    holder = subprocess.Popen(cmd, **popen)
    waiter = None
    try:
        deadline = time.monotonic() + 30
        while not _backends(conn, "query LIKE '%pg_sleep(20)%'") and time.monotonic() < deadline:
            time.sleep(0.05)
        busy = set(_backends(conn, "true"))
        theirs: list[int] = []
        waiter = subprocess.Popen(cmd, **popen)
        # The waiter's sessions: everything that appears on the database once it started.
        while time.monotonic() < deadline and waiter.poll() is None:
            time.sleep(1.0)  # let it settle into waiting for the lock
            theirs = [pid for pid in _backends(conn, "true") if pid not in busy]
            if theirs:
                break
        assert theirs, "the second `up` never connected"
        conn.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (theirs,))
        time.sleep(0.5)
        conn.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (list(busy),))
        out, err = waiter.communicate(timeout=60)
    finally:
        for p in (holder, waiter):
            if p is not None and p.poll() is None:
                p.kill()
                p.communicate()
    assert "Traceback" not in err, err
    if waiter.returncode != 0:  # it may also reconnect and wait on, as long as nothing runs twice
        assert waiter.returncode in (1, 5), (waiter.returncode, out, err)
        assert "connection" in err.lower() and any(w in err.lower() for w in ("lost", "closed", "terminat")), err


# -- i. a configuration variable set but empty ---------------------------------------------------------


@pytest.mark.parametrize("env,named", [({"SQLMIGRATE_DATABASE_URL": ""}, "SQLMIGRATE_DATABASE_URL"),
                                       ({"DATABASE_URL": ""}, "DATABASE_URL"),
                                       ({"SQLMIGRATE_DATABASE_URL": "", "DATABASE_URL": ""}, "SQLMIGRATE_DATABASE_URL")])
def test_empty_database_variable_is_a_configuration_error_not_the_embedded_server(env, named, mdir, cli, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    r = cli("up", "--dir", str(mdir), url=None, env=env, cwd=project)
    assert r.code == 2, r
    no_traceback(r)
    assert named in r.err, r
    assert not (project / ".sqlmigrate").exists(), "the embedded server was started"
