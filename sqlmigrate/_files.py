"""Finding and reading migration files.

Everything here works on the file system only, so every problem with the files is reported before
anything touches the database.
"""

from __future__ import annotations

import codecs
import hashlib
import itertools
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from ._errors import ConfigurationError, MigrationFileError

if TYPE_CHECKING:
    from datetime import datetime

#: ``<version>_<name>`` followed by one of the suffixes below, in any letter case (``.SQL`` too).
#: ``<name>`` is checked by :func:`_is_name`: Python's ``\w`` would refuse the combining marks of
#: Devanagari, Thai, ... that :func:`slug` keeps.
_FILE_RE = re.compile(r"^(?P<version>[0-9]+)_(?P<name>[^.]+?)(?P<kind>\.rollback|\.up|\.down)?\.sql$",
                      re.IGNORECASE | re.ASCII)
_ASCII_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")

# Which spelling a file uses: sqlmigrate's own (``.sql`` + ``.rollback.sql``) or golang-migrate's and
# dbmate's (``.up.sql`` + ``.down.sql``).
_NATIVE, _UPDOWN = "native", "up/down"
_KINDS = {None: (_NATIVE, "up"), ".rollback": (_NATIVE, "down"), ".up": (_UPDOWN, "up"), ".down": (_UPDOWN, "down")}

_BOM = "\ufeff"

#: The first line of every schema file `sqlmigrate dump` writes: discovery skips such a file whatever
#: it is named ([tool.sqlmigrate] schema_file may put it in the migration directory).
SCHEMA_FILE_HEADER = "-- Schema as the migrations leave it, read from the catalogs by `sqlmigrate dump`."


@dataclass(frozen=True)
class Migration:
    """One migration: its file, its optional rollback file, and the checksum of its text."""

    version: int
    name: str
    directory: Path
    filename: str
    checksum: str
    rollback_filename: str | None = None

    # Paths are built on first use: a boot-time status check of thousands of migrations needs none.
    @cached_property
    def path(self) -> Path:
        return self.directory / self.filename

    @cached_property
    def rollback(self) -> Path | None:
        return None if self.rollback_filename is None else self.directory / self.rollback_filename

    @property
    def label(self) -> str:
        """How messages name a migration: ``<version>_<name>`` as the file spells them, without
        ``.sql`` or golang-migrate's ``.up.sql``."""
        return _split(self.filename)[0]

    def read(self) -> str:
        return read_text(self.path)

    def read_rollback(self) -> str:
        if self.rollback is None:
            raise MigrationFileError(
                f"migration {self.label} has no rollback file; write {rollback_name(self)} "
                "beside it to make it reversible",
                self.path,
            )
        return read_text(self.rollback)


def rollback_name(migration: Migration) -> str:
    """The file name a rollback of ``migration`` should have, in the spelling its file uses."""
    return _down_name(migration.filename)


def read_text(path: Path) -> str:
    """Read a migration file as the text sqlmigrate runs: its bytes decoded, CR and CRLF kept (data
    in a migration arrives byte for byte); only a leading UTF-8 BOM is dropped.
    """
    return "".join(iter_text(path))


def file_checksum(path: Path | str) -> str:
    """SHA-256 of the file's normalised text; a large file is read in chunks, so memory stays flat."""
    with open(path, "rb", buffering=0) as f:
        small = os.fstat(f.fileno()).st_size <= _CHUNK
        data = f.readall() if small else b""
    if small and b"\r" not in data and not data.startswith(b"\xef\xbb\xbf") and b"\0" not in data:
        # Already normalised: the bytes are the text's UTF-8, once they are known to be valid UTF-8.
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            pass  # iter_text below names the line
        else:
            return hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256()
    normalise = Normaliser()
    for piece in iter_text(path):
        digest.update(normalise(piece).encode("utf-8"))
    digest.update(normalise("", final=True).encode("utf-8"))
    return digest.hexdigest()


class Normaliser:
    """Line endings of a text given piece by piece, normalised to ``\\n`` (CRLF and a lone CR),
    for the checksum: a CRLF checkout does not look like an edit. A CR ending a piece waits for
    the next one, which may start with its LF."""

    def __init__(self) -> None:
        self._carry = ""

    def __call__(self, piece: str, *, final: bool = False) -> str:
        piece = self._carry + piece
        self._carry = ""
        if not final and piece.endswith("\r"):
            piece, self._carry = piece[:-1], "\r"
        if "\r" in piece:
            piece = piece.replace("\r\n", "\n").replace("\r", "\n")
        return piece


_CHUNK = 1 << 20


def iter_text(path: Path | str, chunk_size: int = _CHUNK) -> Iterator[str]:
    """The file's text (see :func:`read_text`) in pieces of about ``chunk_size`` characters.

    Raises :class:`MigrationFileError` naming the line of invalid UTF-8 or of a NUL byte, which
    PostgreSQL cannot accept in SQL text.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    lines_before = 0  # newlines in the bytes already decoded, for error messages
    first = True
    with open(path, "rb") as f:
        while True:
            data = f.read(chunk_size)
            try:
                piece = decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                bad = exc.object[exc.start] if exc.start < len(exc.object) else 0
                raise MigrationFileError(
                    f"is not valid UTF-8 (byte 0x{bad:02x}); re-save the file as UTF-8",
                    Path(path), lines_before + data.count(b"\n", 0, exc.start) + 1,
                ) from None
            if first and piece:
                first = False
                if piece.startswith(_BOM):
                    piece = piece[1:]
            nul = piece.find("\0")
            if nul >= 0:
                raise MigrationFileError(
                    "contains a NUL byte, which PostgreSQL cannot accept in SQL text; remove it",
                    Path(path), lines_before + piece.count("\n", 0, nul) + 1,
                )
            lines_before += data.count(b"\n")
            if piece:
                yield piece
            if not data:
                return


def checksum(text: str) -> str:
    """SHA-256 of ``text`` (as :func:`read_text` returns it) with line endings normalised."""
    return hashlib.sha256(Normaliser()(text, final=True).encode("utf-8")).hexdigest()


def _is_schema_file(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(SCHEMA_FILE_HEADER)) == SCHEMA_FILE_HEADER.encode()
    except OSError:
        return False


def discover(directory: Path | str) -> list[Migration]:
    """Every migration in ``directory``, in version order.

    All problems with the file set are collected and raised together as one
    :class:`MigrationFileError`, so a user fixes them in one pass.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ConfigurationError(
            f"migration directory {root} does not exist; create it, or point --dir / "
            "SQLMIGRATE_DIR / [tool.sqlmigrate] dir at your migrations"
        )
    real_root = root.resolve()
    problems: list[str] = []
    # version -> kind ("up"/"down") -> list of (file name, name, spelling)
    found: dict[int, dict[str, list[tuple[str, str, str]]]] = {}
    # scandir: file types come with the listing, so a large directory costs no stat per file.
    with os.scandir(root) as listing:
        entries = sorted((e for e in listing if e.name[-4:].lower() == ".sql" and not e.name.startswith(".")),
                         key=lambda e: e.name)
    for entry in entries:
        fname = entry.name
        if entry.is_dir() or fname == "schema.sql":  # `sqlmigrate dump`'s schema file
            continue
        path = os.path.join(root, fname)
        m = _FILE_RE.match(fname)
        if (m is None or not _is_name(m["name"])) and entry.is_file() and _is_schema_file(path):
            continue
        if m is None or not _is_name(m["name"]):
            problems.append(
                f"{path}: not a migration file name; expected <version>_<name>.sql (or .rollback.sql, "
                ".up.sql, .down.sql), where <version> is digits and <name> is letters, digits, '_' "
                "and '-', e.g. 0003_add_modules_data_field.sql (`sqlmigrate new \"add modules data "
                "field\"` makes one)"
            )
            continue
        if entry.is_symlink() and not _inside(Path(path).resolve(), real_root):
            problems.append(
                f"{path}: is a symbolic link to {Path(path).resolve()}, outside the migration directory; "
                "sqlmigrate only reads files inside it: copy the file in instead"
            )
            continue
        if not entry.is_file():
            # Reading a named pipe would block forever, and a device never ends.
            problems.append(
                f"{path}: is not a regular file (a named pipe, socket, device or broken link); "
                "sqlmigrate reads only regular files: replace it with a file holding the migration"
            )
            continue
        spelling, kind = _KINDS[m["kind"] and m["kind"].lower()]
        found.setdefault(int(m["version"]), {}).setdefault(kind, []).append((fname, m["name"], spelling))

    migrations: list[Migration] = []
    for version in sorted(found):
        kinds = found[version]
        ups = kinds.get("up", [])
        downs = kinds.get("down", [])
        spellings = {s for _, _, s in ups + downs}
        if len(spellings) > 1:
            names = ", ".join(f for f, _, _ in ups + downs)
            problems.append(
                f"{root}: version {version} mixes the .sql/.rollback.sql and .up.sql/.down.sql spellings "
                f"({names}); rename the files to use one of them"
            )
            continue
        if len(ups) > 1:
            names = ", ".join(os.path.join(root, f) for f, _, _ in ups)
            problems.append(f"{names}: two migrations with version {version}; renumber one of them")
            continue
        if len(downs) > 1:
            names = ", ".join(os.path.join(root, f) for f, _, _ in downs)
            problems.append(f"{names}: two rollback files for version {version}; keep one")
            continue
        if not ups:
            fname = downs[0][0]
            problems.append(
                f"{os.path.join(root, fname)}: rollback file without its migration; add the migration "
                f"{_up_name(fname)} or delete the rollback"
            )
            continue
        fname, name, _ = ups[0]
        rollback = downs[0][0] if downs else None
        if rollback is not None and downs[0][1] != name:
            problems.append(
                f"{os.path.join(root, rollback)}: rollback name does not match its migration {fname}; "
                f"rename it to {_down_name(fname)}"
            )
            continue
        try:
            digest = file_checksum(os.path.join(root, fname))
        except MigrationFileError as exc:
            problems.append(str(exc))
            continue
        migrations.append(Migration(version, name, root, fname, digest, rollback))
    if problems:
        raise MigrationFileError("\n".join(problems))
    return migrations


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _split(fname: str) -> tuple[str, str]:
    """``fname`` as its ``<version>_<name>`` stem and its suffix in lower case (``.up.sql``, ...)."""
    lower = fname.lower()
    for suffix in (".rollback.sql", ".up.sql", ".down.sql", ".sql"):
        if lower.endswith(suffix):
            return fname[: -len(suffix)], suffix
    return fname, ""


def _up_name(rollback_fname: str) -> str:
    stem, suffix = _split(rollback_fname)
    return stem + (".up.sql" if suffix == ".down.sql" else ".sql")


def _down_name(fname: str) -> str:
    stem, suffix = _split(fname)
    return stem + (".down.sql" if suffix == ".up.sql" else ".rollback.sql")


def _is_name(name: str) -> bool:
    """Whether ``name`` is a valid ``<name>``: letters, digits (any script, with their combining
    marks), ``_`` and ``-``. Most names are ASCII, and a regular expression decides those fast."""
    if _ASCII_NAME_RE.match(name):
        return True
    return not name.isascii() and all(_is_word_char(c) or c in "_-" for c in name)


def _is_word_char(c: str) -> bool:
    return unicodedata.category(c)[0] in "LMN"


def slug(description: str) -> str:
    """The ``<name>`` of a file name for a free-text description: ``"Add modules data field!"`` is
    ``add_modules_data_field``, ``"描述性消息"`` stays as it is.

    Letters and digits of any script are kept (lower-cased where they have case); every run of other
    characters (spaces, punctuation, ``/``, ``.``) becomes one ``_``, except a run of only ``-``, which
    stays ``-``. The result is at most ``_MAX_NAME`` bytes of UTF-8, and may be empty.
    """
    text = unicodedata.normalize("NFC", description).lower()
    parts: list[str] = []
    for is_word, run in itertools.groupby(text, key=_is_word_char):
        chars = "".join(run)
        parts.append(chars if is_word else "-" if set(chars) == {"-"} else "_")
    while parts and not _is_word_char(parts[0][0]):
        parts.pop(0)
    while parts and not _is_word_char(parts[-1][0]):
        parts.pop()
    name = "".join(parts)
    encoded = name.encode("utf-8")
    if len(encoded) > _MAX_NAME:
        name = encoded[:_MAX_NAME].decode("utf-8", "ignore").rstrip("_-")
    return name


# Versions at least this long are read as timestamps (YYYYMMDDHHMMSS), and `new` continues with one.
_TIMESTAMP_DIGITS = 14


# File names are limited to 255 bytes: leave room for a timestamp version and ".rollback.sql".
_MAX_NAME = 200


def create(directory: Path | str, description: str, *, now: datetime | None = None) -> tuple[Path, Path]:
    """Create the next migration and its rollback, named after ``description`` (see :func:`slug`),
    keeping the directory's numbering style."""
    name = slug(description)
    if not name:
        raise ConfigurationError(
            f"cannot name a migration after {description!r}: it has no letters or digits; describe the "
            "change, e.g. sqlmigrate new \"add users email\""
        )
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    existing = discover(root)
    width, updown = _style(existing, root.iterdir())
    if width >= _TIMESTAMP_DIGITS:
        from datetime import datetime, timezone

        stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d%H%M%S")
        version = max(int(stamp), existing[-1].version + 1 if existing else 0)
    else:
        version = existing[-1].version + 1 if existing else 1
    digits = str(version).zfill(width)
    up_suffix, down_suffix = (".up.sql", ".down.sql") if updown else (".sql", ".rollback.sql")
    up = root / f"{digits}_{name}{up_suffix}"
    down = root / f"{digits}_{name}{down_suffix}"
    up.write_text(f"-- Migration {digits}_{name}: write the change here.\n", encoding="utf-8")
    down.write_text(f"-- Rollback of {digits}_{name}: undo exactly what the migration did.\n",
                    encoding="utf-8")
    return up, down


def _style(existing: list[Migration], entries: Iterable[Path]) -> tuple[int, bool]:
    """The zero-padded width of versions and whether the directory uses .up.sql/.down.sql."""
    if not existing:
        return 4, False
    last = existing[-1]
    width = len(last.filename.split("_", 1)[0])
    return width, _split(last.filename)[1] == ".up.sql"
