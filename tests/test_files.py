"""Finding and reading migration files: every problem is named before the database is touched."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest

from sqlmigrate import _files as files
from sqlmigrate._errors import ConfigurationError, MigrationFileError


def test_discovers_in_numeric_version_order_and_ignores_other_files(mdir):
    mdir.write("10_ten.sql", "SELECT 10;")
    mdir.write("0002_two.sql", "SELECT 2;")
    mdir.write("0002_two.rollback.sql", "SELECT -2;")
    mdir.write("20260110120000_stamp.sql", "SELECT 3;")
    mdir.write("README.md", "# notes")
    mdir.write(".gitkeep", "")
    mdir.write("notes.txt", "x")
    (mdir.path / "subdir").mkdir()
    found = files.discover(mdir.path)
    assert [(m.version, m.name) for m in found] == [(2, "two"), (10, "ten"), (20260110120000, "stamp")]
    assert found[0].rollback == mdir.path / "0002_two.rollback.sql"
    assert found[1].rollback is None


def test_golang_migrate_spelling_is_accepted(mdir):
    mdir.write("1_init.up.sql", "CREATE TABLE t (id int);")
    mdir.write("1_init.down.sql", "DROP TABLE t;")
    (m,) = files.discover(mdir.path)
    assert (m.version, m.name, m.path.name, m.rollback.name) == (1, "init", "1_init.up.sql", "1_init.down.sql")


@pytest.mark.parametrize("names, fragment", [
    (["0001_bad name.sql"], "not a migration file name"),
    (["abc_x.sql"], "not a migration file name"),
    (["0001_a.b.sql"], "not a migration file name"),
    (["0001_a.sql", "001_b.sql"], "two migrations with version 1"),
    (["0003_x.rollback.sql"], "rollback file without its migration; add the migration 0003_x.sql"),
    (["0004_x.sql", "0004_x.down.sql"], "mixes the .sql/.rollback.sql and .up.sql/.down.sql spellings"),
    (["0005_x.sql", "0005_y.rollback.sql"], "rename it to 0005_x.rollback.sql"),
])
def test_bad_file_sets_name_the_file_and_the_fix(mdir, names, fragment):
    for n in names:
        mdir.write(n, "SELECT 1;")
    with pytest.raises(MigrationFileError) as err:
        files.discover(mdir.path)
    assert fragment in str(err.value)
    assert str(mdir.path) in str(err.value)


def test_all_problems_are_reported_together(mdir):
    mdir.write("0001_ok.sql", "SELECT 1;")
    mdir.write("x.sql", "SELECT 1;")
    mdir.write("0009_y.rollback.sql", "SELECT 1;")
    with pytest.raises(MigrationFileError) as err:
        files.discover(mdir.path)
    assert "x.sql" in str(err.value) and "0009_y.rollback.sql" in str(err.value)


def test_not_utf8_names_file_and_line(mdir):
    mdir.write("0001_latin1.sql", "SELECT 1;\nSELECT 'caf\xe9';\n".encode("latin-1"))
    with pytest.raises(MigrationFileError) as err:
        files.discover(mdir.path)
    assert "0001_latin1.sql:2" in str(err.value) and "not valid UTF-8" in str(err.value)


def test_nul_byte_is_an_error(mdir):
    mdir.write("0001_nul.sql", b"SELECT 1;\nSELECT '\x00';\n")
    with pytest.raises(MigrationFileError, match=r"0001_nul.sql:2: contains a NUL byte"):
        files.discover(mdir.path)


def test_checksum_ignores_crlf_and_bom(tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "0001_x.sql").write_bytes(b"CREATE TABLE t (id int);\nSELECT 1;\n")
    (b / "0001_x.sql").write_bytes(b"\xef\xbb\xbfCREATE TABLE t (id int);\r\nSELECT 1;\r\n")
    (ma,), (mb,) = files.discover(a), files.discover(b)
    assert ma.checksum == mb.checksum
    # What runs is the file's own text: only the BOM is not sent.
    assert mb.read() == "CREATE TABLE t (id int);\r\nSELECT 1;\r\n"


def test_checksum_changes_with_content(mdir):
    p = mdir.write("0001_x.sql", "SELECT 1;")
    before = files.discover(mdir.path)[0].checksum
    p.write_text("SELECT 2;")
    assert files.discover(mdir.path)[0].checksum != before


def test_symlink_out_of_the_directory_is_refused(mdir, tmp_path):
    outside = tmp_path / "secret.sql"
    outside.write_text("SELECT 1;")
    os.symlink(outside, mdir.path / "0001_link.sql")
    with pytest.raises(MigrationFileError, match="outside the migration directory"):
        files.discover(mdir.path)


def test_missing_directory_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="does not exist"):
        files.discover(tmp_path / "nope")


def test_new_continues_the_numbering_style(mdir):
    up, down = files.create(mdir.path, "create_users")
    assert (up.name, down.name) == ("0001_create_users.sql", "0001_create_users.rollback.sql")
    up, _ = files.create(mdir.path, "add-email")
    assert up.name == "0002_add-email.sql"


def test_new_keeps_width_and_updown_spelling(mdir):
    mdir.write("000007_a.up.sql", "SELECT 1;")
    up, down = files.create(mdir.path, "b")
    assert (up.name, down.name) == ("000008_b.up.sql", "000008_b.down.sql")


def test_new_with_timestamps_uses_a_timestamp(mdir):
    mdir.write("20200101000000_a.sql", "SELECT 1;")
    up, _ = files.create(mdir.path, "b", now=datetime(2026, 11, 24, 6, 30, 0, tzinfo=timezone.utc))
    assert up.name == "20261124063000_b.sql"


@pytest.mark.parametrize("description, filename", [
    ("add modules data field", "0001_add_modules_data_field.sql"),
    ("描述性消息", "0001_描述性消息.sql"),
    ("Add Users: e-mail (again)!", "0001_add_users_e-mail_again.sql"),
    ("हिन्दी नाम", "0001_हिन्दी_नाम.sql"),
    ("Größe ändern", "0001_größe_ändern.sql"),
    ("../evil", "0001_evil.sql"),
    ("a/b", "0001_a_b.sql"),
    ("x.sql", "0001_x_sql.sql"),
    ("  tabs\tand\nnewlines  ", "0001_tabs_and_newlines.sql"),
])
def test_new_makes_a_file_name_of_any_description_inside_the_directory(mdir, description, filename):
    up, down = files.create(mdir.path, description)
    assert sorted(p.name for p in mdir.path.iterdir()) == sorted([filename, filename[:-4] + ".rollback.sql"])
    assert up.parent == mdir.path and down.parent == mdir.path
    (m,) = files.discover(mdir.path)  # discovery accepts what new creates
    assert (m.filename, m.rollback_filename) == (up.name, down.name)


def test_new_cuts_a_long_description_to_a_file_name_that_fits(mdir):
    up, down = files.create(mdir.path, "数据" * 200)
    assert len(down.name.encode("utf-8")) <= 255
    assert [m.filename for m in files.discover(mdir.path)] == [up.name]


@pytest.mark.parametrize("description", ["", "..", "  - ", "🎉🎉", "/"])
def test_new_refuses_a_description_without_letters_or_digits(mdir, description):
    with pytest.raises(ConfigurationError, match="has no letters or digits"):
        files.create(mdir.path, description)
    assert list(mdir.path.iterdir()) == []


def test_upper_case_extensions_are_migrations(mdir):
    mdir.write("0005_create_e.SQL", "SELECT 5;")
    mdir.write("0005_create_e.ROLLBACK.SQL", "SELECT -5;")
    mdir.write("0006_f.UP.SQL", "SELECT 6;")
    mdir.write("0006_f.Down.Sql", "SELECT -6;")
    mdir.write("0007_g.Sql", "SELECT 7;")
    found = files.discover(mdir.path)
    assert [(m.version, m.name, m.filename, m.rollback_filename) for m in found] == [
        (5, "create_e", "0005_create_e.SQL", "0005_create_e.ROLLBACK.SQL"),
        (6, "f", "0006_f.UP.SQL", "0006_f.Down.Sql"),
        (7, "g", "0007_g.Sql", None),
    ]
    assert found[0].label == "0005_create_e" and found[1].label == "0006_f"
    assert files.rollback_name(found[2]) == "0007_g.rollback.sql"
    up, down = files.create(mdir.path, "next")
    assert (up.name, down.name) == ("0008_next.sql", "0008_next.rollback.sql")


@pytest.mark.parametrize("names, fragment", [
    (["0001_bad name.SQL"], "not a migration file name"),
    (["0001_🎉.sql"], "not a migration file name"),
    (["0002_x.SQL", "0002_x.down.sql"], "mixes the .sql/.rollback.sql and .up.sql/.down.sql spellings"),
    (["0003_x.ROLLBACK.SQL"], "rollback file without its migration; add the migration 0003_x.sql"),
    (["0004_x.SQL", "0004_x.sql"], "two migrations with version 4"),
])
def test_upper_case_extensions_follow_the_same_rules(mdir, names, fragment):
    for n in names:
        mdir.write(n, "SELECT 1;")
    with pytest.raises(MigrationFileError, match=fragment.replace(".", r"\.")):
        files.discover(mdir.path)


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 1 << 20])
def test_chunked_reading_normalises_across_chunk_boundaries(tmp_path, chunk_size):
    raw = "\ufeffCREATE TABLE é (x int);\r\nSELECT 'a\rb';\r\n\r\n-- ünïcode\r".encode("utf-8")
    p = tmp_path / "0001_x.sql"
    p.write_bytes(raw)
    text = "".join(files.iter_text(p, chunk_size=chunk_size))
    assert text == raw.decode("utf-8")[1:]  # the text that runs: the file's, without its BOM
    lf = "CREATE TABLE é (x int);\nSELECT 'a\nb';\n\n-- ünïcode\n"
    assert files.file_checksum(p) == files.checksum(text) == files.checksum(lf)


def test_invalid_utf8_in_a_later_chunk_names_its_line(tmp_path):
    p = tmp_path / "0001_x.sql"
    p.write_bytes(b"SELECT 1;\n" * 200_000 + b"SELECT '\xff';\n")
    with pytest.raises(MigrationFileError, match=r"0001_x.sql:200001: is not valid UTF-8 \(byte 0xff\)"):
        files.file_checksum(p)
