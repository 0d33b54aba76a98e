"""The text that runs is the file's own, byte for byte: a bare CR or a CRLF inside a literal is
stored as written (as psql stores it). Only the checksum normalises line endings and a BOM."""

from __future__ import annotations

import pytest

import sqlmigrate
from sqlmigrate import _files as files, _script as script

# A bare CR and a CRLF inside literals, and CRLF line ends around them.
_ROWS = "INSERT INTO t VALUES (1, 'a\rb'), (2, 'c\r\nd'), (3, E'e\\rf');\r\n"


def _migration(path_kind: str) -> str:
    head = "-- sqlmigrate: no-transaction\r\n" if path_kind == "no-transaction" else ""
    # A risky word in a comment makes sqlmigrate look at every statement (the checked path).
    note = "-- nothing to COMMIT here\r\n" if path_kind == "checked" else ""
    body = head + note + "CREATE TABLE t (id int PRIMARY KEY, v text);\r\n" + _ROWS
    if path_kind == "streamed":
        body += "".join(f"INSERT INTO t VALUES ({i}, 'pad {i}');\r\n" for i in range(10, 200))
    return body


@pytest.mark.parametrize("path_kind", ["plain", "checked", "no-transaction", "streamed"])
def test_cr_and_crlf_in_literals_arrive_byte_for_byte(database_url, conn, mdir, monkeypatch, path_kind):
    if path_kind == "streamed":
        monkeypatch.setattr(script, "STREAM_ABOVE", 2_000)
        monkeypatch.setattr(script, "CHUNK", 1_000)
    path = mdir.write("0001_crlf.sql", b"\xef\xbb\xbf" + _migration(path_kind).encode())
    assert script.prepare_file(path).streamed == (path_kind == "streamed")
    sqlmigrate.up(database_url, mdir.path)
    rows = conn.execute("SELECT id, encode(convert_to(v, 'UTF8'), 'hex') FROM t WHERE id < 10 ORDER BY id").fetchall()
    assert rows == [(1, "610d62"), (2, "630d0a64"), (3, "650d66")]


def test_checksum_of_a_crlf_file_is_that_of_its_lf_twin(database_url, conn, mdir):
    path = mdir.write("0001_crlf.sql", b"\xef\xbb\xbf" + _migration("plain").encode())
    crlf = files.discover(mdir.path)[0].checksum
    sqlmigrate.up(database_url, mdir.path)
    path.write_bytes(_migration("plain").replace("\r\n", "\n").encode())  # the LF checkout
    assert files.discover(mdir.path)[0].checksum == crlf
    assert files.checksum(files.read_text(path)) == crlf
    sqlmigrate.ensure_current(database_url, mdir.path)  # not "modified"


def test_a_line_comment_ends_at_a_bare_cr_as_on_the_server(database_url, conn, mdir):
    # The server ends a "--" comment at CR: the INSERT after it runs, and sqlmigrate must agree
    # on where statements start (here: it must see the COMMIT and refuse it).
    mdir.write("0001_a.sql", "CREATE TABLE t (id int);\n-- note\rCOMMIT;\nSELECT 1;\n")
    with pytest.raises(sqlmigrate.MigrationFileError, match="transaction control") as err:
        sqlmigrate.up(database_url, mdir.path)
    assert err.value.line == 2
