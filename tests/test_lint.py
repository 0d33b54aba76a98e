"""``lint`` (SPEC section 8): each rule on a realistic statement and on its safer recipe, run against
the real server to prove what the rule claims (a rewrite changes the table's file node, a forbidden
statement fails); table facts, ranking and blocking sessions from a live database; the CLI."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from sqlmigrate import _sqltext as sqltext
from sqlmigrate._errors import ConfigurationError, MigrationFileError
from sqlmigrate._lint import LintReport, lint, lint_sources
from sqlmigrate._lintrules import RULES

SETUP = """
CREATE TABLE users (id int NOT NULL, email text, name text, org_id int, age int);
CREATE TABLE orgs (id int PRIMARY KEY);
INSERT INTO orgs VALUES (1);
INSERT INTO users SELECT g, 'u' || g || '@example.com', 'user ' || g, 1, 20 + g % 50
  FROM generate_series(1, 500) g;
CREATE INDEX users_email_idx ON users (email);
ANALYZE users;
"""
NO_TX = "-- sqlmigrate: no-transaction\nSET lock_timeout = '5s';\n"


@dataclass(frozen=True)
class Case:
    rule: str
    bad: str  # one file
    line: int  # where the hazard is
    good: tuple[str, ...]  # the safer recipe, as consecutive migration files
    server_error: type[Exception] | None = None  # what the server says to the bad file
    rewrites: bool = False  # the bad file gives users a new file node (a table rewrite)


CASES = [
    Case("require-concurrent-index-creation",
         "-- speed up the admin search\nCREATE INDEX users_name_idx ON users (name);\n", 2,
         (NO_TX + "CREATE INDEX CONCURRENTLY users_name_idx ON users (name);\n",)),
    Case("require-concurrent-index-deletion", "DROP INDEX users_email_idx;\n", 1,
         (NO_TX + "DROP INDEX CONCURRENTLY users_email_idx;\n",)),
    Case("constraint-missing-not-valid",
         "ALTER TABLE users\n  ADD CONSTRAINT users_org_fk FOREIGN KEY (org_id) REFERENCES orgs (id);\n", 1,
         ("ALTER TABLE users ADD CONSTRAINT users_org_fk FOREIGN KEY (org_id) REFERENCES orgs (id) NOT VALID;\n",
          "ALTER TABLE users VALIDATE CONSTRAINT users_org_fk;\n")),
    Case("constraint-missing-not-valid",
         "SELECT 1;\nALTER TABLE users ADD CONSTRAINT users_age_check CHECK (age > 0);\n", 2,
         ("ALTER TABLE users ADD CONSTRAINT users_age_check CHECK (age > 0) NOT VALID;\n",
          "ALTER TABLE users VALIDATE CONSTRAINT users_age_check;\n")),
    Case("adding-not-nullable-field", "ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n", 1,
         ("ALTER TABLE users ADD CONSTRAINT users_email_nn CHECK (email IS NOT NULL) NOT VALID;\n",
          "ALTER TABLE users VALIDATE CONSTRAINT users_email_nn;\n",
          "ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n"
          "ALTER TABLE users DROP CONSTRAINT users_email_nn;\n")),
    Case("adding-required-field", "ALTER TABLE users ADD COLUMN tenant_id int NOT NULL;\n", 1,
         ("ALTER TABLE users ADD COLUMN tenant_id int NOT NULL DEFAULT 0;\n",),
         server_error=psycopg.errors.NotNullViolation),
    Case("changing-column-type", "ALTER TABLE users ALTER COLUMN age TYPE bigint;\n", 1,
         ("ALTER TABLE users ADD COLUMN age_big bigint;\n",), rewrites=True),
    Case("adding-field-with-volatile-default",
         "ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();\n", 1,
         ("ALTER TABLE users ADD COLUMN token uuid;\n"
          "ALTER TABLE users ALTER COLUMN token SET DEFAULT gen_random_uuid();\n"
          # A STABLE default is evaluated once: no rewrite since PostgreSQL 11.
          "ALTER TABLE users ADD COLUMN seen_at timestamptz DEFAULT now();\n",), rewrites=True),
    Case("renaming-column", "ALTER TABLE users RENAME COLUMN name TO full_name;\n", 1,
         ("ALTER TABLE users ADD COLUMN full_name text;\n",)),
    Case("renaming-table", "ALTER TABLE users RENAME TO members;\n", 1,
         ("CREATE VIEW members AS SELECT * FROM users;\n",)),
    Case("ban-drop-column", "ALTER TABLE users DROP COLUMN name;\n", 1,
         ("CREATE TABLE staging (a int, b int);\nALTER TABLE staging DROP COLUMN b;\n",)),
    Case("ban-drop-table", "DROP TABLE orgs;\n", 1,
         ("CREATE TABLE import_tmp (a int);\nDROP TABLE import_tmp;\n",)),
    Case("require-lock-timeout",
         "-- sqlmigrate: no-transaction\nCREATE INDEX CONCURRENTLY users_age_idx ON users (age);\n", 2,
         (NO_TX + "CREATE INDEX CONCURRENTLY users_age2_idx ON users (age);\n",)),
    Case("ban-vacuum-full", NO_TX + "VACUUM FULL users;\n", 3, (NO_TX + "VACUUM users;\n",), rewrites=True),
    Case("ban-cluster", "CLUSTER users USING users_email_idx;\n", 1,
         ("ALTER TABLE users CLUSTER ON users_email_idx;\n",), rewrites=True),
    Case("require-concurrent-reindex", "REINDEX INDEX users_email_idx;\n", 1,
         (NO_TX + "REINDEX INDEX CONCURRENTLY users_email_idx;\n",)),
    Case("adding-primary-key", "ALTER TABLE users ADD PRIMARY KEY (id);\n", 1,
         (NO_TX + "CREATE UNIQUE INDEX CONCURRENTLY users_id_idx ON users (id);\n",
          "ALTER TABLE users ADD CONSTRAINT users_pkey PRIMARY KEY USING INDEX users_id_idx;\n")),
    Case("disallowed-unique-constraint",
         "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);\n", 1,
         (NO_TX + "CREATE UNIQUE INDEX CONCURRENTLY users_email_uidx ON users (email);\n",
          "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_uidx;\n")),
    Case("ban-concurrent-index-in-transaction",
         "CREATE INDEX CONCURRENTLY users_name_idx ON users (name);\n", 1,
         (NO_TX + "CREATE INDEX CONCURRENTLY users_name_idx ON users (name);\n",),
         server_error=psycopg.errors.ActiveSqlTransaction),
]


def write(folder: Path, *texts: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, text in enumerate(texts, 1):
        p = folder / f"{k:04d}_step.sql"
        p.write_text(text)
        paths.append(p)
    return paths


def rules_at(report: LintReport) -> set[tuple[str, int]]:
    return {(f.rule, f.line) for f in report.findings}


def filenode(conn: psycopg.Connection, oid: int) -> object:
    return conn.execute("SELECT pg_relation_filenode(%s::oid)", (oid,)).fetchone()[0]  # type: ignore[index]


def run(conn: psycopg.Connection, text: str, *, keep: bool = True) -> bool:
    """Run one migration file the way sqlmigrate does (no-transaction: statement by statement);
    return whether the users table was rewritten (its file node changed)."""
    statements = [s.text for s in sqltext.split(text)]
    oid = conn.execute("SELECT 'users'::regclass::oid").fetchone()[0]  # type: ignore[index]
    before = filenode(conn, oid)
    if sqltext.directives(text, Path("x.sql")).no_transaction:
        for s in statements:
            conn.execute(s)  # type: ignore[arg-type]
        return filenode(conn, oid) != before
    with conn.transaction(force_rollback=not keep):
        for s in statements:
            conn.execute(s)  # type: ignore[arg-type]
        return filenode(conn, oid) != before


def test_every_rule_has_a_case() -> None:
    assert {c.rule for c in CASES} | {"statement-too-large"} == set(RULES)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.rule}-{k}" for k, c in enumerate(CASES)])
def test_rule_fires_on_the_hazard_and_not_on_its_recipe(case: Case, conn: psycopg.Connection,
                                                        tmp_path: Path) -> None:
    conn.execute(SETUP)  # type: ignore[arg-type]
    [bad] = write(tmp_path / "bad", case.bad)
    report = lint([bad])
    assert rules_at(report) == {(case.rule, case.line)}
    [finding] = report.findings
    assert finding.severity == RULES[case.rule].severity and finding.recipe and finding.message
    assert finding.file == str(bad)
    good = write(tmp_path / "good", *case.good)
    clean = lint(good)
    assert not clean.errors and case.rule not in {f.rule for f in clean.findings}, clean.findings

    # What the rules claim is what the server does; and the recipe is valid SQL that works.
    if case.server_error is not None:
        with pytest.raises(case.server_error):
            run(conn, case.bad, keep=False)
    else:
        assert run(conn, case.bad, keep=False) is case.rewrites
    assert not any([run(conn, text) for text in case.good])


def test_a_table_created_earlier_in_the_run_is_exempt(tmp_path: Path) -> None:
    create = "CREATE TABLE events (id bigint, kind text, at timestamptz);\n"
    work = ("CREATE INDEX events_kind_idx ON events (kind);\n"
            "ALTER TABLE events ADD CONSTRAINT events_kind_check CHECK (kind <> '');\n"
            "ALTER TABLE events ALTER COLUMN at TYPE timestamp;\n"
            "ALTER TABLE public.events ADD COLUMN token uuid DEFAULT gen_random_uuid();\n"
            # An index this run created is dropped before any query could use it.
            "DROP INDEX events_kind_idx;\n")
    same_file = write(tmp_path / "same", create + work)
    assert lint(same_file).findings == ()
    earlier_file = write(tmp_path / "earlier", create, work)
    assert lint(earlier_file).findings == ()
    # Created after the statements that use it (another table of that name exists before).
    later_file = write(tmp_path / "later", work, create)
    assert {r for r, _ in rules_at(lint(later_file))} == {
        "require-concurrent-index-creation", "constraint-missing-not-valid", "changing-column-type",
        "adding-field-with-volatile-default"}
    # Another schema's table of the same name is not the new one.
    other = write(tmp_path / "other", create.replace("events", "app.events")
                  + "CREATE INDEX ON audit.events (kind);\n")
    assert rules_at(lint(other)) == {("require-concurrent-index-creation", 2)}


def test_validate_in_the_same_transaction_keeps_the_lock(tmp_path: Path) -> None:
    text = ("ALTER TABLE users ADD CONSTRAINT users_age_check CHECK (age > 0) NOT VALID;\n"
            "ALTER TABLE users VALIDATE CONSTRAINT users_age_check;\n")
    [finding] = lint(write(tmp_path, text)).findings
    assert (finding.rule, finding.line, finding.severity) == ("constraint-missing-not-valid", 2, "warning")
    assert "ACCESS EXCLUSIVE" in finding.message


def test_statements_inside_strings_and_comments_are_not_read_as_sql(tmp_path: Path) -> None:
    text = ("/* DROP TABLE users; */\n"
            "-- CREATE INDEX users_name_idx ON users (name);\n"
            "INSERT INTO notes VALUES ('ALTER TABLE users ALTER COLUMN age TYPE bigint;');\n"
            "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ DROP TABLE users $$;\n"
            "ALTER TABLE users ADD COLUMN note text DEFAULT 'random()';\n")
    assert lint(write(tmp_path, text)).findings == ()


def test_huge_statement_is_skipped_with_an_info_finding(tmp_path: Path) -> None:
    values = ", ".join(f"'{k}'" for k in range(30_000))
    text = f"ALTER TABLE users ADD CONSTRAINT big CHECK (name IN ({values}));\n"
    [finding] = lint(write(tmp_path, text)).findings
    assert (finding.rule, finding.severity) == ("statement-too-large", "info")


def test_disabled_rules_and_unknown_rule_names(tmp_path: Path) -> None:
    paths = write(tmp_path, "DROP TABLE orgs;\nCREATE INDEX ON users (name);\n")
    report = lint(paths, disabled=["ban-drop-table"])
    assert rules_at(report) == {("require-concurrent-index-creation", 2)}
    with pytest.raises(ConfigurationError, match="no-such-rule"):
        lint(paths, disabled=["no-such-rule"])


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(MigrationFileError, match="missing.sql"):
        lint([tmp_path / "missing.sql"])
    [bad] = write(tmp_path, "-- sqlmigrate: no-transactoin\nSELECT 1;\n")
    with pytest.raises(MigrationFileError, match="unknown directive"):
        lint([bad])


def test_no_database_round_trip_when_nothing_existing_is_locked(tmp_path: Path) -> None:
    # S1-style migrations (new table, its index, seed rows) need no table facts: the (unreachable)
    # database is never contacted.
    paths = write(tmp_path, "CREATE TABLE t1 (id int PRIMARY KEY, name text);\n"
                            "CREATE INDEX t1_name_idx ON t1 (name);\nINSERT INTO t1 VALUES (1, 'a');\n")
    report = lint_sources([(p, p.read_text()) for p in paths], "postgresql://nobody@127.0.0.1:1/none")
    assert report.findings == () and report.locks == ()


# ------------------------------------------------------------------------------------------------
# With a database
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def sized(conn: psycopg.Connection) -> psycopg.Connection:
    conn.execute(
        "CREATE TABLE big (id int, payload text);"
        "INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;"
        "CREATE TABLE small (id int, payload text);"
        "INSERT INTO small SELECT g, 'y' FROM generate_series(1, 150) g;"
        "ANALYZE big; ANALYZE small")
    return conn


def facts(conn: psycopg.Connection, table: str) -> tuple[int, int]:
    row = conn.execute("SELECT pg_total_relation_size(%s::regclass), reltuples::bigint FROM pg_class"
                       " WHERE oid = %s::regclass", (table, table)).fetchone()
    assert row is not None
    return row[0], row[1]


def test_sizes_and_rows_come_from_the_database_and_rank_the_findings(
        sized: psycopg.Connection, database_url: str, tmp_path: Path) -> None:
    paths = write(tmp_path,
                  "ALTER TABLE small RENAME COLUMN payload TO body;\n"
                  "CREATE INDEX small_id_idx ON small (id);\n",
                  "ALTER TABLE big ALTER COLUMN id TYPE bigint;\n")
    report = lint(paths, database_url)
    assert report.database
    order = [(f.rule, f.table) for f in report.findings]
    assert order == [("changing-column-type", "public.big"),
                     ("require-concurrent-index-creation", "public.small"),
                     ("renaming-column", "public.small")]
    assert [f.cost_rank for f in report.findings] == [1, 2, 3]
    big, small = report.findings[0], report.findings[1]
    assert (big.table_bytes, big.estimated_rows) == facts(sized, "big")
    assert (small.table_bytes, small.estimated_rows) == facts(sized, "small")
    assert big.estimated_rows == 20000 and big.lock == "ACCESS EXCLUSIVE on public.big"
    assert big.cost is not None and big.cost.startswith("rewrites ") and "~20 k rows" in big.cost
    assert small.cost is not None and small.cost.startswith("builds an index over ~150 rows")


def test_same_connection_is_left_as_it_was(sized: psycopg.Connection, tmp_path: Path) -> None:
    sized.execute("CREATE SCHEMA app; CREATE TABLE app.items (id int)")
    paths = write(tmp_path, "SET search_path = app, public;\nCREATE INDEX ON items (id);\n",
                  "CREATE INDEX ON items (id);\n")
    report = lint(paths, sized)
    first, second = report.findings
    # The file's own SET search_path is honoured for that file only (each migration starts fresh).
    assert first.table == "app.items" and first.severity == "error"
    assert second.table is None and second.severity == "info" and "does not exist" in second.message
    assert sized.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert sized.execute("SHOW search_path").fetchone() == ('"$user", public',)


def test_unknown_row_count_of_a_never_analyzed_table(conn: psycopg.Connection, database_url: str,
                                                     tmp_path: Path) -> None:
    conn.execute("CREATE TABLE fresh (id int); INSERT INTO fresh VALUES (1)")
    [f] = lint(write(tmp_path, "ALTER TABLE fresh ALTER COLUMN id TYPE bigint;\n"), database_url).findings
    assert f.table_bytes is not None and f.table_bytes > 0
    if conn.info.server_version >= 140000:  # before 14, 0 means both "empty" and "unknown"
        assert f.estimated_rows is None and f.cost is not None and "never analyzed" in f.cost


def test_a_session_holding_a_lock_on_a_touched_table_is_reported(
        sized: psycopg.Connection, database_url: str, tmp_path: Path) -> None:
    paths = write(tmp_path, "ALTER TABLE big ADD COLUMN note text;\n")
    with psycopg.connect(database_url, application_name="report-job") as other:
        other.execute("SELECT count(*) FROM big")  # its transaction stays open, holding the lock
        pid = other.info.backend_pid
        report = lint(paths, database_url)
        [blocker] = [b for b in report.blockers if b.pid == pid]
        assert blocker.application == "report-job"
        assert blocker.locks == (("big", "AccessShareLock"),)
        assert blocker.query == "SELECT count(*) FROM big"
        assert "pid %d" % pid in blocker.describe()
        assert report.findings == ()  # a nullable column without default is instant
        assert [lk.lock for lk in report.locks] == ["ACCESS EXCLUSIVE on public.big"]
        other.rollback()
    assert lint(paths, database_url).blockers == ()


def test_an_old_transaction_elsewhere_is_reported_only_past_the_threshold(
        sized: psycopg.Connection, database_url: str, tmp_path: Path) -> None:
    paths = write(tmp_path, "CREATE INDEX big_id_idx ON big (id);\n")
    with psycopg.connect(database_url) as other:
        other.execute("SELECT 1 FROM small LIMIT 1")  # no lock on a touched table
        pid = other.info.backend_pid
        assert pid not in {b.pid for b in lint(paths, database_url).blockers}
        report = lint(paths, database_url, long_transaction_s=0)
        [blocker] = [b for b in report.blockers if b.pid == pid]
        assert blocker.locks == () and blocker.transaction_seconds is not None


# ------------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------------

def test_cli_exit_codes_and_human_output(cli, mdir, conn: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    conn.execute(SETUP)  # type: ignore[arg-type]
    mdir.write("0001_ok.sql", "CREATE TABLE t (id int);\nCREATE INDEX ON t (id);\n")
    r = cli("lint", "--dir", str(mdir))
    assert r.code == 0, r
    assert "no findings" in r.out
    mdir.write("0002_rename.sql", "ALTER TABLE users RENAME COLUMN name TO full_name;\n")
    r = cli("lint", "--dir", str(mdir))
    assert r.code == 0 and "warning renaming-column  ACCESS EXCLUSIVE on public.users" in r.out, r
    mdir.write("0003_index.sql", "\n\nCREATE INDEX users_name_idx ON users (name);\n")
    r = cli("lint", "--dir", str(mdir))
    assert r.code == 1, r
    assert "0003_index.sql:3  error require-concurrent-index-creation  SHARE on public.users" in r.out
    assert "safer: CREATE INDEX CONCURRENTLY" in r.out and "~500 rows" in r.out
    assert "1 error, 1 warning" in r.out


def test_cli_lints_only_pending_migrations(cli, mdir, conn: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    conn.execute(SETUP)  # type: ignore[arg-type]
    mdir.write("0001_index.sql", "CREATE INDEX users_name_idx ON users (name);\n")
    assert cli("up", "--dir", str(mdir)).code == 0
    mdir.write("0002_drop.sql", "ALTER TABLE users DROP COLUMN age;\n")
    r = cli("lint", "--dir", str(mdir), "--json")
    assert r.code == 0, r
    report = json.loads(r.out)
    assert [Path(f).name for f in report["files"]] == ["0002_drop.sql"]
    assert [f["rule"] for f in report["findings"]] == ["ban-drop-column"]


def test_cli_json_shape(cli, mdir, conn: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    conn.execute(SETUP)  # type: ignore[arg-type]
    mdir.write("0001_type.sql", "ALTER TABLE users ALTER COLUMN age TYPE bigint;\n")
    r = cli("lint", "--dir", str(mdir), "--json")
    assert r.code == 1, r
    report = json.loads(r.out)
    assert set(report) == {"files", "database", "errors", "warnings", "findings", "locks", "blockers"}
    assert report["database"] is True and report["errors"] == 1 and report["warnings"] == 0
    [f] = report["findings"]
    assert set(f) == {"file", "line", "statement", "rule", "severity", "lock", "message", "recipe", "table",
                      "table_bytes", "estimated_rows", "cost", "cost_rank"}
    assert (f["rule"], f["line"], f["table"], f["estimated_rows"], f["cost_rank"]) == \
        ("changing-column-type", 1, "public.users", 500, 1)
    assert report["locks"] == [{"file": f["file"], "line": 1, "statement": f["statement"],
                                "lock": "ACCESS EXCLUSIVE on public.users"}]
    assert report["blockers"] == []


def test_cli_named_files_without_a_database(cli, mdir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = mdir.write("0001_a.sql", "VACUUM FULL users;\n")
    r = cli("lint", str(a), url=None)
    assert r.code == 1 and "error ban-vacuum-full  ACCESS EXCLUSIVE on users" in r.out, r
    assert not (tmp_path / ".sqlmigrate").exists()  # no embedded server was started
    r = cli("lint", "--dir", str(mdir), url=None)
    assert r.code == 1 and "no database configured: linting all 1 migration file(s)" in r.err, r


def test_cli_file_errors_exit_2(cli, mdir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli("lint", str(tmp_path / "nope.sql"))
    assert r.code == 2 and "nope.sql" in r.err and "Traceback" not in r.err, r
    bad = mdir.write("0001_bad.sql", "-- sqlmigrate: no-transactoin\nSELECT 1;\n")
    r = cli("lint", str(bad))
    assert r.code == 2 and "unknown directive" in r.err and "0001_bad.sql" in r.err, r


def test_lint_does_not_wait_for_a_table_another_session_holds_exclusively(
        sized: psycopg.Connection, database_url: str, tmp_path: Path) -> None:
    paths = write(tmp_path, "ALTER TABLE big ALTER COLUMN id TYPE bigint;\n")
    with psycopg.connect(database_url) as other:
        other.execute("LOCK TABLE big IN ACCESS EXCLUSIVE MODE")
        [f] = lint(paths, database_url).findings
        assert f.table == "public.big" and f.table_bytes is not None and f.table_bytes > 0
        [blocker] = lint(paths, database_url).blockers
        assert blocker.locks == (("big", "AccessExclusiveLock"),)


def test_cli_unreachable_database_exits_5(cli, mdir) -> None:  # type: ignore[no-untyped-def]
    path = mdir.write("0001_a.sql", "ALTER TABLE users ALTER COLUMN age TYPE bigint;\n")
    r = cli("lint", "--database", "postgresql://nobody:s3cret@127.0.0.1:1/none", str(path))
    assert r.code == 5 and "could not connect" in r.err and "s3cret" not in r.err + r.out, r
    assert "Traceback" not in r.err


def test_up_preflight_lints_prepared_scripts(conn: psycopg.Connection, tmp_path: Path) -> None:
    from sqlmigrate._lint import lint_scripts
    from sqlmigrate._script import prepare

    conn.execute(SETUP)  # type: ignore[arg-type]
    texts = ["BEGIN;\nCREATE TABLE audit (id int);\nCREATE INDEX ON audit (id);\nCOMMIT;\n",
             "-- sqlmigrate: no-transaction\nCREATE INDEX CONCURRENTLY users_name_idx ON users (name);\n"]
    scripts = [prepare(text, p) for text, p in zip(texts, write(tmp_path, *texts))]
    report = lint_scripts(scripts, conn)
    assert [(Path(f.file).name, f.line, f.rule, f.table) for f in report.findings] == [
        ("0002_step.sql", 2, "require-lock-timeout", "public.users")]
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_a_failed_transaction_on_the_given_connection_is_refused(database_url: str, tmp_path: Path) -> None:
    paths = write(tmp_path, "CREATE INDEX ON users (name);\n")
    with psycopg.connect(database_url) as conn:
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM no_such_table")
        with pytest.raises(ConfigurationError, match="transaction has failed; roll it back first"):
            lint(paths, conn)
        conn.rollback()
        [f] = lint(paths, conn).findings  # then it works, and says the table does not exist there
        assert f.severity == "info" and "does not exist on this database" in f.message


# -- up runs the same check first ----------------------------------------------------------------------


def test_up_prints_lint_findings_as_warnings_and_strict_refuses(cli, conn, mdir):
    mdir.write("0001_t.sql", "CREATE TABLE t (id int);\n")
    assert cli("up", "--dir", str(mdir)).code == 0
    conn.execute("INSERT INTO t SELECT generate_series(1, 1000); ANALYZE t")
    mdir.write("0002_idx.sql", "CREATE INDEX t_id ON t (id);\n")

    r = cli("up", "--dir", str(mdir), "--strict")
    assert r.code == 2 and "Traceback" not in r.err, r
    assert "require-concurrent-index-creation" in r.err and "nothing was run" in r.err, r
    assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (1,)
    assert conn.execute("SELECT to_regclass('t_id')").fetchone() == (None,)

    r = cli("up", "--dir", str(mdir))
    assert r.code == 0, r
    assert "lint:" in r.err and "0002_idx.sql:1" in r.err and "require-concurrent-index-creation" in r.err, r
    assert "CONCURRENTLY" in r.err, r  # the safer recipe
    assert conn.execute("SELECT to_regclass('t_id')::text").fetchone() == ("t_id",)


# -- configuration: [tool.sqlmigrate] strict and lint_disable; per-statement allow comments -------------


def _project(tmp_path: Path, settings: str) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.sqlmigrate]\n" + settings)


def _pending_index(cli, conn, mdir) -> None:  # type: ignore[no-untyped-def]
    """An applied table with rows, and a pending plain CREATE INDEX on it (an error-level finding)."""
    mdir.write("0001_t.sql", "CREATE TABLE t (id int);\n")
    assert cli("up", "--dir", str(mdir)).code == 0
    conn.execute("INSERT INTO t SELECT generate_series(1, 1000); ANALYZE t")
    mdir.write("0002_idx.sql", "CREATE INDEX t_id ON t (id);\n")


def test_strict_from_pyproject_and_no_strict_flag(cli, conn, mdir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _pending_index(cli, conn, mdir)
    _project(tmp_path, "strict = true\n")
    r = cli("up", "--dir", str(mdir))
    assert r.code == 2 and "require-concurrent-index-creation" in r.err and "nothing was run" in r.err, r
    assert conn.execute("SELECT to_regclass('t_id')").fetchone() == (None,)
    r = cli("up", "--dir", str(mdir), "--no-strict")
    assert r.code == 0 and "require-concurrent-index-creation" in r.err, r
    assert conn.execute("SELECT to_regclass('t_id')::text").fetchone() == ("t_id",)


def test_strict_false_in_pyproject_and_the_flag_wins(cli, conn, mdir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _pending_index(cli, conn, mdir)
    _project(tmp_path, "strict = false\n")
    assert cli("up", "--dir", str(mdir), "--strict").code == 2
    assert conn.execute("SELECT to_regclass('t_id')").fetchone() == (None,)


def test_invalid_strict_setting_exits_2(cli, mdir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mdir.write("0001_t.sql", "CREATE TABLE t (id int);\n")
    _project(tmp_path, 'strict = "yes"\n')
    r = cli("up", "--dir", str(mdir))
    assert r.code == 2 and "strict" in r.err and "true or false" in r.err and "Traceback" not in r.err, r


def test_lint_disable_from_pyproject_for_lint_and_up(cli, conn, mdir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _pending_index(cli, conn, mdir)
    mdir.write("0003_rename.sql", "ALTER TABLE t RENAME COLUMN id TO ident;\n")
    _project(tmp_path, 'strict = true\nlint_disable = ["require-concurrent-index-creation"]\n')
    r = cli("lint", "--dir", str(mdir), "--json")
    assert r.code == 0, r
    assert [f["rule"] for f in json.loads(r.out)["findings"]] == ["renaming-column"]
    r = cli("up", "--dir", str(mdir))  # strict, but the one error-level rule is off for this project
    assert r.code == 0, r
    assert "renaming-column" in r.err and "require-concurrent-index-creation" not in r.err, r
    assert conn.execute("SELECT to_regclass('t_id')::text").fetchone() == ("t_id",)


@pytest.mark.parametrize("value, says", [
    ('["ban-drop-colum"]', "ban-drop-colum"),
    ('"ban-drop-column"', "a list of rule names"),
    ("[1]", "a list of rule names"),
])
def test_invalid_lint_disable_exits_2(cli, mdir, tmp_path: Path, value: str, says: str) -> None:  # type: ignore[no-untyped-def]
    mdir.write("0001_t.sql", "CREATE TABLE t (id int);\n")
    _project(tmp_path, f"lint_disable = {value}\n")
    for args in (("lint", "--dir", str(mdir)), ("up", "--dir", str(mdir))):
        r = cli(*args)
        assert r.code == 2 and "Traceback" not in r.err, r
        assert "lint_disable" in r.err and says in r.err and "require-concurrent-index-creation" in r.err, r


def test_migrator_lint_disable(database_url: str, conn: psycopg.Connection, mdir) -> None:  # type: ignore[no-untyped-def]
    from sqlmigrate import LintError, Migrator

    conn.execute(SETUP)  # type: ignore[arg-type]
    mdir.write("0001_idx.sql", "CREATE INDEX users_name_idx ON users (name);\n")
    with pytest.raises(LintError):
        Migrator(database_url, mdir.path).up(strict=True)
    with pytest.raises(ConfigurationError, match="lint_disable.*no-such-rule"):
        Migrator(database_url, mdir.path, lint_disable=["no-such-rule"])
    m = Migrator(database_url, mdir.path, lint_disable=["require-concurrent-index-creation"])
    assert [s.version for s in m.up(strict=True).steps] == [1]
    assert conn.execute("SELECT to_regclass('users_name_idx')::text").fetchone() == ("users_name_idx",)


ALLOWED = """\
-- the admin table is small: a plain build is fine
-- sqlmigrate: allow require-concurrent-index-creation
CREATE INDEX users_name_idx ON users (name);
CREATE INDEX users_age_idx ON users (age);
ALTER TABLE users DROP COLUMN org_id; -- sqlmigrate: allow ban-drop-column
ALTER TABLE users
  -- sqlmigrate: allow ban-drop-column, renaming-column
  DROP COLUMN name;
ALTER TABLE users RENAME COLUMN age TO years;
SELECT '-- sqlmigrate: allow ban-drop-table';
DROP TABLE orgs;
"""


def test_allow_comment_silences_its_rules_on_its_statement_only(tmp_path: Path) -> None:
    [path] = write(tmp_path, ALLOWED)
    assert rules_at(lint([path])) == {
        ("require-concurrent-index-creation", 4),
        ("renaming-column", 9),
        ("ban-drop-table", 11),
    }


def test_allow_comment_before_the_first_statement_is_not_a_file_directive(tmp_path: Path) -> None:
    text = ("-- sqlmigrate: no-transaction\n-- sqlmigrate: allow require-lock-timeout\n"
            "CREATE INDEX CONCURRENTLY users_age_idx ON users (age);\n")
    [path] = write(tmp_path, text)
    assert lint([path]).findings == ()
    assert sqltext.directives(text, path).no_transaction


@pytest.mark.parametrize("text, line, says", [
    ("SELECT 1;\n\n-- sqlmigrate: allow ban-drop-colum\nALTER TABLE users DROP COLUMN name;\n", 3,
     "unknown lint rule 'ban-drop-colum'"),
    ("-- sqlmigrate: allow\nDROP TABLE orgs;\n", 1, "names no rule"),
    ("SELECT 1;\n-- sqlmigrate: no-transaction\nSELECT 2;\n", 2, "would be ignored"),
    ("SELECT 1;\n/* sqlmigrate: allow ban-drop-table */\nDROP TABLE orgs;\n", 2, "'--' line comment"),
])
def test_bad_allow_comments_and_misplaced_directives_name_file_and_line(
        tmp_path: Path, text: str, line: int, says: str) -> None:
    [path] = write(tmp_path, text)
    with pytest.raises(MigrationFileError, match=says) as info:
        lint([path])
    assert (info.value.path, info.value.line) == (path, line)


def test_allow_comment_in_up_strict_and_an_unknown_rule_exits_2(cli, conn, mdir) -> None:  # type: ignore[no-untyped-def]
    _pending_index(cli, conn, mdir)
    mdir.write("0002_idx.sql", "-- sqlmigrate: allow require-concurrent-index-creation\n"
                               "CREATE INDEX t_id ON t (id);\n")
    r = cli("up", "--dir", str(mdir), "--strict")
    assert r.code == 0 and "lint:" not in r.err, r
    assert conn.execute("SELECT to_regclass('t_id')::text").fetchone() == ("t_id",)
    mdir.write("0003_idx.sql", "SELECT 1;\n-- sqlmigrate: allow require-concurent-index-creation\n"
                               "CREATE INDEX t_id2 ON t (id);\n")
    for command in ("up", "lint"):
        r = cli(command, "--dir", str(mdir))
        assert r.code == 2 and "Traceback" not in r.err, r
        assert "0003_idx.sql:2" in r.err and "require-concurent-index-creation" in r.err, r
        assert "require-concurrent-index-creation" in r.err, r  # the known rules are listed
    assert conn.execute("SELECT to_regclass('t_id2')").fetchone() == (None,)


def test_the_fast_create_parse_means_what_the_token_parse_means() -> None:
    # up's pre-flight reads the common CREATE TABLE / CREATE INDEX heads with one regex; wherever that
    # regex matches, it must make of the text exactly what the token-by-token parse makes of it.
    import itertools

    from sqlmigrate import _lintsql as q

    names = ["t", "s.t", "s . t", "T_1$x", "on", "only", "if", "concurrently", "unique", "index", "table",
             '"Q"', "s.\"Q\"", "café", "a.b.c", "e", "x/* c */", "x -- c\n", "exists", "not"]
    gaps = [" ", "\n  ", "\t", " /* c */ ", "\u00a0", "\x1c"]
    heads = []
    for gap, n, m in itertools.product(gaps, names, names[:8]):
        heads += [f"CREATE{gap}TABLE {n} (id int)", f"create table if not exists {n}{gap}(id int)",
                  f"CREATE TABLE IF NOT EXISTS{gap}{n} AS SELECT 1", f"CREATE UNIQUE TABLE {n} (a int)",
                  f"CREATE INDEX {n} ON {m} (a)", f"CREATE UNIQUE INDEX CONCURRENTLY {n}{gap}ON ONLY {m}(a)",
                  f"create index concurrently if not exists {n} on {m} using btree (a)",
                  f"CREATE INDEX ON{gap}{n} (a)", f"CREATE INDEX IF NOT EXISTS ON {n} (a)",
                  f"CREATE INDEX {n} ON ONLY (a)", f"CREATE INDEX {n} {m} ON t (a)"]
    fast = 0
    for text in heads:
        assert q._create(text) == q._create_tokens(text), text
        fast += q._FAST_CREATE.match(text) is not None
    assert 0 < fast < len(heads)  # both paths are exercised


def test_the_up_shortcut_takes_strict_lint_disable_and_dry_run(database_url: str, conn: psycopg.Connection,
                                                                  mdir) -> None:  # type: ignore[no-untyped-def]
    import sqlmigrate

    conn.execute(SETUP)  # type: ignore[arg-type]
    mdir.write("0001_idx.sql", "CREATE INDEX users_name_idx ON users (name);\n")
    with pytest.raises(sqlmigrate.LintError):
        sqlmigrate.up(database_url, mdir.path, strict=True)
    planned = sqlmigrate.up(database_url, mdir.path, dry_run=True)
    assert [s.version for s in planned.steps] == [1]
    assert conn.execute("SELECT to_regclass('users_name_idx')").fetchone() == (None,)
    done = sqlmigrate.up(database_url, mdir.path, strict=True, lint_disable=["require-concurrent-index-creation"])
    assert [s.version for s in done.steps] == [1]
    assert conn.execute("SELECT to_regclass('users_name_idx')::text").fetchone() == ("users_name_idx",)


def test_lint_command_knows_up_sets_the_lock_timeout_itself(cli, mdir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # `up` runs a no-transaction file with lock_timeout = --lock-wait (5 s by default): the file need
    # not set it, and `lint` must not say it runs without one, unless lock_wait = 0 turns that off.
    mdir.write("0001_col.sql", "-- sqlmigrate: no-transaction\nALTER TABLE users ADD COLUMN x int;\n")
    r = cli("lint", "--dir", str(mdir), url=None)
    assert r.code == 0 and "require-lock-timeout" not in r.out, r
    _project(tmp_path, "lock_wait = 0\n")
    r = cli("lint", "--dir", str(mdir), url=None)
    assert r.code == 0 and "require-lock-timeout" in r.out, r
