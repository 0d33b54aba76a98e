"""``sqlmigrate verify`` against ``sqlmigrate up`` on a generated history (issue 12: verify < 6x up).

    .venv/bin/python bench/bench_verify.py [SERVER_URL] [--count 200] [--repeat 3]

The history (``bench/out/corpora/verify-<count>/``) cycles through five kinds of migration, each
with a correct rollback: a table with a foreign key, an index and seed rows; a PL/pgSQL function and
a trigger; a view; a materialized view with an index; a new column with a default and a data update.
Each run is a fresh process, wall time, on a fresh database (``smbench_verify_*``, dropped after):
``up`` applies the whole history; ``verify`` creates its own throwaway database on the same server.
Prints one line per run, then ``ok``/``FAIL  verify/up N.Nx (target < 6x)`` with the medians.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"


def _migration(i: int) -> tuple[str, str]:
    t, prev = f"t{i:04d}", f"t{(i - 5):04d}"
    kind = i % 5
    if kind == 0:
        fk = f", parent integer REFERENCES {prev} (id)" if i >= 5 else ""
        up = (f"CREATE TABLE {t} (id integer PRIMARY KEY, name text NOT NULL, score numeric DEFAULT 0,"
              f" created timestamptz NOT NULL DEFAULT now(){fk});\n"
              f"CREATE INDEX {t}_name_idx ON {t} (lower(name));\n"
              f"COMMENT ON TABLE {t} IS 'table {i}';\n"
              f"INSERT INTO {t} (id, name) SELECT g, 'row ' || g FROM generate_series(1, 10) g;\n")
        return up, f"DROP TABLE {t};\n"
    base = f"t{(i - kind):04d}"
    if kind == 1:
        up = (f"CREATE FUNCTION {t}_touch() RETURNS trigger LANGUAGE plpgsql AS $$\n"
              "BEGIN\n  NEW.score := coalesce(NEW.score, 0) + 1;\n  RETURN NEW;\nEND\n$$;\n"
              f"CREATE TRIGGER {t}_touch BEFORE INSERT OR UPDATE ON {base}"
              f" FOR EACH ROW EXECUTE FUNCTION {t}_touch();\n")
        return up, f"DROP TRIGGER {t}_touch ON {base};\nDROP FUNCTION {t}_touch();\n"
    if kind == 2:
        up = (f"CREATE VIEW {t}_v AS SELECT id, name, score * 2 AS double_score FROM {base}"
              " WHERE score >= 0;\n")
        return up, f"DROP VIEW {t}_v;\n"
    if kind == 3:
        up = (f"CREATE MATERIALIZED VIEW {t}_mv AS SELECT name, count(*) AS n FROM {base} GROUP BY name;\n"
              f"CREATE UNIQUE INDEX {t}_mv_name ON {t}_mv (name);\n")
        return up, f"DROP MATERIALIZED VIEW {t}_mv;\n"
    up = (f"ALTER TABLE {base} ADD COLUMN note_{i} text NOT NULL DEFAULT '';\n"
          f"UPDATE {base} SET note_{i} = 'seen' WHERE id <= 5;\n")
    return up, f"ALTER TABLE {base} DROP COLUMN note_{i};\n"


def corpus(count: int) -> Path:
    root = ROOT / "bench" / "out" / "corpora" / f"verify-{count}"
    done = root / ".done"
    if done.exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        up, down = _migration(i)
        (root / f"{i + 1:04d}_step_{i}.sql").write_text(up)
        (root / f"{i + 1:04d}_step_{i}.rollback.sql").write_text(down)
    done.write_text("")
    return root


def _admin(server: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(server, autocommit=True) as c:
        c.execute(statement)


def _url(server: str, dbname: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    return make_conninfo(**{**conninfo_to_dict(server), "dbname": dbname})


def timed(args: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run([str(PYTHON), "-m", "sqlmigrate", *args], cwd=ROOT, capture_output=True, text=True)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"sqlmigrate {args[0]} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}"
                         f"\n{proc.stderr[-3000:]}")
    return took


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("server", nargs="?", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    directory = corpus(args.count)
    ups: list[float] = []
    verifies: list[float] = []
    for k in range(args.repeat):
        name = f"smbench_verify_{uuid.uuid4().hex[:8]}"
        _admin(args.server, f'CREATE DATABASE "{name}"')
        try:
            ups.append(timed(["up", "-q", "--dir", str(directory), "--database", _url(args.server, name)]))
        finally:
            _admin(args.server, f'DROP DATABASE "{name}" WITH (FORCE)')
        verifies.append(timed(["verify", "-q", "--dir", str(directory), "--database", args.server]))
        print(f"run {k + 1}: up {ups[-1]:.2f} s  verify {verifies[-1]:.2f} s", flush=True)
    up, ver = statistics.median(ups), statistics.median(verifies)
    ratio = ver / up
    print(f"{'ok  ' if ratio < 6 else 'FAIL'}  {args.count} migrations: up {up:.2f} s, verify {ver:.2f} s "
          f"(medians of {args.repeat}): verify/up {ratio:.1f}x (target < 6x)")
    return 0 if ratio < 6 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
