"""How the suite opens an SQLite store (``tests/stores.py`` calls this)."""

from __future__ import annotations

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
