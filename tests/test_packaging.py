"""What a user installs: the sdist and wheel that would be published, and the wheel installed into a
fresh virtualenv outside the source tree, run there as a user runs it."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

import pytest

import sqlmigrate
from conftest import REPO

DIST_NAME = "sqlmigrate-pg"
# Build from a copy: a build in the tree writes build/ and *.egg-info there, and stale files in
# build/lib would end up in the wheel.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", ".sqlmigrate", "__pycache__", ".*_cache",
    ".hypothesis", "bench",
)


def _run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel, built the way they are published (``python -m build``: the wheel
    is built from the sdist)."""
    tmp = tmp_path_factory.mktemp("dist")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=_NOT_SOURCE)
    out = tmp / "out"
    r = _run([sys.executable, "-m", "build", "--outdir", str(out), str(src)])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_wheel_has_types_license_metadata_and_the_command(dist: dict[str, Path]) -> None:
    wheel = dist["wheel"]
    assert wheel.name == f"sqlmigrate_pg-{sqlmigrate.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = f"sqlmigrate_pg-{sqlmigrate.__version__}.dist-info"
        meta = HeaderParser().parsestr(z.read(f"{info}/METADATA").decode())
        entry_points = z.read(f"{info}/entry_points.txt").decode()
        license_text = z.read(f"{info}/licenses/LICENSE").decode()
    assert "sqlmigrate/py.typed" in names
    assert "MIT License" in license_text and "the sqlmigrate authors" in license_text
    # Only the package: no tests, no example migrations.
    assert {n.split("/")[0] for n in names} == {"sqlmigrate", info}
    assert meta["Name"] == DIST_NAME and meta["Version"] == sqlmigrate.__version__
    assert meta["License-Expression"] == "MIT"
    assert meta["Description-Content-Type"] == "text/markdown"
    assert str(meta.get_payload()).startswith("# sqlmigrate")
    assert 'tomli>=1.1; python_version < "3.11"' in (meta.get_all("Requires-Dist") or [])
    assert "sqlmigrate = sqlmigrate._cli:main" in entry_points


def test_twine_check_passes(dist: dict[str, Path]) -> None:
    r = _run([sys.executable, "-m", "twine", "check", "--strict", str(dist["sdist"]), str(dist["wheel"])])
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("PASSED") == 2, r.stdout


def _python310() -> str | None:
    """A working Python 3.10, where [tool.sqlmigrate] needs tomli (a pyenv shim may not run)."""
    pyenv = os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10")
    candidates = [shutil.which("python3.10"), *sorted(glob.glob(pyenv))]
    for exe in filter(None, candidates):
        r = _run([exe, "-c", "import sys, venv; assert sys.version_info[:2] == (3, 10)"])
        if r.returncode == 0:
            return exe
    return None


@pytest.fixture(params=["this python", "python 3.10"])
def interpreter(request: pytest.FixtureRequest) -> str:
    if request.param == "this python":
        return sys.executable
    exe = _python310()
    if exe is None:
        pytest.skip("no Python 3.10 on this machine")
    return exe


def test_installed_wheel_runs_outside_the_source_tree(
    dist: dict[str, Path], interpreter: str, database_url: str, conn, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    r = _run([interpreter, "-m", "venv", "--without-pip", str(venv)])
    assert r.returncode == 0, r.stderr
    python, command = venv / "bin" / "python", venv / "bin" / "sqlmigrate"
    # The dependencies come from the index, as they would for a user: this proves they are declared.
    r = _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
              "--disable-pip-version-check", str(dist["wheel"])])
    assert r.returncode == 0, r.stdout + r.stderr

    # A project of the user's own, configured in its pyproject.toml (tomllib, or tomli on 3.10).
    app = tmp_path / "app"
    (app / "db" / "migrations").mkdir(parents=True)
    (app / "pyproject.toml").write_text('[tool.sqlmigrate]\ndir = "db/migrations"\n')
    (app / "db" / "migrations" / "0001_create_widgets.sql").write_text("CREATE TABLE widgets (id int);\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "DATABASE_URL") and not k.startswith("SQLMIGRATE_")}
    env["SQLMIGRATE_DATABASE_URL"] = database_url

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return _run(list(args), cwd=app, env=env)

    r = run(str(command), "--version")
    assert (r.returncode, r.stdout) == (0, f"sqlmigrate {sqlmigrate.__version__}\n"), r

    r = run(str(python), "-c", "import sys, importlib.metadata as m, sqlmigrate; "
            f"print(sqlmigrate.__version__, m.version({DIST_NAME!r}), 'psycopg' in sys.modules); "
            "print(sqlmigrate.__file__)")
    assert r.returncode == 0, r
    line1, line2 = r.stdout.splitlines()
    assert line1 == f"{sqlmigrate.__version__} {sqlmigrate.__version__} False"
    assert Path(line2).is_relative_to(venv), "imported from outside the fresh venv"

    r = run(str(command), "check")
    assert r.returncode == 3 and "0001_create_widgets" in r.stdout + r.stderr, r
    r = run(str(command), "up")
    assert r.returncode == 0, r
    assert "applied 0001_create_widgets" in r.stdout and "db/migrations" in r.stdout + r.stderr, r
    r = run(str(command), "check")
    assert r.returncode == 0 and "current" in r.stdout, r

    assert conn.execute("SELECT to_regclass('public.widgets') IS NOT NULL").fetchone() == (True,)
    assert conn.execute("SELECT version FROM schema_migrations").fetchall() == [(1,)]
