"""A FastAPI application that migrates its database at boot (sqlmigrate in an async app).

    DATABASE_URL=postgresql://app@db/app uvicorn fastapi_app:app

sqlmigrate is synchronous, so the lifespan runs it in a worker thread: the event loop stays free,
and the app serves no request before the schema matches the migration files.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from fastapi import FastAPI
from sqlalchemy import create_engine, text

import sqlmigrate

engine = create_engine(os.environ["DATABASE_URL"])
MIGRATIONS = Path(__file__).parent / "sql"
# "0" when a deploy step runs `sqlmigrate up` before the app starts: then replicas only check.
MIGRATE_AT_BOOT = os.environ.get("MIGRATE_AT_BOOT", "1") == "1"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    if MIGRATE_AT_BOOT:
        # Safe with every replica booting at once: one applies, the others wait, then find nothing to do.
        await anyio.to_thread.run_sync(sqlmigrate.up, engine, MIGRATIONS)
    # Never serve on a schema that differs from the files: raises NotCurrentError (pending, modified,
    # missing, renamed or failed migrations), and the app does not start.
    await anyio.to_thread.run_sync(sqlmigrate.ensure_current, engine, MIGRATIONS)
    yield
    engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.get("/notes")
def list_notes() -> list[dict[str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, body FROM notes ORDER BY id"))
        return [{"id": row.id, "body": row.body} for row in rows]
