"""Web API benchmark: how fast the dashboard's endpoints answer with 1M jobs in the store.

The store is filled with N jobs (default 1,000,000) the way a busy deployment
looks after a day: 94% succeeded, 2% dead, 1% cancelled, 2% queued, 0.5%
scheduled, 0.5% running, over 5 queues and 10 job names. Rows are written
with one INSERT ... SELECT in SQL (a fixture: going through enqueue, claim
and settle would take an hour and measure nothing of the web app), after
``store.open()`` created the schema with its indexes.

Then each endpoint is requested R times (default 200) over HTTP from uvicorn
on localhost (routing, the auth middleware, JSON encoding and the socket
included), one request at a time, and p50/p99 are printed:

* ``GET /stats``: as served (stats read from the store at most once a second
  whatever the number of clients, and refreshed after answering when older,
  ``stats_ttl=1``), and ``store.stats()`` itself (R/20 calls), what each
  refresh costs the store;
* ``GET /jobs`` (newest first), ``?status=dead``, ``?status=queued``,
  ``?queue=q3``, a page deep in the listing (``before=``), and ``GET /jobs/{id}``.

Target: stats and list under 50 ms p99 with 1M jobs.

Usage: python benchmarks/bench_web.py [--quick] [--jobs N] [--requests R] [--dsn DSN] [--store sqlite|postgres|both]
``--quick``: 20,000 jobs and 30 requests. Without a PostgreSQL server it says so and skips that store.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from benchmarks._common import percentile
from jobrunner.stores.base import Store
from jobrunner.stores.sqlite import SQLiteStore
from jobrunner.web import create_app

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
NOW = time.time()

# x runs over 0..N-1; the status of row x is by x % 1000 (thresholds below), so
# every status is spread over the whole table, as it is after a day of traffic.
_STATUS_CASE = """CASE
    WHEN x % 1000 < 940 THEN 'succeeded' WHEN x % 1000 < 960 THEN 'dead'
    WHEN x % 1000 < 970 THEN 'cancelled' WHEN x % 1000 < 990 THEN 'queued'
    WHEN x % 1000 < 995 THEN 'scheduled' ELSE 'running' END"""

SQLITE_FILL = f"""
WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < ? - 1),
rows AS (SELECT x, {_STATUS_CASE} AS status FROM c)
INSERT INTO jobrunner_jobs (id, name, queue, priority, status, due, attempts, max_attempts, timeout,
    trigger, enqueued_at, run_at, started_at, finished_at, worker, token, lease_until, payload,
    error_type, error_message, error_traceback)
SELECT printf('bench-%09d', x), 'job_' || (x % 10), 'q' || (x % 5), 0, status,
    CASE status WHEN 'queued' THEN 1 WHEN 'scheduled' THEN 0 ELSE NULL END,
    CASE WHEN status IN ('queued', 'scheduled') THEN 0 ELSE 1 END, 4, 300, 'enqueue',
    ? - 86400 + x * 86400.0 / ?, CASE status WHEN 'scheduled' THEN ? + 3600 ELSE ? - 86400 + x * 86400.0 / ? END,
    CASE WHEN status IN ('queued', 'scheduled') THEN NULL ELSE ? - 86400 + x * 86400.0 / ? END,
    CASE WHEN status IN ('succeeded', 'dead', 'cancelled') THEN ? - 86400 + x * 86400.0 / ? END,
    CASE WHEN status IN ('queued', 'scheduled') THEN NULL ELSE 'bench-worker' END, 1,
    CASE status WHEN 'running' THEN ? + 3600 END,
    '[[' || x || '],{{}}]',
    CASE status WHEN 'dead' THEN 'RuntimeError' END, CASE status WHEN 'dead' THEN 'boom' END,
    CASE status WHEN 'dead' THEN 'Traceback (most recent call last): ...' END
FROM rows
"""

PG_FILL = f"""
WITH rows AS (SELECT x, {_STATUS_CASE} AS status FROM generate_series(0, $1 - 1) AS x)
INSERT INTO {{s}}.jobs (id, name, queue, priority, status, attempts, max_attempts, timeout, trigger,
    enqueued_at, run_at, started_at, finished_at, worker, token, lease_expires_at, args, kwargs,
    error_type, error_message, error_traceback)
SELECT 'bench-' || lpad(x::text, 9, '0'), 'job_' || (x % 10), 'q' || (x % 5), 0, status,
    CASE WHEN status IN ('queued', 'scheduled') THEN 0 ELSE 1 END, 4, 300, 'enqueue',
    $2 - 86400 + x * 86400.0 / $1, CASE status WHEN 'scheduled' THEN $2 + 3600 ELSE $2 - 86400 + x * 86400.0 / $1 END,
    CASE WHEN status IN ('queued', 'scheduled') THEN NULL ELSE $2 - 86400 + x * 86400.0 / $1 END,
    CASE WHEN status IN ('succeeded', 'dead', 'cancelled') THEN $2 - 86400 + x * 86400.0 / $1 END,
    CASE WHEN status IN ('queued', 'scheduled') THEN NULL ELSE 'bench-worker' END, 1,
    CASE status WHEN 'running' THEN $2 + 3600 END,
    json_build_array(x), '{{}}'::json,
    CASE status WHEN 'dead' THEN 'RuntimeError' END, CASE status WHEN 'dead' THEN 'boom' END,
    CASE status WHEN 'dead' THEN 'Traceback (most recent call last): ...' END
FROM rows
"""


@asynccontextmanager
async def sqlite_store(n: int) -> AsyncIterator[Store]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "jobs.db")
        store = SQLiteStore(path)
        await store.open()
        await store.close()
        import sqlite3

        conn = sqlite3.connect(path)
        with conn:
            conn.execute(SQLITE_FILL, (n, NOW, n, NOW, NOW, n, NOW, n, NOW, n, NOW))
            conn.execute(
                "UPDATE jobrunner_admission SET upper = (SELECT count(*) FROM jobrunner_jobs WHERE due IS NOT NULL)"
            )
            # What the store writes as jobs become dead or cancelled (schema step 8).
            conn.execute(
                "INSERT INTO jobrunner_unsuccessful (status, seq) "
                "SELECT status, seq FROM jobrunner_jobs WHERE status IN ('dead', 'cancelled')"
            )
        conn.execute("ANALYZE")
        conn.close()
        store = SQLiteStore(path)
        await store.open()
        try:
            yield store
        finally:
            await store.close()


@asynccontextmanager
async def postgres_store(n: int, dsn: str) -> AsyncIterator[Store]:
    import asyncpg  # type: ignore[import-untyped]

    from jobrunner.stores.postgres import PostgresStore

    schema = f"bench_web_{secrets.token_hex(4)}"
    store = PostgresStore(dsn, schema=schema)
    await store.open()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(PG_FILL.replace("{s}", f'"{schema}"'), n, NOW)
        await conn.execute(f'SELECT "{schema}".resync_admission()')
        await conn.execute(f'VACUUM ANALYZE "{schema}".jobs')
        try:
            yield store
        finally:
            await store.close()
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await conn.close()


async def timed(http: httpx.AsyncClient, path: str, requests: int) -> tuple[float, float]:
    """p50 and p99 in milliseconds of ``requests`` GETs of ``path``, after one warm-up."""
    answer = await http.get(path)
    answer.raise_for_status()
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        answer = await http.get(path)
        times.append((time.perf_counter() - start) * 1000)
        answer.raise_for_status()
    return percentile(times, 50), percentile(times, 99)


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` behind uvicorn on a free localhost port, and a client of it (real HTTP)."""
    import socket

    import anyio
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        while not server.started:
            await anyio.sleep(0.01)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                yield http
        finally:
            server.should_exit = True


async def measure(store: Store, requests: int) -> list[tuple[str, float, float]]:
    rows: list[tuple[str, float, float]] = []
    async with served(create_app(store, stats_ttl=1.0)) as http:
        rows.append(("GET /stats (as served, stats_ttl=1)", *await timed(http, "/stats", requests)))
        # What one refresh costs: the store counting every job (a few of them tell it).
        counts = []
        for _ in range(max(5, requests // 20)):
            began = time.perf_counter()
            await store.stats(time.time())
            counts.append((time.perf_counter() - began) * 1000)
        rows.append(
            (
                "store.stats() (a refresh, off the request path)",
                percentile(counts, 50),
                percentile(counts, 99),
            )
        )
        first = (await http.get("/jobs", params={"limit": 50})).json()
        deep = first["jobs"][0]["id"]
        for _ in range(20):  # 1,000 jobs down the listing
            deep = (await http.get("/jobs", params={"limit": 50, "before": deep})).json()["next"]
        paths: list[tuple[str, str]] = [
            ("GET /jobs?limit=50", "/jobs?limit=50"),
            ("GET /jobs?status=dead", "/jobs?status=dead&limit=50"),
            ("GET /jobs?status=cancelled", "/jobs?status=cancelled&limit=50"),
            ("GET /jobs?status=queued", "/jobs?status=queued&limit=50"),
            ("GET /jobs?status=running", "/jobs?status=running&limit=50"),
            ("GET /jobs?queue=q3", "/jobs?queue=q3&limit=50"),
            ("GET /jobs?name=job_7&status=dead", "/jobs?name=job_7&status=dead&limit=50"),
            ("GET /jobs?before=<1,000 down>", f"/jobs?limit=50&before={deep}"),
            ("GET /jobs/{id}", f"/jobs/{first['jobs'][0]['id']}"),
        ]
        for label, path in paths:
            rows.append((label, *await timed(http, path, requests)))
    return rows


def show(title: str, rows: list[tuple[str, float, float]]) -> None:
    print(f"\n{title}")
    width = max(len(label) for label, _, _ in rows)
    print(f"  {'endpoint'.ljust(width)}  {'p50 ms':>8}  {'p99 ms':>8}")
    for label, p50, p99 in rows:
        mark = "" if p99 < 50 or "refresh" in label else "  over 50 ms"
        print(f"  {label.ljust(width)}  {p50:8.2f}  {p99:8.2f}{mark}")


async def main(jobs: int, requests: int, kinds: list[str], dsn: str) -> int:
    print(f"jobrunner web API, {jobs:,} jobs in the store, {requests} requests per endpoint, one at a time")
    if "sqlite" in kinds:
        start = time.perf_counter()
        async with sqlite_store(jobs) as store:
            filled = time.perf_counter() - start
            show(f"SQLite (filled in {filled:.1f} s)", await measure(store, requests))
    if "postgres" in kinds:
        start = time.perf_counter()
        try:
            async with postgres_store(jobs, dsn) as store:
                filled = time.perf_counter() - start
                show(f"PostgreSQL (filled in {filled:.1f} s)", await measure(store, requests))
        except (OSError, ConnectionError) as exc:
            print(f"\nPostgreSQL: skipped, no server at {dsn} ({exc})")
    return 0


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20,000 jobs and 30 requests, for smoke runs")
    parser.add_argument("--jobs", type=int, help="jobs in the store (default 1,000,000)")
    parser.add_argument("--requests", type=int, help="requests per endpoint (default 200)")
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--dsn",
        default=os.environ.get(
            "JOBRUNNER_BENCH_POSTGRES_DSN", os.environ.get("JOBRUNNER_TEST_POSTGRES_DSN", DEFAULT_DSN)
        ),
    )
    return parser.parse_args()


if __name__ == "__main__":
    args = _args()
    jobs = args.jobs or (20_000 if args.quick else 1_000_000)
    requests = args.requests or (30 if args.quick else 200)
    kinds = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    sys.exit(asyncio.run(main(jobs, requests, kinds, args.dsn)))
