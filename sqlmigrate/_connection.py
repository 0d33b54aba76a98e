"""Connection strings: accepting every common spelling, connecting, and keeping passwords out of text."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError, ConnectError, SqlMigrateError

if TYPE_CHECKING:
    import psycopg

# SQLAlchemy spells a driver into the scheme: postgresql+psycopg2://, postgres+asyncpg://, ...
_SQLALCHEMY_SCHEME = re.compile(r"^(postgres(?:ql)?)\+[A-Za-z0-9_]+://", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^:/?#@\s]*:)([^@/?#\s]*)(@)")
_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_MASK = "***"
# libpq checks some values only when it connects: ``invalid sslmode value: "x"``, ``invalid integer
# value "x" for connection option "keepalives"``, ``invalid port number: "0"``.
_BAD_OPTION = re.compile(r'invalid (\w+ value\b|integer value .* for connection option|port number)')


def normalize(database: str) -> str:
    """Turn any accepted spelling of a PostgreSQL connection string into one libpq understands."""
    database = database.strip()
    if not database:
        raise ConfigurationError("the database connection string is empty")
    url = _SQLALCHEMY_SCHEME.sub(lambda m: m.group(1).lower() + "://", database, count=1)
    _check_syntax(url)
    return url


SPELLINGS = """\
accepted spellings of a connection string:
  postgresql://user@host:5432/dbname?sslmode=require   a libpq URL; a password goes after the user
                                                        (user:PASSWORD@host), percent-encoded if it holds
                                                        / @ : ? # % or & (%40 for @)
  "host=db.example.com port=5432 dbname=app user=app"  libpq key=value pairs
  postgresql+psycopg2://user@host/dbname                SQLAlchemy's spelling (the +driver is ignored)
libpq's PGHOST, PGPORT, PGUSER, PGPASSWORD, ... and ~/.pgpass fill in what the string leaves out."""


def _check_syntax(url: str) -> None:
    """Refuse a string libpq cannot parse, or whose port is no port, before anything connects.

    psycopg would otherwise report these as failures to connect (``failed to resolve host``), and
    libpq's own messages quote fragments of the string, which may be pieces of the password.
    """
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    reason: str | None
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        reason = _scrub(str(exc))
    else:
        reason = None
    if reason is not None:
        # Raised outside the except block: libpq's error, which quotes the whole string, must not ride
        # along as __context__.
        raise ConfigurationError(f"invalid database connection string: {reason}\n{SPELLINGS}")
    port = params.get("port")
    if port is not None and not all(p.strip().isdigit() and 0 < int(p) < 65536 for p in str(port).split(",")):
        raise ConfigurationError(
            "invalid database connection string: the port is not a number from 1 to 65535 (in a URL, a "
            f"password holding '/', '@', ':' or '?' must be percent-encoded)\n{SPELLINGS}"
        )


def _scrub(reason: str) -> str:
    """libpq's message about a bad connection string with quoted values left out: ``"p%zz"`` or
    ``after "b"`` may be pieces of the password. Option names and single punctuation stay."""
    from psycopg import pq

    keywords = {o.keyword.decode() for o in pq.Conninfo.get_defaults()}
    reason = re.sub(r'\s*in URI: ".*', "", reason.strip(), flags=re.DOTALL)

    def quoted(m: re.Match[str]) -> str:
        text = m.group(1)
        return m.group(0) if text in keywords or (len(text) == 1 and not text.isalnum()) else '"…"'

    return re.sub(r'"([^"]*)"', quoted, reason)


def conninfo_of(database: object) -> str:
    """A libpq connection string from a string, a SQLAlchemy ``Engine`` (or ``AsyncEngine``) or a
    SQLAlchemy ``URL``. SQLAlchemy is never imported: an application that passes a string does not
    pay for it, and one that passes an engine has already imported it."""
    if isinstance(database, str):
        return normalize(database)
    kind = f"{type(database).__module__}.{type(database).__qualname__}"
    if kind.startswith("sqlalchemy."):
        url = getattr(database, "url", database)  # an Engine has its URL; a URL is one
        render = getattr(url, "render_as_string", None)
        if callable(render):
            driver = str(getattr(url, "drivername", ""))
            if not driver.lower().startswith("postgres"):
                raise ConfigurationError(
                    f"the SQLAlchemy {type(database).__name__} is for {driver!r}; sqlmigrate migrates "
                    "PostgreSQL only (postgresql://, postgresql+psycopg2://, ...)"
                )
            return normalize(_from_url_parts(url))
    raise ConfigurationError(
        f"sqlmigrate needs a database connection string, a SQLAlchemy Engine or URL, or an open "
        f"psycopg.Connection; got a {kind}"
    )


def _from_url_parts(url: Any) -> str:
    """libpq key=value pairs from a SQLAlchemy URL's parts: unlike its rendering, right for a Unix
    socket directory given as the host, and for any character in the password."""
    from psycopg.conninfo import make_conninfo

    params: dict[str, Any] = {"host": url.host, "port": url.port, "user": url.username,
                              "password": url.password, "dbname": url.database}
    for key, value in dict(url.query).items():  # ?host=/var/run/postgresql&sslmode=require
        params[key] = value[-1] if isinstance(value, tuple) else value
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


def mask(text: str, database: str | None = None) -> str:
    """``text`` with every password removed: URL and key=value forms, and the literal password of
    ``database`` wherever else it appears (an error message may quote it)."""
    if database:
        password = _password_of(database)
        if password:
            text = text.replace(password, _MASK)
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + _MASK + m.group(3) if m.group(2) else m.group(0), text)
    return _KV_PASSWORD.sub(lambda m: m.group(1) + _MASK, text)


@functools.lru_cache(maxsize=8)  # the CLI masks every output line with the same string
def _password_of(database: str) -> str | None:
    from psycopg.conninfo import conninfo_to_dict

    try:
        value = conninfo_to_dict(normalize(database)).get("password")
    except Exception:
        # Unparseable strings still get the pattern-based masking.
        return None
    return str(value) if value else None


def connect(database: str, *, connect_timeout: float = 10) -> psycopg.Connection:
    """An autocommit connection: sqlmigrate sends its own BEGIN/COMMIT, and a waiter for the migration
    lock must never sit inside an open transaction. No session settings (not even
    application_name): through a transaction pooler they would stay on a server session that other
    clients get; the session layer sets them per transaction."""
    import psycopg

    url = normalize(database)
    failure: SqlMigrateError
    try:
        conn = psycopg.connect(
            url, autocommit=True, connect_timeout=max(1, int(connect_timeout)),
            # A transaction pooler may hand any transaction to another server session, where a
            # statement psycopg prepared does not exist (or one of the same name does).
            prepare_threshold=None,
        )
    except psycopg.Error as exc:
        reason = str(exc).strip()
        if _BAD_OPTION.search(reason):
            failure = ConfigurationError(f"invalid database connection string: {_scrub(mask(reason, database))}")
        else:
            failure = ConnectError(f"could not connect to the database: {mask(reason, database)}")
    except Exception as exc:  # psycopg raises ProgrammingError and others for malformed strings
        failure = ConfigurationError(f"invalid database connection string: {mask(str(exc), database)}")
    else:
        return conn
    # Raised outside the except blocks: the original error, which may quote the whole connection
    # string with its password, must not ride along as __context__ (``from None`` only hides it).
    raise failure


def describe(database: str) -> str:
    """A short, password-free description of where a connection string points, for output."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(normalize(database))
    except Exception:
        return mask(database)
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    db = params.get("dbname") or params.get("user") or ""
    return f"{db} on {host}:{port}" if not str(host).startswith("/") else f"{db} on socket {host}"
