"""Hostile and broken input, and the security promises: generated SQL applied end to end, broken
files, path traversal, hostile identifiers, passwords in every error path, symlinks, no SQL built
from names by string formatting."""

from __future__ import annotations

import ast
import logging
import os
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

import sqlmigrate
from conftest import REPO, CliResult, MigrationDir, embedded_server
from sqlmigrate._errors import SqlMigrateError

STRESS = os.environ.get("SQLMIGRATE_STRESS", "") not in ("", "0")
EXAMPLES = 300 if STRESS else 25
HUGE_MB = 20


def _run(url: str | None, *args: str, cwd: Path | None = None, timeout: float = 120) -> CliResult:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "SQLMIGRATE_DATABASE_URL", "SQLMIGRATE_DIR")}
    if url is not None:
        env["SQLMIGRATE_DATABASE_URL"] = url
    return CliResult(subprocess.run([sys.executable, "-m", "sqlmigrate", *args], env=env, cwd=cwd,
                                    capture_output=True, text=True, timeout=timeout))


def _no_traceback(r: CliResult) -> None:
    assert "Traceback" not in r.err and "Traceback" not in r.out, r


# -- generated SQL, end to end ----------------------------------------------------------------------

# Strings that look like what sqlmigrate itself looks for: a wrong split or classification shows.
_TRICKY = ["COMMIT;", "BEGIN;", "ROLLBACK", "\n\\connect other\n", "\\i /etc/passwd", "-- sqlmigrate: no-transaction",
           "VACUUM FULL;", "CREATE INDEX CONCURRENTLY i ON t (s);", "$$", "$a$", "$$;$$", "';--", "/*", "*/",
           "/* unterminated", "DROP TABLE schema_migrations;", "E'", "\\", "\\'", '"', '";--', "''", ";;;",
           "ü€𝄞 Ω", "\t\n\n", " ", "", "--", "\n-- x\n", "U&'\\0041'", "$1", "a$b$", "END;"]

_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
_strings = st.one_of(st.text(_chars, max_size=30), st.sampled_from(_TRICKY),
                     st.lists(st.sampled_from(_TRICKY), max_size=4).map("".join))


def _literal(s: str, style: int) -> str:
    """``s`` as a SQL literal in one of several spellings."""
    if "\r" in s or style == 1:
        # E'' escapes carry a CR through the CRLF normalisation of the file text.
        body = s.replace("\\", "\\\\").replace("'", "\\'").replace("\r", "\\r")
        return f"E'{body}'"
    if style == 2:
        tag = "q"
        while f"${tag}$" in s + "$" or (s + f"${tag}$").find(f"${tag}$") != len(s):
            tag += "q"
        return f"${tag}${s}${tag}$"
    if style == 3:
        return "'" + s.replace("'", "''") + "'::text"
    return "'" + s.replace("'", "''") + "'"


_separators = st.sampled_from([
    "\n", " ", "\n\n", "\n-- a ; comment with 'quote' and $$\n", " /* ; ' \" $$ */ ", "/* /* nested ; */ */\n",
    "\t-- COMMIT;\n", "\n/* BEGIN; */\n", "\n-- \\connect\n",
])


@st.composite
def _migration_set(draw):
    values = draw(st.lists(_strings, min_size=1, max_size=12))
    styles = draw(st.lists(st.integers(0, 3), min_size=len(values), max_size=len(values)))
    seps = draw(st.lists(_separators, min_size=len(values), max_size=len(values)))
    files = draw(st.integers(1, 3))
    no_transaction = draw(st.lists(st.booleans(), min_size=files, max_size=files))
    return values, styles, seps, no_transaction


@pytest.fixture
def property_db(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_migration_set())
def test_generated_inserts_arrive_exactly_in_order(database_url, property_db, case):
    values, styles, seps, no_transaction = case
    conn = property_db
    conn.execute("DROP TABLE IF EXISTS t, schema_migrations, schema_migrations_log")
    conn.execute("CREATE TABLE t (i int PRIMARY KEY, s text NOT NULL)")
    per_file = -(-len(values) // len(no_transaction))
    with tempfile.TemporaryDirectory() as tmp:
        mdir = MigrationDir(Path(tmp) / "sql")
        for f, nt in enumerate(no_transaction):
            chunk = range(f * per_file, min(len(values), (f + 1) * per_file))
            text = "-- sqlmigrate: no-transaction\n" if nt else ""
            for i in chunk:
                text += f"INSERT INTO t (i, s) VALUES ({i}, {_literal(values[i], styles[i])});{seps[i]}"
            if not chunk:
                text += "SELECT 1;\n"
            mdir.write(f"{f + 1:04d}_gen.sql", text)
        result = sqlmigrate.up(database_url, mdir.path)
        assert len(result) == len(no_transaction)
        sqlmigrate.ensure_current(database_url, mdir.path)
    assert [r[0] for r in conn.execute("SELECT s FROM t ORDER BY i").fetchall()] == values
    assert conn.execute("SELECT count(*) FROM schema_migrations WHERE state = 'applied'").fetchone() == (
        len(no_transaction),)


# -- broken files -------------------------------------------------------------------------------------


def _history_rows(conn: psycopg.Connection) -> int | None:
    if conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,):
        return None
    return conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]


@pytest.mark.parametrize("content, message, touches_db", [
    (b"", "is empty", True),
    (b"   \n\n\t\n", "is empty", True),
    (b"-- just a note\n/* and a block */\n-- ; nothing else\n", "contains only comments", True),
    (bytes(range(256)) * 4, "is not valid UTF-8", False),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is not valid UTF-8", False),
    (b"CREATE TABLE a (id int);\x00\nCREATE TABLE b (id int);\n", "contains a NUL byte", False),
])
def test_broken_files_are_refused_naming_the_file(database_url, conn, mdir, content, message, touches_db):
    mdir.write("0001_ok.sql", "CREATE TABLE ok (id int);\n")
    path = mdir.write("0002_broken.sql", content)
    r = _run(database_url, "up", "--dir", str(mdir))
    _no_traceback(r)
    assert r.code in (1, 2), r
    assert str(path) in r.err and message in r.err, r
    assert conn.execute("SELECT to_regclass('ok'), to_regclass('a')").fetchone() == (None, None)
    if touches_db:
        assert _history_rows(conn) in (None, 0)
    else:
        # Reported from the file system, before anything touches the database.
        assert _history_rows(conn) is None


def test_a_second_bom_is_text_and_fails_on_the_server_naming_the_line(database_url, conn, mdir):
    mdir.write("0001_ok.sql", "CREATE TABLE ok (id int);\n")
    path = mdir.write("0002_bom.sql", b"\xef\xbb\xbf\xef\xbb\xbfCREATE TABLE a (id int);\n")
    r = _run(database_url, "up", "--dir", str(mdir))
    _no_traceback(r)
    assert r.code == 1 and f"{path}:1: syntax error" in r.err and "SQLSTATE 42601" in r.err, r
    # 0001 committed on its own; 0002 left nothing but its failure in the log.
    assert conn.execute("SELECT to_regclass('ok') IS NOT NULL, to_regclass('a')").fetchone() == (True, None)
    assert conn.execute("SELECT version FROM schema_migrations").fetchall() == [(1,)]
    assert conn.execute("SELECT version, outcome FROM schema_migrations_log ORDER BY id").fetchall() == [
        (1, "ok"), (2, "failed")]


def test_bom_and_crlf_run_and_checksum_like_the_plain_file(database_url, conn, mdir):
    plain = "CREATE TABLE a (id int);\nINSERT INTO a VALUES (1);\n"
    mdir.write("0001_a.sql", b"\xef\xbb\xbf" + plain.replace("\n", "\r\n").encode())
    r = _run(database_url, "up", "--dir", str(mdir))
    assert r.code == 0, r
    assert conn.execute("SELECT id FROM a").fetchall() == [(1,)]
    mdir.write("0001_a.sql", plain)  # the same migration checked out with LF and no BOM
    assert _run(database_url, "check", "--dir", str(mdir)).code == 0


def test_huge_file(database_url, conn, mdir):
    """A generated 20 MB file: many multi-row INSERTs and one 8 MB literal, split and applied."""
    import hashlib

    rows_per_stmt = 10_000
    row = "({i}, 'row {i} ; -- not a comment /* nor this */ $$ padding padding')"
    parts = ["CREATE TABLE big (id int PRIMARY KEY, s text);\nCREATE TABLE blob (s text);\n",
             "-- a COMMIT in a comment makes sqlmigrate split the whole file, the slow path\n"]
    blob = ("x;'y" * (2 * 1024 * 1024)).replace("'", "''")
    parts.append(f"INSERT INTO blob VALUES ('{blob}');\n")
    size = sum(len(p) for p in parts)
    i = 0
    while size < HUGE_MB * 1024 * 1024:
        stmt = "INSERT INTO big VALUES " + ",\n".join(row.format(i=j) for j in range(i, i + rows_per_stmt)) + ";\n"
        parts.append(stmt)
        size += len(stmt)
        i += rows_per_stmt
    path = mdir.write("0001_huge.sql", "".join(parts))
    assert path.stat().st_size >= HUGE_MB * 1024 * 1024
    r = _run(database_url, "up", "--dir", str(mdir), timeout=300)
    assert r.code == 0, r
    assert conn.execute("SELECT count(*), min(id), max(id) FROM big").fetchone() == (i, 0, i - 1)
    expected = hashlib.md5(("x;'y" * (2 * 1024 * 1024)).encode()).hexdigest()
    assert conn.execute("SELECT md5(s) FROM blob").fetchone() == (expected,)


def test_named_pipe_in_the_directory_does_not_hang(database_url, mdir):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);\n")
    os.mkfifo(mdir.path / "0002_pipe.sql")
    r = _run(database_url, "up", "--dir", str(mdir), timeout=30)
    _no_traceback(r)
    assert r.code == 2 and "0002_pipe.sql" in r.err and "not a regular file" in r.err, r


# -- names: path traversal in `new`, hostile --table / --schema ---------------------------------------


@pytest.mark.parametrize("name", ["../evil", "..", "../../etc/cron.d/x", "a/b", "/tmp/abs", "x y", "evil\\..\\x",
                                  "ok;rm -rf", "$(id)", "`id`", "a\nb", "ünïcode", "x" * 300, "..%2fevil"])
def test_new_never_writes_outside_the_directory(tmp_path, name):
    # `new` makes a slug of any description: path separators and dots become '_'.
    mdir = tmp_path / "project" / "sql"
    mdir.mkdir(parents=True)
    before = sorted(p for p in tmp_path.rglob("*"))
    r = _run(None, "new", name, "--dir", str(mdir), cwd=tmp_path)
    _no_traceback(r)
    created = sorted(set(tmp_path.rglob("*")) - set(before))
    if name == "..":  # nothing left to name the file after
        assert r.code == 2 and "no letters or digits" in r.err and created == [], r
        return
    assert r.code == 0, r
    assert len(created) == 2 and all(p.parent == mdir for p in created), created
    assert all(p.name.startswith("0001_") and ".." not in p.name for p in created), created


_HOSTILE_NAMES = ['x"; DROP TABLE victim; --', "my table", "Tābele ü", '"quoted"', "semi;colon", "back\\slash",
                  "'single'", "$dollar$", "UPPER", "ü" * 29, "pg_catalog"]


def test_hostile_table_and_schema_names(database_url, conn, mdir):
    conn.execute("CREATE TABLE victim (id int); INSERT INTO victim VALUES (42)")
    mdir.write("0001_made.sql", "CREATE TABLE IF NOT EXISTS made (n int);\nINSERT INTO made VALUES (1);\n")
    pairs = [(t, s) for t, s in zip(_HOSTILE_NAMES, reversed(_HOSTILE_NAMES)) if s != "pg_catalog"]
    pairs.append(("plain_history", None))
    for table, schema in pairs:
        flags = ["--table", table] + (["--schema", schema] if schema else [])
        r = _run(database_url, "up", "--dir", str(mdir), *flags)
        assert r.code == 0, (table, schema, r)
        check = _run(database_url, "check", "--dir", str(mdir), *flags)
        assert check.code == 0, check
        found = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname IN (%s, %s) ORDER BY 1",
            (schema or "public", table, table + "_log")).fetchall()
        assert found == sorted([(table,), (table + "_log",)])
        assert conn.execute(sql.SQL("SELECT version, state FROM {}").format(
            sql.Identifier(schema or "public", table))).fetchall() == [(1, "applied")]
    # Each history table applied the migration once; nothing else happened.
    assert conn.execute("SELECT count(*) FROM made").fetchone() == (len(pairs),)
    assert conn.execute("SELECT id FROM victim").fetchall() == [(42,)]


def test_table_name_too_long_for_its_log_is_refused(database_url, mdir):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);\n")
    r = _run(database_url, "up", "--dir", str(mdir), "--table", "ü" * 30)  # 60 bytes: no room for _log
    _no_traceback(r)
    assert r.code == 2 and "invalid table name" in r.err, r


# -- security: symlinks, SQL built from names -----------------------------------------------------------


def test_symlinks_out_of_the_directory_are_refused(database_url, conn, mdir, tmp_path):
    outside = tmp_path / "outside.sql"
    outside.write_text("CREATE TABLE pwned (id int);\n")
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);\n")
    os.symlink(outside, mdir.path / "0002_link.sql")
    os.symlink("../outside.sql", mdir.path / "0001_a.rollback.sql")
    r = _run(database_url, "up", "--dir", str(mdir))
    _no_traceback(r)
    assert r.code == 2 and "0002_link.sql" in r.err and "0001_a.rollback.sql" in r.err, r
    assert conn.execute("SELECT to_regclass('pwned'), to_regclass('a')").fetchone() == (None, None)
    # A link that stays inside the directory is fine.
    os.remove(mdir.path / "0002_link.sql")
    os.remove(mdir.path / "0001_a.rollback.sql")
    mdir.write("shared.sql.txt", "CREATE TABLE b (id int);\n")
    os.symlink("shared.sql.txt", mdir.path / "0002_b.sql")
    assert _run(database_url, "up", "--dir", str(mdir)).code == 0
    assert conn.execute("SELECT to_regclass('b') IS NOT NULL").fetchone() == (True,)


_EXECUTORS = {"execute", "executemany", "send", "SQL", "run_statement", "copy"}


def _constant(node: ast.AST) -> bool:
    """Text built from literals only (``"SELECT " + ", ".join(["f(%s)"] * n)``): no name can be in it."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Name):
        return node.id.lstrip("_").isupper()  # a module-level constant such as _REL_CTE
    if isinstance(node, (ast.List, ast.Tuple)):
        return all(_constant(e) for e in node.elts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _constant(node.left) and _constant(node.right)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        return _constant(node.left)  # [literal] * count
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join":
        return _constant(node.func.value) and all(_constant(a) for a in node.args)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        # A module helper applied to literals only, e.g. _acl('n.nspacl', 'n', 'n.nspowner').
        return all(_constant(a) for a in node.args) and not node.keywords
    if isinstance(node, ast.JoinedStr):
        return all(_constant(v.value) for v in node.values if isinstance(v, ast.FormattedValue))
    return False


def _string_formatting(node: ast.AST) -> bool:
    """Does this expression splice a non-literal value into text?"""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) and not _constant(v.value) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
        return not _constant(node)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return isinstance(node.func.value, (ast.Constant, ast.JoinedStr))
    return False


def test_no_sql_is_built_by_string_formatting():
    """Every SQL text passed to execute()/send()/sql.SQL() in the package is a constant or composed
    with psycopg.sql; names reach the server only as sql.Identifier / sql.Literal or parameters."""
    offenders = []
    for path in sorted((REPO / "sqlmigrate").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in _EXECUTORS and _string_formatting(node.args[0]):
                offenders.append(f"{path.name}: {ast.unparse(node)[:120]}")
    # Reviewed: `query` iterates over the module constant _QUERIES, whose values are literals.
    from sqlmigrate import _snapshot as snapshot

    reviewed = {"_snapshot.py: cur.execute(_REL_CTE + query, params)"}
    if "_snapshot.py: cur.execute(_REL_CTE + query, params)" in offenders:
        tree = ast.parse((REPO / "sqlmigrate" / "_snapshot.py").read_text())
        [queries] = [n.value for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AnnAssign))
                     and any(getattr(t, "id", None) == "_QUERIES" for t in
                             (n.targets if isinstance(n, ast.Assign) else [n.target]))]
        assert isinstance(queries, ast.Dict) and all(_constant(v) for v in queries.values)
        assert set(snapshot._QUERIES) and all(isinstance(v, str) for v in snapshot._QUERIES.values())
    assert [o for o in offenders if o not in reviewed] == []


# -- passwords: every path -----------------------------------------------------------------------------

PASSWORD = "S3cr3t/p@ss:w0rd?x"


class PasswordServer:
    def __init__(self, server: Any) -> None:
        self.server = server
        admin = self.server.get_uri()
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(sql.SQL("CREATE ROLE alice LOGIN CREATEDB PASSWORD {}").format(sql.Literal(PASSWORD)))
            c.execute("CREATE DATABASE alicedb OWNER alice")
            c.execute("CREATE DATABASE alicedb2 OWNER alice")
            hba = Path(c.execute("SHOW hba_file").fetchone()[0])
            # Before the trust lines: alice must authenticate with her password.
            self._rewrite(hba, "local all alice scram-sha-256\n")
            c.execute("SELECT pg_reload_conf()")
        self.socket = psycopg.conninfo.conninfo_to_dict(admin)["host"]

    def _rewrite(self, hba: Path, first: str) -> None:
        hba.write_text(first + hba.read_text())

    def url(self, password: str = PASSWORD, dbname: str = "alicedb") -> str:
        quoted = urllib.parse.quote(password, safe="")
        return f"postgresql://alice:{quoted}@/{dbname}?host={urllib.parse.quote(self.socket)}"


@pytest.fixture(scope="module")
def password_server() -> Iterator[PasswordServer]:
    with embedded_server("sqlmigrate-pw-pg-") as server:
        yield PasswordServer(server)


def _assert_no_password(*texts: str) -> None:
    for text in texts:
        for form in (PASSWORD, urllib.parse.quote(PASSWORD, safe=""), "S3cr3t", "w0rd"):
            assert form not in text, text


def test_password_never_shown_by_the_cli(password_server, tmp_path):
    good = password_server.url()
    kv = f"host={password_server.socket} user=alice dbname=alicedb password='{PASSWORD}'"
    mdir = MigrationDir(tmp_path / "sql")
    mdir.write("0001_a.sql", "CREATE TABLE IF NOT EXISTS a (id int);\n")
    cases = [
        # (what, database, args, exit code)
        ("connect refused", f"postgresql://alice:{urllib.parse.quote(PASSWORD, safe='')}@127.0.0.1:1/x", ("up",), 5),
        ("connect refused, key=value", f"host=127.0.0.1 port=1 user=alice password='{PASSWORD}'", ("up",), 5),
        ("auth failure", password_server.url(password=PASSWORD + "-wrong"), ("up",), 5),
        ("auth failure, SQLAlchemy spelling",
         "postgresql+psycopg2" + password_server.url(password=PASSWORD[::-1])[len("postgresql"):], ("up",), 5),
        ("no such database", password_server.url(dbname="nope"), ("status",), 5),
        ("malformed URL, quoted back by libpq",
         f"postgresql://alice:{urllib.parse.quote(PASSWORD, safe='')}@[::1/x", ("up",), 2),  # malformed: exit 2
        ("unknown option", f"password='{PASSWORD}' bogus=1", ("up",), 2),
        ("success", good, ("up",), 0),
        ("success, key=value", kv, ("status",), 0),
    ]
    for what, database, args, code in cases:
        r = _run(database, *args, "--dir", str(mdir), cwd=tmp_path)
        assert r.code == code, (what, r)
        _no_traceback(r)
        _assert_no_password(r.out, r.err)
        # And the same through --database on the command line.
        r = _run(None, "--database", database, *args, "--dir", str(mdir), cwd=tmp_path)
        assert r.code == code, (what, r)
        _assert_no_password(r.out, r.err)

    # A migration failure.
    mdir.write("0002_bad.sql", "SELECT 1;\nSELECT * FROM missing_table;\n")
    r = _run(good, "up", "--dir", str(mdir), cwd=tmp_path)
    assert r.code == 1 and "missing_table" in r.err, r
    _assert_no_password(r.out, r.err)
    (mdir.path / "0002_bad.sql").unlink()

    # A lock timeout.
    from sqlmigrate._history import History

    with psycopg.connect(good, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (History("public", "schema_migrations").lock_key(),))
        mdir.write("0003_c.sql", "CREATE TABLE c (id int);\n")
        r = _run(good, "up", "--dir", str(mdir), "--lock-timeout", "0.3", cwd=tmp_path)
    assert r.code == 5 and "lock" in r.err, r
    _assert_no_password(r.out, r.err)

    # A typo in an option: argparse quotes the unrecognised arguments back.
    r = _run(None, "up", "--databse", good, "--dir", str(mdir), cwd=tmp_path)
    assert r.code == 2, r
    _assert_no_password(r.out, r.err)


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def test_password_never_in_exceptions_or_log_records(password_server, tmp_path, caplog):
    mdir = MigrationDir(tmp_path / "sql")
    mdir.write("0001_a.sql", "CREATE TABLE IF NOT EXISTS a2 (id int);\n")
    caplog.set_level(logging.DEBUG, logger="sqlmigrate")
    good = password_server.url(dbname="alicedb2")
    failures = {
        "connect refused": f"postgresql://alice:{urllib.parse.quote(PASSWORD, safe='')}@127.0.0.1:1/x",
        "auth failure": password_server.url(password=PASSWORD + "-wrong"),
        "malformed": f"postgresql://alice:{urllib.parse.quote(PASSWORD, safe='')}@[::1/x",
        "unknown option": f"password='{PASSWORD}' bogus=1",
    }
    texts: list[str] = []
    for what, url in failures.items():
        with pytest.raises(SqlMigrateError) as err:
            sqlmigrate.up(url, mdir.path)
        texts += [f"{type(e).__name__}: {e} {e.args!r}" for e in _chain(err.value)]
    assert sqlmigrate.up(good, mdir.path).steps
    mdir.write("0002_bad.sql", "SELECT * FROM missing_table;\n")
    with pytest.raises(SqlMigrateError) as err:
        sqlmigrate.up(good, mdir.path)
    texts += [f"{e} {e.args!r}" for e in _chain(err.value)]
    (mdir.path / "0002_bad.sql").unlink()
    from sqlmigrate._history import History

    with psycopg.connect(good, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (History("public", "schema_migrations").lock_key(),))
        mdir.write("0003_c.sql", "CREATE TABLE c (id int);\n")
        with pytest.raises(SqlMigrateError) as err:
            sqlmigrate.up(good, mdir.path, lock_timeout=0.3)
    texts += [f"{e} {e.args!r}" for e in _chain(err.value)]
    records = [r.getMessage() for r in caplog.records] + [repr(r.args) for r in caplog.records]
    assert any("waiting for another process" in m for m in records)
    _assert_no_password(*texts, *records)
