"""PostgreSQL-store benchmark: jobrunner against raw asyncpg, on one server, in one run.

Scenarios (no-op jobs; each run in a fresh schema, dropped afterwards):

* full cycle: a producer (this process) enqueues N jobs in batches of 100 while
  1 or 4 worker processes claim, run and complete them; timed from the first
  enqueue until the last job is recorded done;
* the raw baseline does the same with bare asyncpg on the same schema: batched
  ``INSERT ... unnest`` of 100, claims of 100 with ``FOR UPDATE SKIP LOCKED``
  (one statement), a no-op per job, one ``UPDATE`` completing the batch;
* latency: enqueue-to-start at a steady 1,000 jobs/s, with the producer in
  another process (the runner is woken by LISTEN/NOTIFY) and in the same one;
* depth: jobrunner throughput while 1k or 1M jobs wait behind the measured ones.

Usage: python benchmarks/bench_postgres.py [--quick] [--dsn DSN]
The DSN defaults to $JOBRUNNER_BENCH_POSTGRES_DSN, then $JOBRUNNER_TEST_POSTGRES_DSN,
then postgresql://postgres@127.0.0.1:5432/test. Without a server it says so and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from benchmarks._common import percentile, quiet_logs, table
from jobrunner import Call, Runner
from jobrunner.stores.postgres import PostgresStore

BATCH = 100
CONCURRENCY = 100
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def default_dsn() -> str:
    return os.environ.get(
        "JOBRUNNER_BENCH_POSTGRES_DSN", os.environ.get("JOBRUNNER_TEST_POSTGRES_DSN", DEFAULT_DSN)
    )


@asynccontextmanager
async def fresh_schema(dsn: str) -> AsyncIterator[str]:
    """A schema installed by PostgresStore (so the baseline uses the very same tables)."""
    schema = f"bench_{secrets.token_hex(5)}"
    store = PostgresStore(dsn, schema=schema)
    await store.open()
    await store.close()
    try:
        yield schema
    finally:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await conn.close()


# --- raw asyncpg --------------------------------------------------------------------------------
def raw_statements(schema: str) -> tuple[str, str, str]:
    s = f'"{schema}"'
    insert = f"""
        INSERT INTO {s}.jobs (id, name, queue, priority, status, max_attempts, timeout, trigger,
                              enqueued_at, run_at, args, kwargs)
        SELECT u.id, 'noop', 'default', 0, 'queued', 4, 300, 'enqueue', $2, $2, '[]', '{{}}'
        FROM unnest($1::text[]) AS u(id)"""
    claim = f"""
        UPDATE {s}.jobs j SET status = 'running', attempts = j.attempts + 1, token = j.token + 1,
                              started_at = $1, worker = $2, lease_expires_at = $1 + 330
        FROM (SELECT id FROM {s}.jobs
              WHERE status IN ('queued', 'scheduled', 'retrying') AND run_at <= $1
              ORDER BY priority, run_at, seq LIMIT {BATCH} FOR UPDATE SKIP LOCKED) c
        WHERE j.id = c.id
        RETURNING j.id, j.token, j.args::text"""
    complete = f"""
        UPDATE {s}.jobs j SET status = 'succeeded', finished_at = $3, lease_expires_at = NULL
        FROM unnest($1::text[], $2::bigint[]) AS u(id, token)
        WHERE j.id = u.id AND j.token = u.token AND j.status = 'running'"""
    return insert, claim, complete


async def raw_worker(dsn: str, schema: str, ready: Path) -> None:
    """Claim 100, run a no-op each, complete the batch; poll every millisecond when empty."""
    _, claim, complete = raw_statements(schema)
    conn = await asyncpg.connect(dsn)
    ready.write_text("ready")  # noqa: ASYNC240 - a one-shot marker file before the loop starts

    async def noop() -> None:
        pass

    while True:
        now = time.time()
        rows = await conn.fetch(claim, now, "raw")
        if not rows:
            await asyncio.sleep(0.001)
            continue
        for _ in rows:
            await noop()
        await conn.execute(complete, [r[0] for r in rows], [r[1] for r in rows], time.time())


async def raw_produce(dsn: str, schema: str, n: int) -> None:
    insert, _, _ = raw_statements(schema)
    conn = await asyncpg.connect(dsn)
    try:
        for start in range(0, n, BATCH):
            await conn.execute(insert, [f"raw-{i}" for i in range(start, min(n, start + BATCH))], time.time())
    finally:
        await conn.close()


# --- jobrunner ------------------------------------------------------------------------------------
def make_runner(dsn: str, schema: str) -> tuple[Runner, Any]:
    runner = Runner(
        store=PostgresStore(dsn, schema=schema), concurrency=CONCURRENCY, max_pending=None, result_ttl=3600
    )

    @runner.job
    async def noop() -> None:
        pass

    @runner.job
    async def stamp(t0: float) -> float:
        return time.time() - t0

    return runner, (noop, stamp)


async def jobrunner_worker(dsn: str, schema: str, ready: Path) -> None:
    runner, _ = make_runner(dsn, schema)
    async with runner:
        ready.write_text("ready")  # noqa: ASYNC240 - a one-shot marker file before the loop starts
        await asyncio.Event().wait()  # until SIGTERM ends the process


async def jobrunner_produce(dsn: str, schema: str, n: int) -> None:
    runner, (noop, _) = make_runner(dsn, schema)
    try:
        for start in range(0, n, BATCH):
            await noop.enqueue_many([Call()] * min(BATCH, n - start))
    finally:
        await runner.aclose()


# --- driving processes ----------------------------------------------------------------------------
class Workers:
    """``count`` worker processes of ``kind``, started and ready, killed on exit."""

    def __init__(self, kind: str, count: int, dsn: str, schema: str, tmp: Path) -> None:
        self.ready = [tmp / f"{kind}-{schema}-{i}.ready" for i in range(count)]
        self.procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    kind,
                    "--dsn",
                    dsn,
                    "--schema",
                    schema,
                    "--ready",
                    str(r),
                ]
            )
            for r in self.ready
        ]

    async def __aenter__(self) -> Workers:
        deadline = time.monotonic() + 60
        while not all(r.exists() for r in self.ready):
            if any(p.poll() is not None for p in self.procs) or time.monotonic() > deadline:
                raise RuntimeError("a worker process failed to start")
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGKILL)
        for proc in self.procs:
            proc.wait(30)
        for r in self.ready:
            r.unlink(missing_ok=True)


async def wait_all_done(dsn: str, schema: str) -> None:
    """Until no job waits or runs (the producer has finished). The partial indexes
    answer this in microseconds, so polling does not load the server being measured."""
    conn = await asyncpg.connect(dsn)
    try:
        while await conn.fetchval(
            f'SELECT EXISTS (SELECT 1 FROM "{schema}".jobs '
            f"WHERE status IN ('queued', 'scheduled', 'retrying', 'running'))"
        ):
            await asyncio.sleep(0.005)
    finally:
        await conn.close()


async def full_cycle(
    kind: str, procs: int, n: int, dsn: str, tmp: Path, produce: Callable[[str, str, int], Awaitable[None]]
) -> float:
    async with fresh_schema(dsn) as schema, Workers(kind, procs, dsn, schema, tmp):
        start = time.perf_counter()
        await produce(dsn, schema, n)
        await wait_all_done(dsn, schema)
        return n / (time.perf_counter() - start)


# --- latency --------------------------------------------------------------------------------------
async def paced(rate: int, seconds: float, emit: Callable[[], Awaitable[Any]]) -> None:
    """Call ``emit`` ``rate`` times a second for ``seconds``, in 1 ms ticks."""
    total = int(rate * seconds)
    start = time.perf_counter()
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        while sent < due:
            await emit()
            sent += 1
        await asyncio.sleep(0.001)


async def latencies_of(dsn: str, schema: str) -> list[float]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(f"SELECT result::text FROM \"{schema}\".jobs WHERE name = 'stamp'")
        return [float(r[0]) for r in rows]
    finally:
        await conn.close()


async def latency_cross_process(dsn: str, tmp: Path, rate: int, seconds: float) -> list[float]:
    async with fresh_schema(dsn) as schema, Workers("jobrunner", 1, dsn, schema, tmp):
        runner, (_, stamp) = make_runner(dsn, schema)
        try:
            await paced(rate, seconds, lambda: stamp.enqueue(time.time()))
        finally:
            await runner.aclose()
        await wait_all_done(dsn, schema)
        return await latencies_of(dsn, schema)


async def latency_in_process(dsn: str, rate: int, seconds: float) -> list[float]:
    async with fresh_schema(dsn) as schema:
        runner, (_, stamp) = make_runner(dsn, schema)
        async with runner:
            await paced(rate, seconds, lambda: stamp.enqueue(time.time()))
            await runner.run_until_idle()
        await runner.aclose()
        return await latencies_of(dsn, schema)


# --- depth ----------------------------------------------------------------------------------------
async def at_depth(dsn: str, depth: int, measured: int) -> tuple[float, float]:
    """Throughput over ``measured`` jobs with ``depth`` lower-priority jobs waiting
    behind them, and the time to build that backlog."""
    async with fresh_schema(dsn) as schema:
        conn = await asyncpg.connect(dsn)
        try:
            begun = time.perf_counter()
            await conn.execute(
                f"""INSERT INTO "{schema}".jobs (id, name, queue, priority, status, max_attempts, trigger,
                                                enqueued_at, run_at, args, kwargs)
                    SELECT 'backlog-' || g, 'noop', 'default', 10, 'queued', 4, 'enqueue', 0, 0, '[]', '{{}}'
                    FROM generate_series(1, $1) g""",
                depth,
            )
            await conn.execute(f'ANALYZE "{schema}".jobs')
            built = time.perf_counter() - begun
        finally:
            await conn.close()
        runner = Runner(store=PostgresStore(dsn, schema=schema), concurrency=CONCURRENCY, max_pending=None)
        finished = 0
        done = asyncio.Event()

        @runner.job
        async def noop() -> None:
            pass

        @runner.job
        async def counted() -> None:
            nonlocal finished
            finished += 1
            if finished == measured:
                done.set()

        for start in range(0, measured, 1_000):
            await counted.enqueue_many([Call()] * min(1_000, measured - start))
        async with runner:
            begun = time.perf_counter()
            await done.wait()
            rate = measured / (time.perf_counter() - begun)
            runner.stop(now=True)
        await runner.aclose()
        return rate, built


# --- main -----------------------------------------------------------------------------------------
async def reachable(dsn: str) -> str | None:
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


async def main(quick: bool, dsn: str) -> int:
    quiet_logs()
    problem = await reachable(dsn)
    if problem:
        print(f"PostgreSQL benchmark skipped: no server at {dsn} ({problem})")
        return 0
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    n = 20_000 if quick else 100_000
    print(
        f"PostgreSQL store, N={n:,} no-op jobs, producer batches of {BATCH}, worker concurrency {CONCURRENCY}\n"
    )

    rows: list[list[object]] = []
    results: dict[tuple[str, int], float] = {}
    for procs in (1, 4):
        for kind, produce in (("raw", raw_produce), ("jobrunner", jobrunner_produce)):
            results[kind, procs] = await full_cycle(kind, procs, n, dsn, tmp, produce)
    best_raw = max(results["raw", 1], results["raw", 4])
    for (kind, procs), rate in results.items():
        label = "raw asyncpg (claims of 100, SKIP LOCKED)" if kind == "raw" else "jobrunner PostgresStore"
        rows.append(
            [f"{label}, {procs} process{'es' if procs > 1 else ''}", f"{rate:,.0f}", f"{rate / best_raw:.2f}"]
        )
    print("full cycle: enqueue, claim, run, complete")
    print(table(rows, ["contender", "jobs/s", "x best raw"]))

    rate, seconds = 1_000, (2.0 if quick else 5.0)
    cross = await latency_cross_process(dsn, tmp, rate, seconds)
    local = await latency_in_process(dsn, rate, seconds)
    print(f"\nenqueue-to-start latency at {rate:,} jobs/s for {seconds:.0f} s")
    print(
        table(
            [
                [
                    label,
                    f"{len(lat):,}",
                    f"{percentile(lat, 50) * 1e3:.2f}",
                    f"{percentile(lat, 99) * 1e3:.2f}",
                ]
                for label, lat in (
                    ("producer in another process (LISTEN/NOTIFY)", cross),
                    ("producer in the runner's process", local),
                )
            ],
            ["producer", "jobs", "p50 ms", "p99 ms"],
        )
    )

    measured = 10_000 if quick else 20_000
    depths = [1_000, 100_000] if quick else [1_000, 1_000_000]
    at = {d: await at_depth(dsn, d, measured) for d in depths}
    base = at[depths[0]][0]
    print(f"\nthroughput with a backlog waiting behind the {measured:,} measured jobs (1 process)")
    print(
        table(
            [[f"{d:,}", f"{r:,.0f}", f"{r / base:.2f}", f"{b:.1f}"] for d, (r, b) in at.items()],
            ["queued", "jobs/s", "x 1k", "backlog built in s"],
        )
    )
    return 0


def worker_main(kind: str, dsn: str, schema: str, ready: str) -> None:
    quiet_logs()
    fn = raw_worker if kind == "raw" else jobrunner_worker
    asyncio.run(fn(dsn, schema, Path(ready)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller N, for CI smoke runs")
    parser.add_argument("--dsn", default=default_dsn())
    parser.add_argument("--worker", choices=["raw", "jobrunner"], help=argparse.SUPPRESS)
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    parser.add_argument("--ready", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker, args.dsn, args.schema, args.ready)
    else:
        sys.exit(asyncio.run(main(args.quick, args.dsn)))
