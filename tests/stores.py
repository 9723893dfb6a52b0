"""How the suite opens each kind of store; the ``store`` fixture is parametrized
over ``STORE_KINDS`` so every behaviour test runs on every store.

Each durable store keeps its test set-up in its own support module
(``tests/sqlite_support.py``, ``tests/pg_support.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from jobrunner.stores.base import Store
from jobrunner.stores.memory import MemoryStore

STORE_KINDS = ["memory", "sqlite", "postgres"]


@asynccontextmanager
async def open_test_store(kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    """An open, empty store of ``kind``, closed (and for PostgreSQL dropped) afterwards."""
    if kind == "memory":
        store = MemoryStore()
        await store.open()
        try:
            yield store
        finally:
            await store.close()
    elif kind == "sqlite":
        from tests.sqlite_support import open_sqlite_store

        async with open_sqlite_store(tmp_path) as sqlite_store:
            yield sqlite_store
    elif kind == "postgres":
        from tests.pg_support import open_postgres_store

        async with open_postgres_store() as pg_store:
            yield pg_store
    else:  # pragma: no cover - a kind listed above without a branch is a bug here
        raise ValueError(f"unknown store kind {kind!r}")
