"""The data-presence check of rollbacks (SPEC section 6), against the real server."""

from __future__ import annotations

import time

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from sqlmigrate import _dataloss as dataloss
from sqlmigrate._dataloss import Finding, find_data_loss
from sqlmigrate._errors import SqlMigrateError


def check(conn: psycopg.Connection, *statements: str, budget_s: float = 2.0) -> list[Finding]:
    """Run the check on statements numbered as lines 1, 2, 3... (a generous budget: a loaded test
    machine must not turn an exact answer into "gave up")."""
    return find_data_loss(conn, [(s, i + 1) for i, s in enumerate(statements)], budget_s=budget_s)


def summary(findings: list[Finding]) -> list[tuple[str, str, int | None, bool]]:
    return [(f.action, f.object, f.rows, f.estimated) for f in findings]


def exact(action: str, obj: str, rows: int) -> tuple[str, str, int, bool]:
    return (action, obj, rows, False)


@pytest.fixture
def users(conn: psycopg.Connection) -> psycopg.Connection:
    conn.execute(
        "CREATE TABLE users (id int PRIMARY KEY, email text, nick text, age int);"
        "INSERT INTO users SELECT g, 'u' || g || '@x', NULL, CASE WHEN g <= 3 THEN g END"
        " FROM generate_series(1, 1204) g;"
        "CREATE TABLE empty (id int, note text)"
    )
    return conn


# ---- DROP TABLE -----------------------------------------------------------------------------------

def test_drop_table_with_data_is_reported_with_exact_count(users: psycopg.Connection) -> None:
    [f] = check(users, "DROP TABLE users;")
    assert summary([f]) == [exact("DROP TABLE", "public.users", 1204)]
    assert not f.gave_up and f.line == 1
    assert f.describe() == "DROP TABLE public.users: 1,204 rows (exact)"


def test_drop_empty_table_is_not_reported(users: psycopg.Connection) -> None:
    assert check(users, "DROP TABLE empty") == []


def test_several_tables_in_one_drop_and_if_exists(users: psycopg.Connection) -> None:
    users.execute("CREATE TABLE one (x int); INSERT INTO one VALUES (1)")
    found = check(users, "DROP TABLE IF EXISTS missing, users, empty, one CASCADE;")
    assert summary(found) == [exact("DROP TABLE", "public.users", 1204),
                              exact("DROP TABLE", "public.one", 1)]
    assert found[1].describe() == "DROP TABLE public.one: 1 row (exact)"


def test_if_exists_on_missing_table_gives_nothing(conn: psycopg.Connection) -> None:
    assert check(conn, "DROP TABLE IF EXISTS nowhere", "DROP TABLE IF EXISTS nope.nothing") == []


def test_partitioned_table_is_counted_through_the_parent(conn: psycopg.Connection) -> None:
    conn.execute(
        "CREATE TABLE ev (id int, at date) PARTITION BY RANGE (at);"
        "CREATE TABLE ev_1 PARTITION OF ev FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');"
        "CREATE TABLE ev_2 PARTITION OF ev FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');"
        "INSERT INTO ev SELECT g, '2024-06-01'::date + g FROM generate_series(1, 400) g"
    )
    assert summary(check(conn, "DROP TABLE ev")) == [exact("DROP TABLE", "public.ev", 400)]
    n2 = conn.execute("SELECT count(*) FROM ev_2").fetchone()[0]
    assert 0 < n2 < 400
    assert summary(check(conn, "DROP TABLE ev_2")) == [exact("DROP TABLE", "public.ev_2", n2)]


# ---- ALTER TABLE ... DROP COLUMN ------------------------------------------------------------------

def test_drop_columns_in_one_alter_only_reports_columns_with_values(users: psycopg.Connection) -> None:
    found = check(users, "ALTER TABLE users DROP COLUMN email, DROP COLUMN nick, ADD COLUMN c int,"
                         " DROP age CASCADE, DROP CONSTRAINT users_pkey, DROP COLUMN IF EXISTS gone")
    # nick is all NULL: no warning; age has 3 values set.
    assert summary(found) == [exact("DROP COLUMN", "public.users.email", 1204),
                              exact("DROP COLUMN", "public.users.age", 3)]
    assert found[1].describe() == "DROP COLUMN public.users.age: 3 non-null values (exact)"


def test_drop_all_null_column_is_not_reported(users: psycopg.Connection) -> None:
    assert check(users, "ALTER TABLE users DROP COLUMN nick") == []
    users.execute("UPDATE users SET nick = 'n' WHERE id = 7")
    assert summary(check(users, "ALTER TABLE users DROP COLUMN nick")) == [
        exact("DROP COLUMN", "public.users.nick", 1)]


def test_composite_column_with_a_null_field_counts_as_data(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TYPE pair AS (a int, b int); CREATE TABLE t (p pair);"
                 "INSERT INTO t VALUES (ROW(1, NULL)), (NULL)")
    assert summary(check(conn, "ALTER TABLE t DROP COLUMN p")) == [
        exact("DROP COLUMN", "public.t.p", 1)]


# ---- TRUNCATE -------------------------------------------------------------------------------------

def test_truncate_with_and_without_data(users: psycopg.Connection) -> None:
    assert summary(check(users, "TRUNCATE users")) == [exact("TRUNCATE", "public.users", 1204)]
    assert check(users, "TRUNCATE TABLE empty RESTART IDENTITY") == []


def test_truncate_cascade_includes_referencing_tables(conn: psycopg.Connection) -> None:
    conn.execute(
        "CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (p int REFERENCES parent);"
        "CREATE TABLE grandchild (c int); CREATE TABLE other (x int);"
        "INSERT INTO parent VALUES (1), (2); INSERT INTO child VALUES (1), (1), (2);"
        "INSERT INTO other VALUES (1)"
    )
    assert summary(check(conn, "TRUNCATE parent CASCADE")) == [
        exact("TRUNCATE", "public.parent", 2), exact("TRUNCATE", "public.child", 3)]
    assert summary(check(conn, "TRUNCATE parent, child")) == [
        exact("TRUNCATE", "public.parent", 2), exact("TRUNCATE", "public.child", 3)]


def test_truncate_only_counts_the_parent_alone(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE base (x int); CREATE TABLE sub () INHERITS (base);"
                 "INSERT INTO sub VALUES (1), (2)")
    assert check(conn, "TRUNCATE ONLY base") == []
    assert summary(check(conn, "TRUNCATE base")) == [exact("TRUNCATE", "public.base", 2)]


# ---- DELETE ---------------------------------------------------------------------------------------

def test_delete_without_where(users: psycopg.Connection) -> None:
    assert summary(check(users, "DELETE FROM users;")) == [exact("DELETE", "public.users", 1204)]
    assert check(users, "DELETE FROM empty") == []


def test_delete_with_where_counts_matching_rows(users: psycopg.Connection) -> None:
    assert summary(check(users, "DELETE FROM users WHERE id > 1200 -- the last ones\n")) == [
        exact("DELETE", "public.users", 4)]
    assert check(users, "DELETE FROM users WHERE email = 'nobody@x'") == []
    # Alias, table-qualified references, RETURNING, a string with a quote and a semicolon in it.
    assert summary(check(users, "DELETE FROM public.users AS u WHERE u.id <= 2 OR u.email = 'a;''b'"
                                " RETURNING u.id")) == [exact("DELETE", "public.users", 2)]
    assert summary(check(users, "DELETE FROM users WHERE users.id = 5")) == [
        exact("DELETE", "public.users", 1)]


def test_delete_using_counts_each_target_row_once(users: psycopg.Connection) -> None:
    users.execute("CREATE TABLE banned (uid int); INSERT INTO banned VALUES (1), (1), (2), (99999)")
    assert summary(check(users, "DELETE FROM users u USING banned b WHERE b.uid = u.id")) == [
        exact("DELETE", "public.users", 2)]
    assert check(users, "DELETE FROM users USING banned WHERE banned.uid = users.id + 100000") == []


def test_delete_with_cte(users: psycopg.Connection) -> None:
    found = check(users, "WITH old AS (SELECT id FROM users WHERE id < 11)"
                         " DELETE FROM users WHERE id IN (SELECT id FROM old)")
    assert summary(found) == [exact("DELETE", "public.users", 10)]


def test_delete_condition_runs_read_only(users: psycopg.Connection) -> None:
    users.execute("CREATE SEQUENCE s")
    found = check(users, "DELETE FROM users WHERE id = nextval('s')")
    # nextval() is refused in the read-only probe: the check cannot decide, and says so.
    assert [(f.rows, f.gave_up, f.certain) for f in found] == [(None, True, False)]
    assert "data may be present" in found[0].describe()
    assert users.execute("SELECT is_called FROM s").fetchone()[0] is False


# ---- names ----------------------------------------------------------------------------------------

def test_quoted_mixed_case_and_schema_qualified_names(conn: psycopg.Connection) -> None:
    conn.execute(
        'CREATE SCHEMA "Mixed"; CREATE TABLE "Mixed"."Tbl" ("Col" int, col int);'
        'INSERT INTO "Mixed"."Tbl" VALUES (1, NULL), (2, NULL), (3, NULL);'
        "CREATE SCHEMA mixed; CREATE TABLE mixed.tbl (x int);"  # what the unquoted spelling means
    )
    assert summary(check(conn, 'DROP TABLE "Mixed"."Tbl"')) == [
        exact("DROP TABLE", '"Mixed"."Tbl"', 3)]
    assert check(conn, "DROP TABLE Mixed.Tbl") == []  # folds to mixed.tbl, which is empty
    assert summary(check(conn, 'ALTER TABLE "Mixed"."Tbl" DROP COLUMN "Col"')) == [
        exact("DROP COLUMN", '"Mixed"."Tbl"."Col"', 3)]
    assert check(conn, 'ALTER TABLE "Mixed"."Tbl" DROP COLUMN Col') == []  # folds to col: all NULL
    assert summary(check(conn, 'DELETE FROM "Mixed"."Tbl" t WHERE t."Col" > 1')) == [
        exact("DELETE", '"Mixed"."Tbl"', 2)]


def test_names_resolve_through_search_path(conn: psycopg.Connection) -> None:
    conn.execute("CREATE SCHEMA app; CREATE TABLE app.users (id int); INSERT INTO app.users VALUES (1);"
                 "CREATE TABLE public.users (id int)")
    assert check(conn, "DROP TABLE users") == []  # public.users, empty
    conn.execute("SET search_path TO app, public")
    assert summary(check(conn, "DROP TABLE users")) == [exact("DROP TABLE", "app.users", 1)]


def test_search_path_set_in_the_rollback_is_followed_and_undone(conn: psycopg.Connection) -> None:
    conn.execute("CREATE SCHEMA app; CREATE TABLE app.users (id int); INSERT INTO app.users VALUES (1);"
                 "CREATE TABLE public.users (id int)")
    before = conn.execute("SHOW search_path").fetchone()[0]
    found = check(conn, "TRUNCATE users", "SET search_path TO app", "TRUNCATE users")
    assert [(f.object, f.line) for f in found] == [("app.users", 3)]
    assert conn.execute("SHOW search_path").fetchone()[0] == before


# ---- DROP SCHEMA / DROP TYPE ----------------------------------------------------------------------

def test_drop_schema_cascade(conn: psycopg.Connection) -> None:
    conn.execute(
        "CREATE SCHEMA shop; CREATE TABLE shop.orders (id int); CREATE TABLE shop.carts (id int);"
        "CREATE TABLE shop.items (id int) PARTITION BY RANGE (id);"
        "CREATE TABLE shop.items_1 PARTITION OF shop.items FOR VALUES FROM (0) TO (100);"
        "INSERT INTO shop.orders VALUES (1), (2); INSERT INTO shop.items VALUES (5);"
        "CREATE TYPE shop.state AS ENUM ('a', 'b');"
        "CREATE TABLE public.tickets (id int, st shop.state, old shop.state);"
        "INSERT INTO public.tickets VALUES (1, 'a', NULL);"
        "CREATE SCHEMA bare"
    )
    found = check(conn, "DROP SCHEMA IF EXISTS shop, bare, ghost CASCADE")
    assert summary(found) == [
        exact("DROP SCHEMA CASCADE", "shop.items", 1),
        exact("DROP SCHEMA CASCADE", "shop.orders", 2),
        exact("DROP SCHEMA CASCADE", "public.tickets.st", 1),  # the enum's column goes too
    ]
    # Without CASCADE the server refuses to drop a schema that holds anything.
    assert check(conn, "DROP SCHEMA shop") == []
    conn.execute("TRUNCATE shop.orders, shop.items, public.tickets")
    assert check(conn, "DROP SCHEMA shop CASCADE") == []


def test_drop_type_cascade_reports_columns_using_it(conn: psycopg.Connection) -> None:
    conn.execute(
        'CREATE TYPE "Mood" AS ENUM (\'ok\', \'sad\'); CREATE DOMAIN mood_d AS "Mood";'
        'CREATE TABLE people (id int, m "Mood", ms "Mood"[], md mood_d, unused "Mood");'
        "INSERT INTO people VALUES (1, 'ok', NULL, NULL, NULL), (2, 'sad', '{ok}', 'ok', NULL),"
        " (3, NULL, NULL, NULL, NULL)"
    )
    found = check(conn, 'DROP TYPE IF EXISTS "Mood", ghost CASCADE')
    assert summary(found) == [exact("DROP TYPE CASCADE", "public.people.m", 2),
                              exact("DROP TYPE CASCADE", "public.people.ms", 1),
                              exact("DROP TYPE CASCADE", "public.people.md", 1)]
    assert check(conn, 'DROP TYPE "Mood"') == []  # refused by the server when in use
    conn.execute("UPDATE people SET m = NULL, ms = NULL, md = NULL")
    assert check(conn, 'DROP TYPE "Mood" CASCADE') == []


def test_statements_that_destroy_no_data_give_nothing(users: psycopg.Connection) -> None:
    users.execute("CREATE MATERIALIZED VIEW mv AS SELECT * FROM users; CREATE VIEW v AS SELECT 1;"
                  "CREATE INDEX users_email ON users (email)")
    assert check(users, "DROP MATERIALIZED VIEW mv", "DROP VIEW v", "DROP INDEX users_email",
                 "CREATE TABLE x (id int)", "INSERT INTO empty VALUES (1)", "DROP TABLE mv",
                 "SELECT 1", "-- just a comment", "") == []


def test_lines_are_the_statements_lines(users: psycopg.Connection) -> None:
    found = find_data_loss(users, [("ALTER TABLE users DROP COLUMN age", 3),
                                   ("DROP TABLE users", 12)])
    assert [(f.action, f.line) for f in found] == [("DROP COLUMN", 3), ("DROP TABLE", 12)]


# ---- bounded cost ---------------------------------------------------------------------------------

def test_large_results_are_estimates(conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    conn.execute("CREATE TABLE big (id int); INSERT INTO big SELECT generate_series(1, 5000); ANALYZE big")
    # Scaled-down thresholds stand in for a table of millions (the real one is in bench/).
    monkeypatch.setattr(dataloss, "EXACT_LIMIT", 100)
    monkeypatch.setattr(dataloss, "_COUNT_IF_ESTIMATE_BELOW", 1000)
    [f] = check(conn, "DROP TABLE big")
    assert (f.estimated, f.gave_up, f.rows) == (True, False, 5000)
    assert f.describe() == "DROP TABLE public.big: ~5,000 rows (estimated)"
    # Planner says small but the capped count overflows: still an estimate, never below what was seen.
    monkeypatch.setattr(dataloss, "_COUNT_IF_ESTIMATE_BELOW", 10**9)
    [f] = check(conn, "DELETE FROM big WHERE id % 7 = 0")
    assert f.estimated and f.rows is not None and f.rows > 100


def test_a_probe_that_cannot_finish_gives_up_within_the_budget(users: psycopg.Connection) -> None:
    t0 = time.monotonic()
    found = check(users, "DELETE FROM users WHERE pg_sleep(30) IS NULL", "DROP TABLE users",
                  budget_s=0.3)
    elapsed = time.monotonic() - t0
    assert elapsed < 10  # not 30 s: the probe was cancelled (the real timing is in bench/)
    assert [(f.action, f.rows, f.gave_up, f.certain) for f in found] == [
        ("DELETE", None, True, False), ("DROP TABLE", 1204, False, True)]
    assert found[0].describe().startswith("DELETE public.users: data may be present, check gave up after")


def test_a_locked_table_gives_up_instead_of_waiting(users: psycopg.Connection, database_url: str) -> None:
    with psycopg.connect(database_url) as other:
        other.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        t0 = time.monotonic()
        found = check(users, "DROP TABLE users", "DROP TABLE empty", budget_s=0.3)
        assert time.monotonic() - t0 < 10
        other.rollback()
    assert [(f.object, f.gave_up, f.certain) for f in found] == [("public.users", True, False)]


# ---- connection state -----------------------------------------------------------------------------

def test_autocommit_connection_is_left_idle_and_unchanged(users: psycopg.Connection) -> None:
    users.execute("SET statement_timeout = '7s'")
    check(users, "DROP TABLE users", "DELETE FROM users WHERE id = 1", "SET search_path TO nowhere")
    assert users.autocommit
    assert users.info.transaction_status == TransactionStatus.IDLE
    assert users.execute("SHOW statement_timeout").fetchone()[0] == "7s"
    assert users.execute("SHOW transaction_read_only").fetchone()[0] == "off"
    assert users.execute("SHOW search_path").fetchone()[0] == '"$user", public'
    assert users.execute("SELECT count(*) FROM users").fetchone()[0] == 1204


def test_open_transaction_is_left_open_with_its_work(users: psycopg.Connection,
                                                     database_url: str) -> None:
    with psycopg.connect(database_url) as c:  # not autocommit
        c.execute("INSERT INTO empty VALUES (1, 'mine')")
        assert c.info.transaction_status == TransactionStatus.INTRANS
        found = check(c, "DROP TABLE empty", "DELETE FROM empty WHERE nosuch = 1")
        assert summary(found[:1]) == [exact("DROP TABLE", "public.empty", 1)]  # sees its own row
        assert c.info.transaction_status == TransactionStatus.INTRANS
        c.execute("INSERT INTO empty VALUES (2, 'more')")  # still usable, nothing aborted
        c.commit()
    assert users.execute("SELECT count(*) FROM empty").fetchone()[0] == 2


def test_idle_non_autocommit_connection_is_left_idle(users: psycopg.Connection,
                                                    database_url: str) -> None:
    with psycopg.connect(database_url) as c:
        assert c.info.transaction_status == TransactionStatus.IDLE
        assert len(check(c, "TRUNCATE users")) == 1
        assert c.info.transaction_status == TransactionStatus.IDLE


def test_failed_transaction_is_refused(users: psycopg.Connection, database_url: str) -> None:
    with psycopg.connect(database_url) as c:
        with pytest.raises(psycopg.Error):
            c.execute("SELECT 1/0")
        with pytest.raises(SqlMigrateError, match="transaction has failed"):
            check(c, "DROP TABLE users")
        assert c.info.transaction_status == TransactionStatus.INERROR
