"""Benchmark: the data-loss check stays cheap on a table of 5,000,000 rows.

Run by hand (not part of pytest):

    .venv/bin/python bench/bench_dataloss.py [SERVER_URL]

SERVER_URL (else env SQLMIGRATE_BENCH_DATABASE_URL, else postgresql://postgres@127.0.0.1:5432/postgres)
names a server where the script may create and drop a scratch database of its own. Each check is
timed several times; the script prints the times and fails unless every run is under 0.2 s.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlmigrate._dataloss import find_data_loss  # noqa: E402

ROWS = 5_000_000
LIMIT_S = 0.2
RUNS = 7

# (label, rollback statement); every one must answer within LIMIT_S whatever it finds.
CASES = [
    ("DROP TABLE", "DROP TABLE big"),
    ("DROP COLUMN (values set)", "ALTER TABLE big DROP COLUMN email"),
    ("DELETE ... WHERE (indexed)", "DELETE FROM big WHERE id > 2500000"),
    ("DELETE ... WHERE (few rows)", "DELETE FROM big WHERE id BETWEEN 100 AND 199"),
    ("TRUNCATE", "TRUNCATE big"),
    ("DELETE (all rows)", "DELETE FROM big"),
    # The hard ones: only a full scan could decide, so the check must give up in time.
    ("DROP COLUMN (all NULL)", "ALTER TABLE big DROP COLUMN note"),
    ("DELETE ... WHERE (unindexed, no match)", "DELETE FROM big WHERE email LIKE '%nobody%'"),
]


def main(argv: list[str]) -> int:
    server = (argv[1] if len(argv) > 1 else None) or os.environ.get(
        "SQLMIGRATE_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"sqlmigrate_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        version = admin.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    failures = 0
    try:
        with psycopg.connect(make_conninfo(server, dbname=name), autocommit=True) as conn:
            t0 = time.monotonic()
            conn.execute(
                "CREATE TABLE big (id bigint, email text, note text);"
                "INSERT INTO big SELECT g, 'user' || g || '@example.com', NULL"
                f" FROM generate_series(1, {ROWS}) g;"
                "ALTER TABLE big ADD PRIMARY KEY (id)"
            )
            conn.execute("VACUUM ANALYZE big")
            print(f"PostgreSQL {version}: built {ROWS:,}-row table in {time.monotonic() - t0:.1f} s")
            for label, stmt in CASES:
                times: list[float] = []
                outcomes: list[str] = []
                for _ in range(RUNS):
                    s = time.perf_counter()
                    findings = find_data_loss(conn, [(stmt, 1)])
                    times.append(time.perf_counter() - s)
                    what = "; ".join(f.describe() for f in findings) or "no finding"
                    if what not in outcomes:  # a borderline probe may decide in one run, give up in another
                        outcomes.append(what)
                worst = max(times)
                ok = worst < LIMIT_S
                failures += not ok
                what = " | ".join(outcomes)
                print(f"{'ok  ' if ok else 'FAIL'} {label:40s} median {statistics.median(times) * 1000:6.1f} ms"
                      f"  max {worst * 1000:6.1f} ms  -> {what}")
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    assert failures == 0, f"{failures} check(s) took {LIMIT_S} s or more"
    print(f"all checks under {LIMIT_S} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
