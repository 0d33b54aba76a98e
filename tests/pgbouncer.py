"""A real PgBouncer of the test's own, in front of the server under test.

Each call starts a fresh ``pgbouncer`` process (the Debian package's binary, never the system service)
on a free port of 127.0.0.1, with a generated ini in a temporary folder, and stops it afterwards.
PgBouncer refuses to run as root: when the tests run as root it runs as an unprivileged user, the
owner of the server's socket folder when the server is reached by socket (the embedded server's
folder is private to its own system user).
"""

from __future__ import annotations

import getpass
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

DEBIAN_BINARY = "/usr/sbin/pgbouncer"
POOL_SIZE = 4


def binary() -> str | None:
    """The pgbouncer executable, or None when it is not installed (/usr/sbin is not on every PATH)."""
    found = shutil.which("pgbouncer")
    if found:
        return found
    return DEBIAN_BINARY if os.access(DEBIAN_BINARY, os.X_OK) else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _target(server_url: str) -> dict[str, str]:
    """Where the server under test listens, and who logs in to it."""
    params = {k: str(v) for k, v in conninfo_to_dict(server_url).items() if v is not None}
    return {
        "host": params.get("host") or os.environ.get("PGHOST") or "/var/run/postgresql",
        "port": params.get("port") or os.environ.get("PGPORT") or "5432",
        "user": params.get("user") or os.environ.get("PGUSER") or getpass.getuser(),
        "password": params.get("password") or os.environ.get("PGPASSWORD") or "",
    }


def _run_as(host: str) -> pwd.struct_passwd | None:
    """The unprivileged user to run pgbouncer as, or None to run it as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    if host.startswith("/"):
        owner = os.stat(host).st_uid
        if owner != 0:
            return pwd.getpwuid(owner)
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("tests run as root and there is no unprivileged user to run pgbouncer as")


def _drop_privileges(user: pwd.struct_passwd | None) -> list[str]:
    if user is None:
        return []
    if shutil.which("setpriv"):
        # setpriv execs pgbouncer itself, so the process we hold is pgbouncer's (runuser forks).
        return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"]
    if shutil.which("runuser"):
        return ["runuser", "-u", user.pw_name, "--"]
    raise RuntimeError("tests run as root and neither setpriv nor runuser is installed to run pgbouncer")


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _ini(folder: Path, dbname: str, target: dict[str, str], port: int, pool_mode: str) -> str:
    server = f"host={target['host']} port={target['port']} dbname={dbname}"
    return (
        "[databases]\n"
        f"{dbname} = {server}\n"
        "\n[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {folder / 'userlist.txt'}\n"
        f"pool_mode = {pool_mode}\n"
        f"default_pool_size = {POOL_SIZE}\n"
        "max_client_conn = 100\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
        f"logfile = {folder / 'pgbouncer.log'}\n"
        f"pidfile = {folder / 'pgbouncer.pid'}\n"
    )


def _log(folder: Path) -> str:
    parts = []
    for name in ("stderr.log", "pgbouncer.log"):
        try:
            parts.append((folder / name).read_text(errors="replace"))
        except OSError:
            pass
    return "\n".join(parts)[-4000:]


@contextmanager
def running(server_url: str, database_url: str, pool_mode: str, executable: str) -> Iterator[str]:
    """A pgbouncer in ``pool_mode`` in front of ``database_url``'s database; yields a libpq URL to it
    that already accepts connections, and stops the process afterwards."""
    target = _target(server_url)
    dbname = str(conninfo_to_dict(database_url)["dbname"])
    user = _run_as(target["host"])
    folder = Path(tempfile.mkdtemp(prefix="sqlmigrate-pgbouncer-"))
    try:
        # The password in the auth file is also the one pgbouncer logs in to the server with.
        (folder / "userlist.txt").write_text(f"{_quote(target['user'])} {_quote(target['password'])}\n")
        port = free_port()
        (folder / "pgbouncer.ini").write_text(_ini(folder, dbname, target, port, pool_mode))
        if user is not None:
            for p in (folder, *folder.iterdir()):
                os.chown(p, user.pw_uid, user.pw_gid)
        os.chmod(folder, 0o700)
        with open(folder / "stderr.log", "wb") as err:
            proc = subprocess.Popen(
                [*_drop_privileges(user), executable, str(folder / "pgbouncer.ini")],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd=folder,
            )
        try:
            url = make_conninfo("", host="127.0.0.1", port=port, dbname=dbname, user=target["user"],
                                **({"password": target["password"]} if target["password"] else {}))
            _wait_ready(proc, url, folder)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, folder: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"pgbouncer exited with {proc.returncode} at start:\n{_log(folder)}")
        try:
            with psycopg.connect(url, connect_timeout=2, autocommit=True) as c:
                c.execute("SELECT 1")
            return
        except psycopg.Error as exc:
            last = exc
            time.sleep(0.1)
    raise RuntimeError(f"pgbouncer did not accept connections within {timeout:g} s ({last}):\n{_log(folder)}")
