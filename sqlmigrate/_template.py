"""Template databases: every migration applied once, then cloned for each test in milliseconds.

A template is named ``sqlmigrate_tpl_<project>_<fingerprint>``: ``<project>`` hashes the migration
directory's path, ``<fingerprint>`` the migration set (versions, names, checksums), the history
table's name and schema, and sqlmigrate's version. It stays on the server between test runs, so the
next run's first test is fast too; when any file changes, the next run builds a new one and drops the
project's older ones.

Building is guarded by an advisory lock per project on the maintenance connection, so pytest-xdist
workers and concurrent test runs build it once. It is built under a temporary name and only renamed
to its final name once complete, already marked ``IS_TEMPLATE`` with connections disallowed: a
template that exists under its final name is always whole, and nobody can connect to it (a
connection to the template would make every clone fail).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from . import _files as files
from ._config import DEFAULT_TABLE
from ._connection import connect, normalize
from ._errors import ConfigurationError, ConnectError, DatabaseError, SqlMigrateError

if TYPE_CHECKING:
    from concurrent.futures import Future

    import psycopg
    from psycopg import sql

__all__ = ["TEMPLATE_PREFIX", "DATABASE_PREFIX", "ClonePool", "Template", "clone", "drop_database", "drop_databases",
           "drop_templates",
           "ensure_template", "fingerprint", "project_key", "template_name"]

log = logging.getLogger("sqlmigrate")

T = TypeVar("T")

TEMPLATE_PREFIX = "sqlmigrate_tpl_"
#: Every test database cloned from a template is named this, then its project key, ``_`` and 8 random
#: hex digits.
DATABASE_PREFIX = "sqlmigrate_db_"


@dataclass(frozen=True)
class Template:
    name: str
    #: whether this call built it (False: it was already on the server)
    built: bool
    #: how long building took, in milliseconds (0 when it was already there)
    build_ms: float = 0.0


def project_key(directory: str | Path) -> str:
    """10 hex digits naming a migration directory: templates of one project share this prefix."""
    return hashlib.sha256(str(Path(directory).resolve()).encode()).hexdigest()[:10]


def fingerprint(migrations: Sequence[files.Migration], *, table: str = DEFAULT_TABLE,
                schema: str | None = None) -> str:
    """16 hex digits that change whenever anything that shapes the migrated database changes."""
    from . import __version__

    digest = hashlib.sha256(f"sqlmigrate {__version__}\n{schema or ''}.{table}\n".encode())
    for m in migrations:
        digest.update(f"{m.version} {m.name} {m.checksum}\n".encode())
    return digest.hexdigest()[:16]


def template_name(directory: str | Path, migrations: Sequence[files.Migration], *,
                  table: str = DEFAULT_TABLE, schema: str | None = None) -> str:
    return f"{TEMPLATE_PREFIX}{project_key(directory)}_{fingerprint(migrations, table=table, schema=schema)}"


def ensure_template(admin: psycopg.Connection, server_url: str, directory: str | Path, *,
                    table: str = DEFAULT_TABLE, schema: str | None = None) -> Template:
    """The template for the migrations in ``directory`` on ``admin``'s server, built if missing.

    ``admin`` is an autocommit connection to a maintenance database of that server (never the
    template); ``server_url`` is its connection string, from which the build's own connection is made.
    """
    migrations = files.discover(directory)
    name = template_name(directory, migrations, table=table, schema=schema)
    if _is_ready(admin, name):
        return Template(name, built=False)
    key = _lock_key(project_key(directory))
    admin.execute("SELECT pg_advisory_lock(%s)", (key,))
    try:
        # Another worker may have built it while this one waited for the lock.
        if _is_ready(admin, name):
            return Template(name, built=False)
        started = time.perf_counter()
        _build(admin, server_url, name, directory, table, schema)
        elapsed = (time.perf_counter() - started) * 1000
        _drop_stale(admin, project_key(directory), keep=name)
    finally:
        admin.execute("SELECT pg_advisory_unlock(%s)", (key,))
    log.info("built template database %s (%d migrations) in %.0f ms", name, len(migrations), elapsed)
    return Template(name, built=True, build_ms=elapsed)


def clone(admin: psycopg.Connection, template: str, name: str | None = None) -> str:
    """Create database ``name`` (default ``sqlmigrate_db_<project>_<random>``) as a copy of ``template``.

    The server's default strategy is kept: WAL_LOG on PostgreSQL 15+, measured faster here than
    FILE_COPY, which forces two checkpoints per clone.
    """
    from psycopg import sql

    # The template's project key: a test's leftovers are found by project.
    project = template[len(TEMPLATE_PREFIX):].split("_", 1)[0]
    name = name or f"{DATABASE_PREFIX}{project}_{secrets.token_hex(4)}"
    _execute(admin, sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                     sql.Identifier(template)),
             f"could not create the test database {name} from the template {template}")
    return name


def drop_database(admin: psycopg.Connection, name: str) -> None:
    """Drop ``name``, ending the sessions still connected to it (a test's unclosed pool)."""
    from psycopg import sql

    ident = sql.Identifier(name)
    if admin.info.server_version >= 130000:
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident)
    else:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        statement = sql.SQL("DROP DATABASE IF EXISTS {}").format(ident)
    _execute(admin, statement, f"could not drop the database {name}")


def drop_databases(server_url: str, names: Sequence[str]) -> None:
    """Drop ``names`` on ``server_url``, all at once, each on a connection of its own (see
    :class:`ClonePool`); a database that could not be dropped is logged as a warning."""
    from concurrent.futures import ThreadPoolExecutor

    if not names:
        return
    with ThreadPoolExecutor(len(names), thread_name_prefix="sqlmigrate-drop") as pool:
        refused = [n for n, dropped in zip(names, pool.map(lambda n: _drop_alone(server_url, n), names))
                   if not dropped]
    if refused:
        # The server has no connections to spare (many xdist workers): one at a time, on one.
        try:
            with connect(server_url) as admin:
                for name in refused:
                    _drop_quietly(admin, name)
        except SqlMigrateError as exc:
            log.warning("%s; drop %s by hand", exc, ", ".join(refused))


def drop_templates(admin: psycopg.Connection, directory: str | Path) -> list[str]:
    """Drop every template of the project in ``directory``; returns their names."""
    return _drop_stale(admin, project_key(directory), keep=None)


# -- internals ------------------------------------------------------------------------------------


def _lock_key(project: str) -> int:
    digest = hashlib.sha256(f"sqlmigrate-template:{project}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _is_ready(admin: psycopg.Connection, name: str) -> bool:
    row = admin.execute("SELECT datistemplate FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return bool(row and row[0])


def _build(admin: psycopg.Connection, server_url: str, name: str, directory: str | Path,
           table: str, schema: str | None) -> None:
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from ._migrator import Migrator

    # A build interrupted earlier left this behind; we hold the project's lock, so nobody uses it.
    building = name + "_build"
    drop_database(admin, building)
    ident = sql.Identifier(building)
    _execute(admin, sql.SQL("CREATE DATABASE {}").format(ident),
             f"could not create the template database {building}")
    try:
        Migrator(make_conninfo(normalize(server_url), dbname=building), directory,
                 table=table, schema=schema).up()
        _execute(admin, sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false IS_TEMPLATE true").format(ident),
                 f"could not mark {building} as a template")
        _rename(admin, building, name)
    except BaseException:
        _unmark_and_drop(admin, building)
        raise


def _rename(admin: psycopg.Connection, old: str, new: str) -> None:
    import psycopg
    from psycopg import sql

    statement = sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new))
    deadline = time.monotonic() + 10
    while True:
        try:
            admin.execute(statement)
            return
        except psycopg.errors.ObjectInUse:
            # The build's own session ends asynchronously after its client closed it.
            if time.monotonic() > deadline:
                raise
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE datname = %s AND pid <> pg_backend_pid()", (old,))
            time.sleep(0.02)


def _unmark_and_drop(admin: psycopg.Connection, name: str) -> None:
    from psycopg import sql

    # A database marked IS_TEMPLATE cannot be dropped.
    row = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s AND datistemplate", (name,)).fetchone()
    if row:
        _execute(admin, sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(sql.Identifier(name)),
                 f"could not unmark the template {name}")
    drop_database(admin, name)


def _drop_stale(admin: psycopg.Connection, project: str, keep: str | None) -> list[str]:
    prefix = f"{TEMPLATE_PREFIX}{project}_"
    rows = admin.execute(
        "SELECT datname FROM pg_database WHERE starts_with(datname, %s) AND datname IS DISTINCT FROM %s"
        " ORDER BY datname", (prefix, keep)).fetchall()
    dropped = []
    for (stale,) in rows:
        _unmark_and_drop(admin, stale)
        log.info("dropped template database %s", stale)
        dropped.append(stale)
    return dropped


def _execute(admin: psycopg.Connection, statement: sql.Composed, what: str) -> None:
    import psycopg

    try:
        admin.execute(statement)
    except psycopg.Error as exc:
        message = f"{what}: {str(exc).strip()}"
        if exc.sqlstate == "42501":
            raise ConfigurationError(message + "; the fixtures need a role with CREATEDB") from None
        raise DatabaseError(message, exc.sqlstate) from None



class ClonePool:
    """Test databases cloned from one project's template, the next ones cloned ahead of time.

    Clones run on background threads (two at once: a clone's cost is mostly per relation, not disk
    bandwidth, so two overlap well), each thread with its own maintenance connection; a test waits
    only when it is shorter than a clone. The template is found (or built) by the first
    :meth:`acquire`.

    Used databases are dropped in batches, every drop of a batch at once on its own connection. Each
    ``DROP DATABASE`` waits for a checkpoint, and a checkpoint writes out every clone still in shared
    buffers: dropped one by one, each drop paid for writing the next clones (about 200 ms a drop,
    measured); dropped together, the batch discards its own pages first and shares one checkpoint.
    """

    def __init__(self, server_url: str, directory: str | Path, *, table: str = DEFAULT_TABLE,
                 schema: str | None = None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.server_url = server_url
        self.directory = Path(directory)
        self.table = table
        self.schema = schema
        self.template: Template | None = None
        self._cloner = _Worker(server_url, "sqlmigrate-clone", threads=_AHEAD)
        self._dropper = ThreadPoolExecutor(1, thread_name_prefix="sqlmigrate-drop")
        self._spares: deque[Future[str]] = deque()
        self._failure: BaseException | None = None
        self._released: list[str] = []
        self._dropping: Future[None] | None = None
        self._batch = _MAX_BATCH

    def url(self, name: str) -> str:
        """A ``postgresql://`` URL of database ``name``: psycopg and SQLAlchemy both take it."""
        from urllib.parse import quote, urlencode

        from psycopg.conninfo import conninfo_to_dict

        params = {k: str(v) for k, v in conninfo_to_dict(normalize(self.server_url)).items() if v is not None}
        params.pop("dbname", None)
        user, password = params.pop("user", None), params.pop("password", None)
        netloc = ""
        if user:
            netloc = quote(user, safe="") + (":" + quote(password, safe="") if password else "") + "@"
        elif password:
            params["password"] = password
        host = params.get("host", "")
        # A socket directory or a list of hosts stays a query parameter.
        if host and not host.startswith("/") and "," not in host:
            netloc += f"[{host}]" if ":" in host else host
            del params["host"]
            if "port" in params and "," not in params["port"]:
                netloc += ":" + params.pop("port")
        query = "?" + urlencode(sorted(params.items())) if params else ""
        return f"postgresql://{netloc}/{quote(name, safe='')}{query}"

    def acquire(self, *, prefetch: bool = True) -> str:
        """The name of a new database with every migration applied; with ``prefetch``, start cloning
        the next ones."""
        spare = self._spares.popleft() if self._spares else self._cloner.submit(self._create)
        name = spare.result()  # first: clones started now would slow down the one the test waits for
        while prefetch and len(self._spares) < _AHEAD:
            self._spares.append(self._cloner.submit(self._create))
        return name

    def release(self, name: str) -> None:
        """Drop ``name`` later, in a batch with others (see the class's description)."""
        self._released.append(name)
        if len(self._released) >= self._batch:
            self._drop_released()

    def _drop_released(self) -> None:
        names, self._released = self._released, []
        if self._dropping is not None:
            self._dropping.result()  # one batch at a time: the disk they hold stays bounded
        self._dropping = self._dropper.submit(drop_databases, self.server_url, names)

    def close(self) -> None:
        """Drop the spares and every used database, and wait until they are gone."""
        while self._spares:
            try:
                self._released.append(self._spares.popleft().result())
            except BaseException:
                pass  # its failure was or will be reported by the test that needed it
        self._drop_released()
        self._cloner.close()
        self._dropper.shutdown(wait=True)

    # -- on the cloning threads --------------------------------------------------------------------

    def _ensure(self, admin: psycopg.Connection) -> Template:
        if self._failure is not None:
            raise self._failure  # a template that would not build: fail fast, not once per test
        try:
            self.template = ensure_template(admin, self.server_url, self.directory,
                                            table=self.table, schema=self.schema)
        except SqlMigrateError as exc:
            self._failure = exc
            raise
        size = admin.execute("SELECT pg_database_size(%s)", (self.template.name,)).fetchone()
        self._batch = max(2, min(_MAX_BATCH, _BATCH_BYTES // max(1, size[0] if size else 0)))
        return self.template

    def _create(self, admin: psycopg.Connection) -> str:
        template = self.template or self._ensure(admin)
        try:
            return clone(admin, template.name)
        except DatabaseError as exc:
            if exc.sqlstate != "3D000":
                raise
            # Another run of the same project, with changed files, replaced the template.
            return clone(admin, self._ensure(admin).name)


#: Databases cloned ahead of the test that will use them, and clones running at once.
_AHEAD = 2
#: Used databases kept until they can be dropped together: at most this many, and at most about this
#: much disk. With a batch being dropped, the ones cloned ahead and the test's own, a project holds
#: at most 2 * _MAX_BATCH + _AHEAD databases at once.
_MAX_BATCH = 32
_BATCH_BYTES = 1 << 30


def _drop_alone(server_url: str, name: str) -> bool:
    """Drop ``name`` on a connection of its own; False when no connection could be made."""
    try:
        admin = connect(server_url)
    except ConnectError:
        return False
    with admin:
        _drop_quietly(admin, name)
    return True


def _drop_quietly(admin: psycopg.Connection, name: str) -> None:
    try:
        drop_database(admin, name)
    except SqlMigrateError as exc:
        log.warning("%s; drop it by hand", exc)


class _Worker:
    """Threads, each with its own maintenance connection, running submitted calls (in order with one
    thread)."""

    def __init__(self, server_url: str, name: str, threads: int = 1) -> None:
        import threading
        from concurrent.futures import ThreadPoolExecutor

        self.server_url = server_url
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix=name)
        self._local = threading.local()
        self._connections: list[psycopg.Connection] = []
        self._lock = threading.Lock()

    def submit(self, function: Callable[..., T], *args: Any) -> Future[T]:
        return self._executor.submit(self._call, function, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    def _call(self, function: Callable[..., T], *args: Any) -> T:
        admin: psycopg.Connection | None = getattr(self._local, "admin", None)
        if admin is None or admin.closed or admin.broken:
            admin = self._local.admin = connect(self.server_url)
            with self._lock:
                self._connections.append(admin)
        return function(admin, *args)
