"""The package is typed (py.typed): mypy must accept it as shipped."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_mypy_accepts_the_package():
    r = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "sqlmigrate"],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
