"""Setting up the tools under comparison, and timing one run of a process.

The benchmark installs what it compares against itself, so that a fresh machine needs only the
project venv, node/npm and a PostgreSQL client:

- dbmate from npm into ``bench/.tools/node_modules`` (the Go binary it ships is called directly, so
  node's own start-up is not charged to dbmate);
- yoyo-migrations (+ psycopg2-binary, its PostgreSQL driver) into ``bench/.tools/yoyo-venv``, a venv of
  its own so the project venv stays clean;
- psql from PATH.

A tool that cannot be set up is skipped with one clear line, never fatal.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Run:
    wall_s: float
    maxrss_kb: int  # peak resident set of the process (and any child it waited for)
    rc: int
    timed_out: bool
    log: Path

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out

    def tail(self, n: int = 3) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-n:])


def run_timed(
    cmd: list[str], log: Path, *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> Run:
    """Wall time and peak RSS of one whole process, output to ``log``.

    ``os.wait4`` gives the rusage of exactly this child, so every run is measured from a fresh
    process and nothing of the benchmark itself is counted.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    rss_file = log.with_suffix(".rss")
    rss_file.unlink(missing_ok=True)
    # The peak RSS that wait4 reports for a child forked from this (bigger) process includes the
    # memory of the fork itself, so the measured process is started by a small wrapper instead.
    wrapped = [*_rss_wrapper(), str(rss_file), *cmd]
    timed_out = False
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            wrapped, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def kill() -> None:
            nonlocal timed_out
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen from waiting again
    try:
        maxrss = int(rss_file.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        maxrss = 0
    return Run(wall, maxrss, proc.returncode, timed_out, log)


_PY_WRAPPER = (
    "import os, sys\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.execvp(sys.argv[2], sys.argv[2:])\n"
    "_, st, ru = os.wait4(pid, 0)\n"
    "open(sys.argv[1], 'w').write(str(ru.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(st) & 255)\n"
)


def _rss_wrapper() -> list[str]:
    """GNU time (about 2 MB) if installed, else a bare ``python -S`` (about 10 MB, a floor on the figure)."""
    if os.access("/usr/bin/time", os.X_OK):
        return ["/usr/bin/time", "-f", "%M", "-o"]
    return [sys.executable, "-S", "-c", _PY_WRAPPER]


@dataclass(frozen=True)
class Toolset:
    python: Path  # the project venv's interpreter: runs sqlmigrate, the floor and the boot checks
    sqlmigrate: str | None  # None, or why not: set in ``missing``
    psql: str | None
    dbmate: str | None
    yoyo: str | None
    missing: dict[str, str]
    versions: dict[str, str]


def _quiet(cmd: list[str], timeout: float = 600, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def _dbmate(tools: Path) -> tuple[str | None, str]:
    def find() -> str | None:
        native = sorted(tools.glob("node_modules/@dbmate/*/bin/dbmate"))
        if native:
            return str(native[0])
        wrapper = tools / "node_modules" / ".bin" / "dbmate"
        return str(wrapper) if wrapper.exists() else None

    found = find()
    if found:
        return found, ""
    npm = shutil.which("npm")
    if not npm:
        return None, "npm not on PATH"
    print(f"  installing dbmate: npm install --prefix {tools} dbmate", flush=True)
    tools.mkdir(parents=True, exist_ok=True)
    r = _quiet([npm, "install", "--prefix", str(tools), "--no-audit", "--no-fund", "dbmate"])
    found = find()
    return (found, "") if found else (None, f"npm install failed: {r.stderr.strip()[-300:]}")


def _yoyo(tools: Path) -> tuple[str | None, str]:
    venv = tools / "yoyo-venv"
    yoyo = venv / "bin" / "yoyo"
    if yoyo.exists():
        return str(yoyo), ""
    print(f"  installing yoyo-migrations into {venv}", flush=True)
    base = shutil.which("python3") or sys.executable
    r = _quiet([base, "-m", "venv", str(venv)])
    if r.returncode != 0:
        return None, f"venv failed: {r.stderr.strip()[-300:]}"
    r = _quiet([str(venv / "bin" / "pip"), "install", "-q", "yoyo-migrations", "psycopg2-binary"])
    if r.returncode != 0 or not yoyo.exists():
        return None, f"pip install yoyo-migrations failed: {r.stderr.strip()[-300:]}"
    return str(yoyo), ""


def python_env(bench: Path) -> dict[str, str]:
    """Environment for the project interpreter: the working tree's sqlmigrate comes first.

    The bench measures the checkout it lives in, whatever state the venv's (editable or not)
    install of sqlmigrate is in; nothing else is on that path, so it costs every tool the same.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SQLMIGRATE_", "PG")) and k not in ("DATABASE_URL", "ENVIRONMENT")}
    env["PYTHONPATH"] = str(bench.parent)
    return env


def setup(bench: Path, python: Path, wanted: set[str]) -> Toolset:
    tools = bench / ".tools"
    missing: dict[str, str] = {}
    versions: dict[str, str] = {}
    sm = psql = dbm = yoyo = None

    if "sqlmigrate" in wanted:
        r = _quiet([str(python), "-m", "sqlmigrate", "--help"], cwd=bench, env=python_env(bench))
        if r.returncode == 0:
            sm = str(python)
            v = _quiet([str(python), "-c", "import sqlmigrate._cli as c; print(c._version(), c.__file__)"],
                       cwd=bench, env=python_env(bench))
            versions["sqlmigrate"] = v.stdout.strip() or "?"
        else:
            missing["sqlmigrate"] = (
                f"`{python} -m sqlmigrate --help` failed: " + (r.stderr or r.stdout).strip()[-200:]
            )
    if "psql" in wanted:
        psql = shutil.which("psql")
        if psql:
            versions["psql"] = _quiet([psql, "--version"]).stdout.strip()
        else:
            missing["psql"] = "psql not on PATH (apt-get install postgresql-client)"
    if "dbmate" in wanted:
        dbm, why = _dbmate(tools)
        if dbm:
            versions["dbmate"] = _quiet([dbm, "--version"]).stdout.strip()
        else:
            missing["dbmate"] = why
    if "yoyo" in wanted:
        yoyo, why = _yoyo(tools)
        if yoyo:
            v = _quiet([str(Path(yoyo).parent / "python"), "-c",
                        "import importlib.metadata as m; print(m.version('yoyo-migrations'))"])
            versions["yoyo"] = "yoyo-migrations " + v.stdout.strip()
        else:
            missing["yoyo"] = why
    v = _quiet([str(python), "-c", "import sys, psycopg; print(sys.version.split()[0], psycopg.__version__)"])
    versions["python/psycopg"] = v.stdout.strip()
    return Toolset(python, sm, psql, dbm, yoyo, missing, versions)
