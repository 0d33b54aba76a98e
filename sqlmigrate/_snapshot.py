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

__all__ = ["Difference", "Snapshot", "diff", "take"]

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
                    f"'today' into the view each time it is created: {_show_change(self.before, self.after)})")
        # An absent privileges property means the owner-only default, not "no privileges".
        none = "default" if self.change.startswith("privileges ") else "none"
        return f"{self.object}: {self.change} ({_show_change(self.before, self.after, none)})"


def _show(value: str | None, none: str = "none") -> str:
    if value is None:
        return none
    if value == "":
        return "(empty)"
    return value


def _show_change(before: str | None, after: str | None, none: str = "none") -> str:
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
        else:
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

_USER_SCHEMA = "({n}.nspname !~ '^pg_' AND {n}.nspname <> 'information_schema')"


def _user_schema(alias: str) -> str:
    return _USER_SCHEMA.format(n=alias)


def _not_extension_member(catalog: str, oid: str) -> str:
    return (f"NOT EXISTS (SELECT 1 FROM pg_depend xd WHERE xd.classid = '{catalog}'::regclass"
            f" AND xd.objid = {oid} AND xd.deptype = 'e')")


def _sorted_list(array: str) -> str:
    """A text[] (reloptions, ftoptions...) as 'a=1, b=2' in sorted order, NULL when empty."""
    return f"nullif(array_to_string(ARRAY(SELECT o FROM unnest({array}) o ORDER BY 1), ', '), '')"


def _acl(acl: str, kind: str, owner: str) -> str:
    """Privileges as sorted aclitems, NULL when they equal the default.

    A GRANT followed by its REVOKE leaves an explicit ACL equal to the default where there was
    NULL before: the same privileges, so the same snapshot.
    """
    def items(expr: str) -> str:
        return f"array_to_string(ARRAY(SELECT x::text FROM unnest({expr}) x ORDER BY 1), ' ')"

    default = f"acldefault('{kind}', {owner})"
    return f"nullif({items(f'coalesce({acl}, {default})')}, {items(default)})"


def _qname(n: str, name: str) -> str:
    return f"quote_ident({n}.nspname) || '.' || quote_ident({name})"


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
  'tablespace', (SELECT t.spcname FROM pg_tablespace t WHERE t.oid = c.reltablespace),
  'server', (SELECT quote_ident(s.srvname) FROM pg_foreign_table ft JOIN pg_foreign_server s
             ON s.oid = ft.ftserver WHERE ft.ftrelid = c.oid),
  'foreign options', (SELECT """ + _sorted_list("ft.ftoptions") + """ FROM pg_foreign_table ft
                      WHERE ft.ftrelid = c.oid),
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
  'identity sequence', (
      SELECT quote_ident(sn.nspname) || '.' || quote_ident(sc.relname) || ' as ' || """ + _SEQUENCE_TEXT + """
      FROM pg_depend dd JOIN pg_class sc ON sc.oid = dd.objid
      JOIN pg_namespace sn ON sn.oid = sc.relnamespace JOIN pg_sequence s ON s.seqrelid = sc.oid
      WHERE dd.classid = 'pg_class'::regclass AND dd.refclassid = 'pg_class'::regclass
        AND dd.refobjid = a.attrelid AND dd.refobjsubid = a.attnum AND dd.deptype = 'i'),
  'collation', CASE WHEN a.attcollation <> t.typcollation THEN
      (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname)
       FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
       WHERE co.oid = a.attcollation) END,
  'options', nullif(array_to_string(ARRAY(SELECT o FROM unnest(a.attoptions) o
                                          WHERE o !~ '^pg_' ORDER BY 1), ', '), ''),
  'foreign options', """ + _sorted_list("a.attfdwoptions") + """,
  'privileges', """ + _acl("a.attacl", "c", "r.relowner") + """,
  'comment', col_description(a.attrelid, a.attnum)))::text
FROM rel r
JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
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
  'enabled', CASE g.tgenabled WHEN 'D' THEN 'disabled' WHEN 'R' THEN 'replica' WHEN 'A' THEN 'always' END,
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
  'enabled', CASE w.ev_enabled WHEN 'D' THEN 'disabled' WHEN 'R' THEN 'replica' WHEN 'A' THEN 'always' END,
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
WHERE """ + _user_schema("n") + " AND " + _not_extension_member("pg_proc", "p.oid") + """
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
WHERE t.typtype IN ('e', 'd', 'c', 'r', 'b', 'p')
  AND """ + _user_schema("n") + " AND " + _not_extension_member("pg_type", "t.oid") + """
  AND (t.typtype <> 'c' OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
  AND NOT EXISTS (SELECT 1 FROM pg_type el WHERE el.typarray = t.oid)
""",
    "event triggers": """
SELECT 'event trigger ' || quote_ident(e.evtname), NULL, jsonb_strip_nulls(jsonb_build_object(
  'event', e.evtevent,
  'function', e.evtfoid::regprocedure::text,
  'tags', """ + _sorted_list("e.evttags") + """,
  'enabled', CASE e.evtenabled WHEN 'D' THEN 'disabled' WHEN 'R' THEN 'replica' WHEN 'A' THEN 'always' END,
  'owner', pg_get_userbyid(e.evtowner),
  'comment', obj_description(e.oid, 'pg_event_trigger')))::text
FROM pg_event_trigger e
WHERE """ + _not_extension_member("pg_event_trigger", "e.oid") + """
""",
}

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
}


def take(conn: psycopg.Connection[Any], *, exclude_tables: Collection[str] = ()) -> Snapshot:
    """Read the schema of the database *conn* is connected to.

    Only user schemas are read (not ``pg_catalog``, ``information_schema``, ``pg_toast*``,
    ``pg_temp*``); objects that belong to an extension are left out (the extension itself is
    recorded). ``exclude_tables`` are unqualified table names, in any schema, left out together with
    everything that hangs off them (columns, constraints, indexes, triggers, owned sequences): for
    sqlmigrate's own history and log tables.

    Runs in a transaction, or a savepoint if *conn* is already in one; leaves the session settings
    as they were.
    """
    from psycopg.rows import tuple_row

    params = {"exclude": list(exclude_tables)}
    objects: dict[str, dict[str, str]] = {}
    parents: dict[str, str] = {}
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        names = list(_PINNED)
        cur.execute("SELECT " + ", ".join(["current_setting(%s)"] * len(names)), names)
        row = cur.fetchone()
        assert row is not None
        saved = dict(zip(names, row))
        # Local to this transaction, so an error (which rolls it back) restores them too.
        _set_local(cur, _PINNED)
        for kind, query in _QUERIES.items():
            cur.execute(_REL_CTE + query, params)
            for key, parent, props in cur.fetchall():
                if key in objects:
                    # Not expected (identities are unique per kind); keep both rather than lose one.
                    log.debug("snapshot: duplicate identity %s", key)
                    n = 2
                    while f"{key} #{n}" in objects:
                        n += 1
                    key = f"{key} #{n}"
                objects[key] = json.loads(props)
                if parent is not None:
                    parents[key] = parent
            log.debug("snapshot: read %s", kind)
        # Inside a caller's transaction a local setting outlives our savepoint: put theirs back.
        _set_local(cur, saved)
    log.debug("snapshot: %d objects", len(objects))
    return Snapshot(objects=objects, parents=parents)


def _set_local(cur: psycopg.Cursor[Any], settings: Mapping[str, str]) -> None:
    names = list(settings)
    args: list[str] = []
    for name in names:
        args += [name, settings[name]]
    cur.execute("SELECT " + ", ".join(["set_config(%s, %s, true)"] * len(names)), args)
