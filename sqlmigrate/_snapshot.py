"""A comparable picture of a database's schema, read from the system catalogs (no ``pg_dump``).

``verify`` takes a snapshot before a migration, applies it, runs its rollback, takes another snapshot
and reports :func:`diff` of the two. So a snapshot must compare equal for two builds of the same
schema: it records objects by name (never OID), renders every definition with the server's own
canonical deparsers (``format_type``, ``pg_get_expr``, ``pg_get_constraintdef``, ``pg_get_indexdef``,
``pg_get_viewdef``, ``pg_get_functiondef``, ``pg_get_triggerdef``...), and leaves out what legitimately
differs between builds: OIDs, sequence positions, creation order and column positions of tables.

One catalog query per object kind, all on the caller's connection, inside one transaction (a
savepoint if the caller already has one open) with the settings that change how the deparsers
print (``search_path``, ``DateStyle``, ``TimeZone``...) pinned, so the caller's session settings, or a
migration's ``SET search_path``, cannot make two snapshots of the same schema look different.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

__all__ = ["Difference", "Snapshot", "diff", "pin_settings", "show_change", "take"]

log = logging.getLogger("sqlmigrate")


@dataclass(frozen=True)
class Snapshot:
    """The schema of one database at one moment.

    ``objects`` maps a stable identity (``"table public.wps"``, ``"column public.wps.modules_data"``,
    ``"index public.wps_modules_data_idx"``, ``"function public.f(integer)"``...) to its properties
    (``{"type": "jsonb", "default": "'{}'::jsonb", "not null": "true"}``); a property that does not
    apply or has its default value is absent. Comments, owners and privileges are properties of
    the object they belong to.

    ``parents`` maps a dependent object (a column, constraint, index, trigger, policy, rule,
    statistics object or owned sequence) to the table or view it belongs to, so that :func:`diff`
    reports a dropped table once instead of once per column.
    """

    objects: Mapping[str, Mapping[str, str]]
    parents: Mapping[str, str] = field(default_factory=dict)
    #: for :func:`take`'s ``previous``: the group (a relation with all that hangs off it, a
    #: function, a type...) of each object, and each group's names and stamp of its catalog rows
    groups: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    stamps: Mapping[str, tuple[str, str]] = field(default_factory=dict, compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"objects": {k: dict(v) for k, v in sorted(self.objects.items())},
                "parents": dict(sorted(self.parents.items()))}


@dataclass(frozen=True)
class Difference:
    """One way in which two snapshots differ.

    ``change`` is ``"missing"`` (in *before* only), ``"extra"`` (in *after* only) or
    ``"<property> differs"`` / ``"<properties> differ"``. For a missing or extra object, ``before`` /
    ``after`` hold its definition (or column type) when it has one.
    """

    object: str
    change: str
    before: str | None
    after: str | None
    #: no reversibility problem: the two differ only in a date/time constant that PostgreSQL folded
    #: into a view definition when the view was created (``'now'::timestamp``, ``'today'::date``)
    lesser: bool = False

    def describe(self) -> str:
        """One readable line, e.g. ``column public.wps.modules_data: default differs ('{}'::jsonb -> none)``.

        The wording suits ``verify``, where *after* is the schema after a rollback: an object only in
        *after* "still exists".
        """
        if self.change == "missing":
            return f"{self.object} is missing"
        if self.change == "extra":
            return f"{self.object} still exists"
        if self.lesser:
            return (f"{self.object}: {self.change} only in a date/time constant (PostgreSQL folds 'now' or "
                    f"'today' into the view each time it is created: {show_change(self.before, self.after)})")
        # An absent privileges property means the owner-only default, not "no privileges".
        none = "default" if self.change.startswith("privileges ") else "none"
        return f"{self.object}: {self.change} ({show_change(self.before, self.after, none)})"

    def as_dict(self) -> dict[str, Any]:
        return {"object": self.object, "change": self.change, "before": self.before, "after": self.after,
                "lesser": self.lesser, "description": self.describe()}


def _show(value: str | None, none: str = "none") -> str:
    if value is None:
        return none
    if value == "":
        return "(empty)"
    return value


def show_change(before: str | None, after: str | None, none: str = "none") -> str:
    # Function bodies and view definitions run to many lines: show only the lines that differ.
    if before is not None and after is not None and ("\n" in before or "\n" in after):
        a, b = before.splitlines(), after.splitlines()
        hunks = [op for op in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
                 if op[0] != "equal"]
        parts = []
        for _tag, i1, i2, j1, j2 in hunks[:3]:
            old = " / ".join(line.strip() for line in a[i1:i2]) or "none"
            new = " / ".join(line.strip() for line in b[j1:j2]) or "none"
            parts.append(f"line {i1 + 1}: {old} -> {new}")
        if len(hunks) > 3:
            parts.append(f"and {len(hunks) - 3} more")
        if parts:
            return "; ".join(parts)
    return f"{_show(before, none)} -> {_show(after, none)}"


# Properties whose names are plural, for "enum values differ" rather than "enum values differs".
_PLURAL = frozenset({"enum values", "attributes", "privileges", "options", "foreign options",
                     "parent tables", "roles", "tags"})


def _summary(props: Mapping[str, str]) -> str | None:
    return props.get("definition", props.get("type"))


def diff(before: Snapshot, after: Snapshot) -> list[Difference]:
    """Every difference between two snapshots, sorted by object then change.

    An object missing (or extra) together with the table it belongs to is not reported separately:
    a dropped table is one line, not one per column, index and constraint.
    """
    out: list[Difference] = []
    b_objs, a_objs = before.objects, after.objects
    for key in sorted(set(b_objs) | set(a_objs)):
        b, a = b_objs.get(key), a_objs.get(key)
        if a is None:
            assert b is not None
            parent = before.parents.get(key)
            if parent is not None and parent in b_objs and parent not in a_objs:
                continue
            out.append(Difference(key, "missing", _summary(b), None))
        elif b is None:
            parent = after.parents.get(key)
            if parent is not None and parent in a_objs and parent not in b_objs:
                continue
            out.append(Difference(key, "extra", None, _summary(a)))
        elif a is not b:
            for prop in sorted(set(b) | set(a)):
                if b.get(prop) != a.get(prop):
                    verb = "differ" if prop in _PLURAL else "differs"
                    lesser = prop == "definition" and key.startswith(_VIEWS) and _folded(b[prop]) == _folded(a[prop])
                    out.append(Difference(key, f"{prop} {verb}", b.get(prop), a.get(prop), lesser))
    return out


_VIEWS = ("view ", "materialized view ")

# A date/time literal as pg_get_viewdef prints it (DateStyle ISO, TimeZone UTC while a snapshot is
# taken): '2026-11-30 03:45:54.123456'::timestamp without time zone, '2026-11-30'::date...
_DATETIME_LITERAL = re.compile(
    r"'\d{4,}-\d\d-\d\d(?: \d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d(?::\d\d){0,2})?)?(?: BC)?'"
    r"::(timestamp|date|time)")


def _folded(definition: str | None) -> str | None:
    """A view definition with its date/time constants blanked out."""
    return None if definition is None else _DATETIME_LITERAL.sub(r"'...'::\1", definition)


# --- catalog queries -----------------------------------------------------------------------------
#
# Every query returns rows of (identity, parent identity or NULL, properties as a JSON object of
# strings). jsonb_strip_nulls drops properties that do not apply. The text below is constant: no
# user input is ever formatted into it (excluded table names travel as a parameter).

# %(schemas)s: the schemas to read (all user schemas if NULL), for a schema file limited to some.
_USER_SCHEMA = ("({n}.nspname !~ '^pg_' AND {n}.nspname <> 'information_schema'"
                " AND (%(schemas)s::text[] IS NULL OR {n}.nspname = ANY(%(schemas)s::text[])))")


def _user_schema(alias: str) -> str:
    return _USER_SCHEMA.format(n=alias)


def _not_extension_member(catalog: str, oid: str) -> str:
    return (f"NOT EXISTS (SELECT 1 FROM pg_depend xd WHERE xd.classid = '{catalog}'::regclass"
            f" AND xd.objid = {oid} AND xd.deptype = 'e')")


def _sorted_list(array: str) -> str:
    """A text[] (reloptions, ftoptions...) as 'a=1, b=2' in sorted order, NULL when empty."""
    # Most are NULL: no sub-query for those.
    return (f"CASE WHEN {array} IS NOT NULL THEN"
            f" nullif(array_to_string(ARRAY(SELECT o FROM unnest({array}) o ORDER BY 1), ', '), '') END")


def _acl(acl: str, kind: str, owner: str) -> str:
    """Privileges as sorted aclitems, NULL when they equal the default.

    A GRANT followed by its REVOKE leaves an explicit ACL equal to the default where there was
    NULL before: the same privileges, so the same snapshot.
    """
    def items(expr: str) -> str:
        return f"array_to_string(ARRAY(SELECT x::text FROM unnest({expr}) x ORDER BY 1), ' ')"

    default = f"acldefault('{kind}', {owner})"
    # NULL is the default: no need to spell both out to find them equal (most rows have NULL).
    return f"CASE WHEN {acl} IS NOT NULL THEN nullif({items(acl)}, {items(default)}) END"


def _qname(n: str, name: str) -> str:
    return f"quote_ident({n}.nspname) || '.' || quote_ident({name})"


def _enabled(column: str) -> str:
    """A trigger's, rule's or event trigger's firing mode, NULL for the default ("origin")."""
    return f"CASE {column} WHEN 'D' THEN 'disabled' WHEN 'R' THEN 'replica' WHEN 'A' THEN 'always' END"


# User tables, views, materialized views and foreign tables; everything that hangs off one joins this.
_REL_CTE = f"""
WITH rel AS (
  SELECT c.oid, c.relkind, c.relowner,
         {_qname('n', 'c.relname')} AS qname,
         CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'f' THEN 'foreign table'
                        WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' END
           || ' ' || {_qname('n', 'c.relname')} AS key
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm')
    AND {_user_schema('n')}
    AND {_not_extension_member('pg_class', 'c.oid')}
    AND NOT (c.relkind IN ('r', 'p') AND c.relname = ANY(%(exclude)s::text[]))
    AND (%(only)s::text[] IS NULL OR 'r' || c.oid = ANY(%(only)s::text[]))
)
"""

_SEQUENCE_TEXT = ("format_type(s.seqtypid, NULL) || ' start ' || s.seqstart || ' increment ' || s.seqincrement"
                  " || ' minimum ' || s.seqmin || ' maximum ' || s.seqmax || ' cache ' || s.seqcache"
                  " || CASE WHEN s.seqcycle THEN ' cycle' ELSE ' no cycle' END")

_QUERIES: dict[str, str] = {
    "schemas": f"""
SELECT 'schema ' || quote_ident(n.nspname), NULL, jsonb_strip_nulls(jsonb_build_object(
  'owner', pg_get_userbyid(n.nspowner),
  'privileges', {_acl('n.nspacl', 'n', 'n.nspowner')},
  'comment', obj_description(n.oid, 'pg_namespace')))::text
FROM pg_namespace n
WHERE {_user_schema('n')} AND {_not_extension_member('pg_namespace', 'n.oid')}
""",
    "extensions": """
SELECT 'extension ' || quote_ident(x.extname), NULL, jsonb_strip_nulls(jsonb_build_object(
  'version', x.extversion,
  'schema', quote_ident(n.nspname),
  'comment', obj_description(x.oid, 'pg_extension')))::text
FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace
WHERE %(schemas)s::text[] IS NULL OR n.nspname = ANY(%(schemas)s::text[]) OR n.nspname = 'pg_catalog'
""",
    "relations": """
SELECT r.key, NULL, jsonb_strip_nulls(jsonb_build_object(
  'definition', CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END,
  'partition key', CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
  'partition of', CASE WHEN c.relispartition THEN
      (SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = c.oid)
      || ' ' || pg_get_expr(c.relpartbound, c.oid) END,
  'parent tables', CASE WHEN NOT c.relispartition THEN
      (SELECT string_agg(i.inhparent::regclass::text, ', ' ORDER BY i.inhseqno)
       FROM pg_inherits i WHERE i.inhrelid = c.oid) END,
  'unlogged', CASE WHEN c.relpersistence = 'u' THEN 'true' END,
  'options', """ + _sorted_list("c.reloptions") + """,
  'row level security', CASE WHEN c.relrowsecurity AND c.relforcerowsecurity THEN 'enabled, forced'
                             WHEN c.relrowsecurity THEN 'enabled'
                             WHEN c.relforcerowsecurity THEN 'disabled, forced' END,
  'replica identity', CASE WHEN c.relkind IN ('r', 'p') THEN
      CASE c.relreplident WHEN 'n' THEN 'nothing' WHEN 'f' THEN 'full' WHEN 'i' THEN
        'index ' || (SELECT quote_ident(ic.relname) FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
                     WHERE x.indrelid = c.oid AND x.indisreplident) END END,
  'access method', (SELECT am.amname FROM pg_am am WHERE am.oid = c.relam),
  'tablespace', CASE WHEN c.reltablespace <> 0 THEN
      (SELECT t.spcname FROM pg_tablespace t WHERE t.oid = c.reltablespace) END,
  'server', CASE WHEN c.relkind = 'f' THEN (SELECT quote_ident(s.srvname) FROM pg_foreign_table ft
             JOIN pg_foreign_server s ON s.oid = ft.ftserver WHERE ft.ftrelid = c.oid) END,
  'foreign options', CASE WHEN c.relkind = 'f' THEN (SELECT """ + _sorted_list("ft.ftoptions") + """
                      FROM pg_foreign_table ft WHERE ft.ftrelid = c.oid) END,
  'owner', pg_get_userbyid(c.relowner),
  'privileges', """ + _acl("c.relacl", "r", "c.relowner") + """,
  'comment', obj_description(c.oid, 'pg_class')))::text
FROM rel r JOIN pg_class c ON c.oid = r.oid
""",
    # Columns are keyed by name, never by attnum: a column dropped and re-added is the same column.
    # Attribute options named pg_* are not user settings (stock PostgreSQL accepts only n_distinct
    # and n_distinct_inherited); some server builds stamp every column with a per-build
    # "pg_attver=<n>", which would make two builds of one schema differ.
    "columns": """
SELECT 'column ' || r.qname || '.' || quote_ident(a.attname), r.key, jsonb_strip_nulls(jsonb_build_object(
  'type', format_type(a.atttypid, a.atttypmod),
  'not null', CASE WHEN r.relkind IN ('r', 'p', 'f') THEN a.attnotnull::text END,
  'default', CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
  'generated', CASE a.attgenerated
      WHEN 's' THEN 'always as (' || pg_get_expr(d.adbin, d.adrelid) || ') stored'
      WHEN 'v' THEN 'always as (' || pg_get_expr(d.adbin, d.adrelid) || ') virtual' END,
  'identity', CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' END,
  'identity sequence', ids.text,
  'collation', CASE WHEN a.attcollation <> t.typcollation THEN
      (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname)
       FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
       WHERE co.oid = a.attcollation) END,
  'options', CASE WHEN a.attoptions IS NOT NULL THEN nullif(array_to_string(ARRAY(
      SELECT o FROM unnest(a.attoptions) o WHERE o !~ '^pg_' ORDER BY 1), ', '), '') END,
  'foreign options', """ + _sorted_list("a.attfdwoptions") + """,
  'privileges', """ + _acl("a.attacl", "c", "r.relowner") + """,
  'comment', col_description(a.attrelid, a.attnum)))::text
FROM rel r
JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
-- Joined, not a sub-query per column: one pass over the identity sequences.
LEFT JOIN (
  SELECT dd.refobjid, dd.refobjsubid,
         quote_ident(sn.nspname) || '.' || quote_ident(sc.relname) || ' as ' || """ + _SEQUENCE_TEXT + """ AS text
  FROM pg_depend dd JOIN pg_class sc ON sc.oid = dd.objid
  JOIN pg_namespace sn ON sn.oid = sc.relnamespace JOIN pg_sequence s ON s.seqrelid = sc.oid
  WHERE dd.classid = 'pg_class'::regclass AND dd.refclassid = 'pg_class'::regclass AND dd.deptype = 'i'
) ids ON ids.refobjid = a.attrelid AND ids.refobjsubid = a.attnum AND a.attidentity <> ''
""",
    # NOT NULL constraints (PostgreSQL 18 catalogs them) are the columns' "not null"; constraint
    # triggers are triggers.
    "constraints": """
SELECT 'constraint ' || r.qname || '.' || quote_ident(k.conname), r.key, jsonb_strip_nulls(jsonb_build_object(
  'definition', pg_get_constraintdef(k.oid),
  'clustered', CASE WHEN k.contype IN ('p', 'u', 'x') AND EXISTS (
      SELECT 1 FROM pg_index x WHERE x.indexrelid = k.conindid AND x.indisclustered) THEN 'true' END,
  'comment', obj_description(k.oid, 'pg_constraint')))::text
FROM rel r JOIN pg_constraint k ON k.conrelid = r.oid
WHERE k.contype NOT IN ('n', 't')
""",
    # Indexes behind a primary key, unique or exclusion constraint are that constraint.
    "indexes": """
SELECT 'index ' || quote_ident(n.nspname) || '.' || quote_ident(ic.relname), r.key,
  jsonb_strip_nulls(jsonb_build_object(
  'definition', pg_get_indexdef(x.indexrelid),
  'clustered', CASE WHEN x.indisclustered THEN 'true' END,
  'valid', CASE WHEN NOT x.indisvalid THEN 'false' END,
  'tablespace', (SELECT t.spcname FROM pg_tablespace t WHERE t.oid = ic.reltablespace),
  'comment', obj_description(x.indexrelid, 'pg_class')))::text
FROM rel r JOIN pg_index x ON x.indrelid = r.oid
JOIN pg_class ic ON ic.oid = x.indexrelid JOIN pg_namespace n ON n.oid = ic.relnamespace
WHERE NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid
                  AND k.conrelid = x.indrelid AND k.contype IN ('p', 'u', 'x'))
""",
    # Identity sequences are part of their column ("identity sequence"); sequences owned by a
    # column (serial) belong to its table; sequences owned by an excluded table are skipped.
    "sequences": """
SELECT 'sequence ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname), r.key,
  jsonb_strip_nulls(jsonb_build_object(
  'type', format_type(s.seqtypid, NULL),
  'start', s.seqstart::text,
  'increment', s.seqincrement::text,
  'minimum', s.seqmin::text,
  'maximum', s.seqmax::text,
  'cache', s.seqcache::text,
  'cycle', s.seqcycle::text,
  'owned by', r.qname || '.' || quote_ident(a.attname),
  'unlogged', CASE WHEN c.relpersistence = 'u' THEN 'true' END,
  'owner', pg_get_userbyid(c.relowner),
  'privileges', """ + _acl("c.relacl", "s", "c.relowner") + """,
  'comment', obj_description(c.oid, 'pg_class')))::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_sequence s ON s.seqrelid = c.oid
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
  AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
LEFT JOIN rel r ON r.oid = d.refobjid
LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE c.relkind = 'S' AND """ + _user_schema("n") + """
  AND """ + _not_extension_member("pg_class", "c.oid") + """
  AND (d.objid IS NULL OR (d.deptype = 'a' AND r.oid IS NOT NULL))
""",
    "triggers": """
SELECT 'trigger ' || r.qname || '.' || quote_ident(g.tgname), r.key, jsonb_strip_nulls(jsonb_build_object(
  'definition', pg_get_triggerdef(g.oid),
  'enabled', """ + _enabled("g.tgenabled") + """,
  'comment', obj_description(g.oid, 'pg_trigger')))::text
FROM rel r JOIN pg_trigger g ON g.tgrelid = r.oid
WHERE NOT g.tgisinternal
""",
    "policies": """
SELECT 'policy ' || r.qname || '.' || quote_ident(p.polname), r.key, jsonb_strip_nulls(jsonb_build_object(
  'command', CASE p.polcmd WHEN 'r' THEN 'select' WHEN 'a' THEN 'insert' WHEN 'w' THEN 'update'
                          WHEN 'd' THEN 'delete' ELSE 'all' END,
  'permissive', p.polpermissive::text,
  'roles', (SELECT string_agg(role, ', ' ORDER BY role) FROM (
      SELECT CASE WHEN x = 0 THEN 'public' ELSE pg_get_userbyid(x) END AS role
      FROM unnest(p.polroles) x) roles),
  'using', pg_get_expr(p.polqual, p.polrelid),
  'with check', pg_get_expr(p.polwithcheck, p.polrelid),
  'comment', obj_description(p.oid, 'pg_policy')))::text
FROM rel r JOIN pg_policy p ON p.polrelid = r.oid
""",
    "rules": """
SELECT 'rule ' || r.qname || '.' || quote_ident(w.rulename), r.key, jsonb_strip_nulls(jsonb_build_object(
  'definition', pg_get_ruledef(w.oid),
  'enabled', """ + _enabled("w.ev_enabled") + """,
  'comment', obj_description(w.oid, 'pg_rewrite')))::text
FROM rel r JOIN pg_rewrite w ON w.ev_class = r.oid
WHERE w.rulename <> '_RETURN'
""",
    # A statistics object's columns are a set, which pg_get_statisticsobjdef prints in attnum order:
    # list them by name instead. (Only statistics on expressions, PostgreSQL 14+, keep the definition.)
    "statistics": """
SELECT 'statistics ' || quote_ident(n.nspname) || '.' || quote_ident(s.stxname), r.key,
  jsonb_strip_nulls(jsonb_build_object(
  'kinds', (SELECT string_agg(CASE k WHEN 'd' THEN 'dependencies' WHEN 'f' THEN 'ndistinct'
                                     WHEN 'm' THEN 'mcv' ELSE k::text END, ', ' ORDER BY k)
            FROM unnest(s.stxkind) k WHERE k <> 'e'),
  'columns', (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attname)
              FROM pg_attribute a WHERE a.attrelid = s.stxrelid AND a.attnum = ANY(s.stxkeys)),
  'definition', CASE WHEN to_jsonb(s) ->> 'stxexprs' IS NOT NULL THEN pg_get_statisticsobjdef(s.oid) END,
  'comment', obj_description(s.oid, 'pg_statistic_ext')))::text
FROM rel r JOIN pg_statistic_ext s ON s.stxrelid = r.oid JOIN pg_namespace n ON n.oid = s.stxnamespace
""",
    # pg_get_functiondef covers arguments, result, language, volatility, strictness, security,
    # parallel safety, cost, SET options and body. It refuses aggregates, described field by field.
    # Functions a type made for itself (range and multirange constructors) are part of that type.
    "functions": """
SELECT CASE p.prokind WHEN 'p' THEN 'procedure ' WHEN 'a' THEN 'aggregate ' ELSE 'function ' END
       || quote_ident(n.nspname) || '.' || quote_ident(p.proname) || '(' || oidvectortypes(p.proargtypes) || ')',
  NULL, jsonb_strip_nulls(jsonb_build_object(
  'definition', CASE WHEN p.prokind = 'a' THEN concat_ws(' ',
        'returns ' || format_type(p.prorettype, NULL),
        'sfunc ' || ag.aggtransfn::regprocedure::text,
        'stype ' || format_type(ag.aggtranstype, NULL),
        CASE WHEN ag.aggfinalfn::oid <> 0 THEN 'finalfunc ' || ag.aggfinalfn::regprocedure::text END,
        CASE WHEN ag.aggcombinefn::oid <> 0 THEN 'combinefunc ' || ag.aggcombinefn::regprocedure::text END,
        'initcond ' || quote_literal(ag.agginitval),
        'kind ' || ag.aggkind::text)
      ELSE pg_get_functiondef(p.oid) END,
  'owner', pg_get_userbyid(p.proowner),
  'privileges', """ + _acl("p.proacl", "f", "p.proowner") + """,
  'comment', obj_description(p.oid, 'pg_proc')))::text
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
LEFT JOIN pg_aggregate ag ON ag.aggfnoid = p.oid
WHERE p.oid >= 16384 AND """ + _user_schema("n") + " AND " + _not_extension_member("pg_proc", "p.oid") + """
  AND NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.classid = 'pg_proc'::regclass AND i.objid = p.oid
                  AND i.deptype = 'i')
""",
    # Enums, domains, composite types, ranges and base types; not array types, multiranges or the
    # row types of tables. A composite type's attributes are positional (ROW(...)), so kept in order.
    "types": """
SELECT 'type ' || quote_ident(n.nspname) || '.' || quote_ident(t.typname), NULL,
  (jsonb_strip_nulls(jsonb_build_object(
  'kind', CASE t.typtype WHEN 'e' THEN 'enum' WHEN 'd' THEN 'domain' WHEN 'c' THEN 'composite'
                         WHEN 'r' THEN 'range' WHEN 'b' THEN 'base' WHEN 'p' THEN 'shell' END,
  'enum values', CASE WHEN t.typtype = 'e' THEN coalesce((SELECT string_agg(e.enumlabel, ', ' ORDER BY e.enumsortorder)
                                                          FROM pg_enum e WHERE e.enumtypid = t.oid), '') END,
  'base type', CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
  'not null', CASE WHEN t.typnotnull THEN 'true' END,
  'default', t.typdefault,
  'collation', CASE WHEN t.typtype = 'd' AND t.typcollation <> bt.typcollation THEN
      (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname)
       FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
       WHERE co.oid = t.typcollation) END,
  'attributes', CASE WHEN t.typtype = 'c' THEN (
      SELECT string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
      FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) END,
  'subtype', format_type(rg.rngsubtype, NULL),
  'subtype operator class', (SELECT quote_ident(oc.opcname) FROM pg_opclass oc WHERE oc.oid = rg.rngsubopc),
  'canonical', CASE WHEN rg.rngcanonical::oid <> 0 THEN rg.rngcanonical::regprocedure::text END,
  'subtype diff', CASE WHEN rg.rngsubdiff::oid <> 0 THEN rg.rngsubdiff::regprocedure::text END,
  'input', CASE WHEN t.typtype = 'b' THEN t.typinput::regprocedure::text END,
  'output', CASE WHEN t.typtype = 'b' THEN t.typoutput::regprocedure::text END,
  'owner', pg_get_userbyid(t.typowner),
  'privileges', """ + _acl("t.typacl", "T", "t.typowner") + """,
  'comment', obj_description(t.oid, 'pg_type')))
  || coalesce((SELECT jsonb_object_agg('constraint ' || quote_ident(k.conname), pg_get_constraintdef(k.oid))
               FROM pg_constraint k WHERE k.contypid = t.oid AND k.contype = 'c'), '{}'::jsonb))::text
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
LEFT JOIN pg_range rg ON rg.rngtypid = t.oid
WHERE t.oid >= 16384 AND t.typtype IN ('e', 'd', 'c', 'r', 'b', 'p')
  AND """ + _user_schema("n") + " AND " + _not_extension_member("pg_type", "t.oid") + """
  AND (t.typtype <> 'c' OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
  AND NOT EXISTS (SELECT 1 FROM pg_type el WHERE el.typarray = t.oid)
""",
    "event triggers": """
SELECT 'event trigger ' || quote_ident(e.evtname), NULL, jsonb_strip_nulls(jsonb_build_object(
  'event', e.evtevent,
  'function', e.evtfoid::regprocedure::text,
  'tags', """ + _sorted_list("e.evttags") + """,
  'enabled', """ + _enabled("e.evtenabled") + """,
  'owner', pg_get_userbyid(e.evtowner),
  'comment', obj_description(e.oid, 'pg_event_trigger')))::text
FROM pg_event_trigger e
WHERE """ + _not_extension_member("pg_event_trigger", "e.oid") + """
""",
}

_DESCRIPTION_CALL = re.compile(r"\b(obj|col)_description\(([^,()]+), ('pg_\w+'|[\w.]+)\)")


def _inline_description(m: re.Match[str]) -> str:
    kind, oid, arg = m.groups()
    if kind == "col":
        where = f"d.objoid = {oid} AND d.classoid = 'pg_class'::regclass AND d.objsubid = {arg}"
    else:
        where = f"d.objoid = {oid} AND d.classoid = {arg}::regclass AND d.objsubid = 0"
    return f"(SELECT d.description FROM pg_description d WHERE {where})"


# obj_description() and col_description() look the catalog up by name in every call, a sub-query per
# row: the same look-up with the catalog as a constant makes a snapshot of a large schema about a
# third cheaper.
_QUERIES = {kind: _DESCRIPTION_CALL.sub(_inline_description, query) for kind, query in _QUERIES.items()}

# The group each query's objects belong to: a relation with everything that hangs off it ('r'), a
# sequence of its own ('S'), a function, type, schema, extension or event trigger.
_GROUP = {
    "schemas": "'n' || n.oid", "extensions": "'x' || x.oid", "functions": "'f' || p.oid",
    "types": "'t' || t.oid", "event triggers": "'e' || e.oid",
    "sequences": "CASE WHEN r.oid IS NULL THEN 'S' || c.oid ELSE 'r' || r.oid END",
}


def _grouped(kind: str, query: str) -> str:
    """``query`` with its group as a fourth column, and only the groups in %(only)s (all if NULL)."""
    head, tail = query.split("\nFROM ", 1)
    group = _GROUP.get(kind, "'r' || r.oid")
    return (f"SELECT * FROM ({head}, {group}\nFROM {tail}) AS q(key, parent, props, grp)"
            " WHERE %(only)s::text[] IS NULL OR q.grp = ANY(%(only)s::text[])")


# Every kind in one statement: one round trip per snapshot. (``p.oid >= 16384`` and the like: user
# objects, and only they, have OIDs from FirstNormalObjectId on, so an index skips the catalogs'
# own rows.)
_SNAPSHOT_QUERY = _REL_CTE + "\nUNION ALL\n".join(f"({_grouped(kind, query)})" for kind, query in _QUERIES.items())


def _description(oid: str, catalog: str) -> str:
    return (f"(SELECT ds.xmin::text FROM pg_description ds WHERE ds.objoid = {oid}"
            f" AND ds.classoid = '{catalog}'::regclass AND ds.objsubid = 0)")


# For each group: its names (a rename changes how other objects' definitions print, so it makes
# the next snapshot a full one) and a stamp of every catalog row its objects are read from (a row's
# xmin changes when it is rewritten; one added or removed changes the list): a group whose stamp is
# unchanged is unchanged. A superset of the groups the queries read. Set-based (one pass per
# catalog, hashed), not a sub-query per relation.
_STAMP_QUERY = _REL_CTE + f"""
, item (rel, child, item) AS MATERIALIZED (
  SELECT r.oid, r.oid, 'c' || c.xmin FROM rel r JOIN pg_class c ON c.oid = r.oid
  UNION ALL SELECT a.attrelid, NULL, 'a' || a.attnum || ':' || a.xmin
    FROM pg_attribute a JOIN rel r ON r.oid = a.attrelid WHERE a.attrelid >= 16384
  UNION ALL SELECT d.adrelid, NULL, 'd' || d.adnum || ':' || d.xmin FROM pg_attrdef d JOIN rel r ON r.oid = d.adrelid
    WHERE d.adrelid >= 16384
  UNION ALL SELECT k.conrelid, k.oid, 'k' || k.oid || ':' || k.xmin FROM pg_constraint k JOIN rel r ON r.oid = k.conrelid
    WHERE k.conrelid >= 16384
  UNION ALL SELECT x.indrelid, x.indexrelid, 'i' || x.indexrelid || ':' || x.xmin || ':' || ic.xmin
    FROM pg_index x JOIN rel r ON r.oid = x.indrelid JOIN pg_class ic ON ic.oid = x.indexrelid WHERE x.indrelid >= 16384
  UNION ALL SELECT g.tgrelid, g.oid, 't' || g.oid || ':' || g.xmin FROM pg_trigger g JOIN rel r ON r.oid = g.tgrelid WHERE g.tgrelid >= 16384
  UNION ALL SELECT p.polrelid, p.oid, 'p' || p.oid || ':' || p.xmin FROM pg_policy p JOIN rel r ON r.oid = p.polrelid
  UNION ALL SELECT w.ev_class, w.oid, 'w' || w.oid || ':' || w.xmin FROM pg_rewrite w JOIN rel r ON r.oid = w.ev_class
  UNION ALL SELECT s.stxrelid, s.oid, 's' || s.oid || ':' || s.xmin FROM pg_statistic_ext s JOIN rel r ON r.oid = s.stxrelid
  UNION ALL SELECT i.inhrelid, NULL, 'h' || i.inhseqno || ':' || i.xmin FROM pg_inherits i JOIN rel r ON r.oid = i.inhrelid
  UNION ALL SELECT f.ftrelid, NULL, 'f' || f.xmin FROM pg_foreign_table f JOIN rel r ON r.oid = f.ftrelid
  UNION ALL SELECT d.refobjid, d.objid, 'q' || d.objid || ':' || d.deptype::text || ':' || d.xmin || ':' || sc.xmin
                                        || ':' || sq.xmin
    FROM pg_depend d JOIN rel r ON r.oid = d.refobjid JOIN pg_class sc ON sc.oid = d.objid
    JOIN pg_sequence sq ON sq.seqrelid = sc.oid
    WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid >= 16384
)
, col (rel, names) AS (
  SELECT a.attrelid, string_agg(a.attnum || '=' || quote_ident(a.attname), ',' ORDER BY a.attnum)
  FROM pg_attribute a JOIN rel r ON r.oid = a.attrelid
  WHERE a.attrelid >= 16384 AND a.attnum > 0 AND NOT a.attisdropped GROUP BY a.attrelid
)
SELECT 'r' || s.rel, quote_ident(n.nspname) || '.' || quote_ident(c.relname) || ' ' || coalesce(col.names, ''), s.stamp
FROM (
  SELECT rel, string_agg(item, ',' ORDER BY item) AS stamp FROM (
    SELECT rel, item FROM item
    UNION ALL SELECT o.rel, 'm' || ds.objoid || ':' || ds.classoid || ':' || ds.objsubid || ':' || ds.xmin
      FROM (SELECT DISTINCT rel, child FROM item WHERE child IS NOT NULL) o JOIN pg_description ds ON ds.objoid = o.child AND ds.objoid >= 16384
  ) all_items GROUP BY rel
) s JOIN pg_class c ON c.oid = s.rel JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN col ON col.rel = s.rel
UNION ALL
SELECT 'S' || c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname),
  concat_ws(':', c.xmin, sq.xmin, {_description('c.oid', 'pg_class')},
            (SELECT string_agg(d.refobjid || ':' || d.xmin, ',' ORDER BY d.refobjid) FROM pg_depend d
             WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid))
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_sequence sq ON sq.seqrelid = c.oid
WHERE c.oid >= 16384 AND c.relkind = 'S' AND {_user_schema('n')}
UNION ALL
SELECT 'f' || p.oid, quote_ident(n.nspname) || '.' || quote_ident(p.proname),
  concat_ws(':', p.xmin, ag.xmin, ds.xmin)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
LEFT JOIN pg_aggregate ag ON ag.aggfnoid = p.oid
LEFT JOIN pg_description ds ON ds.objoid = p.oid AND ds.classoid = 'pg_proc'::regclass AND ds.objsubid = 0
WHERE p.oid >= 16384 AND {_user_schema('n')}
UNION ALL
SELECT 't' || t.oid, concat_ws(' ', quote_ident(n.nspname) || '.' || quote_ident(t.typname),
    -- enum labels and attribute names print in other objects (a view's 'sad'::mood, (x).a)
    (SELECT string_agg(quote_literal(e.enumlabel), ',' ORDER BY e.oid) FROM pg_enum e WHERE e.enumtypid = t.oid),
    (SELECT string_agg(quote_ident(a.attname), ',' ORDER BY a.attnum) FROM pg_attribute a
     WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped)),
  concat_ws('|', t.xmin, {_description('t.oid', 'pg_type')},
    (SELECT string_agg(e.oid || ':' || e.xmin, ',' ORDER BY e.oid) FROM pg_enum e WHERE e.enumtypid = t.oid),
    (SELECT string_agg(k.oid || ':' || k.xmin, ',' ORDER BY k.oid) FROM pg_constraint k WHERE k.contypid = t.oid),
    (SELECT rg.xmin::text FROM pg_range rg WHERE rg.rngtypid = t.oid),
    (SELECT string_agg(a.attnum || ':' || a.xmin, ',' ORDER BY a.attnum) FROM pg_attribute a
     WHERE a.attrelid = t.typrelid))
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE t.oid >= 16384 AND t.typtype IN ('e', 'd', 'c', 'r', 'b', 'p') AND {_user_schema('n')}
  AND (t.typtype <> 'c' OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
  AND NOT EXISTS (SELECT 1 FROM pg_type el WHERE el.typarray = t.oid)
UNION ALL
SELECT 'n' || n.oid, quote_ident(n.nspname), concat_ws(':', n.xmin, {_description('n.oid', 'pg_namespace')})
FROM pg_namespace n
UNION ALL
SELECT 'x' || x.oid, quote_ident(x.extname) || ' in ' || x.extnamespace,
  concat_ws(':', x.xmin, {_description('x.oid', 'pg_extension')})
FROM pg_extension x
UNION ALL
SELECT 'e' || e.oid, quote_ident(e.evtname), concat_ws(':', e.xmin, {_description('e.oid', 'pg_event_trigger')})
FROM pg_event_trigger e
"""

# Settings that change how the deparsers print. search_path = pg_catalog makes every user object
# schema-qualified wherever it is mentioned (types, tables in view and trigger definitions...).
_PINNED = {
    "search_path": "pg_catalog",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "TimeZone": "UTC",
    "extra_float_digits": "1",
    "bytea_output": "hex",
    "standard_conforming_strings": "on",
    # Not a printing setting: from about 300 tables the snapshot's estimated cost passes the default
    # jit_above_cost, and compiling it took 0.5 s where running it takes 40 ms (150 tables, PG 15).
    "jit": "off",
}


def pin_settings(conn: psycopg.Connection[Any]) -> None:
    """Set, for the whole session, the settings :func:`take` needs, on a connection used for nothing
    but snapshots; then ``take(..., pinned=True)`` saves three round trips a snapshot."""
    args: list[str] = []
    for name, value in _PINNED.items():
        args += [name, value]
    conn.execute("SELECT " + ", ".join(["set_config(%s, %s, false)"] * len(_PINNED)), args)


def take(conn: psycopg.Connection[Any], *, exclude_tables: Collection[str] = (),
         previous: Snapshot | None = None, pinned: bool = False, schemas: Collection[str] | None = None,
         stamped: bool = True) -> Snapshot:
    """Read the schema of the database *conn* is connected to.

    Only user schemas are read (not ``pg_catalog``, ``information_schema``, ``pg_toast*``,
    ``pg_temp*``); objects that belong to an extension are left out (the extension itself is
    recorded); ``schemas``: only these schemas (extensions in the system catalogs, such as plpgsql,
    and event triggers, which belong to no schema, are kept). ``exclude_tables`` are unqualified table names, in any schema, left out together with
    everything that hangs off them (columns, constraints, indexes, triggers, owned sequences): for
    sqlmigrate's own history and log tables.

    With ``previous`` (an earlier snapshot of the same database, with the same ``exclude_tables``),
    only the groups of objects whose catalog rows changed since are read again, unless something
    was renamed (which changes how other objects print): the same result, at a fraction of the cost
    when a migration touched a few objects of a large schema. ``stamped=False`` (a snapshot that will
    never be a ``previous``: the schema file's) skips reading the stamps, a third of a full read.

    Runs in a transaction, or a savepoint if *conn* is already in one; leaves the session settings
    as they were (``pinned``: they are :func:`pin_settings`'s already).
    """
    from psycopg.rows import tuple_row

    params: dict[str, Any] = {"exclude": list(exclude_tables), "only": None,
                              "schemas": None if schemas is None else sorted(schemas)}
    # Outside a transaction the settings pinned below end with ours: nothing to save and put back.
    nested = conn.info.transaction_status != 0  # not IDLE
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        saved: dict[str, str] = {}
        if not pinned:
            if nested:
                names = list(_PINNED)
                cur.execute("SELECT " + ", ".join(["current_setting(%s)"] * len(names)), names)
                row = cur.fetchone()
                assert row is not None
                saved = dict(zip(names, row))
            # Local to this transaction, so an error (which rolls it back) restores them too.
            _set_local(cur, _PINNED)
        stamps: dict[str, tuple[str, str]] = {}
        if stamped or previous is not None:
            cur.execute(_STAMP_QUERY, params)
            stamps = {group: (names_, stamp) for group, names_, stamp in cur.fetchall()}
        objects: dict[str, Mapping[str, str]] = {}
        parents: dict[str, str] = {}
        groups: dict[str, str] = {}
        if previous is not None and previous.stamps and not _renamed(previous.stamps, stamps):
            changed = {g for g, v in stamps.items() if previous.stamps.get(g) != v}
            for key, group in previous.groups.items():
                if group in stamps and group not in changed:
                    objects[key] = previous.objects[key]  # shared: snapshots are never changed
                    groups[key] = group
                    if key in previous.parents:
                        parents[key] = previous.parents[key]
            params["only"] = sorted(changed)
            log.debug("snapshot: %d of %d groups changed", len(changed), len(stamps))
        if params["only"] is None or params["only"]:
            cur.execute(_SNAPSHOT_QUERY, params)
            for key, parent, props, group in cur.fetchall():
                if key in objects:
                    # Not expected (identities are unique per kind); keep both rather than lose one.
                    log.debug("snapshot: duplicate identity %s", key)
                    n = 2
                    while f"{key} #{n}" in objects:
                        n += 1
                    key = f"{key} #{n}"
                objects[key] = json.loads(props)
                groups[key] = group
                if parent is not None:
                    parents[key] = parent
        if saved:
            # Inside a caller's transaction a local setting outlives our savepoint: put theirs back.
            _set_local(cur, saved)
    log.debug("snapshot: %d objects", len(objects))
    return Snapshot(objects=objects, parents=parents, groups=groups, stamps=stamps)


def _renamed(before: Mapping[str, tuple[str, str]], after: Mapping[str, tuple[str, str]]) -> bool:
    """Whether an object that is in both has another name (a relation: or a column of it)."""
    for group, (names, _) in after.items():
        old = before.get(group)
        if old is None or old[0] == names:
            continue
        if not group.startswith("r"):
            return True
        # A column added or dropped is no rename; the relation's name or a column's new name is.
        name, _, columns = names.partition(" ")
        old_name, _, old_columns = old[0].partition(" ")
        was = dict(c.split("=", 1) for c in old_columns.split(",") if c)
        if name != old_name or any(was.get(n, v) != v for n, v in (c.split("=", 1) for c in columns.split(",") if c)):
            return True
    return False


def _set_local(cur: psycopg.Cursor[Any], settings: Mapping[str, str]) -> None:
    names = list(settings)
    args: list[str] = []
    for name in names:
        args += [name, settings[name]]
    cur.execute("SELECT " + ", ".join(["set_config(%s, %s, true)"] * len(names)), args)
