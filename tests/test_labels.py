"""A migration is named the same way everywhere: its version as the file spells it and its name,
without ``.sql``, ``.up`` or ``.down`` (golang-migrate's ``1_x.up.sql`` is ``1_x``), in ``up``,
``down``, ``status``, ``status --log`` and ``verify``, and the log stores the version and the name."""

from __future__ import annotations

import re

from sqlmigrate import _files as files


def test_label_drops_up_and_any_case_of_the_suffix(mdir):
    mdir.write("0001_a.up.sql", "SELECT 1;")
    mdir.write("0001_a.down.sql", "SELECT 1;")
    mdir.write("0002_b.UP.SQL", "SELECT 2;")
    mdir.write("0003_c.sql", "SELECT 3;")
    mdir.write("20190226002946_create_user.up.sql", "SELECT 4;")
    assert [m.label for m in files.discover(mdir.path)] == [
        "0001_a", "0002_b", "0003_c", "20190226002946_create_user"]


def test_every_command_spells_the_label_alike(cli, conn, mdir):
    mdir.write("0001_create_user.up.sql", "CREATE TABLE u (id integer);\n")
    mdir.write("0001_create_user.down.sql", "DROP TABLE u;\n")
    mdir.write("0002_add_updated_at.up.sql", "ALTER TABLE u ADD COLUMN updated_at timestamptz;\n")
    mdir.write("0002_add_updated_at.down.sql", "ALTER TABLE u DROP COLUMN updated_at;\n")

    up = cli("up", "--dir", str(mdir))
    assert up.code == 0, up
    down = cli("down", "--dir", str(mdir))
    assert down.code == 0, down
    status = cli("status", "--log", "--dir", str(mdir))
    assert status.code == 0, status
    verify = cli("verify", "--dir", str(mdir))
    assert verify.code == 0, verify

    everything = up.out + up.err + down.out + down.err + status.out + status.err + verify.out + verify.err
    assert ".up" not in everything and ".down" not in everything, everything
    assert "applied 0001_create_user" in up.out and "applied 0002_add_updated_at" in up.out, up
    assert "rolled back 0002_add_updated_at" in down.out, down
    assert re.search(r"^applied\s+0001_create_user\b", status.out, re.M), status
    assert re.search(r"^pending\s+0002_add_updated_at\b", status.out, re.M), status
    log = status.out[status.out.index("log (newest"):]
    # The log prints the zero-padded label of the files, as status does, not "1_create_user".
    assert " up       ok      0001_create_user " in log, status
    assert " down     ok      0002_add_updated_at " in log, status
    assert " 1_create_user" not in log and " 2_add_updated_at" not in log, status
    assert "0001_create_user: reversible" in verify.out and "0002_add_updated_at: reversible" in verify.out, verify

    # The log stores version and name, never a file suffix.
    rows = conn.execute("SELECT DISTINCT version, name FROM schema_migrations_log ORDER BY 1").fetchall()
    assert rows == [(1, "create_user"), (2, "add_updated_at")]
