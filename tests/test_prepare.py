"""Checking migration files before the database is touched: every problem of every file reported
at once, in messages that say what to do."""

from __future__ import annotations

import pytest

import sqlmigrate
from sqlmigrate import _script as script
from sqlmigrate._errors import MigrationFileError


def test_every_unfilled_template_is_reported_at_once(mdir):
    paths = [mdir.write("0001_ok.sql", "CREATE TABLE a (id int);\n"),
             mdir.write("0002_todo.sql", "-- Write the migration here.\n"),
             mdir.write("0003_todo.sql", "-- Write the migration here.\n/* later */\n"),
             mdir.write("0004_meta.sql", "CREATE TABLE b (id int);\n\\connect other\n")]
    with pytest.raises(MigrationFileError) as err:
        script.prepare_files(paths)
    message = str(err.value)
    assert message.startswith("3 migration files need fixing:"), message
    assert f"{paths[1]}: contains only comments" in message
    assert f"{paths[2]}: contains only comments" in message
    assert f"{paths[3]}:2: psql meta-command" in message
    assert str(paths[0]) not in message


def test_files_are_checked_without_a_database(mdir):
    # Nothing here can connect: the checks need the files only.
    paths = [mdir.write("0001_a.sql", "CREATE TABLE a (id int);\n"),
             mdir.write("0002_b.sql", "-- sqlmigrate: no-transaction\nCREATE INDEX CONCURRENTLY i ON a (id);\n")]
    scripts = script.prepare_files(paths, protected=[(None, "schema_migrations")])
    assert [s.no_transaction for s in scripts] == [False, True]
    with pytest.raises(MigrationFileError, match="would drop schema_migrations"):
        script.prepare_files([mdir.write("0003_c.sql", "DROP TABLE schema_migrations;\n")],
                             protected=[(None, "schema_migrations")])


def test_a_statement_that_cannot_run_in_a_transaction_reads_well(database_url, mdir):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);\nCREATE INDEX CONCURRENTLY a_id ON a (id);\n")
    with pytest.raises(MigrationFileError) as err:
        sqlmigrate.up(database_url, mdir.path)
    assert str(err.value).endswith(
        "0001_a.sql:2: CREATE INDEX CONCURRENTLY cannot run inside a transaction; add "
        "'-- sqlmigrate: no-transaction' as the first line of the file (it then runs statement by "
        "statement, without a transaction)"), str(err.value)


@pytest.mark.parametrize("statement", ["SAVEPOINT s", "RELEASE SAVEPOINT s", "ROLLBACK TO SAVEPOINT s",
                                       "rollback work to s"])
def test_a_savepoint_is_not_told_to_use_no_transaction(database_url, conn, mdir, statement):
    mdir.write("0001_a.sql", f"CREATE TABLE a (id int);\n{statement};\nINSERT INTO a VALUES (1);\n")
    with pytest.raises(MigrationFileError) as err:
        sqlmigrate.up(database_url, mdir.path)
    message = str(err.value)
    assert err.value.line == 2
    assert "remove it" in message and "already runs as one transaction" in message
    assert "add '-- sqlmigrate: no-transaction'" not in message
    assert conn.execute("SELECT to_regclass('a')").fetchone() == (None,)
