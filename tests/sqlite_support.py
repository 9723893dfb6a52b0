"""How the suite opens an SQLite store (``tests/stores.py`` calls this), and damages one."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from jobrunner.stores.sqlite import SQLiteStore


@asynccontextmanager
async def open_sqlite_store(tmp_path: Path, **options: Any) -> AsyncIterator[SQLiteStore]:
    """An open, empty SQLiteStore on a new file in ``tmp_path``, closed afterwards."""
    store = SQLiteStore(tmp_path / "jobs.db", **options)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def damage_the_ready_index(db: Path) -> None:
    """Write garbage over the root page of the index claims read. The file still
    opens (its schema pages are intact); every claim fails as SQLITE_CORRUPT."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        (root,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'jobrunner_jobs_ready'"
        ).fetchone()
    conn.close()
    with open(db, "r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(b"\xa5" * page_size)
