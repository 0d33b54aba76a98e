"""Large files are read, checked and sent in chunks cut at statement boundaries; everything the
SPEC promises still holds on that path. Chunk sizes are shrunk so the tests stay small and fast."""

from __future__ import annotations

import pytest

import sqlmigrate
from sqlmigrate import _script as script
from sqlmigrate._errors import MigrationError, MigrationFileError


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(script, "STREAM_ABOVE", 2_000)
    monkeypatch.setattr(script, "CHUNK", 1_000)


def rows_sql(n: int, start: int = 1) -> str:
    # Strings with ';', quotes and comment markers, so a naive cut would break them.
    return "".join(f"INSERT INTO t (id, v) VALUES ({i}, 'row {i}; it''s -- not a comment /*');\n"
                   for i in range(start, start + n))


def test_large_file_is_streamed_and_applied_whole(database_url, conn, mdir):
    text = "CREATE TABLE t (id int PRIMARY KEY, v text);\n" + rows_sql(500)
    path = mdir.write("0001_big.sql", text)
    assert script.prepare_file(path).streamed
    assert len(list(script.prepare_file(path).chunks())) > 10
    sqlmigrate.up(database_url, mdir.path)
    assert conn.execute("SELECT count(*), min(id), max(id), count(DISTINCT v) FROM t").fetchone() == (500, 1, 500, 500)
    assert conn.execute("SELECT v FROM t WHERE id = 77").fetchone() == ("row 77; it's -- not a comment /*",)


def test_streamed_chunks_reassemble_the_file_exactly(mdir):
    text = "CREATE TABLE t (id int PRIMARY KEY, v text);\n" + rows_sql(300) + "-- trailing comment\n"
    path = mdir.write("0001_big.sql", text)
    chunks = list(script.prepare_file(path).chunks())
    assert "".join(c.text for c in chunks) == text
    line = 1
    for c in chunks:
        assert c.line == line
        line += c.text.count("\n")


@pytest.mark.parametrize("bad_at", [2, 17, 18, 250, 500])
def test_runtime_failure_anywhere_names_the_right_line_and_leaves_nothing(database_url, conn, mdir, bad_at):
    # Line 1 creates the table; row i sits on line i + 1; row `bad_at` repeats the key of row 1.
    lines = ["CREATE TABLE t (id int PRIMARY KEY, v text);"]
    lines += [f"INSERT INTO t (id, v) VALUES ({1 if i == bad_at else i}, 'r{i};');" for i in range(1, 501)]
    bad_line = bad_at + 1
    mdir.write("0001_big.sql", "\n".join(lines) + "\n")
    with pytest.raises(MigrationError) as err:
        sqlmigrate.up(database_url, mdir.path)
    assert err.value.sqlstate == "23505"
    assert err.value.line == bad_line, str(err.value)
    assert err.value.statement == lines[bad_line - 1].rstrip(";")
    assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)
    assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (0,)


def test_syntax_error_in_a_late_chunk_names_its_line(database_url, conn, mdir):
    text = "CREATE TABLE t (id int PRIMARY KEY, v text);\n" + rows_sql(300)
    lines = text.splitlines()
    lines[250] = "INSERT INTO t (id, v) VALUS (999, 'typo');"
    mdir.write("0001_big.sql", "\n".join(lines) + "\n")
    with pytest.raises(MigrationError) as err:
        sqlmigrate.up(database_url, mdir.path)
    assert err.value.line == 251 and err.value.sqlstate == "42601"
    assert err.value.statement == "INSERT INTO t (id, v) VALUS (999, 'typo')"
    assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)


def test_begin_commit_wrapper_spanning_chunks_is_absorbed(database_url, conn, mdir):
    text = "BEGIN;\nCREATE TABLE t (id int PRIMARY KEY, v text);\n" + rows_sql(300) + "COMMIT;\n"
    mdir.write("1_big.up.sql", text)
    sqlmigrate.up(database_url, mdir.path)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (300,)


def test_lone_begin_in_a_streamed_file_is_refused(database_url, conn, mdir):
    mdir.write("0001_big.sql", "BEGIN;\nCREATE TABLE t (id int PRIMARY KEY, v text);\n" + rows_sql(300))
    with pytest.raises(MigrationFileError) as err:
        sqlmigrate.up(database_url, mdir.path)
    assert err.value.line == 1
    assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)


def test_commit_in_a_late_chunk_is_refused_and_rolls_everything_back(database_url, conn, mdir):
    text = "CREATE TABLE t (id int PRIMARY KEY, v text);\n" + rows_sql(200) + "COMMIT;\n" + rows_sql(100, 201)
    mdir.write("0001_big.sql", text)
    with pytest.raises(MigrationFileError, match="transaction control") as err:
        sqlmigrate.up(database_url, mdir.path)
    assert err.value.line == 202
    assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)
    assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (0,)


def test_history_table_drop_in_a_late_chunk_is_refused(database_url, conn, mdir):
    text = "CREATE TABLE t (id int PRIMARY KEY, v text);\n" + rows_sql(200) + "TRUNCATE schema_migrations;\n"
    mdir.write("0001_big.sql", text)
    with pytest.raises(MigrationFileError, match="--table") as err:
        sqlmigrate.up(database_url, mdir.path)
    assert err.value.line == 202
    assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)


def test_file_changed_between_planning_and_running_is_rolled_back(database_url, conn, mdir):
    path = mdir.write("0001_big.sql", "CREATE TABLE t (id int PRIMARY KEY, v text);\n" + rows_sql(200))
    stale = sqlmigrate.Migrator(database_url, mdir.path).status().entries[0].migration.checksum
    path.write_text("CREATE TABLE t (id int PRIMARY KEY, v text);\n" + rows_sql(201))
    s = script.prepare_file(path, checksum=stale)
    with pytest.raises(MigrationFileError, match="changed while it was being applied"):
        list(s.chunks())


@pytest.mark.parametrize("side", ["last of a chunk", "first of the next chunk"])
def test_failure_exactly_at_a_chunk_boundary(database_url, conn, mdir, side):
    lines = ["CREATE TABLE t (id int PRIMARY KEY, v text);"]
    lines += [f"INSERT INTO t (id, v) VALUES ({i}, 'r{i}; x');" for i in range(1, 301)]
    path = mdir.write("0001_big.sql", "\n".join(lines) + "\n")
    chunks = list(script.prepare_file(path).chunks())
    boundary = chunks[1].line  # first line of the second chunk
    bad_line = boundary - 1 if side == "last of a chunk" else boundary
    lines[bad_line - 1] = f"INSERT INTO t (id, v) VALUES (1, 'duplicate at line {bad_line}');"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MigrationError) as err:
        sqlmigrate.up(database_url, mdir.path)
    assert err.value.line == bad_line and err.value.sqlstate == "23505", str(err.value)
    assert err.value.statement == lines[bad_line - 1].rstrip(";")
    assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)


def _padded_rows(n: int) -> list[str]:
    # Every row the same length, so turning one into a duplicate key moves no chunk boundary.
    lines = ["CREATE TABLE t (id int PRIMARY KEY, v text);"]
    lines += [f"INSERT INTO t (id, v) VALUES ({i:06d}, 'r{i:06d}; x');" for i in range(1, n + 1)]
    return lines


def _up_in_a_thread(database_url: str, directory: object, timeout: float) -> BaseException | None:
    """Run ``sqlmigrate.up`` where a hang fails the test instead of stalling the suite."""
    import threading

    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            sqlmigrate.up(database_url, directory)
            outcome.append(None)
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), f"up did not return within {timeout} s"
    return outcome[0]


@pytest.mark.parametrize("which", [0, 1, "middle", -3, -2, -1])
def test_failure_in_any_chunk_ends_promptly_and_leaves_nothing(database_url, conn, mdir, which):
    lines = _padded_rows(400)
    path = mdir.write("0001_big.sql", "\n".join(lines) + "\n")
    chunks = list(script.prepare_file(path).chunks())
    assert len(chunks) >= 8
    index = len(chunks) // 2 if which == "middle" else which
    target = chunks[index]  # type: ignore[index]
    bad_line = max(3, target.line + 1 if target.text.count("\n") > 1 else target.line)
    # Row k sits on line k + 1: this row repeats the key of the row above it.
    lines[bad_line - 1] = lines[bad_line - 1].replace(f"({bad_line - 1:06d},", f"({bad_line - 2:06d},")
    path.write_text("\n".join(lines) + "\n")
    assert [c.line for c in script.prepare_file(path).chunks()] == [c.line for c in chunks]
    error = _up_in_a_thread(database_url, mdir.path, timeout=30)
    assert isinstance(error, sqlmigrate.MigrationError), error
    assert error.sqlstate == "23505" and error.line == bad_line, str(error)
    assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)
    assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (0,)
    # The lock is free again: a second run gets as far as the same failure.
    assert isinstance(_up_in_a_thread(database_url, mdir.path, timeout=30), sqlmigrate.MigrationError)


@pytest.mark.parametrize("how", ["close", "KeyboardInterrupt"])
def test_consumer_leaving_early_stops_a_blocked_reader(how):
    """The reader thread, blocked on a full queue (here even on its final 'done'), stops as soon
    as the consumer leaves, whether by an error, an interrupt or simply closing the iterator."""
    import threading
    import time

    def source():
        yield from range(2)  # after the consumer takes the first, the second fills the queue

    before = set(threading.enumerate())
    chunks = script._pipelined(source(), depth=1)  # type: ignore[arg-type]
    assert next(chunks) == 0
    time.sleep(0.3)  # the reader fills the queue and blocks on its final put
    raised: list[BaseException] = []

    def leave() -> None:
        try:
            chunks.close() if how == "close" else chunks.throw(KeyboardInterrupt)
        except BaseException as exc:
            raised.append(exc)

    leaving = threading.Thread(target=leave, daemon=True)  # a regression fails, not hangs
    leaving.start()
    leaving.join(5)
    assert not leaving.is_alive(), "the consumer could not leave: the reader thread is stuck"
    assert [type(e) for e in raised] == ([] if how == "close" else [KeyboardInterrupt])
    assert not [t for t in set(threading.enumerate()) - before if t.name == "sqlmigrate-reader"]


@pytest.mark.parametrize("statement", ["rows", "literal"])
def test_a_long_statement_streams_in_linear_time(mdir, monkeypatch, statement):
    """A statement much longer than a chunk is not lexed again for every read: the characters lexed
    stay a small multiple of the file's size (they grew with its square)."""
    from sqlmigrate import _sqltext as sqltext

    if statement == "rows":
        long = "INSERT INTO t (id, v) VALUES " + ",\n".join(f"({i}, 'r{i}; -- x')" for i in range(5_000)) + ";\n"
    else:
        long = "INSERT INTO t (id, v) VALUES (0, '" + "x;''y" * 20_000 + "');\n"
    text = rows_sql(50) + long + rows_sql(50, 51)
    path = mdir.write("0001_big.sql", text)
    lexed: list[int] = []
    real_lex = sqltext.lex
    monkeypatch.setattr(sqltext, "lex", lambda t: (lexed.append(len(t)), real_lex(t))[1])
    chunks = list(script.prepare_file(path).chunks())
    assert "".join(c.text for c in chunks) == text
    assert any(long.rstrip(";\n") in c.text for c in chunks)
    assert sum(lexed) < 4 * len(text), (sum(lexed), len(text))


def test_streamed_statements_are_those_of_the_whole_file(tmp_path, monkeypatch):
    """However the reads fall, the streamed chunks hold exactly the statements the whole text has."""
    from hypothesis import HealthCheck, assume, given, settings, strategies as st

    from sqlmigrate import _sqltext as sqltext

    monkeypatch.setattr(script, "CHUNK", 24)
    alphabet = list("ab;'\"$-/*\n\r E(),") + ["$$", "$x$", "--", "/*", "*/", "''", "e'", "$1", "SELECT "]

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.sampled_from(alphabet), max_size=80).map("".join))
    def check(text: str) -> None:
        assume(text.strip() and sqltext.unterminated(text) is None)
        path = tmp_path / "0001_x.sql"
        path.write_bytes(text.encode())
        chunks = list(script._stream_chunks(path, (), None))
        assert "".join(c.text for c in chunks) == text
        streamed = [(c.file_line(s.line), s.text) for c in chunks for s in c.statements]
        assert streamed == [(s.line, s.text) for s in sqltext.split(text)]

    check()
