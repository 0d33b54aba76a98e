"""An empty or comment-only rollback file means "nothing to undo": ``down`` runs it (removing the
history row) with a note, ``verify`` accepts it and still proves the schema is restored. An empty
*migration* stays an error."""

from __future__ import annotations

import pytest

import sqlmigrate
from sqlmigrate._errors import MigrationFileError
from sqlmigrate._verify import verify

EMPTY_ROLLBACKS = [("zero bytes", ""), ("blank lines", "\n\n  \n"),
                   ("comments", "-- data only: nothing to undo\n/* really */\n")]


@pytest.mark.parametrize("what, text", EMPTY_ROLLBACKS, ids=[e[0] for e in EMPTY_ROLLBACKS])
def test_down_runs_an_empty_rollback_as_nothing_to_undo(cli, conn, mdir, what, text):
    mdir.write("0001_t.sql", "CREATE TABLE t (id integer);\n")
    mdir.write("0001_t.rollback.sql", "DROP TABLE t;\n")
    mdir.write("0002_seed.sql", "INSERT INTO t VALUES (1), (2);\n")
    mdir.write("0002_seed.rollback.sql", text)
    assert cli("up", "--dir", str(mdir)).code == 0

    r = cli("down", "--dir", str(mdir))

    assert r.code == 0, r
    assert "rollback of 0002_seed is empty: nothing to undo" in r.out, r
    assert "rolled back 0002_seed" in r.out, r
    assert conn.execute("SELECT version FROM schema_migrations").fetchall() == [(1,)]
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)  # nothing was undone
    assert conn.execute("SELECT direction, outcome FROM schema_migrations_log WHERE version = 2 ORDER BY id"
                        ).fetchall() == [("up", "ok"), ("down", "ok")]


def test_an_empty_migration_is_still_an_error(database_url, mdir):
    mdir.write("0001_empty.sql", "-- to do\n")
    mdir.write("0001_empty.rollback.sql", "")
    with pytest.raises(MigrationFileError, match="0001_empty.sql.*contains only comments"):
        sqlmigrate.up(database_url, mdir.path)


def test_verify_accepts_an_empty_rollback_of_a_data_only_migration(server_url, mdir):
    mdir.write("0001_t.sql", "CREATE TABLE t (id integer);\n")
    mdir.write("0001_t.rollback.sql", "DROP TABLE t;\n")
    mdir.write("0002_seed.sql", "INSERT INTO t VALUES (1), (2);\n")
    mdir.write("0002_seed.rollback.sql", "-- the rows may stay\n")
    # After a data-only step (whose schema is not compared), the next one is compared as ever.
    mdir.write("0003_idx.sql", "CREATE INDEX t_id_idx ON t (id);\nALTER TABLE t ADD COLUMN y integer;\n")
    mdir.write("0003_idx.rollback.sql", "ALTER TABLE t DROP COLUMN y;\n")

    report = verify(server_url, mdir.path)

    seed = report.migrations[1]
    assert seed.ok and seed.problems == ()
    assert "rollback of 0002_seed is empty: nothing to undo" in seed.info
    assert "info: rollback of 0002_seed is empty: nothing to undo" in report.describe()
    assert [m.ok for m in report.migrations] == [True, True, False]
    assert report.migrations[2].problems[0] == "index public.t_id_idx still exists"


def test_verify_fails_an_empty_rollback_that_leaves_the_schema_changed(server_url, mdir):
    mdir.write("0001_t.sql", "CREATE TABLE t (id integer);\n")
    mdir.write("0001_t.rollback.sql", "")
    mdir.write("0002_u.sql", "CREATE TABLE u (id integer);\n")
    mdir.write("0002_u.rollback.sql", "DROP TABLE u;\n")

    report = verify(server_url, mdir.path)

    assert not report.ok
    first = report.migrations[0]
    assert first.problems[0] == "table public.t still exists"
    assert "rollback of 0001_t is empty: nothing to undo" in first.info
    # The re-apply fails on the leftover table; the next migration is still verified.
    assert first.problems[1].startswith("re-apply failed:") and "already exists" in first.problems[1]
    assert report.migrations[1].label == "0002_u" and report.migrations[1].ok
    assert report.not_verified == ()
