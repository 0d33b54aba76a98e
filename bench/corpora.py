"""Deterministic migration corpora for the benchmark, one copy per tool's file convention.

Every corpus is written once under ``bench/out/corpora/<key>/`` and reused while its parameters
match (a ``.done`` marker is written last, so an interrupted generation is redone, not trusted):

- ``plain/``  ``<version>_<name>.sql`` + ``<version>_<name>.rollback.sql``: sqlmigrate's own spelling,
  which yoyo-migrations reads unchanged (yoyo's rollback convention is the same suffix);
- ``dbmate/`` the same SQL inside ``-- migrate:up`` / ``-- migrate:down`` sections;
- ``psql/driver.sql`` one psql session applying every file with ``\\i``, each in its own transaction
  together with a history row (what a shell-script deploy with psql does).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HISTORY_DDL = (
    "CREATE TABLE bench_history (version bigint PRIMARY KEY, name text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now());"
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up: str
    down: str


@dataclass(frozen=True)
class Corpus:
    key: str
    root: Path
    count: int  # number of migrations
    sql_bytes: int  # size of the up files in plain/

    @property
    def plain(self) -> Path:
        return self.root / "plain"

    @property
    def dbmate(self) -> Path:
        return self.root / "dbmate"

    @property
    def psql_driver(self) -> Path:
        return self.root / "psql" / "driver.sql"


def _small_migration(i: int, width: int) -> Migration:
    """S1's unit: a table, an index, a comment and a 10-row insert."""
    t = f"item_{i:0{width}d}"
    rows = ",\n".join(f"    ({r}, 'row {r} of migration {i}')" for r in range(1, 11))
    up = (
        f"-- Migration {i}: a small table with an index, a comment and seed rows.\n"
        f"CREATE TABLE {t} (\n"
        "    id integer PRIMARY KEY,\n"
        "    name text NOT NULL,\n"
        "    created_at timestamptz NOT NULL DEFAULT now()\n"
        ");\n"
        f"CREATE INDEX {t}_name_idx ON {t} (name);\n"
        f"COMMENT ON TABLE {t} IS 'bench table {i}; created by migration {i}';\n"
        f"INSERT INTO {t} (id, name) VALUES\n{rows};\n"
    )
    return Migration(i, f"create_{t}", up, f"DROP TABLE {t};\n")


BULK_TABLE = "bulk_rows"


def _bulk_row(i: int) -> str:
    # Strings with ';' (and a doubled quote and a '--') so that a naive split on ';' or a naive
    # comment stripper breaks; ~90 bytes a row, so 100,000 rows make a ~9 MB file.
    return (
        f"INSERT INTO {BULK_TABLE} (id, label, note) VALUES "
        f"({i}, 'item {i}; a; b', 'it''s -- {i % 997};');\n"
    )


def _bulk_migration(rows: int) -> Migration:
    head = (
        "-- A data migration: one single-row INSERT per row.\n"
        f"CREATE TABLE {BULK_TABLE} (id bigint PRIMARY KEY, label text NOT NULL,"
        " note text NOT NULL);\n"
    )
    up = head + "".join(_bulk_row(i) for i in range(1, rows + 1))
    return Migration(1, "load_bulk_rows", up, f"DROP TABLE {BULK_TABLE};\n")


def rows_for_megabytes(mb: float) -> int:
    """How many bulk rows make an S2 file of about ``mb`` MiB."""
    sample = sum(len(_bulk_row(i)) for i in range(100_000, 100_100)) / 100
    return int(mb * 1024 * 1024 / sample)


def _write(root: Path, migrations: list[Migration], width: int) -> int:
    plain, dbm, psql_dir = root / "plain", root / "dbmate", root / "psql"
    for d in (plain, dbm, psql_dir):
        d.mkdir(parents=True, exist_ok=True)
    driver = ["\\set ON_ERROR_STOP 1", HISTORY_DDL]
    total = 0
    for m in migrations:
        stem = f"{m.version:0{width}d}_{m.name}"
        up_path = plain / f"{stem}.sql"
        up_path.write_text(m.up, encoding="utf-8")
        total += len(m.up.encode())
        (plain / f"{stem}.rollback.sql").write_text(m.down, encoding="utf-8")
        (dbm / f"{stem}.sql").write_text(
            f"-- migrate:up\n{m.up}\n-- migrate:down\n{m.down}", encoding="utf-8"
        )
        driver += [
            "BEGIN;",
            f"\\i '{up_path.resolve()}'",
            f"INSERT INTO bench_history (version, name) VALUES ({m.version}, '{m.name}');",
            "COMMIT;",
        ]
    (psql_dir / "driver.sql").write_text("\n".join(driver) + "\n", encoding="utf-8")
    return total


def _materialise(out: Path, key: str, migrations_factory, width: int) -> Corpus:
    root = out / "corpora" / key
    done = root / ".done"
    if done.exists():
        count, size = (int(x) for x in done.read_text().split())
        return Corpus(key, root, count, size)
    if root.exists():
        import shutil

        shutil.rmtree(root)
    migrations = migrations_factory()
    size = _write(root, migrations, width)
    done.write_text(f"{len(migrations)} {size}\n")
    return Corpus(key, root, len(migrations), size)


def small_corpus(out: Path, n: int) -> Corpus:
    width = max(4, len(str(n)))
    return _materialise(
        out, f"small-{n}", lambda: [_small_migration(i, width) for i in range(1, n + 1)], width
    )


def bulk_corpus(out: Path, rows: int) -> Corpus:
    return _materialise(out, f"bulk-{rows}", lambda: [_bulk_migration(rows)], 4)


def bulk_file(c: Corpus) -> Path:
    return next(p for p in sorted(c.plain.iterdir()) if not p.name.endswith(".rollback.sql"))


if __name__ == "__main__":  # pragma: no cover - manual use: python bench/corpora.py
    here = Path(__file__).resolve().parent / "out"
    for c in (small_corpus(here, 10), bulk_corpus(here, 1000)):
        print(c, os.listdir(c.plain)[:4])
