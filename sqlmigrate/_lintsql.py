"""What a DDL statement does, for ``lint``: a small tokenizer and a parser of the statements that
take table locks (``CREATE INDEX``, ``ALTER TABLE``, ``DROP``, ``VACUUM``, ``CLUSTER``, ``REINDEX``,
``SET``).

The statement boundaries come from :mod:`sqlmigrate._sqltext`; this module only looks inside one
statement. ``up`` runs the linter on every pending file, so the common statements (``CREATE TABLE``,
``CREATE INDEX``, ``INSERT``) cost a few microseconds: the first word decides whether a statement is
looked at at all, and ``CREATE TABLE``/``CREATE INDEX`` are tokenized only up to the table name.
Anything not understood parses to ``None`` (no finding), never to an error: the server is the judge
of syntax.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from itertools import islice

# Statements whose first word is not one of these take no lock the linter knows about.
INTERESTING = frozenset(("CREATE", "ALTER", "DROP", "VACUUM", "CLUSTER", "REINDEX", "SET", "SELECT"))
_FIRST_WORD = re.compile(r"[A-Za-z]+")

_IDENT_START = r"A-Za-z_\x80-\U0010ffff"
_IDENT_CONT = r"A-Za-z0-9_$\x80-\U0010ffff"
_TOKEN = re.compile(
    "|".join([
        r"(?P<ws>\s+)",
        r"(?P<lc>--[^\n]*)",
        r"(?P<bc>/\*)",
        # E'...' before words, so that the E is not read as an identifier.
        r"(?P<str>[Ee]'(?:[^'\\]+|\\.|'')*(?:'|\Z)|'(?:[^']+|'')*(?:'|\Z))",
        r'(?P<qid>"(?:[^"]+|"")*(?:"|\Z))',
        rf"(?P<dq>\$(?:[{_IDENT_START}][A-Za-z0-9_\x80-\U0010ffff]*)?\$)",
        r"(?P<param>\$\d+)",
        r"(?P<num>\d[\w.]*)",
        rf"(?P<word>[{_IDENT_START}][{_IDENT_CONT}]*)",
        r"(?P<op>::|.)",
    ]),
    re.S,
)
_COMMENT_MARK = re.compile(r"/\*|\*/")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class Tok:
    kind: str  # "word", "qid", "str", "dq", "num", "param", "op"
    text: str

    @property
    def up(self) -> str:
        """A bare word upper-cased; anything else as written."""
        return self.text.upper() if self.kind == "word" else self.text

    @property
    def ident(self) -> str | None:
        """The name as the server stores it, for a bare word or a quoted identifier."""
        if self.kind == "word":
            return self.text.translate(_ASCII_LOWER)  # the server folds ASCII letters only
        if self.kind == "qid" and len(self.text) >= 2 and self.text.endswith('"'):
            return self.text[1:-1].replace('""', '"')
        return None


def tokens(text: str) -> Iterator[Tok]:
    """The significant tokens of one statement (no whitespace, no comments)."""
    pos, n = 0, len(text)
    match = _TOKEN.match
    while pos < n:
        m = match(text, pos)
        assert m is not None  # the last alternative matches any character
        kind = m.lastgroup or "op"
        end = m.end()
        if kind == "bc":
            end = _block_comment_end(text, pos)
        elif kind == "dq":
            close = text.find(m.group(), end)
            end = n if close < 0 else close + len(m.group())
        if kind not in ("ws", "lc", "bc"):
            yield Tok(kind, text[pos:end])
        pos = end


def _block_comment_end(text: str, pos: int) -> int:
    depth = 0
    for m in _COMMENT_MARK.finditer(text, pos):
        depth += 1 if m.group() == "/*" else -1
        if depth == 0:
            return m.end()
    return len(text)


def first_word(text: str) -> str:
    m = _FIRST_WORD.match(text)
    return m.group().upper() if m else ""


# ------------------------------------------------------------------------------------------------
# What a statement does
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Name:
    """A possibly qualified name as written: raw tokens, quotes kept (``to_regclass`` parses them
    exactly as the server parses SQL)."""

    parts: tuple[str, ...]

    @cached_property
    def folded(self) -> tuple[str, ...]:
        return tuple(Tok("qid" if p.startswith('"') else "word", p).ident or p for p in self.parts)

    @property
    def shown(self) -> str:
        return ".".join(self.parts)

    def same(self, other: Name) -> bool:
        """Could both names denote one relation? Unqualified matches any schema (search_path)."""
        a, b = self.folded, other.folded
        if a[-1] != b[-1]:
            return False
        return len(a) == 1 or len(b) == 1 or a[-2] == b[-2]


@dataclass(frozen=True)
class CreateTable:
    table: Name


@dataclass(frozen=True)
class CreateIndex:
    table: Name
    index: Name | None
    concurrently: bool
    unique: bool


@dataclass(frozen=True)
class DropIndex:
    indexes: tuple[Name, ...]
    concurrently: bool


@dataclass(frozen=True)
class DropTable:
    tables: tuple[Name, ...]


@dataclass(frozen=True)
class Action:
    """One subcommand of ``ALTER TABLE``."""

    kind: str  # add column, drop column, type, set not null, add constraint, validate,
    #            rename column, rename table, drop constraint, other, lighter
    column: str | None = None
    constraint: str | None = None  # constraint name (folded), when given
    ctype: str | None = None  # check, foreign key, primary key, unique, exclude
    not_valid: bool = False
    using_index: bool = False
    not_null: bool = False  # ADD COLUMN ... NOT NULL
    has_default: bool = False
    rewrite: str | None = None  # why adding this column rewrites the table
    checks_not_null: str | None = None  # CHECK (col IS NOT NULL): that column
    references: Name | None = None


@dataclass(frozen=True)
class AlterTable:
    table: Name
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class Vacuum:
    full: bool
    tables: tuple[Name, ...]


@dataclass(frozen=True)
class Cluster:
    table: Name | None


@dataclass(frozen=True)
class Reindex:
    kind: str  # INDEX, TABLE, SCHEMA, DATABASE, SYSTEM
    name: Name | None
    concurrently: bool


@dataclass(frozen=True)
class SetLockTimeout:
    enabled: bool  # False for 0 (wait forever)


@dataclass(frozen=True)
class SetSearchPath:
    text: str  # the statement as written, to run when resolving names


Op = CreateTable | CreateIndex | DropIndex | DropTable | AlterTable | Vacuum | Cluster | Reindex \
    | SetLockTimeout | SetSearchPath

# Functions whose value differs per row: a column added with one of them as its default is filled
# by rewriting the table. (now(), current_timestamp and other STABLE functions are evaluated once,
# so since PostgreSQL 11 they are as cheap as a constant.)
VOLATILE_FUNCTIONS = frozenset((
    "random", "gen_random_uuid", "uuid_generate_v1", "uuid_generate_v1mc", "uuid_generate_v4",
    "uuidv4", "uuidv7", "clock_timestamp", "timeofday", "nextval", "txid_current", "setseed",
    "random_normal",
))
SERIAL_TYPES = frozenset(("SERIAL", "SERIAL2", "SERIAL4", "SERIAL8", "SMALLSERIAL", "BIGSERIAL"))


class _Cursor:
    def __init__(self, toks: list[Tok], more: Iterator[Tok] | None = None) -> None:
        self.toks = toks
        self.more = more  # tokens not read yet: the head of a statement is often all that is needed
        self.i = 0

    def has(self, j: int) -> bool:
        """Whether token ``j`` exists (reading it if need be)."""
        while j >= len(self.toks) and self.more is not None:
            t = next(self.more, None)
            if t is None:
                self.more = None
            else:
                self.toks.append(t)
        return j < len(self.toks)

    def at(self, *words: str, k: int = 0) -> bool:
        j = self.i + k
        return self.has(j) and self.toks[j].up in words

    def take(self, *words: str) -> bool:
        if self.at(*words):
            self.i += 1
            return True
        return False

    def take_seq(self, *words: str) -> bool:
        if all(self.at(w, k=k) for k, w in enumerate(words)):
            self.i += len(words)
            return True
        return False

    def name(self) -> Name | None:
        parts: list[str] = []
        while self.has(self.i) and self.toks[self.i].ident is not None:
            parts.append(self.toks[self.i].text)
            self.i += 1
            if not (self.at(".") and self.has(self.i + 1)):
                break
            self.i += 1
        return Name(tuple(parts)) if parts else None

    def names(self) -> tuple[Name, ...]:
        found: list[Name] = []
        while (n := self.name()) is not None:
            found.append(n)
            if not self.take(","):
                break
        return tuple(found)

    def rest(self) -> list[str]:
        return [t.up for t in self.toks[self.i:]]


def parse(text: str) -> Op | None:
    """What the statement does, or None when it is nothing the linter knows about."""
    first = first_word(text)
    if first not in INTERESTING:
        return None
    if first == "CREATE":
        return _create(text)
    toks = list(tokens(text))
    c = _Cursor(toks)
    c.i = 1
    if first == "ALTER":
        return _alter(c)
    if first == "DROP":
        return _drop(c)
    if first == "VACUUM":
        return _vacuum(c)
    if first == "CLUSTER":
        return _cluster(c)
    if first == "REINDEX":
        return _reindex(c)
    return _setting(c, text)


# The common heads, written plainly (ASCII names and spaces, no comments or quotes), in one regex call:
# most migrations are mostly CREATE TABLE and CREATE INDEX. Each optional keyword is taken whenever
# present, as the token-by-token parse takes it, and the name must be followed by what ends it there,
# so a match means exactly what that parse would make of the text; anything else goes to it.
_W = r"[ \t\n\r\f\v]"
_ID = r"[A-Za-z_][A-Za-z0-9_$]*(?![A-Za-z0-9_$\x80-\U0010ffff])"
_NAME = rf"({_ID})(?:{_W}*\.{_W}*({_ID}))?"
_NOT_KEYWORD = r"(?!(?:ON|ONLY|IF|CONCURRENTLY)(?![A-Za-z0-9_$]))"
_FAST_CREATE = re.compile(
    rf"CREATE{_W}+(?:"
    rf"TABLE{_W}+(?P<ine>IF{_W}+NOT{_W}+EXISTS{_W}+)?{_NOT_KEYWORD}{_NAME}{_W}*\("
    rf"|(?P<unique>UNIQUE{_W}+)?INDEX{_W}+(?P<conc>CONCURRENTLY{_W}+)?"
    rf"(?:(?:IF{_W}+NOT{_W}+EXISTS{_W}+)?{_NOT_KEYWORD}{_NAME}{_W}+)?"
    rf"ON{_W}+(?:ONLY{_W}+)?{_NOT_KEYWORD}{_NAME}{_W}*(?:\(|USING{_W})"
    r")",
    re.I | re.A,
)


def _create(text: str) -> Op | None:
    m = _FAST_CREATE.match(text)
    if m is None:
        return _create_tokens(text)
    g = m.groups()
    if g[1] is not None:  # TABLE: groups 2, 3
        return CreateTable(Name(tuple(p for p in g[1:3] if p is not None)))
    index = Name(tuple(p for p in g[5:7] if p is not None)) if g[5] is not None else None
    return CreateIndex(Name(tuple(p for p in g[7:9] if p is not None)), index, g[4] is not None,
                       g[3] is not None)


def _create_tokens(text: str) -> Op | None:
    # Only the head is needed, read token by token as the parse asks: a CREATE TABLE is not tokenized
    # past its name.
    c = _Cursor([], islice(tokens(text), 24))
    c.i = 1
    unique = c.take("UNIQUE")
    if c.at("INDEX"):
        if not c.take("INDEX"):
            return None
        concurrently = c.take("CONCURRENTLY")
        index = None
        if not c.at("ON"):
            c.take_seq("IF", "NOT", "EXISTS")
            index = c.name()
        if not c.take("ON"):
            return None
        c.take("ONLY")
        table = c.name()
        return None if table is None else CreateIndex(table, index, concurrently, unique)
    c.take("GLOBAL", "LOCAL")
    c.take("TEMP", "TEMPORARY", "UNLOGGED")
    if not c.take("TABLE"):
        return None
    c.take_seq("IF", "NOT", "EXISTS")
    table = c.name()
    return None if table is None else CreateTable(table)


def _drop(c: _Cursor) -> Op | None:
    if c.take("INDEX"):
        concurrently = c.take("CONCURRENTLY")
        c.take_seq("IF", "EXISTS")
        names = c.names()
        return DropIndex(names, concurrently) if names else None
    if c.take("TABLE"):
        c.take_seq("IF", "EXISTS")
        names = c.names()
        return DropTable(names) if names else None
    return None


def _vacuum(c: _Cursor) -> Op:
    full = False
    if c.take("("):
        while c.i < len(c.toks) and not c.take(")"):
            if c.take("FULL"):
                full = not c.at("FALSE", "OFF", "0")
            else:
                c.i += 1
    while c.take("FULL", "FREEZE", "VERBOSE", "ANALYZE", "ANALYSE"):
        full = full or c.toks[c.i - 1].up == "FULL"
    tables: list[Name] = []
    while (n := c.name()) is not None:
        tables.append(n)
        if c.at("("):
            _skip_parens(c)
        if not c.take(","):
            break
    return Vacuum(full, tuple(tables))


def _cluster(c: _Cursor) -> Op:
    if c.at("("):
        _skip_parens(c)
    c.take("VERBOSE")
    return Cluster(c.name())


def _reindex(c: _Cursor) -> Op | None:
    concurrently = False
    if c.take("("):
        while c.i < len(c.toks) and not c.take(")"):
            if c.take("CONCURRENTLY"):
                concurrently = not c.at("FALSE", "OFF", "0")
            else:
                c.i += 1
    if not c.take("INDEX", "TABLE", "SCHEMA", "DATABASE", "SYSTEM"):
        return None
    kind = c.toks[c.i - 1].up
    concurrently = c.take("CONCURRENTLY") or concurrently
    return Reindex(kind, c.name(), concurrently)


def _setting(c: _Cursor, text: str) -> Op | None:
    toks = c.toks
    if toks[0].up == "SELECT":
        # SELECT set_config('lock_timeout', '5s', false)
        for k in range(len(toks) - 4):
            if toks[k].up == "SET_CONFIG" and toks[k + 1].text == "(" and toks[k + 2].kind == "str" \
                    and toks[k + 2].text.strip("'").lower() == "lock_timeout" and toks[k + 4].kind == "str":
                return SetLockTimeout(_timeout_on(toks[k + 4].text))
        return None
    c.take("SESSION", "LOCAL")
    if c.i >= len(toks):
        return None
    what = toks[c.i].ident
    c.i += 1
    if what == "search_path":
        return SetSearchPath(text)
    if what != "lock_timeout":
        return None
    c.take("TO", "=")
    return SetLockTimeout(c.i < len(toks) and _timeout_on(toks[c.i].text))


def _timeout_on(value: str) -> bool:
    return value.strip("'").strip().lower() not in ("0", "default", "")


def _skip_parens(c: _Cursor) -> list[Tok]:
    """Skip a parenthesised group at the cursor; return the tokens inside."""
    start = c.i
    depth = 0
    while c.i < len(c.toks):
        t = c.toks[c.i].text
        c.i += 1
        if t == "(":
            depth += 1
        elif t == ")":
            depth -= 1
            if depth == 0:
                break
    return c.toks[start + 1:c.i - 1]


def _split_commas(toks: list[Tok], start: int) -> list[list[Tok]]:
    parts: list[list[Tok]] = [[]]
    depth = 0
    for t in toks[start:]:
        if t.text == "(":
            depth += 1
        elif t.text == ")":
            depth -= 1
        elif t.text == "," and depth == 0:
            parts.append([])
            continue
        parts[-1].append(t)
    return [p for p in parts if p]


def _alter(c: _Cursor) -> Op | None:
    if not c.take("TABLE"):
        return None
    c.take_seq("IF", "EXISTS")
    c.take("ONLY")
    table = c.name()
    if table is None:
        return None
    c.take("*")
    if c.at("SET") and c.at("SCHEMA", k=1):
        return AlterTable(table, (Action("lighter"),))
    return AlterTable(table, tuple(_action(part) for part in _split_commas(c.toks, c.i)))


_CONSTRAINT_START = ("CONSTRAINT", "CHECK", "FOREIGN", "PRIMARY", "UNIQUE", "EXCLUDE")


def _action(toks: list[Tok]) -> Action:
    c = _Cursor(toks)
    if c.take("ADD"):
        if c.at(*_CONSTRAINT_START):
            return _constraint(c)
        c.take("COLUMN")
        c.take_seq("IF", "NOT", "EXISTS")
        return _add_column(c)
    if c.take("DROP"):
        if c.take("CONSTRAINT"):
            return Action("drop constraint")
        c.take("COLUMN")
        c.take_seq("IF", "EXISTS")
        return Action("drop column", column=_ident_at(c))
    if c.take("ALTER"):
        c.take("COLUMN")
        column = _ident_at(c)
        c.i += 1
        if c.take_seq("SET", "DATA", "TYPE") or c.take("TYPE"):
            return Action("type", column=column)
        if c.take_seq("SET", "NOT", "NULL"):
            return Action("set not null", column=column)
        if c.at("SET") and c.at("STATISTICS", k=1):
            return Action("lighter", column=column)
        return Action("other", column=column)
    if c.take("VALIDATE"):
        c.take("CONSTRAINT")
        return Action("validate", constraint=_ident_at(c))
    if c.take("RENAME"):
        if c.take("TO"):
            return Action("rename table")
        if c.take("CONSTRAINT"):
            return Action("rename constraint")
        c.take("COLUMN")
        return Action("rename column", column=_ident_at(c))
    if c.at("SET") and c.at("(", k=1) or c.at("RESET"):
        return Action("lighter")  # storage parameters
    return Action("other")


def _ident_at(c: _Cursor) -> str | None:
    return c.toks[c.i].ident if c.i < len(c.toks) else None


def _constraint(c: _Cursor) -> Action:
    name = None
    if c.take("CONSTRAINT"):
        name = _ident_at(c)
        c.i += 1
    rest = c.rest()
    not_valid = any(rest[k] == "NOT" and rest[k + 1] == "VALID" for k in range(len(rest) - 1))
    using_index = any(rest[k] == "USING" and rest[k + 1] == "INDEX" for k in range(len(rest) - 1))
    if c.take("CHECK"):
        return Action("add constraint", constraint=name, ctype="check", not_valid=not_valid,
                      checks_not_null=_is_not_null_check(c))
    if c.take_seq("FOREIGN", "KEY"):
        _skip_parens(c)
        c.take("REFERENCES")
        return Action("add constraint", constraint=name, ctype="foreign key", not_valid=not_valid,
                      references=c.name())
    if c.take_seq("PRIMARY", "KEY"):
        return Action("add constraint", constraint=name, ctype="primary key", using_index=using_index)
    if c.take("UNIQUE"):
        return Action("add constraint", constraint=name, ctype="unique", using_index=using_index)
    return Action("add constraint", constraint=name, ctype="exclude")


def _is_not_null_check(c: _Cursor) -> str | None:
    """The column of ``CHECK (col IS NOT NULL)``, else None."""
    inside = [t for t in _skip_parens(c) if t.text not in ("(", ")")]
    if len(inside) == 4 and [t.up for t in inside[1:]] == ["IS", "NOT", "NULL"]:
        return inside[0].ident
    return None


def _add_column(c: _Cursor) -> Action:
    column = _ident_at(c)
    c.i += 1
    toks = c.toks[c.i:]
    ups = [t.up for t in toks]
    rewrite = None
    not_null = has_default = False
    ctype = None
    references = None
    if ups and ups[0] in SERIAL_TYPES:
        rewrite = f"{toks[0].text} fills every row from a sequence"
    depth = 0
    for k, u in enumerate(ups):
        nxt = ups[k + 1] if k + 1 < len(ups) else ""
        depth += (u == "(") - (u == ")")
        if depth > 0 or u == ")":
            continue
        if u == "NOT" and nxt == "NULL":
            not_null = True
        elif u == "DEFAULT":
            has_default = True
            fn = _volatile_call(toks, k + 1)
            if fn is not None:
                rewrite = f"DEFAULT {fn}() is volatile: every existing row gets its own value"
        elif u == "GENERATED" and "STORED" in ups[k:]:
            rewrite = "a stored generated column is computed for every existing row"
        elif u == "GENERATED" and "IDENTITY" in ups[k:]:
            rewrite = "an identity column fills every existing row from a sequence"
        elif u == "PRIMARY" and nxt == "KEY":
            ctype = "primary key"
        elif u == "UNIQUE":
            ctype = ctype or "unique"
        elif u == "CHECK" and nxt == "(":
            ctype = ctype or "check"
        elif u == "REFERENCES":
            ctype = ctype or "foreign key"
            references = _Cursor(toks[k + 1:]).name()
    return Action("add column", column=column, not_null=not_null, has_default=has_default,
                  rewrite=rewrite, ctype=ctype, references=references)


def _volatile_call(toks: list[Tok], start: int) -> str | None:
    """A volatile function called in the default expression starting at toks[start]."""
    depth = 0
    for k in range(start, len(toks)):
        t = toks[k]
        if t.text == "(":
            depth += 1
        elif t.text == ")":
            depth -= 1
        elif depth == 0 and t.up in ("NOT", "NULL", "CONSTRAINT", "CHECK", "REFERENCES", "PRIMARY",
                                     "UNIQUE", "COLLATE", "GENERATED"):
            return None
        ident = t.ident
        if ident in VOLATILE_FUNCTIONS and k + 1 < len(toks) and toks[k + 1].text == "(":
            return ident
    return None
