"""The server's floor: the least a Python migration runner must do, run as its own process.

    python floor.py per-migration URL DIR   # S1: per file BEGIN / file / history INSERT / COMMIT
    python floor.py one-message URL DIR     # S2: each file as ONE simple-query message, one transaction

No parsing, no checksums, no locking, no audit log: only the round trips that any correct runner
needs. Timed by run.py as a whole process, interpreter start-up included, like every other tool.
"""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg

from corpora import HISTORY_DDL


def _migrations(directory: Path) -> list[tuple[int, str, Path]]:
    found = []
    for p in directory.iterdir():
        if p.suffix == ".sql" and not p.name.endswith(".rollback.sql"):
            version, _, name = p.stem.partition("_")
            found.append((int(version), name, p))
    return sorted(found)


def main(argv: list[str]) -> int:
    mode, url, directory = argv
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(HISTORY_DDL)
        for version, name, path in _migrations(Path(directory)):
            text = path.read_text(encoding="utf-8")
            if mode == "per-migration":
                # 4 round trips: BEGIN, the file (no parameters, so psycopg sends it as one
                # simple-query message), the history row, COMMIT.
                conn.execute("BEGIN")
                conn.execute(text)
                conn.execute(
                    "INSERT INTO bench_history (version, name) VALUES (%s, %s)", (version, name)
                )
                conn.execute("COMMIT")
            elif mode == "one-message":
                # The whole file and its history row in a single simple-query message: the server
                # runs a multi-statement message as one implicit transaction, so this is the floor
                # for "one transaction" as well as for "one round trip".
                history = f"INSERT INTO bench_history (version, name) VALUES ({version}, '{name}');"
                conn.pgconn.exec_(b"BEGIN")
                res = conn.pgconn.exec_(text.encode() + b"\n" + history.encode())
                if res.status != psycopg.pq.ExecStatus.COMMAND_OK:
                    raise SystemExit(f"floor: {res.error_message.decode(errors='replace')}")
                conn.pgconn.exec_(b"COMMIT")
            else:
                raise SystemExit(f"unknown mode {mode!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
