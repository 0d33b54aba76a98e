"""Schema snapshots (sqlmigrate.snapshot), against the real server.

Two builds of one schema, in different orders, must compare equal; each kind of leftover a rollback
can leave must show up as exactly one readable difference on exactly the object concerned.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from sqlmigrate._snapshot import Difference, Snapshot, diff, take

# Every object kind the snapshot knows, in a natural creation order. One statement per chunk
# (split on ";\n"), so function bodies stay on one line.
BUILD_1 = """
CREATE SCHEMA app;
CREATE SCHEMA audit;
COMMENT ON SCHEMA app IS 'application';
CREATE EXTENSION citext SCHEMA app;
CREATE TYPE app.mood AS ENUM ('happy', 'sad');
CREATE TYPE app.pair AS (a integer, b text);
CREATE DOMAIN app.posint AS integer DEFAULT 1 CONSTRAINT posint_check CHECK (VALUE > 0);
CREATE TYPE app.span AS RANGE (subtype = float8);
CREATE SEQUENCE app.counter INCREMENT 5 START 100;
CREATE TABLE app.t (
    id integer PRIMARY KEY,
    name text,
    x integer CONSTRAINT t_x_check CHECK (x > 0),
    email app.citext CONSTRAINT t_email_key UNIQUE,
    feeling app.mood DEFAULT 'happy',
    created timestamptz NOT NULL DEFAULT '2020-01-01 00:00:00+00',
    doubled integer GENERATED ALWAYS AS (x * 2) STORED,
    n integer,
    ticket bigint DEFAULT nextval('app.counter'),
    size app.posint,
    note text
);
COMMENT ON TABLE app.t IS 'people';
COMMENT ON COLUMN app.t.name IS 'full name';
CREATE TABLE app.wps (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    t_id integer CONSTRAINT wps_t_id_fkey REFERENCES app.t (id) ON DELETE CASCADE,
    modules_data jsonb NOT NULL DEFAULT '{}',
    serial_no serial
);
CREATE INDEX wps_modules_data_idx ON app.wps USING gin (modules_data);
CREATE UNIQUE INDEX t_lower_name_idx ON app.t (lower(name)) WHERE name IS NOT NULL;
CREATE TABLE app.events (at date NOT NULL, what text) PARTITION BY RANGE (at);
CREATE TABLE app.events_2024 PARTITION OF app.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE VIEW app.v AS SELECT id, name FROM app.t WHERE x > 0;
CREATE MATERIALIZED VIEW app.mv AS SELECT t_id, count(*) AS n FROM app.wps GROUP BY t_id;
CREATE INDEX mv_t_id_idx ON app.mv (t_id);
CREATE FUNCTION app.f(x integer) RETURNS integer LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN x + 1; END $$;
COMMENT ON FUNCTION app.f(integer) IS 'adds one';
CREATE FUNCTION audit.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.n := 1; RETURN NEW; END $$;
CREATE TRIGGER trg BEFORE INSERT ON app.t FOR EACH ROW EXECUTE FUNCTION audit.touch();
CREATE TABLE audit.log (id bigserial PRIMARY KEY, what text);
CREATE PROCEDURE app.p(v integer) LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit.log (what) VALUES (v::text); END $$;
ALTER TABLE audit.log ENABLE ROW LEVEL SECURITY;
CREATE POLICY log_read ON audit.log FOR SELECT USING (what <> 'secret');
CREATE RULE log_keep AS ON DELETE TO audit.log DO INSTEAD NOTHING;
CREATE STATISTICS app.t_stats (dependencies) ON x, n FROM app.t;
CREATE AGGREGATE app.total(integer) (sfunc = int4pl, stype = integer, initcond = '0');
GRANT SELECT ON app.v TO PUBLIC;
"""

# The same schema built another way: other creation order (so other OIDs), columns in another order
# and added by ALTER (one dropped on the way), constraints added afterwards, the enum grown with
# ADD VALUE BEFORE, the partition attached, a GRANT revoked again, and every sequence advanced.
BUILD_2 = """
CREATE SCHEMA audit;
CREATE SCHEMA app;
CREATE FUNCTION audit.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.n := 1; RETURN NEW; END $$;
CREATE FUNCTION app.f(x integer) RETURNS integer LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN x + 1; END $$;
CREATE AGGREGATE app.total(integer) (sfunc = int4pl, stype = integer, initcond = '0');
CREATE PROCEDURE app.p(v integer) LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit.log (what) VALUES (v::text); END $$;
CREATE TABLE audit.log (id bigserial PRIMARY KEY, what text);
CREATE RULE log_keep AS ON DELETE TO audit.log DO INSTEAD NOTHING;
CREATE POLICY log_read ON audit.log FOR SELECT USING (what <> 'secret');
ALTER TABLE audit.log ENABLE ROW LEVEL SECURITY;
CREATE EXTENSION citext SCHEMA app;
CREATE TYPE app.span AS RANGE (subtype = float8);
CREATE TYPE app.mood AS ENUM ('sad');
ALTER TYPE app.mood ADD VALUE 'happy' BEFORE 'sad';
CREATE DOMAIN app.posint AS integer DEFAULT 1;
ALTER DOMAIN app.posint ADD CONSTRAINT posint_check CHECK (VALUE > 0);
CREATE TYPE app.pair AS (a integer, b text);
CREATE SEQUENCE app.counter START 100;
ALTER SEQUENCE app.counter INCREMENT 5;
CREATE TABLE app.t (
    note text,
    obsolete integer,
    name text,
    id integer NOT NULL,
    created timestamptz NOT NULL DEFAULT '2020-01-01 00:00:00+00'
);
ALTER TABLE app.t DROP COLUMN obsolete;
ALTER TABLE app.t ADD COLUMN size app.posint;
ALTER TABLE app.t ADD COLUMN ticket bigint DEFAULT nextval('app.counter');
ALTER TABLE app.t ADD COLUMN n integer;
ALTER TABLE app.t ADD COLUMN x integer;
ALTER TABLE app.t ADD COLUMN doubled integer GENERATED ALWAYS AS (x * 2) STORED;
ALTER TABLE app.t ADD COLUMN feeling app.mood DEFAULT 'happy';
ALTER TABLE app.t ADD COLUMN email app.citext;
ALTER TABLE app.t ADD CONSTRAINT t_email_key UNIQUE (email);
ALTER TABLE app.t ADD CONSTRAINT t_x_check CHECK (x > 0);
ALTER TABLE app.t ADD CONSTRAINT t_pkey PRIMARY KEY (id);
CREATE STATISTICS app.t_stats (dependencies) ON x, n FROM app.t;
CREATE UNIQUE INDEX t_lower_name_idx ON app.t (lower(name)) WHERE name IS NOT NULL;
CREATE TRIGGER trg BEFORE INSERT ON app.t FOR EACH ROW EXECUTE FUNCTION audit.touch();
COMMENT ON COLUMN app.t.name IS 'full name';
COMMENT ON TABLE app.t IS 'people';
CREATE VIEW app.v AS SELECT id, name FROM app.t WHERE x > 0;
GRANT SELECT ON app.v TO PUBLIC;
GRANT INSERT ON app.t TO PUBLIC;
REVOKE INSERT ON app.t FROM PUBLIC;
CREATE TABLE app.wps (
    modules_data jsonb NOT NULL DEFAULT '{}',
    serial_no serial,
    t_id integer,
    id bigint NOT NULL
);
ALTER TABLE app.wps ALTER id ADD GENERATED ALWAYS AS IDENTITY;
ALTER TABLE app.wps ADD CONSTRAINT wps_pkey PRIMARY KEY (id);
ALTER TABLE app.wps ADD CONSTRAINT wps_t_id_fkey FOREIGN KEY (t_id) REFERENCES app.t (id) ON DELETE CASCADE;
CREATE INDEX wps_modules_data_idx ON app.wps USING gin (modules_data);
CREATE MATERIALIZED VIEW app.mv AS SELECT t_id, count(*) AS n FROM app.wps GROUP BY t_id;
CREATE INDEX mv_t_id_idx ON app.mv (t_id);
CREATE TABLE app.events (at date NOT NULL, what text) PARTITION BY RANGE (at);
CREATE TABLE app.events_2024 (at date NOT NULL, what text);
ALTER TABLE app.events ATTACH PARTITION app.events_2024 FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
COMMENT ON FUNCTION app.f(integer) IS 'adds one';
COMMENT ON SCHEMA app IS 'application';
INSERT INTO app.t (id, name, x) VALUES (1, 'a', 1), (2, 'b', 2);
INSERT INTO app.wps (t_id) VALUES (1), (2), (2);
INSERT INTO audit.log (what) VALUES ('x');
SELECT nextval('app.counter');
"""


def run_script(conn: psycopg.Connection, script: str) -> None:
    # One statement at a time: ALTER TYPE ... ADD VALUE must be committed before the value is used.
    for statement in script.split(";\n"):
        if statement.strip():
            conn.execute(statement)


def show(differences: list[Difference]) -> list[str]:
    return [d.describe() for d in differences]


@pytest.fixture(scope="module")
def built(server_url: str) -> Iterator[tuple[psycopg.Connection, Snapshot]]:
    """A database with BUILD_1 in it, shared by the read-only tests, and its snapshot."""
    name = f"sqlmigrate_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(make_conninfo(server_url, dbname=name), autocommit=True) as conn:
            run_script(conn, BUILD_1)
            yield conn, take(conn)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def test_snapshot_covers_every_object_kind(built: tuple[psycopg.Connection, Snapshot]) -> None:
    _conn, snap = built
    objects = snap.objects
    for key in [
        "schema app", "schema audit", "extension citext", "type app.mood", "type app.pair",
        "type app.posint", "type app.span", "sequence app.counter", "table app.t", "column app.t.name",
        "constraint app.t.t_x_check", "constraint app.t.t_pkey", "constraint app.wps.wps_t_id_fkey",
        "index app.t_lower_name_idx", "index app.mv_t_id_idx", "view app.v", "materialized view app.mv",
        "function app.f(integer)", "procedure app.p(integer)", "aggregate app.total(integer)",
        "trigger app.t.trg", "policy audit.log.log_read", "rule audit.log.log_keep",
        "statistics app.t_stats", "table app.events", "table app.events_2024", "sequence audit.log_id_seq",
    ]:
        assert key in objects, key
    assert objects["column app.wps.modules_data"]["type"] == "jsonb"
    assert objects["column app.wps.modules_data"]["default"] == "'{}'::jsonb"
    assert objects["column app.wps.modules_data"]["not null"] == "true"
    assert objects["column app.t.doubled"]["generated"] == "always as ((x * 2)) stored"
    assert objects["column app.wps.id"]["identity"] == "always"
    assert objects["type app.mood"]["enum values"] == "happy, sad"
    assert objects["type app.posint"]["constraint posint_check"] == "CHECK ((VALUE > 0))"
    assert objects["sequence app.counter"]["increment"] == "5"
    assert objects["table app.t"]["comment"] == "people"
    assert objects["column app.t.name"]["comment"] == "full name"
    assert objects["table app.events_2024"]["partition of"] == (
        "app.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')")
    assert "PUBLIC" not in objects["view app.v"]["privileges"]  # spelled "=r/owner" by the server
    assert "=r/" in objects["view app.v"]["privileges"]
    # Extension members are left out, the extension itself is recorded; so are identity sequences
    # (part of their column) and the constructors a range type makes for itself.
    assert not [k for k in objects if "citext" in k and k != "extension citext" and not k.startswith("column")]
    assert "sequence app.wps_id_seq" not in objects
    assert "function app.span(double precision, double precision)" not in objects
    # Nothing position- or state-dependent.
    assert not any("position" in p or "last value" in p for props in objects.values() for p in props)


def test_rebuild_in_another_order_compares_equal(built: tuple[psycopg.Connection, Snapshot],
                                                 conn: psycopg.Connection) -> None:
    _built_conn, first = built
    run_script(conn, BUILD_1)
    assert diff(first, take(conn)) == []
    conn.execute("DROP SCHEMA app, audit CASCADE")
    assert not [k for k in take(conn).objects if "app." in k or "audit" in k]
    run_script(conn, BUILD_2)
    second = take(conn)
    assert show(diff(first, second)) == []
    assert first.objects == second.objects


def test_snapshot_ignores_session_settings_and_restores_them(
        built: tuple[psycopg.Connection, Snapshot]) -> None:
    conn, first = built
    conn.execute("SET search_path TO app, audit, public")
    conn.execute("SET TimeZone TO 'America/New_York'")
    try:
        assert show(diff(first, take(conn))) == []
        assert conn.execute("SHOW search_path").fetchone() == ("app, audit, public",)
        with conn.transaction(force_rollback=True):
            take(conn)  # inside the caller's transaction: a savepoint, settings put back
            assert conn.execute("SHOW search_path").fetchone() == ("app, audit, public",)
            assert conn.execute("SHOW TimeZone").fetchone() == ("America/New_York",)
    finally:
        conn.execute("RESET search_path")
        conn.execute("RESET TimeZone")


# (what a rollback left wrong, SQL that does it, every line the diff must report)
CHANGES = [
    ("index left behind", "CREATE INDEX t_name_idx ON app.t (name)",
     ["index app.t_name_idx still exists"]),
    ("column default changed", "ALTER TABLE app.wps ALTER modules_data DROP DEFAULT",
     ["column app.wps.modules_data: default differs ('{}'::jsonb -> none)"]),
    ("check constraint missing", "ALTER TABLE app.t DROP CONSTRAINT t_x_check",
     ["constraint app.t.t_x_check is missing"]),
    ("enum value added", "ALTER TYPE app.mood ADD VALUE 'meh'",
     ["type app.mood: enum values differ (happy, sad -> happy, sad, meh)"]),
    ("trigger left behind",
     "CREATE TRIGGER trg2 AFTER UPDATE ON app.t FOR EACH ROW EXECUTE FUNCTION audit.touch()",
     ["trigger app.t.trg2 still exists"]),
    ("function body changed",
     "CREATE OR REPLACE FUNCTION app.f(x integer) RETURNS integer LANGUAGE plpgsql IMMUTABLE"
     " AS $$ BEGIN RETURN x + 2; END $$",
     ["function app.f(integer): definition differs"
      " (line 5: AS $function$ BEGIN RETURN x + 1; END $function$ -> AS $function$ BEGIN RETURN x + 2; END $function$)"]),
    ("comment changed", "COMMENT ON TABLE app.t IS 'persons'",
     ["table app.t: comment differs (people -> persons)"]),
    ("comment removed", "COMMENT ON COLUMN app.t.name IS NULL",
     ["column app.t.name: comment differs (full name -> none)"]),
    ("view definition changed", "CREATE OR REPLACE VIEW app.v AS SELECT id, name FROM app.t WHERE x > 1",
     # PostgreSQL 16+ prints "WHERE (x > 0);", older servers "WHERE t.x > 0;".
     [re.compile(r"view app\.v: definition differs \(line 4: WHERE \(?(t\.)?x > 0\)?; -> WHERE \(?(t\.)?x > 1\)?;\)")]),
    ("nullability changed", "ALTER TABLE app.t ALTER name SET NOT NULL",
     ["column app.t.name: not null differs (false -> true)"]),
    ("extra table", "CREATE TABLE app.extra (id serial PRIMARY KEY, t_id integer REFERENCES app.t (id))",
     ["table app.extra still exists"]),
    ("table dropped, reported once", "DROP TABLE audit.log",
     ["table audit.log is missing"]),
    ("identity column", "ALTER TABLE app.t ALTER n SET NOT NULL;"
     " ALTER TABLE app.t ALTER n ADD GENERATED ALWAYS AS IDENTITY",
     ["column app.t.n: identity differs (none -> always)",
      "column app.t.n: identity sequence differs (none -> app.t_n_seq as integer start 1 increment 1"
      " minimum 1 maximum 2147483647 cache 1 no cycle)",
      "column app.t.n: not null differs (false -> true)"]),
    ("sequence parameter changed", "ALTER SEQUENCE app.counter INCREMENT 2",
     ["sequence app.counter: increment differs (5 -> 2)"]),
    ("domain constraint dropped", "ALTER DOMAIN app.posint DROP CONSTRAINT posint_check",
     ["type app.posint: constraint posint_check differs (CHECK ((VALUE > 0)) -> none)"]),
    ("policy changed", "ALTER POLICY log_read ON audit.log USING (true)",
     ["policy audit.log.log_read: using differs ((what <> 'secret'::text) -> true)"]),
    # "=w/owner": PUBLIC may UPDATE. The owner's own letters vary by version (MAINTAIN is 17+).
    ("privilege left granted", "GRANT UPDATE ON app.t TO PUBLIC",
     [re.compile(r"table app\.t: privileges differ \(default -> =w/\w+ \w+=arwdDxtm?/\w+\)")]),
    ("extension left behind", "CREATE EXTENSION pg_trgm SCHEMA app",
     ["extension pg_trgm still exists"]),
    ("column type changed", "ALTER TABLE app.t ALTER note TYPE varchar(20)",
     ["column app.t.note: type differs (text -> character varying(20))"]),
    ("index replaced by another", "DROP INDEX app.t_lower_name_idx;"
     " CREATE UNIQUE INDEX t_lower_name_idx ON app.t (upper(name))",
     ["index app.t_lower_name_idx: definition differs (CREATE UNIQUE INDEX t_lower_name_idx ON app.t"
      " USING btree (lower(name)) WHERE (name IS NOT NULL) -> CREATE UNIQUE INDEX t_lower_name_idx"
      " ON app.t USING btree (upper(name)))"]),
    # Undone properly (though not byte for byte): no difference.
    ("grant then revoke", "GRANT UPDATE ON app.t TO PUBLIC; REVOKE UPDATE ON app.t FROM PUBLIC", []),
    ("column dropped and re-added at the end",
     "ALTER TABLE app.t DROP COLUMN note; ALTER TABLE app.t ADD COLUMN note text", []),
    ("sequence advanced", "SELECT nextval('app.counter'); SELECT setval('app.counter', 1000)", []),
]


@pytest.mark.parametrize(("change", "statements", "expected"), CHANGES, ids=[c[0] for c in CHANGES])
def test_diff_names_exactly_what_changed(built: tuple[psycopg.Connection, Snapshot], change: str,
                                         statements: str, expected: list[str | re.Pattern[str]]) -> None:
    conn, before = built
    # DDL is transactional: each change is rolled back, so the cases share one built database.
    with conn.transaction(force_rollback=True):
        conn.execute(statements)
        after = take(conn)
    got = show(diff(before, after))
    assert len(got) == len(expected), got
    for line, want in zip(got, expected):
        assert want.fullmatch(line) if isinstance(want, re.Pattern) else line == want, got


def test_excluded_tables_and_what_hangs_off_them_are_hidden(conn: psycopg.Connection) -> None:
    conn.execute("""
        CREATE TABLE schema_migrations (version bigint PRIMARY KEY, name text NOT NULL);
        CREATE TABLE schema_migrations_log (id bigserial PRIMARY KEY,
            version bigint CHECK (version > 0), n bigint GENERATED ALWAYS AS IDENTITY);
        CREATE INDEX schema_migrations_log_version_idx ON schema_migrations_log (version);
        COMMENT ON TABLE schema_migrations IS 'history';
        CREATE TABLE keep (id serial PRIMARY KEY);
    """)
    everything = take(conn).objects
    assert "table public.schema_migrations" in everything
    assert "index public.schema_migrations_log_version_idx" in everything
    assert "sequence public.schema_migrations_log_id_seq" in everything
    assert "constraint public.schema_migrations.schema_migrations_pkey" in everything

    hidden = take(conn, exclude_tables=["schema_migrations", "schema_migrations_log"]).objects
    assert [k for k in hidden if "schema_migrations" in k] == []
    assert {"table public.keep", "column public.keep.id", "sequence public.keep_id_seq",
            "constraint public.keep.keep_pkey", "schema public"} <= set(hidden)


def test_describe_and_diff_without_a_database() -> None:
    before = Snapshot(
        objects={"table s.t": {}, "column s.t.a": {"type": "integer"}, "index s.i": {"definition": "CREATE"},
                 "function s.f()": {"definition": "a\nb\nc"}},
        parents={"column s.t.a": "table s.t", "index s.i": "table s.t"},
    )
    after = Snapshot(objects={"function s.f()": {"definition": "a\nB\nc", "comment": ""},
                              "type s.e": {"enum values": ""}})
    assert show(diff(before, after)) == [
        "function s.f(): comment differs (none -> (empty))",
        "function s.f(): definition differs (line 2: b -> B)",
        "table s.t is missing",
        "type s.e still exists",
    ]
    assert diff(before, after)[2] == Difference("table s.t", "missing", None, None)
    assert diff(before, before) == []
    # A child missing while its table stays is reported.
    kept = {k: v for k, v in before.objects.items() if k != "index s.i"}
    assert show(diff(before, Snapshot(objects=kept))) == ["index s.i is missing"]


# Renames change how other objects print (a view of a renamed table or column, a trigger of a
# renamed function, a default of a renamed sequence...): the incremental snapshot must see them too.
RENAMES = [
    ("nothing", "SELECT 1"),
    ("table renamed under a view", "ALTER TABLE app.t RENAME TO people"),
    ("column renamed under a view and an index", "ALTER TABLE app.t RENAME COLUMN name TO full_name"),
    ("function renamed under a trigger", "ALTER FUNCTION audit.touch() RENAME TO touch2"),
    ("schema renamed", "ALTER SCHEMA audit RENAME TO audit2"),
    ("type renamed under a column", "ALTER TYPE app.mood RENAME TO feeling"),
    ("sequence renamed under a default", "ALTER SEQUENCE app.counter RENAME TO ctr"),
    ("index renamed", "ALTER INDEX app.t_lower_name_idx RENAME TO t_name_lower"),
    ("constraint renamed", "ALTER TABLE app.t RENAME CONSTRAINT t_x_check TO x_positive"),
    ("enum value renamed under a view",
     "CREATE VIEW app.sad AS SELECT id FROM app.t WHERE feeling = 'sad' || ALTER TYPE app.mood RENAME VALUE 'sad' TO 'blue'"),
    ("composite attribute renamed under a view",
     "CREATE VIEW app.pairs AS SELECT (ROW(1, 'x')::app.pair).a || ALTER TYPE app.pair RENAME ATTRIBUTE a TO first"),
    ("comment on a constraint, an index, a trigger",
     "COMMENT ON CONSTRAINT t_x_check ON app.t IS 'c'; COMMENT ON INDEX app.t_lower_name_idx IS 'i';"
     " COMMENT ON TRIGGER trg ON app.t IS 't'"),
    ("comment on an owned sequence", "COMMENT ON SEQUENCE app.wps_serial_no_seq IS 's'"),
    ("domain constraint dropped", "ALTER DOMAIN app.posint DROP CONSTRAINT posint_check"),
    ("identity sequence changed", "ALTER TABLE app.wps ALTER id SET INCREMENT BY 2"),
    ("column privilege", "GRANT SELECT (name) ON app.t TO PUBLIC"),
    ("sequence no longer owned", "ALTER SEQUENCE app.wps_serial_no_seq OWNED BY NONE"),
    ("table dropped with its view", "DROP TABLE app.t CASCADE"),
    ("extension added", "CREATE EXTENSION hstore"),
    ("view replaced", "CREATE OR REPLACE VIEW app.v AS SELECT id, name FROM app.t WHERE x > 1"),
]


@pytest.mark.parametrize(("change", "statements"), [(c[0], c[1]) for c in CHANGES] + RENAMES,
                         ids=[c[0] for c in CHANGES] + [r[0] for r in RENAMES])
def test_reading_again_only_what_changed_gives_the_full_snapshot(
        built: tuple[psycopg.Connection, Snapshot], change: str, statements: str) -> None:
    conn, before = built
    with conn.transaction(force_rollback=True):
        if " || " in statements:  # "what must exist before || the change"
            setup, statements = statements.split(" || ")
            conn.execute(setup)
            before = take(conn, previous=before)
        conn.execute(statements)
        again = take(conn, previous=before)
        full = take(conn)
    assert again.objects == full.objects and again.parents == full.parents, show(diff(full, again))
