"""PostgreSQL for the test suite: where the server is, and what to do without one.

The DSN comes from ``JOBRUNNER_TEST_POSTGRES_DSN``, by default the local server
(``postgresql://postgres@127.0.0.1:5432/test``, trust auth). If it does not
answer, every PostgreSQL test skips with the reason, except under ``CI=true``,
where it fails: CI promises a server, so a missing one is a broken build, not a
reason to pass. ``require_postgres()`` is that policy, in one place.

Each test gets its own schema (``jrtest_<random>``), dropped afterwards, so
parallel runs and other engineers' runs never collide.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from jobrunner.stores.postgres import PostgresStore

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"

_checked: str | None = None  # "" once the server answered, else why it did not


def postgres_dsn() -> str:
    """The DSN the tests use."""
    return os.environ.get("JOBRUNNER_TEST_POSTGRES_DSN", DEFAULT_DSN)


async def require_postgres() -> str:
    """The DSN, if the server answers; otherwise skip (or fail under ``CI=true``)."""
    global _checked
    dsn = postgres_dsn()
    if _checked is None:
        try:
            conn = await asyncpg.connect(dsn, timeout=5)
        except Exception as exc:
            _checked = f"{type(exc).__name__}: {exc}"
        else:
            await conn.close()
            _checked = ""
    if _checked:
        reason = (
            f"PostgreSQL is not reachable at {dsn} ({_checked}); start it or set JOBRUNNER_TEST_POSTGRES_DSN"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    return dsn


def unique_schema() -> str:
    """A schema name no other test uses."""
    return f"jrtest_{secrets.token_hex(6)}"


async def drop_schema(dsn: str, schema: str) -> None:
    """Drop a test schema and everything in it.

    Sessions still working in it (a killed worker's last statement runs on at
    the server; a worker process not yet gone) are ended first: a DROP that
    waits on them can deadlock with their next statement. They are found by
    the ``application_name`` every PostgresStore gives them, which names the
    schema. A deadlock that still happens is retried.
    """
    conn = await asyncpg.connect(dsn)
    try:
        for attempt in range(5):
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND position($1 in application_name) > 0",
                schema,
            )
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                return
            except asyncpg.DeadlockDetectedError:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.1 * (attempt + 1))
    finally:
        await conn.close()


@asynccontextmanager
async def temporary_schema() -> AsyncIterator[tuple[str, str]]:
    """``(dsn, schema)`` for a fresh schema name, dropped afterwards."""
    dsn = await require_postgres()
    schema = unique_schema()
    try:
        yield dsn, schema
    finally:
        await drop_schema(dsn, schema)


@asynccontextmanager
async def temporary_database() -> AsyncIterator[str]:
    """The DSN of a fresh database, dropped afterwards.

    For code that uses the default ``jobrunner`` schema (README samples): a
    schema of that name in the shared test database would be migrated by
    whichever checkout ran last, and a newer checkout's schema is refused by an
    older one, so such code gets a database of its own.
    """
    dsn = await require_postgres()
    name = unique_schema()
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urllib.parse.urlsplit(dsn)._replace(path=f"/{name}").geturl()
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@asynccontextmanager
async def open_postgres_store(**options: Any) -> AsyncIterator[PostgresStore]:
    """An open, empty ``PostgresStore`` in a fresh schema, dropped afterwards."""
    async with temporary_schema() as (dsn, schema):
        options.setdefault("max_connections", 4)
        store = PostgresStore(dsn, schema=schema, **options)
        await store.open()
        try:
            yield store
        finally:
            await store.close()
