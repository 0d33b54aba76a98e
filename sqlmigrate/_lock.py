"""The migration lock: a session-level advisory lock, waited for by polling.

Waiters poll ``pg_try_advisory_lock`` from an autocommit connection instead of blocking in
``pg_advisory_lock``: a blocked waiter holds a snapshot open, and the holder's
``CREATE INDEX CONCURRENTLY`` would wait for it forever.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ._errors import LockTimeoutError

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("sqlmigrate")

_FIRST_POLL = 0.05
_MAX_POLL = 0.5


def acquire(conn: psycopg.Connection, key: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    delay = _FIRST_POLL
    announced = False
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if row and row[0]:
            return
        now = time.monotonic()
        if now >= deadline:
            raise LockTimeoutError(
                f"another process held the migration lock of {what} for more than {timeout:g} s; "
                "it may still be migrating: check pg_stat_activity (application_name = 'sqlmigrate'), "
                "or raise --lock-timeout"
            )
        if not announced:
            log.info("waiting for another process to finish migrating %s", what)
            announced = True
        time.sleep(min(delay, deadline - now))
        delay = min(delay * 2, _MAX_POLL)


def release(conn: psycopg.Connection, key: int) -> None:
    if not conn.closed:
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
