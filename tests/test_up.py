"""Applying migrations against the real server: order, history, atomicity, error locations."""

from __future__ import annotations

import psycopg
import pytest

import sqlmigrate
from sqlmigrate._errors import HistoryError, MigrationError, MigrationFileError, NotCurrentError


def tables(conn: psycopg.Connection) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()}


def history(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT version, name, state, out_of_order FROM schema_migrations ORDER BY version").fetchall()


def log_rows(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT version, direction, outcome, error FROM schema_migrations_log ORDER BY id").fetchall()


def test_up_applies_in_order_records_history_and_is_then_a_noop(database_url, conn, mdir):
    mdir.write("0002_b.sql", "ALTER TABLE a ADD COLUMN note text;")
    mdir.write("0001_a.sql", "CREATE TABLE a (id int PRIMARY KEY);")
    mdir.write("0010_c.sql", "INSERT INTO a (id, note) VALUES (1, 'x');")
    result = sqlmigrate.up(database_url, mdir.path)
    assert [a.label for a in result.steps] == ["0001_a", "0002_b", "0010_c"]
    assert history(conn) == [(1, "a", "applied", False), (2, "b", "applied", False), (10, "c", "applied", False)]
    assert conn.execute("SELECT id, note FROM a").fetchall() == [(1, "x")]
    row = conn.execute("SELECT checksum, execution_ms >= 0, applied_by = current_user FROM schema_migrations"
                       " WHERE version = 1").fetchone()
    assert row == (sqlmigrate.Migrator(database_url, mdir.path).status().entries[0].migration.checksum, True, True)
    assert [r[:3] for r in log_rows(conn)] == [(1, "up", "ok"), (2, "up", "ok"), (10, "up", "ok")]

    again = sqlmigrate.up(database_url, mdir.path)
    assert again.steps == ()
    assert len(history(conn)) == 3


def test_ensure_current_lists_pending_and_passes_once_applied(database_url, mdir):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    mdir.write("0002_b.sql", "CREATE TABLE b (id int);")
    with pytest.raises(NotCurrentError) as err:
        sqlmigrate.ensure_current(database_url, mdir.path)
    assert err.value.pending == (1, 2)
    assert "0001_a" in str(err.value) and "0002_b" in str(err.value)
    sqlmigrate.up(database_url, mdir.path)
    status = sqlmigrate.ensure_current(database_url, mdir.path)
    assert status.current


def test_accepts_an_open_connection_and_leaves_it_open(database_url, mdir):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    with psycopg.connect(database_url) as c:
        assert c.autocommit is False
        sqlmigrate.Migrator(c, mdir.path).up()
        assert not c.closed and c.autocommit is False
        assert c.execute("SELECT count(*) FROM schema_migrations").fetchone() == (1,)


def test_connection_with_open_transaction_is_refused(database_url, mdir):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    with psycopg.connect(database_url) as c:
        c.execute("SELECT 1")
        with pytest.raises(sqlmigrate.ConfigurationError, match="open transaction"):
            sqlmigrate.up(c, mdir.path)


@pytest.fixture(params=["psycopg fetch loop", "python fetch loop"])
def fetch_loop(request, monkeypatch):
    """Run a test with psycopg's C result loop and with sqlmigrate's fallback loop."""
    if request.param == "python fetch loop":
        from sqlmigrate import _execute as execute

        monkeypatch.setattr(execute, "_fetch_many", None)


def test_runtime_failure_mid_file_leaves_nothing_and_names_line(database_url, conn, mdir, fetch_loop):
    mdir.write("0001_ok.sql", "CREATE TABLE ok (id int);")
    mdir.write("0002_bad.sql",
               "CREATE TABLE half (id int PRIMARY KEY);\n"
               "INSERT INTO half VALUES (1);\n"
               "-- the next statement fails at run time\n"
               "INSERT INTO half\n  VALUES (1);\n"
               "CREATE TABLE never (id int);\n")
    mdir.write("0003_later.sql", "CREATE TABLE later (id int);")
    with pytest.raises(MigrationError) as err:
        sqlmigrate.up(database_url, mdir.path)
    e = err.value
    assert e.path.name == "0002_bad.sql" and e.line == 4
    assert e.sqlstate == "23505"
    assert e.statement == "INSERT INTO half\n  VALUES (1)"
    assert "duplicate key" in str(e) and "0002_bad.sql:4" in str(e) and "DETAIL: Key (id)=(1)" in str(e)
    assert tables(conn) == {"ok", "schema_migrations", "schema_migrations_log"}
    assert history(conn) == [(1, "ok", "applied", False)]
    failed = [r for r in log_rows(conn) if r[2] == "failed"]
    assert len(failed) == 1 and failed[0][0] == 2 and "duplicate key" in failed[0][3]


def test_syntax_error_uses_the_server_position(database_url, mdir):
    mdir.write("0001_bad.sql", "CREATE TABLE a (id int);\n\nCREATE TABLE b (id int,\n  name txet oops);\n")
    with pytest.raises(MigrationError) as err:
        sqlmigrate.up(database_url, mdir.path)
    assert err.value.line == 4 and err.value.sqlstate == "42601"
    assert err.value.statement.startswith("CREATE TABLE b")


def test_error_inside_plpgsql_carries_context(database_url, mdir):
    mdir.write("0001_do.sql", "DO $$\nBEGIN\n  RAISE EXCEPTION 'boom; %', 42 USING HINT = 'try again';\nEND\n$$;\n")
    with pytest.raises(MigrationError) as err:
        sqlmigrate.up(database_url, mdir.path)
    e = err.value
    assert e.line == 1 and e.sqlstate == "P0001" and e.server_message == "boom; 42"
    assert e.hint == "try again" and "PL/pgSQL" in (e.context or "")


def test_dollar_quotes_do_blocks_begin_atomic_and_semicolons_in_strings(database_url, conn, mdir):
    mdir.write("0001_functions.sql", r"""
-- a comment; with a semicolon
/* block comment; /* nested; */ still comment */
CREATE TABLE notes (id serial PRIMARY KEY, body text);
CREATE FUNCTION add_note(b text) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
  INSERT INTO notes (body) VALUES (b || ';');  -- semicolon inside
  RAISE NOTICE 'added; %', b;
END;
$fn$;
DO $$ BEGIN PERFORM add_note('from do; block'); END $$;
CREATE FUNCTION twice(i int) RETURNS int LANGUAGE sql
BEGIN ATOMIC
  SELECT CASE WHEN i > 0 THEN i * 2 ELSE 0 END;
END;
INSERT INTO notes (body) VALUES ('it''s; fine'), (E'esc\'; aped'), ($q$dollar; $$ inside$q$);
CREATE TABLE "semi;colon" ("a;b" int);
""")
    sqlmigrate.up(database_url, mdir.path)
    assert conn.execute("SELECT body FROM notes ORDER BY id").fetchall() == [
        ("from do; block;",), ("it's; fine",), ("esc'; aped",), ("dollar; $$ inside",)]
    assert conn.execute("SELECT twice(21)").fetchone() == (42,)
    assert "semi;colon" in tables(conn)


def test_crlf_file_runs_and_reports_lines(database_url, conn, mdir):
    mdir.write("0001_crlf.sql", b"CREATE TABLE a (id int);\r\nINSERT INTO a VALUES ('x');\r\n")
    with pytest.raises(MigrationError) as err:
        sqlmigrate.up(database_url, mdir.path)
    assert err.value.line == 2
    mdir.write("0001_crlf.sql", b"CREATE TABLE a (id int);\r\nINSERT INTO a VALUES (1);\r\n")
    sqlmigrate.up(database_url, mdir.path)
    assert conn.execute("SELECT id FROM a").fetchall() == [(1,)]


def test_golang_migrate_files_with_begin_commit_wrapper(database_url, conn, mdir):
    mdir.write("1_init.up.sql", "BEGIN;\nCREATE TABLE users (id int);\nCREATE INDEX users_id ON users (id);\nCOMMIT;\n")
    mdir.write("1_init.down.sql", "BEGIN;\nDROP TABLE users;\nCOMMIT;\n")
    mdir.write("2_more.up.sql", "begin transaction;\nALTER TABLE users ADD COLUMN name text;\nINSERT INTO users VALUES (1, 'x', 2);\nend;\n")
    with pytest.raises(MigrationError) as err:
        sqlmigrate.up(database_url, mdir.path)
    # The wrapper is absorbed, the failure still points at the file's own line and nothing half-applied stays.
    assert err.value.path.name == "2_more.up.sql" and err.value.line == 3
    assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'users'").fetchone() == (1,)
    assert history(conn) == [(1, "init", "applied", False)]


@pytest.mark.parametrize("text, line, fragment", [
    ("CREATE TABLE a (id int);\nCOMMIT;\nCREATE TABLE b (id int);\n", 2, "transaction control"),
    ("CREATE TABLE a (id int);\nSAVEPOINT s;\n", 2, "transaction control"),
    ("BEGIN;\nCREATE TABLE a (id int);\n", 1, "BEGIN"),
    ("CREATE TABLE a (id int);\n\nCREATE INDEX CONCURRENTLY a_id ON a (id);\n", 3, "-- sqlmigrate: no-transaction"),
    ("VACUUM;\n", 1, "-- sqlmigrate: no-transaction"),
    ("CREATE TABLE a (id int);\n\\connect other\n", 2, "psql meta-command"),
    ("-- sqlmigrate: no-transactions\nSELECT 1;\n", 1, "no-transaction"),
    ("   \n\n", None, "empty"),
    ("-- only a comment\n", None, "only comments"),
])
def test_bad_sql_is_refused_before_anything_runs(database_url, conn, mdir, text, line, fragment):
    mdir.write("0001_first.sql", "CREATE TABLE first (id int);")
    mdir.write("0002_bad.sql", text)
    with pytest.raises(MigrationFileError) as err:
        sqlmigrate.up(database_url, mdir.path)
    assert fragment in str(err.value)
    assert err.value.path.name == "0002_bad.sql" and err.value.line == line
    # Not even the first, valid migration ran.
    assert "first" not in tables(conn)


def test_unterminated_string_is_reported_at_its_line(database_url, conn, mdir):
    mdir.write("0001_bad.sql", "CREATE TABLE a (id int);\nSELECT 'unterminated;\n")
    with pytest.raises(MigrationError) as err:
        sqlmigrate.up(database_url, mdir.path)
    assert err.value.line == 2 and "unterminated" in str(err.value)
    assert "a" not in tables(conn)


def test_no_transaction_migration_runs_create_index_concurrently(database_url, conn, mdir):
    mdir.write("0001_t.sql", "CREATE TABLE t (id int);\nINSERT INTO t SELECT generate_series(1, 1000);")
    mdir.write("0002_idx.sql", "-- sqlmigrate: no-transaction\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n"
                               "VACUUM t;\n")
    result = sqlmigrate.up(database_url, mdir.path)
    assert [a.no_transaction for a in result.steps] == [False, True]
    assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_id'::regclass").fetchone() == (True,)
    assert history(conn)[1] == (2, "idx", "applied", False)


def test_failed_no_transaction_migration_is_recorded_and_blocks_up(database_url, conn, mdir):
    mdir.write("0001_t.sql", "CREATE TABLE t (id int);")
    mdir.write("0002_nt.sql", "-- sqlmigrate: no-transaction\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n"
                              "CREATE INDEX CONCURRENTLY t_x ON t (nope);\n")
    with pytest.raises(MigrationError) as err:
        sqlmigrate.up(database_url, mdir.path)
    assert err.value.line == 3
    row = conn.execute("SELECT state, statements_done, error FROM schema_migrations WHERE version = 2").fetchone()
    assert row[0] == "failed" and row[1] == 1 and "statement 2 of 2 (line 3)" in row[2]
    with pytest.raises(HistoryError, match="did not finish"):
        sqlmigrate.up(database_url, mdir.path)
    with pytest.raises(NotCurrentError) as nc:
        sqlmigrate.ensure_current(database_url, mdir.path)
    assert nc.value.failed == (2,)


def test_migration_touching_the_history_table_is_refused(database_url, conn, mdir):
    mdir.write("0001_legacy.sql", "CREATE TABLE a (id int);\nDROP TABLE IF EXISTS schema_migrations;\n")
    with pytest.raises(MigrationFileError) as err:
        sqlmigrate.up(database_url, mdir.path)
    assert "--table" in str(err.value) and err.value.line == 2
    # With another history table the same migration is fine.
    sqlmigrate.Migrator(database_url, mdir.path, table="sqlmigrate_history").up()
    assert {"a", "sqlmigrate_history", "sqlmigrate_history_log"} <= tables(conn)


def test_foreign_history_table_is_refused_and_untouched(database_url, conn, mdir):
    conn.execute("CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL)")
    conn.execute("INSERT INTO schema_migrations VALUES (3, false)")
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    with pytest.raises(HistoryError, match="golang-migrate") as err:
        sqlmigrate.up(database_url, mdir.path)
    assert "--table" in str(err.value)
    assert conn.execute("SELECT * FROM schema_migrations").fetchall() == [(3, False)]
    assert "a" not in tables(conn)


def test_out_of_order_stops_up_unless_allowed(database_url, conn, mdir):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    mdir.write("0003_c.sql", "CREATE TABLE c (id int);")
    sqlmigrate.up(database_url, mdir.path)
    mdir.write("0002_b.sql", "CREATE TABLE b (id int);")
    with pytest.raises(sqlmigrate.OutOfOrderError, match="0002_b") as err:
        sqlmigrate.up(database_url, mdir.path)
    assert err.value.versions == (2,)
    sqlmigrate.Migrator(database_url, mdir.path).up(allow_out_of_order=True)
    assert history(conn)[1] == (2, "b", "applied", True)


def test_modified_and_missing_are_reported(database_url, mdir):
    a = mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    b = mdir.write("0002_b.sql", "CREATE TABLE b (id int);")
    sqlmigrate.up(database_url, mdir.path)
    a.write_text("CREATE TABLE a (id bigint);")
    b.unlink()
    status = sqlmigrate.Migrator(database_url, mdir.path).status()
    assert [(e.version, e.state.value) for e in status.entries] == [(1, "modified"), (2, "missing")]
    with pytest.raises(NotCurrentError) as err:
        sqlmigrate.ensure_current(database_url, mdir.path)
    assert err.value.modified == (1,) and err.value.missing == (2,)
    with pytest.raises(HistoryError, match="changed since they ran: 0001_a"):
        sqlmigrate.up(database_url, mdir.path)


def test_up_to_a_version(database_url, conn, mdir):
    for v in (1, 2, 3):
        mdir.write(f"000{v}_m{v}.sql", f"CREATE TABLE t{v} (id int);")
    sqlmigrate.Migrator(database_url, mdir.path).up(to=2)
    assert [r[0] for r in history(conn)] == [1, 2]


def test_dry_run_changes_nothing(database_url, conn, mdir):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    result = sqlmigrate.Migrator(database_url, mdir.path).up(dry_run=True)
    assert result.dry_run and [a.sql for a in result.steps] == ["CREATE TABLE a (id int);"]
    assert tables(conn) == set()


def test_statement_timeout_is_a_clear_failure(database_url, conn, mdir):
    mdir.write("0001_slow.sql", "CREATE TABLE a (id int);\nSELECT pg_sleep(5);\n")
    with pytest.raises(MigrationError) as err:
        sqlmigrate.Migrator(database_url, mdir.path, statement_timeout=0.2).up()
    assert err.value.sqlstate == "57014" and err.value.line == 2
    assert "a" not in tables(conn)


@pytest.mark.parametrize("text", [
    "CREATE TABLE a (id int);",  # plain: shares one message with the history row
    "CREATE TABLE a (id int);\nDO $$ BEGIN PERFORM 1; END $$;",  # scanned: history row sent separately
])
def test_failure_to_record_history_rolls_the_migration_back(database_url, conn, mdir, text):
    mdir.write("0001_first.sql", "CREATE TABLE first (id int);")
    sqlmigrate.up(database_url, mdir.path)
    conn.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
                 " $$ BEGIN RAISE EXCEPTION 'history is read-only today'; END $$")
    conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON schema_migrations FOR EACH ROW EXECUTE FUNCTION refuse()")
    mdir.write("0002_a.sql", text)
    with pytest.raises(MigrationError, match="ran, but recording it in the history failed") as err:
        sqlmigrate.up(database_url, mdir.path)
    assert "history is read-only today" in str(err.value) and err.value.sqlstate == "P0001"
    assert "a" not in tables(conn)
    assert [r[0] for r in history(conn)] == [1]


@pytest.mark.parametrize("text", [
    "CREATE TABLE a (id int);\nINSERT INTO a VALUES (1,\n",  # plain: one message with the history row
    "CREATE TABLE a (id int);\nDO $$ BEGIN PERFORM 1; END $$;\nINSERT INTO a VALUES (1,\n",  # scanned
])
def test_incomplete_last_statement_is_the_files_error(database_url, conn, mdir, text):
    mdir.write("0001_cut.sql", text)
    with pytest.raises(MigrationError) as err:
        sqlmigrate.up(database_url, mdir.path)
    last = text.rstrip("\n").count("\n") + 1
    assert err.value.sqlstate == "42601" and err.value.line == last, str(err.value)
    assert err.value.statement == "INSERT INTO a VALUES (1,"
    assert "recording it in the history" not in str(err.value)
    assert "a" not in tables(conn)
