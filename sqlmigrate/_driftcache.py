"""Remembering the last drift check that found no drift, so that boot code pays for the full
comparison only after the schema or the schema file changed.

A full drift check renders every object with the server's deparsers: about 40 ms for 150 tables in a
fresh session, several times a plain ``check``. A *fingerprint* of the catalogs costs a few
milliseconds: for every catalog whose rows can change what the schema file says, its number of rows
and the sum of their transaction ids (``xmin``). When a full check finds no drift, it stores that
fingerprint with a digest of the schema file in ``<table>_drift`` beside the history; a later check
that finds the same fingerprint and the same file knows the schema is the one that matched.

Why that is sound:

- Every committed schema change inserts, deletes or rewrites catalog rows, and a row written by a
  transaction carries its id, newer than the id of any row it replaces: a catalog's row count or its
  sum of ids changes (once the 32-bit ids wrap around, "newer" is no longer "larger", and the sums
  could only match by coincidence). A change undone exactly (a table created and dropped again)
  leaves the same rows, and the same schema. The columns PostgreSQL updates in place, without a new
  row, are statistics, except an index's validity flags, which are counted themselves.
- Names printed inside other objects' definitions are covered too: roles (grants, policies) and
  tablespaces, and the server's version (its deparsers print differently from one to another).
- The fingerprint is stored only when it is the same before and after the full comparison: no
  schema change committed while the comparison read the catalogs.
- Transaction ids belong to one database: a restored or cloned database starts with a full check.

Temporary objects of other sessions are left out, so an application's temporary tables do not make
every check a full one.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

from psycopg import sql

from ._errors import HistoryError
from ._history import History

if TYPE_CHECKING:
    import psycopg

__all__ = ["DriftCache"]

log = logging.getLogger("sqlmigrate")

# The catalogs' user rows: objects created after initdb have OIDs from 16384 on. Temporary relations
# and their parts are left out through `rel` (user relations that are not temporary) and `tmp`
# (temporary schemas), each read once.
_REL = "(SELECT oid FROM rel)"
_TMP = "(SELECT oid FROM tmp)"
_WITH = ("WITH rel AS MATERIALIZED (SELECT c.oid FROM pg_catalog.pg_class c WHERE c.oid >= 16384"
         " AND c.relpersistence <> 't'),"
         " tmp AS MATERIALIZED (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname ~ '^pg_(toast_)?temp_') ")

_COUNTED: dict[str, str] = {
    # every row: the public schema and plpgsql are older than 16384, and can be changed
    "pg_namespace": f"oid NOT IN {_TMP}",
    "pg_extension": "true",
    "pg_class": "oid >= 16384 AND relpersistence <> 't'",
    "pg_type": f"oid >= 16384 AND typnamespace NOT IN {_TMP}",
    "pg_attribute": f"attrelid >= 16384 AND attnum > 0 AND attrelid IN {_REL}",
    "pg_attrdef": f"adrelid >= 16384 AND adrelid IN {_REL}",
    "pg_constraint": f"oid >= 16384 AND connamespace NOT IN {_TMP}",
    "pg_index": f"indexrelid >= 16384 AND indrelid IN {_REL}",
    "pg_inherits": f"inhrelid >= 16384 AND inhrelid IN {_REL}",
    "pg_partitioned_table": f"partrelid >= 16384 AND partrelid IN {_REL}",
    "pg_sequence": f"seqrelid >= 16384 AND seqrelid IN {_REL}",
    "pg_trigger": f"oid >= 16384 AND tgrelid IN {_REL}",
    "pg_policy": f"oid >= 16384 AND polrelid IN {_REL}",
    "pg_rewrite": f"oid >= 16384 AND ev_class IN {_REL}",
    "pg_statistic_ext": f"oid >= 16384 AND stxrelid IN {_REL}",
    "pg_foreign_table": "ftrelid >= 16384",
    # extension membership, and sequences owned by a column (ALTER SEQUENCE ... OWNED BY writes only
    # this catalog)
    "pg_depend": f"deptype = 'e' OR (classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND deptype IN ('a', 'i')"
                 f" AND objid >= 16384 AND objid IN {_REL})",
    "pg_description": "objoid >= 16384 OR classoid IN ('pg_catalog.pg_namespace'::pg_catalog.regclass,"
                      " 'pg_catalog.pg_extension'::pg_catalog.regclass)",
    "pg_proc": "oid >= 16384",
    "pg_aggregate": "aggfnoid >= 16384",
    "pg_enum": "oid >= 16384",
    "pg_range": "rngtypid >= 16384",
    "pg_event_trigger": "oid >= 16384",
    # printed by name inside definitions: collations, operators and operator classes, text search
    # configurations and dictionaries, access methods, languages, servers
    "pg_collation": "oid >= 16384",
    "pg_operator": "oid >= 16384",
    "pg_opclass": "oid >= 16384",
    "pg_ts_config": "oid >= 16384",
    "pg_ts_dict": "oid >= 16384",
    "pg_am": "oid >= 16384",
    "pg_language": "oid >= 16384",
    "pg_foreign_server": "oid >= 16384",
    "pg_tablespace": "true",
}


def _count(catalog: str, where: str) -> str:
    extra = ""
    if catalog == "pg_index":
        # CREATE/DROP/REINDEX INDEX CONCURRENTLY flip these in place, with no new row.
        extra = " || ':' || count(*) FILTER (WHERE indisvalid) || ':' || count(*) FILTER (WHERE indisready)"
    return (f"(SELECT count(*) || ':' || coalesce(sum(xmin::text::bigint), 0){extra}"
            f" FROM pg_catalog.{catalog} WHERE {where})")


# pg_roles, not pg_authid (superusers only): no xmin, so the names themselves. The text is constant.
_FINGERPRINT_TEXT = (
    _WITH + "SELECT concat_ws(',', current_setting('server_version_num'), "
    + ", ".join(_count(c, w) for c, w in _COUNTED.items())
    + ", (SELECT count(*) || ':' || coalesce(sum(hashtext(rolname)), 0) FROM pg_catalog.pg_roles))"
)
_FINGERPRINT_QUERY = sql.SQL(_FINGERPRINT_TEXT)  # type: ignore[arg-type]


class DriftCache:
    """The last drift check that found none, kept beside the history table ``table`` (``schema``:
    where it is, else found as ``up`` finds it), on ``conn``.

    ``check(file_digest)`` first: it makes the table when it is missing and the role may, then takes
    the fingerprint. ``remember()`` after a full check that found no drift."""

    def __init__(self, conn: psycopg.Connection, table: str, schema: str | None) -> None:
        self.conn = conn
        try:
            self.history: History | None = History.locate(conn, table, schema)
        except HistoryError:
            self.history = None  # search_path names no schema: so no history either
        self.fingerprint = ""
        self._file_digest = ""
        #: the table, when it is there
        self._table: sql.Identifier | None = None

    def check(self, file_digest: str) -> bool:
        """Whether the schema is the one the last clean check against this file saw."""
        import psycopg
        from psycopg import sql

        self._file_digest = file_digest
        self._table = self._ensure_table()
        if self._table is None:
            return False
        stored = sql.SQL("(SELECT schema_file || ' ' || fingerprint FROM {} WHERE id = 1)").format(self._table)
        try:
            row = self.conn.execute(sql.SQL("SELECT ({}), {}").format(_FINGERPRINT_QUERY, stored)).fetchone()
        except psycopg.Error as exc:  # a role that may not read it
            log.debug("drift: cannot read the last clean check: %s", str(exc).strip())
            self._table = None
            return False
        assert row is not None
        self.fingerprint = _digest(row[0])
        return row[1] == f"{file_digest} {self.fingerprint}"

    def remember(self) -> None:
        """After a full check found no drift: remember it, when nothing changed while it ran and the
        role may write here. Never an error: a role that may not just gets full checks."""
        import psycopg
        from psycopg import sql

        if self._table is None:
            return
        try:
            row = self.conn.execute(_FINGERPRINT_QUERY).fetchone()
            if row is None or _digest(row[0]) != self.fingerprint:
                log.debug("drift: the schema changed while it was compared; the check is not remembered")
                return
            self.conn.execute(sql.SQL(
                "INSERT INTO {} (id, schema_file, fingerprint) VALUES (1, %s, %s) ON CONFLICT (id) DO UPDATE"
                " SET schema_file = excluded.schema_file, fingerprint = excluded.fingerprint, checked_at = now()"
            ).format(self._table), (self._file_digest, self.fingerprint))
        except psycopg.Error as exc:
            log.debug("drift: the clean check is not remembered: %s", str(exc).strip())

    def _ensure_table(self) -> sql.Identifier | None:
        """The table, made now if needed and allowed; None when it is not there. Making it changes the
        catalogs, so it comes before the fingerprint."""
        import psycopg

        if self.history is None:
            return None
        try:
            return self.history.drift_ident if self.history.ensure_drift_table(self.conn) else None
        except psycopg.Error as exc:  # e.g. a read-only transaction
            log.debug("drift: cannot keep the last clean check: %s", str(exc).strip())
            return None


def _digest(counts: object) -> str:
    return hashlib.sha256(str(counts).encode()).hexdigest()
