"""The progress display: a status line on a terminal, nothing of it when output is not a terminal."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest


def _run_on_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal (stdout a pipe, as in `sqlmigrate up | tee`)."""
    controller, terminal = os.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "sqlmigrate", *args], env=env,
                                stdout=subprocess.PIPE, stderr=terminal, text=True)
        os.close(terminal)
        chunks = []
        while True:
            try:
                data = os.read(controller, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not data:
                break
            chunks.append(data)
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(controller)
    return proc.returncode, out, b"".join(chunks).decode()


@pytest.fixture
def env(database_url):
    e = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    e["SQLMIGRATE_DATABASE_URL"] = database_url
    return e


def test_progress_shows_on_a_terminal_and_is_cleared(env, mdir):
    for v in range(1, 4):
        mdir.write(f"000{v}_m{v}.sql", f"CREATE TABLE t{v} (id int);")
    code, out, terminal = _run_on_terminal(["up", "--dir", str(mdir)], env)
    assert code == 0, terminal
    assert "applying 0001_m1 (1 of 3)" in terminal and "applying 0003_m3 (3 of 3)" in terminal
    assert terminal.endswith("\r\x1b[K")  # cleared before exit: nothing left on the line
    assert "applied 0003_m3" in out and "applying" not in out


def test_streamed_file_reports_percentages(env, mdir):
    rows = "".join(f"INSERT INTO t VALUES ({i}, 'row {i}; padding padding padding padding');\n" for i in range(120_000))
    mdir.write("0001_big.sql", "CREATE TABLE t (id int, v text);\n" + rows)
    code, out, terminal = _run_on_terminal(["up", "--dir", str(mdir)], env)
    assert code == 0, terminal
    assert "applying 0001_big (1 of 1)" in terminal
    shown = [int(p) for p in re.findall(r"0001_big: (\d+)% of 9 MB", terminal)]
    assert shown[0] == 0 and shown[-1] >= 90 and shown == sorted(shown) and len(shown) > 5, terminal
    assert "applied 0001_big" in out


def test_no_progress_without_a_terminal(cli, mdir):
    mdir.write("0001_a.sql", "CREATE TABLE a (id int);")
    r = cli("up", "--dir", str(mdir))
    assert r.code == 0 and "applying" not in r.out + r.err and "\x1b" not in r.out + r.err
