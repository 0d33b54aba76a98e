"""sqlmigrate.sqltext: splitting and classifying SQL without a database (pure Python tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sqlmigrate import _classify, _lexer, _sqltext as sqltext
from sqlmigrate._errors import MigrationFileError
from sqlmigrate._sqltext import (
    Statement,
    directives,
    is_transaction_control,
    iter_statements,
    line_at,
    mentions,
    meta_commands,
    needs_no_transaction,
    needs_scan,
    split,
    strip_wrapper,
    targets_table,
    transaction_problems,
    unterminated,
)

P = Path("sql/0001_x.sql")


def texts(sql: str) -> list[str]:
    return [s.text for s in split(sql)]


def check_offsets(sql: str) -> list[Statement]:
    stmts = split(sql)
    for s in stmts:
        assert sql[s.start:s.start + len(s.text)] == s.text
        assert s.line == line_at(sql, s.start)
        assert s.text == s.text.strip(" \t\r\n\f\v")
    return stmts


# ------------------------------------------------------------------------------------------
# Splitting
# ------------------------------------------------------------------------------------------


def test_simple_statements_and_positions() -> None:
    sql = "CREATE TABLE a (x int);\n\nINSERT INTO a VALUES (1);\n"
    stmts = check_offsets(sql)
    assert [(s.text, s.line) for s in stmts] == [
        ("CREATE TABLE a (x int)", 1), ("INSERT INTO a VALUES (1)", 3)]
    assert stmts[1].start == sql.index("INSERT")
    assert stmts[0].keywords == ("CREATE", "TABLE", "A")


def test_dollar_quoted_function_body_with_semicolons() -> None:
    sql = """CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.x := 1; -- ;
  RETURN NEW;
END;
$$;
SELECT 1;"""
    assert texts(sql) == [sql[:sql.index("$$;") + 2], "SELECT 1"]


def test_tagged_dollar_quote_with_inner_dollar_quotes() -> None:
    sql = "CREATE FUNCTION g() RETURNS text AS $body$ SELECT $$a;b$$; SELECT $x$;$x$ $body$ LANGUAGE sql; SELECT 2"
    assert texts(sql) == [sql[:sql.index("; SELECT 2")], "SELECT 2"]
    # the inner $$ does not close $body$, nor does $bodyx$
    sql2 = "SELECT $body$ $$ ; $bodyx$ ; $body$; SELECT 3;"
    assert texts(sql2) == ["SELECT $body$ $$ ; $bodyx$ ; $body$", "SELECT 3"]


def test_do_block() -> None:
    sql = "DO $do$\nDECLARE r record;\nBEGIN\n  FOR r IN SELECT 1 LOOP NULL; END LOOP;\nEND\n$do$;\nSELECT 1;"
    stmts = check_offsets(sql)
    assert len(stmts) == 2 and stmts[0].keywords == ("DO",) and stmts[1].line == 7


def test_begin_atomic_function_with_case() -> None:
    sql = """CREATE OR REPLACE FUNCTION f(x int) RETURNS int LANGUAGE sql
BEGIN ATOMIC
  SELECT CASE WHEN x > 0 THEN 1 ELSE 2 END;
  SELECT CASE x WHEN 1 THEN (CASE WHEN true THEN 3 END) END;
END;
CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); END;
SELECT 'end';"""
    stmts = check_offsets(sql)
    assert len(stmts) == 3
    assert stmts[0].text.endswith("END;\nEND") and stmts[0].keywords == ("CREATE", "OR", "REPLACE", "FUNCTION")
    assert stmts[1].text.startswith("CREATE PROCEDURE") and stmts[1].text.endswith("(2); END")
    assert stmts[2].text == "SELECT 'end'" and stmts[2].line == 7


def test_begin_case_end_outside_routines_do_not_nest() -> None:
    sql = "BEGIN; SELECT CASE WHEN true THEN 1 END; COMMIT; END;"
    assert texts(sql) == ["BEGIN", "SELECT CASE WHEN true THEN 1 END", "COMMIT", "END"]
    # a routine whose parameter is called "begin" (inside parentheses psql does not count it)
    sql2 = 'CREATE FUNCTION f("begin" int, begin_x int) RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql; SELECT 2;'
    assert len(split(sql2)) == 2


def test_semicolons_inside_strings_identifiers_and_comments() -> None:
    sql = (
        "SELECT 'a;b', 'it''s;', E'x\\';y', e'\\\\', \"we;ird\"\"id\", U&'d;\\0061' -- c;\n"
        "  /* block ; */ FROM t;\n"
        "SELECT 2"
    )
    stmts = check_offsets(sql)
    assert len(stmts) == 2
    assert stmts[0].text.endswith("FROM t") and stmts[1].text == "SELECT 2"


def test_e_string_prefix_needs_a_token_start() -> None:
    # date'...' is an identifier followed by a plain string: the backslash does not escape
    sql = "SELECT date'2020-01-01\\'; SELECT 2;"
    assert texts(sql) == ["SELECT date'2020-01-01\\'", "SELECT 2"]
    # whereas E'...\'' continues after the escaped quote
    assert texts("SELECT E'a\\'; b'; SELECT 2;") == ["SELECT E'a\\'; b'", "SELECT 2"]


def test_nested_block_comments() -> None:
    sql = "/* outer /* inner ; */ still ; comment */ SELECT 1; /* a /* b */ c */"
    stmts = check_offsets(sql)
    assert [s.text for s in stmts] == ["SELECT 1"]
    assert unterminated(sql) is None
    assert texts("SELECT 1 /* x /* y */ ; */ + 1; SELECT 2") == ["SELECT 1 /* x /* y */ ; */ + 1", "SELECT 2"]


def test_comments_are_trimmed_at_the_ends_but_kept_inside() -> None:
    sql = "-- lead\n/* lead */ SELECT /* in */ 1 -- tail\n /* tail */ ;\n-- end\n"
    assert texts(sql) == ["SELECT /* in */ 1"]


def test_crlf_lines_and_exact_text() -> None:
    sql = "-- header\r\nCREATE TABLE a (\r\n  x int\r\n);\r\n\r\nINSERT INTO a VALUES ('a;\r\nb');\r\nSELECT 1\r\n"
    stmts = check_offsets(sql)
    assert [s.line for s in stmts] == [2, 6, 8]
    assert stmts[0].text == "CREATE TABLE a (\r\n  x int\r\n)"
    assert stmts[1].text == "INSERT INTO a VALUES ('a;\r\nb')"
    assert stmts[2].text == "SELECT 1"


def test_positional_parameter_and_dollar_in_identifier_are_not_dollar_quotes() -> None:
    sql = "PREPARE q AS SELECT $1, a$b$c, x$ FROM t WHERE y = $2; SELECT 2;"
    assert texts(sql) == ["PREPARE q AS SELECT $1, a$b$c, x$ FROM t WHERE y = $2", "SELECT 2"]
    assert unterminated(sql) is None


@pytest.mark.parametrize("sql", ["", "   \n\t", "-- only a comment\n", "/* c */ -- d", ";;\n;", "\ufeff-- x\n"])
def test_empty_and_comment_only_files(sql: str) -> None:
    assert split(sql) == []
    assert list(iter_statements(sql)) == []


def test_last_statement_without_semicolon_and_empty_statements() -> None:
    assert texts("SELECT 1;;; SELECT 2") == ["SELECT 1", "SELECT 2"]
    assert texts("SELECT 1\n-- trailing comment") == ["SELECT 1"]


def test_bom_is_not_part_of_the_first_statement() -> None:
    sql = "\ufeffSELECT 1;"
    assert [(s.text, s.start) for s in split(sql)] == [("SELECT 1", 1)]


def test_iter_statements_is_lazy() -> None:
    it = iter_statements("SELECT 1; SELECT 'unterminated")
    assert next(it).text == "SELECT 1"


def test_keywords() -> None:
    assert split("/* x */ create unique index concurrently i on t (x)")[0].keywords == (
        "CREATE", "UNIQUE", "INDEX", "CONCURRENTLY")
    assert split("VACUUM (ANALYZE) t")[0].keywords == ("VACUUM",)
    assert split('ALTER TABLE "T" ADD x int')[0].keywords == ("ALTER", "TABLE")


def test_big_file_sanity() -> None:
    # Not a timing assertion: just a lot of statements through the fast path.
    row = "INSERT INTO t VALUES ({i}, 'a; b', 'it''s -- no', $$x;$$);\n"
    sql = "".join(row.format(i=i) for i in range(20000))
    stmts = split(sql)
    assert len(stmts) == 20000
    assert stmts[-1].line == 20000 and stmts[-1].text == row.format(i=19999).strip()[:-1]


# ------------------------------------------------------------------------------------------
# Meta-commands and unterminated constructs
# ------------------------------------------------------------------------------------------


def test_meta_commands() -> None:
    sql = "SELECT 1;\n\\set x 1\nSELECT 'a\n\\not_meta';\n  \\connect db\n/* \\c no */\n\"x\n\\y\";\n-- \\i f\n"
    assert meta_commands(sql) == [2, 5]
    assert sqltext.scan(sql).meta_commands == (2, 5)
    assert meta_commands("SELECT 1;") == []
    assert meta_commands("SELECT $$\n\\x\n$$;") == []
    assert meta_commands("\\i other.sql") == [1]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1;\nSELECT 'abc;\n", ("string", 2)),
        ("SELECT 1;\n\nSELECT E'ab\\';", ("string", 3)),
        ("SELECT 'ab''", ("string", 1)),
        ('SELECT "abc', ("quoted identifier", 1)),
        ("SELECT 1;\n$$ abc $x$", ("dollar-quoted string", 2)),
        ("SELECT $t$ abc $$", ("dollar-quoted string", 1)),
        ("SELECT 1; /* a /* b */\n", ("comment", 1)),
        ("SELECT 1\n/* a", ("comment", 2)),
        ("SELECT 'ok', \"ok\", $$ok$$ /* ok */", None),
    ],
)
def test_unterminated(sql: str, expected: tuple[str, int] | None) -> None:
    assert unterminated(sql) == expected


def test_unterminated_statement_keeps_rest_of_file() -> None:
    sql = "SELECT 1; SELECT 'abc; SELECT 2;  "
    assert texts(sql) == ["SELECT 1", "SELECT 'abc; SELECT 2;  "]


# ------------------------------------------------------------------------------------------
# Directives
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    ["-- sqlmigrate: no-transaction\n", "--sqlmigrate:no-transaction\r\n", "-- SQLMigrate :  No-Transaction  \n",
     "-- a comment\n/* block */\n-- sqlmigrate: no-transaction\n\n"],
)
def test_directive_no_transaction(header: str) -> None:
    assert directives(header + "CREATE INDEX CONCURRENTLY i ON t (x);", P).no_transaction is True


def test_no_directive() -> None:
    assert directives("-- just a comment\nSELECT 1;", P).no_transaction is False
    assert directives("", P).no_transaction is False
    # inside a string after the first statement: not a directive
    assert directives("SELECT '-- sqlmigrate: no-transaction';", P).no_transaction is False


def test_unknown_directive() -> None:
    with pytest.raises(MigrationFileError) as exc:
        directives("-- x\n-- sqlmigrate: no-transactoin\nSELECT 1;", P)
    assert exc.value.line == 2 and exc.value.path == P
    assert "no-transactoin" in str(exc.value) and "no-transaction" in str(exc.value)
    assert str(P) in str(exc.value)


def test_misplaced_directive() -> None:
    with pytest.raises(MigrationFileError) as exc:
        directives("SELECT 1;\n-- sqlmigrate: no-transaction\nSELECT 2;", P)
    assert exc.value.line == 2 and "first statement" in str(exc.value)
    with pytest.raises(MigrationFileError) as exc:
        directives("SELECT 1;\nSELECT 2 -- sqlmigrate: no-transaction\n, 3;", P)
    assert exc.value.line == 2
    with pytest.raises(MigrationFileError) as exc:
        directives("SELECT 1;\nSELECT 2;\n\n-- sqlmigrate: no-transaction\n", P)
    assert exc.value.line == 4
    with pytest.raises(MigrationFileError) as exc:
        directives("/* sqlmigrate: no-transaction */\nSELECT 1;", P)
    assert exc.value.line == 1


# ------------------------------------------------------------------------------------------
# Classification
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    ["BEGIN", "begin work", "BEGIN ISOLATION LEVEL SERIALIZABLE", "START TRANSACTION", "COMMIT", "END",
     "ROLLBACK", "ABORT", "SAVEPOINT s", "RELEASE SAVEPOINT s", "ROLLBACK TO SAVEPOINT s",
     "PREPARE TRANSACTION 'g'", "COMMIT PREPARED 'g'", "ROLLBACK PREPARED 'g'"],
)
def test_is_transaction_control(sql: str) -> None:
    assert is_transaction_control(split(sql)[0])


@pytest.mark.parametrize(
    "sql",
    ["SELECT 1", "PREPARE transaction AS SELECT 1", "START x", "CREATE FUNCTION f() RETURNS int "
     "LANGUAGE sql BEGIN ATOMIC SELECT 1; END", "DO $$BEGIN END$$", "UPDATE t SET begin = 1"],
)
def test_is_not_transaction_control(sql: str) -> None:
    assert not is_transaction_control(split(sql)[0])


@pytest.mark.parametrize(
    "sql",
    ["CREATE INDEX CONCURRENTLY i ON t (x)", "create unique index concurrently if not exists i on t (x)",
     "DROP INDEX CONCURRENTLY IF EXISTS i", "REINDEX INDEX CONCURRENTLY i", "REINDEX (VERBOSE) TABLE CONCURRENTLY t",
     "REINDEX (CONCURRENTLY) TABLE t", "REINDEX DATABASE d", "REINDEX SYSTEM", "REINDEX SCHEMA s", "VACUUM",
     "VACUUM (ANALYZE) t", "CREATE DATABASE d", "DROP DATABASE IF EXISTS d", "CREATE TABLESPACE ts LOCATION '/x'",
     "DROP TABLESPACE ts", "ALTER SYSTEM SET work_mem = '1MB'", "CLUSTER", "CLUSTER VERBOSE", "CLUSTER (VERBOSE)",
     'ALTER DATABASE "D" SET TABLESPACE ts', "COMMIT PREPARED 'g'", "ROLLBACK PREPARED 'g'", "DISCARD ALL"],
)
def test_needs_no_transaction(sql: str) -> None:
    reason = needs_no_transaction(split(sql)[0])
    assert reason is not None and "transaction block" in reason


@pytest.mark.parametrize(
    "sql",
    ["CREATE INDEX i ON t (x)", "CREATE TABLE concurrently (x int)", "REINDEX TABLE t", "REINDEX INDEX i",
     "REINDEX (CONCURRENTLY false) TABLE t", "CLUSTER t USING i", "CLUSTER VERBOSE t", "ALTER DATABASE d SET x = 1",
     "DISCARD PLANS", "SELECT 'VACUUM'", "COMMIT", "ANALYZE t"],
)
def test_can_run_in_transaction(sql: str) -> None:
    assert needs_no_transaction(split(sql)[0]) is None


def test_transaction_problems() -> None:
    sql = "CREATE TABLE a (x int);\nSAVEPOINT s;\nCREATE INDEX CONCURRENTLY i ON a (x);\n"
    problems = transaction_problems(split(sql))
    assert [(p.line, p.kind) for p in problems] == [(2, "transaction control"), (3, "needs no-transaction")]
    assert "no-transaction" in problems[1].message


# ------------------------------------------------------------------------------------------
# BEGIN/COMMIT wrapper
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opening", "closing"),
    [("BEGIN;", "COMMIT;"), ("begin work ;", "end;"), ("START TRANSACTION;", "COMMIT TRANSACTION;"),
     ("BEGIN\nTRANSACTION;", "COMMIT\n/* c */ ;")],
)
def test_strip_wrapper_keeps_offsets(opening: str, closing: str) -> None:
    sql = f"-- up\n{opening}\nCREATE TABLE a (x int);\r\nINSERT INTO a VALUES ('x;y');\n{closing}\n-- end\n"
    stmts = split(sql)
    new_text, inner = strip_wrapper(sql, stmts, P)
    assert len(new_text) == len(sql)
    assert new_text.count("\n") == sql.count("\n")
    assert [s.text for s in inner] == ["CREATE TABLE a (x int)", "INSERT INTO a VALUES ('x;y')"]
    for s in inner:
        assert new_text[s.start:s.start + len(s.text)] == s.text
        assert line_at(new_text, s.start) == s.line
    # the blanked text splits into exactly the inner statements
    assert split(new_text) == inner
    assert not transaction_problems(inner)


def test_no_wrapper_is_unchanged() -> None:
    sql = "SELECT 1;"
    stmts = split(sql)
    assert strip_wrapper(sql, stmts, P) == (sql, stmts)
    assert strip_wrapper("", [], P) == ("", [])


@pytest.mark.parametrize(
    ("sql", "line"),
    [("BEGIN;\nSELECT 1;\n", 1), ("SELECT 1;\n\nCOMMIT;\n", 3), ("COMMIT;", 1),
     ("BEGIN ISOLATION LEVEL SERIALIZABLE;\nSELECT 1;\nCOMMIT;", 1)],
)
def test_lone_wrapper_half_is_an_error(sql: str, line: int) -> None:
    with pytest.raises(MigrationFileError) as exc:
        strip_wrapper(sql, split(sql), P)
    assert exc.value.line == line and exc.value.path == P


# ------------------------------------------------------------------------------------------
# Cheap whole-file checks
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    ["CREATE TABLE a (x int);\nINSERT INTO a VALUES (1, 'appended; send');", "SELECT 'beginning', xend, end_x;",
     "ALTER TABLE t ADD y text DEFAULT 'started';", "", "SELECT a\\b;"],
)
def test_needs_scan_false(sql: str) -> None:
    assert needs_scan(sql) is False


@pytest.mark.parametrize(
    "sql",
    ["BEGIN;", "select 1; commit", "CREATE INDEX Concurrently i ON t (x)", "VACUUM", "x\n  \\connect db",
     "-- SQLMigrate: no-transaction\nSELECT 1", "SELECT 'the end'", "ALTER SYSTEM SET x = 1", "(end)",
     "reindex", "DISCARD ALL", "DROP DATABASE d", "CLUSTER", "PREPARE TRANSACTION 'x'", "ROLLBACK", "ABORT",
     "SAVEPOINT a", "RELEASE a", "START TRANSACTION", "CREATE TABLESPACE x", "\\set x 1"],
)
def test_needs_scan_true(sql: str) -> None:
    assert needs_scan(sql) is True


def test_needs_scan_across_chunk_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_classify, "_CHUNK", 7)
    filler = "SELECT xyz;\n" * 3
    for k in range(len(filler)):
        assert needs_scan(filler[:k] + " commit " + filler[k:]) is True
        assert needs_scan(filler[:k] + " xcommitx " + filler[k:]) is False
    assert mentions(filler + " schema_migrations", "schema_migrations")
    assert not mentions(filler + " schema_migrationsx", "schema_migrations")


def test_mentions() -> None:
    assert mentions("DROP TABLE Schema_Migrations;", "schema_migrations")
    assert mentions('drop table "schema_migrations"', "schema_migrations")
    assert mentions('drop table public."a""b"', 'a"b')
    assert not mentions("drop table schema_migrations_old", "schema_migrations")
    assert not mentions("drop table old_schema_migrations", "schema_migrations")
    assert not mentions("drop table x$schema_migrations", "schema_migrations")


@pytest.mark.parametrize(
    ("sql", "verb"),
    [
        ("DROP TABLE schema_migrations", "drop"),
        ("DROP TABLE IF EXISTS foo, Schema_Migrations CASCADE", "drop"),
        ('DROP TABLE "public"."schema_migrations"', "drop"),
        ("DROP TABLE public.schema_migrations", "drop"),
        ("DROP TABLE other.schema_migrations", None),
        ('DROP TABLE "Schema_Migrations"', None),
        ("DROP TABLE schema_migrations_old", None),
        ("TRUNCATE schema_migrations", "truncate"),
        ("TRUNCATE TABLE ONLY a, ONLY public.schema_migrations * RESTART IDENTITY", "truncate"),
        ("ALTER TABLE schema_migrations ADD COLUMN x int", "alter"),
        ("ALTER TABLE IF EXISTS ONLY public.schema_migrations RENAME TO old_migrations", "rename"),
        ("ALTER TABLE schema_migrations RENAME COLUMN version TO v", "rename"),
        ("ALTER TABLE other ADD CONSTRAINT f FOREIGN KEY (v) REFERENCES schema_migrations", None),
        ("DELETE FROM schema_migrations WHERE version = 1", "delete from"),
        ("WITH d AS (DELETE FROM ONLY public.schema_migrations RETURNING 1) SELECT 1", "delete from"),
        ("UPDATE schema_migrations SET name = 'x'", "update"),
        ("UPDATE public.schema_migrations AS m SET name = 'x'", "update"),
        ("UPDATE schema_migrations m SET name = 'x'", "update"),
        ("SELECT * FROM schema_migrations FOR UPDATE", None),
        ("CREATE TRIGGER t BEFORE UPDATE ON schema_migrations FOR EACH ROW EXECUTE FUNCTION f()", None),
        ("SELECT 'DROP TABLE schema_migrations'", None),
        ("DROP SCHEMA public CASCADE", "drop schema"),
        ("DROP SCHEMA IF EXISTS x, PUBLIC CASCADE", "drop schema"),
        ("DROP SCHEMA public", None),
        ("DROP SCHEMA other CASCADE", None),
        ("INSERT INTO schema_migrations VALUES (1)", None),
    ],
)
def test_targets_table(sql: str, verb: str | None) -> None:
    assert targets_table(split(sql)[0], "schema_migrations", "public") == verb


def test_targets_table_quoted_names_and_unknown_schema() -> None:
    assert targets_table('DROP TABLE "My""Table"', 'My"Table', None) == "drop"
    assert targets_table("DROP TABLE MyTable", "MyTable", None) is None  # folds to mytable
    assert targets_table('DROP TABLE "S"."t"', "t", "S") == "drop"
    assert targets_table('DROP TABLE s."t"', "t", "S") is None
    assert targets_table("DROP TABLE anything.t", "t", None) == "drop"
    assert targets_table("DROP SCHEMA public CASCADE", "t", None) is None


# ------------------------------------------------------------------------------------------
# Property-based: generated files split exactly as a model of the pieces says
# ------------------------------------------------------------------------------------------

WORDS = ["select", "x", "Foo", "y_1", "a$b", "insert", "values", "e", "u", "create", "table", "$1", "42", "*", ",",
         "(", ")", "="]
SEPARATORS = st.sampled_from([" ", "\n", "\r\n", "\t", "  \n "])


def _quote(body: str, q: str) -> str:
    return q + body.replace(q, q + q) + q


@st.composite
def block_comment(draw: st.DrawFn, depth: int = 0) -> str:
    parts = [draw(st.text(alphabet="ab ;'\"-$*\n", max_size=8))]
    if depth < 2 and draw(st.booleans()):
        parts[0] = parts[0].rstrip("*")  # '*' + '/*' would close the comment
        parts.append(draw(block_comment(depth + 1)))
        parts.append(draw(st.text(alphabet="ab ;'\"-$*\n", max_size=5)))
    return "/*" + "".join(parts) + "*/"


@st.composite
def dollar_quote(draw: st.DrawFn) -> str:
    tag = draw(st.sampled_from(["", "x", "tag_1", "T"]))
    body = draw(st.text(alphabet="ab ;'\"$x-*/\n\\", max_size=15))
    closing = f"${tag}$"
    assume((body + closing).find(closing) == len(body))
    return closing + body + closing


STRING_ALPHABET = "ab ;'\"-/*$\n\\"


def piece_strategy(*, oracle: bool) -> st.SearchStrategy[tuple[str, str]]:
    words = st.sampled_from(WORDS if not oracle else ["select", "x", "foo", "values", "42"])
    alphabet = STRING_ALPHABET.replace("\\", "") if oracle else STRING_ALPHABET
    strings = st.text(alphabet=alphabet, max_size=12).map(lambda s: _quote(s, "'"))
    estrings = st.text(alphabet="ab;'\\\n", max_size=10).map(
        lambda s: "E'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'")
    qids = st.text(alphabet="ab ;'\"-$", min_size=1, max_size=8).map(lambda s: _quote(s, '"'))
    line_comments = st.text(alphabet="ab ;'\"-/*$", max_size=10).map(lambda s: "--" + s + "\n")
    if oracle:
        blocks = st.text(alphabet="ab ;'\"-$\n", max_size=10).map(lambda s: "/*" + s + "*/")
        tokens = st.one_of(words, strings, qids, dollar_quote())
    else:
        blocks = block_comment()
        tokens = st.one_of(words, strings, estrings, qids, dollar_quote())
    return st.one_of(
        st.tuples(st.just("tok"), tokens),
        st.tuples(st.just("comment"), st.one_of(line_comments, blocks)),
        st.tuples(st.just("semi"), st.just(";")),
    )


@st.composite
def sql_file(draw: st.DrawFn, oracle: bool = False) -> tuple[str, list[tuple[int, str]]]:
    """A file made of pieces, and the statements a correct splitter must find: (start, text)."""
    pieces = draw(st.lists(piece_strategy(oracle=oracle), max_size=25))
    out: list[str] = []
    pos = 0
    expected: list[tuple[int, str]] = []
    first = last = None  # span of the current statement's significant pieces
    prev_kind = None
    for kind, text in pieces:
        if out and not (kind == "semi" or prev_kind == "semi"):
            sep = draw(SEPARATORS)
            out.append(sep)
            pos += len(sep)
        if kind == "tok":
            if first is None:
                first = pos
            last = pos + len(text)
        elif kind == "semi" and first is not None:
            expected.append((first, "".join(out)[first:last]))
            first = last = None
        out.append(text)
        pos += len(text)
        prev_kind = kind
    sql = "".join(out)
    if first is not None:
        expected.append((first, sql[first:last]))
    return sql, expected


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(sql_file())
def test_split_matches_model(case: tuple[str, list[tuple[int, str]]]) -> None:
    sql, expected = case
    stmts = split(sql)
    assert [(s.start, s.text) for s in stmts] == expected
    for s in stmts:
        assert sql[s.start:s.start + len(s.text)] == s.text
        assert s.line == sql.count("\n", 0, s.start) + 1
    assert unterminated(sql) is None
    assert meta_commands(sql) == []
    # no statement is lost, duplicated or reordered: everything outside the statements is blank
    # once the comments and ';' are removed
    covered = [False] * len(sql)
    for s in stmts:
        for i in range(s.start, s.start + len(s.text)):
            assert not covered[i]
            covered[i] = True
    assert all(a.end <= b.start for a, b in zip(stmts, stmts[1:]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(sql_file(oracle=True))
def test_split_count_matches_sqlparse(case: tuple[str, list[tuple[int, str]]]) -> None:
    import sqlparse

    sql, _ = case
    theirs = [s for s in sqlparse.split(sql)
              if sqlparse.format(s, strip_comments=True).strip().strip(";").strip()]
    assert len(split(sql)) == len(theirs)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab;'\"$-/*\\\nE ", max_size=40))
def test_split_never_loses_order_on_arbitrary_text(sql: str) -> None:
    # Arbitrary (often unterminated) input: spans are exact, ordered and disjoint, and the result
    # agrees with the one-pass scan.
    stmts = split(sql)
    for s in stmts:
        assert sql[s.start:s.start + len(s.text)] == s.text and s.text
    assert all(a.end <= b.start for a, b in zip(stmts, stmts[1:]))
    assert sqltext.scan(sql).statements == tuple(stmts)
    needs_scan(sql)


def _without_possessive_quantifiers():  # type: ignore[no-untyped-def]
    """The module as Python 3.10 runs it (no possessive quantifiers: a Python loop instead)."""
    import sys
    import types

    source = Path(_lexer.__file__).read_text(encoding="utf-8")
    flag = "_POSSESSIVE = sys.version_info >= (3, 11)"
    assert flag in source
    module = types.ModuleType("sqlmigrate._lexer_py310")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source.replace(flag, "_POSSESSIVE = False"), module.__name__, "exec"), module.__dict__)
    return module


_PY310 = _without_possessive_quantifiers()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list("ab;'\"$-/*\\\nE ") + ["$$", "$x$", "--", "/*", "*/", "''", "e'", "$1",
                                                           "CREATE FUNCTION f() BEGIN ATOMIC ", " END"]),
                max_size=30).map("".join))
def test_python310_fallback_agrees(sql: str) -> None:
    ours = sqltext.scan(sql)
    theirs = _PY310.scan(sql)
    assert [(s.start, s.text, s.line) for s in ours.statements] == [
        (s.start, s.text, s.line) for s in theirs.statements]
    assert (ours.meta_commands, ours.unterminated) == (theirs.meta_commands, theirs.unterminated)
