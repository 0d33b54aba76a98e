"""The schema file (``sqlmigrate dump``) and the drift check (``sqlmigrate check --drift``).

The file is rendered from the same catalog snapshot ``verify`` compares (:mod:`sqlmigrate._snapshot`),
so it covers what ``verify`` covers and needs no ``pg_dump``. One block per object, each headed by a
``-- <object>`` line: top-level objects sorted by kind then name, each table followed by what hangs
off it (constraints, indexes, triggers, policies...). A block is DDL where the server's deparsers give
it (``pg_get_indexdef``, ``pg_get_functiondef``...); properties no statement here expresses are
``-- <property>: <value>`` lines. Columns are listed by name, as ``verify`` compares them: the same
schema built in another order gives the same bytes. Owners are left out (they differ between a
developer's database and production); privileges are kept.

The drift check renders the live database the same way and compares block by block, so an object is
reported missing (in the file only), extra (in the database only) or different, with the lines that
differ.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._config import DEFAULT_TABLE
from ._errors import ConfigurationError
from ._files import SCHEMA_FILE_HEADER
from ._snapshot import Snapshot, show_change

if TYPE_CHECKING:
    import psycopg

__all__ = ["SCHEMA_FILE", "Drift", "drift", "dump", "render", "parse"]

log = logging.getLogger("sqlmigrate")

#: The schema file's name in the migration directory (discovery skips it).
SCHEMA_FILE = "schema.sql"

_HEADER = (
    SCHEMA_FILE_HEADER + "\n"
    "-- Generated: do not edit. `sqlmigrate check --drift` compares a database with this file.\n"
)

# Top-level kinds in file order; dependents follow their table in this order too.
# A file of only some schemas says which, so the drift check compares only those.
_SCHEMAS_LINE = "-- Schemas: "

_KINDS = ("extension", "schema", "type", "sequence", "table", "foreign table", "view", "materialized view",
          "function", "procedure", "aggregate", "event trigger",
          "column", "constraint", "index", "trigger", "policy", "rule", "statistics")
_KIND_RE = re.compile(r"^(" + "|".join(sorted(map(re.escape, _KINDS), key=len, reverse=True)) + r") (.+)$")
_BLOCK_HEAD = re.compile(r"^-- (?P<key>(?:" + "|".join(sorted(map(re.escape, _KINDS), key=len, reverse=True))
                         + r") .+?)(?: \(of (?P<parent>.+)\))?$")


@dataclass(frozen=True)
class Drift:
    """One way the live database differs from the schema file.

    ``change`` is ``"missing"`` (in the file, not in the database), ``"extra"`` (in the database, not in
    the file) or ``"different"``; ``expected`` / ``actual`` are the object's block in the file and as
    the database has it now.
    """

    object: str
    change: str
    expected: str | None
    actual: str | None

    def describe(self) -> str:
        if self.change == "missing":
            return f"{self.object} is missing (in the schema file, not in the database)"
        if self.change == "extra":
            return f"{self.object} is extra (in the database, not in the schema file)"
        return f"{self.object} differs: {show_change(self.expected, self.actual)}"

    def as_dict(self) -> dict[str, Any]:
        return {"object": self.object, "change": self.change, "expected": self.expected,
                "actual": self.actual, "description": self.describe()}


# -- rendering ------------------------------------------------------------------------------------


def render(snapshot: Snapshot, schemas: Collection[str] | None = None) -> str:
    """The schema file's text for ``snapshot`` (of only ``schemas``, recorded in the header): the same
    snapshot gives the same bytes."""
    children: dict[str, list[str]] = {}
    for key, parent in snapshot.parents.items():
        if parent in snapshot.objects:
            children.setdefault(parent, []).append(key)
    top = [k for k in snapshot.objects if snapshot.parents.get(k) not in snapshot.objects]
    blocks = [_HEADER + ("" if schemas is None else f"{_SCHEMAS_LINE}{', '.join(sorted(schemas))}\n")]
    for key in sorted(top, key=_order):
        kids = sorted(children.get(key, ()), key=_order)
        columns = [k for k in kids if k.startswith("column ")]
        blocks.append(_block(key, None, snapshot.objects[key],
                             [(c, snapshot.objects[c]) for c in columns]))
        for kid in kids:
            if kid not in columns:
                blocks.append(_block(kid, key, snapshot.objects[kid], []))
    return "\n".join(blocks)


def _order(key: str) -> tuple[int, str]:
    m = _KIND_RE.match(key)
    return (_KINDS.index(m.group(1)) if m else len(_KINDS), key)


def _split(key: str) -> tuple[str, str]:
    m = _KIND_RE.match(key)
    if m is None:
        return "", key
    return m.group(1), m.group(2)


def _block(key: str, parent: str | None, props: Mapping[str, str],
           columns: list[tuple[str, Mapping[str, str]]]) -> str:
    kind, name = _split(key)
    rest = {p: v for p, v in props.items() if p != "owner"}
    lines = [f"-- {key}" + (f" (of {parent})" if parent else "")]
    renderer = _RENDERERS.get(kind)
    body = renderer(name, rest, _split(parent)[1] if parent else "") if renderer is not None else []
    defs, after = _columns(name, kind, columns)
    if defs:  # inside CREATE TABLE's parentheses
        body[1:1] = [defs]
    lines += body + after
    comment = rest.pop("comment", None)
    if comment is not None:
        lines.append(f"COMMENT ON {_comment_target(kind, name, parent)} IS {_literal(comment)};")
    lines += _leftovers("", rest)
    return "\n".join(lines) + "\n"


def _leftovers(prefix: str, props: Mapping[str, str]) -> list[str]:
    return [f"-- {prefix}{p}: " + v.replace("\n", "\n--   ") for p, v in sorted(props.items())]


def _literal(text: str) -> str:
    if "\n" in text or "\\" in text or "\r" in text:
        escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
        return f"E'{escaped}'"
    return "'" + text.replace("'", "''") + "'"


def _statement(text: str) -> str:
    text = text.rstrip()
    return text if text.endswith(";") else text + ";"


def _pop(props: dict[str, str], *names: str) -> list[str | None]:
    return [props.pop(n, None) for n in names]


def _table(name: str, props: dict[str, str], _parent: str) -> list[str]:
    unlogged, partition_of, parents, partition_key, am, options, tablespace = _pop(
        props, "unlogged", "partition of", "parent tables", "partition key", "access method", "options",
        "tablespace")
    head = f"CREATE {'UNLOGGED ' if unlogged else ''}TABLE {name}"
    tail = []
    if partition_of:
        base, _, bound = partition_of.partition(" ")
        head += f" PARTITION OF {base}"
        tail.append(bound)
    if parents:
        tail.append(f"INHERITS ({parents})")
    if partition_key:
        tail.append(f"PARTITION BY {partition_key}")
    if am and am != "heap":
        tail.append(f"USING {am}")
    if options:
        tail.append(f"WITH ({options})")
    if tablespace:
        tail.append(f"TABLESPACE {tablespace}")
    lines = [head + " (", ")" + "".join(" " + t for t in tail) + ";"]
    rls = props.pop("row level security", None)
    if rls:
        if "enabled" in rls:
            lines.append(f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY;")
        if "forced" in rls:
            lines.append(f"ALTER TABLE {name} FORCE ROW LEVEL SECURITY;")
    identity = props.pop("replica identity", None)
    if identity:
        clause = identity.upper() if not identity.startswith("index ") else "USING INDEX " + identity[6:]
        lines.append(f"ALTER TABLE {name} REPLICA IDENTITY {clause};")
    return lines


def _columns(table: str, kind: str, columns: list[tuple[str, Mapping[str, str]]]) -> tuple[str, list[str]]:
    """A table's column definitions, and the lines after the statement (comments, other properties;
    all of a view's)."""
    defs: list[str] = []
    after: list[str] = []
    prefix = f"column {table}."
    for key, props in columns:
        col = key[len(prefix):] if key.startswith(prefix) else key
        rest = dict(props)
        comment = rest.pop("comment", None)
        if comment is not None:
            after.append(f"COMMENT ON COLUMN {table}.{col} IS {_literal(comment)};")
        if kind not in ("table", "foreign table"):
            after += _leftovers(f"column {col} ", rest)
            continue
        ctype, collation, generated, identity, default, not_null = _pop(
            rest, "type", "collation", "generated", "identity", "default", "not null")
        text = f"    {col} {ctype}"
        if collation:
            text += f" COLLATE {collation}"
        if generated:
            # "always as (<expression>) stored": the expression keeps its case.
            head, _, expression = generated.partition(" as ")
            expression, _, storage = expression.rpartition(") ")
            text += f" GENERATED {head.upper()} AS {expression}) {storage.upper()}"
        if identity:
            text += f" GENERATED {identity.upper()} AS IDENTITY"
        if default is not None:
            text += f" DEFAULT {default}"
        if not_null == "true":
            text += " NOT NULL"
        defs.append(text)
        after += _leftovers(f"column {col} ", rest)
    return ",\n".join(defs), after


def _view(materialized: bool) -> Callable[[str, dict[str, str], str], list[str]]:
    def render_view(name: str, props: dict[str, str], _parent: str) -> list[str]:
        definition = props.pop("definition", "")
        kind = "MATERIALIZED VIEW" if materialized else "VIEW"
        return [f"CREATE {kind} {name} AS", _statement(definition)]
    return render_view


def _definition(name: str, props: dict[str, str], _parent: str) -> list[str]:
    definition = props.pop("definition", None)
    return [_statement(definition)] if definition else []


def _constraint(name: str, props: dict[str, str], parent: str) -> list[str]:
    definition = props.pop("definition", "")
    return [f"ALTER TABLE {parent} ADD CONSTRAINT {_last(name, parent)} {definition};"]


def _last(name: str, parent: str) -> str:
    return name[len(parent) + 1:] if name.startswith(parent + ".") else name


def _policy(name: str, props: dict[str, str], parent: str) -> list[str]:
    command, permissive, roles, using, check = _pop(props, "command", "permissive", "roles", "using",
                                                    "with check")
    text = (f"CREATE POLICY {_last(name, parent)} ON {parent} AS "
            f"{'PERMISSIVE' if permissive == 'true' else 'RESTRICTIVE'} FOR {(command or 'all').upper()}"
            f" TO {roles or 'public'}")
    if using:
        text += f" USING ({using})"
    if check:
        text += f" WITH CHECK ({check})"
    return [text + ";"]


def _schema(name: str, props: dict[str, str], _parent: str) -> list[str]:
    return [f"CREATE SCHEMA {name};"]


def _extension(name: str, props: dict[str, str], _parent: str) -> list[str]:
    schema, version = _pop(props, "schema", "version")
    return [f"CREATE EXTENSION {name} WITH SCHEMA {schema} VERSION {_literal(version or '')};"]


def _sequence(name: str, props: dict[str, str], _parent: str) -> list[str]:
    stype, start, inc, lo, hi, cache, cycle, owned, unlogged = _pop(
        props, "type", "start", "increment", "minimum", "maximum", "cache", "cycle", "owned by", "unlogged")
    lines = [f"CREATE {'UNLOGGED ' if unlogged else ''}SEQUENCE {name} AS {stype} START WITH {start} "
             f"INCREMENT BY {inc} MINVALUE {lo} MAXVALUE {hi} CACHE {cache}{' CYCLE' if cycle == 'true' else ''};"]
    if owned:
        lines.append(f"ALTER SEQUENCE {name} OWNED BY {owned};")
    return lines


def _type(name: str, props: dict[str, str], _parent: str) -> list[str]:
    kind = props.get("kind")
    if kind == "enum":
        del props["kind"]
        values = props.pop("enum values", "")
        labels = ", ".join(_literal(v) for v in values.split(", ")) if values else ""
        return [f"CREATE TYPE {name} AS ENUM ({labels});"]
    if kind == "composite":
        del props["kind"]
        return [f"CREATE TYPE {name} AS ({props.pop('attributes', '')});"]
    if kind == "domain":
        del props["kind"]
        base, collation, default, not_null = _pop(props, "base type", "collation", "default", "not null")
        text = f"CREATE DOMAIN {name} AS {base}"
        if collation:
            text += f" COLLATE {collation}"
        if default is not None:
            text += f" DEFAULT {default}"
        if not_null:
            text += " NOT NULL"
        for prop in sorted(p for p in props if p.startswith("constraint ")):
            text += f"\n    CONSTRAINT {prop[len('constraint '):]} {props.pop(prop)}"
        return [text + ";"]
    return []


_RENDERERS: dict[str, Callable[[str, dict[str, str], str], list[str]]] = {
    "table": _table, "foreign table": _table, "view": _view(False), "materialized view": _view(True),
    "constraint": _constraint, "index": _definition, "trigger": _definition, "rule": _definition,
    "function": _definition, "procedure": _definition, "policy": _policy, "schema": _schema,
    "extension": _extension, "sequence": _sequence, "type": _type,
}


def _comment_target(kind: str, name: str, parent: str | None) -> str:
    if kind in ("constraint", "trigger", "policy", "rule") and parent:
        table = _split(parent)[1]
        return f"{kind.upper()} {_last(name, table)} ON {table}"
    return f"{kind.upper()} {name}"


# -- parsing and comparing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Block:
    parent: str | None
    text: str


def parse(text: str) -> dict[str, _Block]:
    """The blocks of a schema file, by object."""
    blocks: dict[str, _Block] = {}
    current: tuple[str, str | None] | None = None
    lines: list[str] = []
    previous_blank = True

    def close() -> None:
        if current is not None:
            blocks[current[0]] = _Block(current[1], "\n".join(lines).rstrip("\n") + "\n")

    for line in text.splitlines():
        m = _BLOCK_HEAD.match(line) if previous_blank else None
        if m is not None:
            close()
            current, lines = (m["key"], m["parent"]), [line]
        elif current is not None:
            lines.append(line)
        previous_blank = line == ""
    close()
    return blocks


def compare(expected: Mapping[str, _Block], actual: Mapping[str, _Block]) -> list[Drift]:
    out: list[Drift] = []
    for key in sorted(set(expected) | set(actual), key=_order):
        e, a = expected.get(key), actual.get(key)
        if a is None and e is not None:
            if e.parent is not None and e.parent in expected and e.parent not in actual:
                continue  # reported with its table
            out.append(Drift(key, "missing", _body(e), None))
        elif e is None and a is not None:
            if a.parent is not None and a.parent in actual and a.parent not in expected:
                continue
            out.append(Drift(key, "extra", None, _body(a)))
        elif e is not None and a is not None and e.text != a.text:
            out.append(Drift(key, "different", _body(e), _body(a)))
    return out


def _body(block: _Block) -> str:
    """A block without its header line."""
    return block.text.split("\n", 1)[1].rstrip("\n") if "\n" in block.text else ""


# -- the entry points ---------------------------------------------------------------------------------


def snapshot(database: Any, *, table: str = DEFAULT_TABLE, schemas: Collection[str] | None = None) -> Snapshot:
    """The schema of ``database`` (a connection string, a SQLAlchemy engine or URL, or an open psycopg
    connection), read from the catalogs: what ``dump`` writes and ``verify`` compares. Compare two
    with :func:`diff`; they are equal for two builds of the same schema, whatever the order objects
    were created in. Left out: sqlmigrate's own tables (history, log, lock, drift), and objects that
    belong to an extension; ``schemas``: only these schemas."""
    from ._session import connection

    with connection(database) as conn:
        return snapshot_of(conn, table=table, schemas=_schemas(schemas))


def snapshot_of(conn: psycopg.Connection, *, table: str = DEFAULT_TABLE,
                schemas: Collection[str] | None = None) -> Snapshot:
    """:func:`snapshot` on an open connection."""
    from ._history import own_tables
    from ._snapshot import take

    # Never a previous snapshot, so no stamps: one statement reads everything.
    return take(conn, exclude_tables=own_tables(table), schemas=schemas, stamped=False)


def file_schemas(text: str) -> list[str] | None:
    """The schemas a schema file's header limits it to, or None (all)."""
    for line in text.splitlines()[:4]:
        if line.startswith(_SCHEMAS_LINE):
            return [s for s in line[len(_SCHEMAS_LINE):].split(", ") if s]
    return None


@dataclass(frozen=True)
class DumpResult:
    """What ``dump`` wrote: where (None: not written), how many objects, whether the file changed."""

    path: Path | None
    objects: int
    changed: bool
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": None if self.path is None else str(self.path), "objects": self.objects,
                "changed": self.changed, "text": self.text}


def dump(database: Any, output: str | Path | None, *, table: str = DEFAULT_TABLE,
         schemas: Collection[str] | None = None) -> DumpResult:
    """Write the schema file of ``database`` (a connection string or an open psycopg connection) to
    ``output`` (``None``: only return the text). The file is rewritten only when its text changes.
    ``schemas``: only these schemas (the file says so, and :func:`drift` compares only them)."""
    from ._session import connection

    schemas = _schemas(schemas)
    with connection(database) as conn:
        snapshot = snapshot_of(conn, table=table, schemas=schemas)
    text = render(snapshot, schemas)
    if output is None:
        return DumpResult(None, len(snapshot.objects), False, text)
    path = Path(output)
    old = path.read_text(encoding="utf-8") if path.is_file() else None
    if old != text:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text, encoding="utf-8", newline="\n")
            tmp.replace(path)
        except OSError as exc:
            raise ConfigurationError(f"{path}: cannot write the schema file: {exc.strerror or exc}") from None
    return DumpResult(path, len(snapshot.objects), old != text, text)


def _schemas(schemas: Collection[str] | None) -> list[str] | None:
    if schemas is None:
        return None
    if isinstance(schemas, str) or not all(isinstance(s, str) and s for s in schemas):
        raise ConfigurationError(f"invalid drift schemas {schemas!r}: a list of schema names, e.g. "
                                 '["public", "app"]')
    return sorted(set(schemas))


def drift(database: Any, schema_file: str | Path, *, table: str = DEFAULT_TABLE, schema: str | None = None,
          schemas: Collection[str] | None = None) -> list[Drift]:
    """Every object missing, extra or different in ``database`` compared with ``schema_file``, in the
    schemas the file was dumped from (``schemas``: in these instead). ``table`` and ``schema``: the
    history table's, beside which the last clean check is remembered (see :mod:`._driftcache`)."""
    path = Path(schema_file)
    try:
        expected = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(
            f"{path}: no schema file to compare the database with; write it with `sqlmigrate dump` "
            "(against a database the migrations built) and commit it"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot read the schema file: {exc}") from None
    from ._driftcache import DriftCache
    from ._session import connection

    schemas = _schemas(schemas) if schemas is not None else file_schemas(expected)
    with connection(database) as conn:
        cache = DriftCache(conn, table, schema)
        if cache.check(_digest(expected, table, schemas)):
            log.debug("drift: none; the schema is the one the last clean check against %s saw", path)
            return []
        actual = render(snapshot_of(conn, table=table, schemas=schemas), schemas)
        # The usual answer: the same bytes, nothing to parse.
        found = [] if actual == expected else compare(parse(expected), parse(actual))
        if not found:
            cache.remember()
    log.debug("drift: %d difference(s) from %s", len(found), path)
    return found


def _digest(text: str, table: str, schemas: Collection[str] | None) -> str:
    """What the comparison depends on besides the database: the file, the history table's name,
    the schemas compared, and sqlmigrate's version (how it renders)."""
    import hashlib

    from . import __version__

    head = f"sqlmigrate {__version__}\n{table}\n{','.join(schemas) if schemas is not None else '*'}\n"
    return hashlib.sha256((head + text).encode()).hexdigest()
