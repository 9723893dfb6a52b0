"""PostgreSQL-store benchmark: jobrunner as a user gets it against raw asyncpg, on one server, in one run.

Scenarios (no-op jobs; each measurement in a fresh schema, dropped afterwards):

* full cycle: a producer process enqueues N jobs in batches of 100 while 1
  (or 4) worker processes claim, run and complete them; timed from the first
  enqueue until the last job is recorded done. The headline row is jobrunner
  with every default on both sides: ``Runner(store=PostgresStore(dsn,
  schema=<fresh>))`` (the schema name is the only option given; it keeps runs
  apart), ``enqueue_many`` of 100 in the producer, ``async with runner`` in the
  worker; concurrency 100, max_pending 10,000, instrumentation on, logging as
  the app left it, here not configured at all. Beside it: a tuned row (no
  backpressure, no instrumentation) and one row for each extra a user may turn
  on (structlog configured at INFO; an OpenTelemetry SDK), each in both
  processes. The baseline does the same with bare asyncpg on the same schema:
  the producer inserts batches of 100 with ``INSERT ... unnest``; the worker
  claims 100 at a time with ``FOR UPDATE SKIP LOCKED`` (one statement), runs a
  no-op per job and completes the batch with one ``UPDATE``. Target: jobrunner
  with defaults, 1 worker process, at 25% or more of raw with 1 worker process.
* one process: the same work with producer and worker in one process
  (``async with runner``, ``enqueue_many`` of 100 or ``enqueue()`` per job,
  ``run_until_idle()``; raw: a producer and a claimer task on two
  connections). Here the producer outpaces the claims, so a backlog builds,
  and on a table PostgreSQL has not analyzed yet each claim sorts all of it.
* latency: enqueue-to-start at a steady 1,000 jobs/s, defaults, with the
  producer in another process (the runner is woken by LISTEN/NOTIFY) and in
  the same one.
* backlog: throughput while 1k or 1M jobs wait behind the measured ones. A
  backlog beyond the default max_pending would block the enqueues, so this
  runs ``max_pending=None``, otherwise defaults.

Every measurement runs in its own fresh interpreter (``_common.measure``);
contenders alternate over rounds; tables show medians, and for one process its
CPU time per job (not the server's) and peak RSS.

Usage: python benchmarks/bench_postgres.py [--quick] [--dsn DSN]
The DSN defaults to $JOBRUNNER_BENCH_POSTGRES_DSN, then $JOBRUNNER_TEST_POSTGRES_DSN,
then postgresql://postgres@127.0.0.1:5432/test. Without a server it says so and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from benchmarks._common import (
    EXTRAS,
    OTEL_LABEL,
    STRUCTLOG_LABEL,
    Contender,
    Timer,
    defaults_note,
    percentile,
    run_rounds,
    serve_child,
    table,
    verdict,
)
from jobrunner import Call, Runner
from jobrunner.stores.postgres import PostgresStore

BATCH = 100
CONCURRENCY = 100
TARGET = 0.25  # of raw asyncpg batch-100, with defaults
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


async def noop() -> None:
    pass


async def raw_work(conn: asyncpg.Connection, schema: str, until: Callable[[int], bool]) -> None:
    """Claim 100, run a no-op each, complete the batch; poll every millisecond when empty."""
    _, claim, complete = raw_statements(schema)
    done = 0
    while not until(done):
        rows = await conn.fetch(claim, time.time(), "raw")
        if not rows:
            await asyncio.sleep(0.001)
            continue
        for _ in rows:
            await noop()
        await conn.execute(complete, [r[0] for r in rows], [r[1] for r in rows], time.time())
        done += len(rows)


async def raw_produce(dsn: str, schema: str, n: int) -> None:
    insert, _, _ = raw_statements(schema)
    conn = await asyncpg.connect(dsn)
    try:
        for start in range(0, n, BATCH):
            await conn.execute(insert, [f"raw-{i}" for i in range(start, min(n, start + BATCH))], time.time())
    finally:
        await conn.close()


async def raw_one_process(dsn: str, n: int) -> dict[str, Any]:
    async with fresh_schema(dsn) as schema:
        conn = await asyncpg.connect(dsn)
        try:
            with Timer() as t:
                await asyncio.gather(
                    raw_produce(dsn, schema, n), raw_work(conn, schema, lambda done: done >= n)
                )
        finally:
            await conn.close()
    return t.figures(n)


async def raw_worker(dsn: str, schema: str, ready: Path) -> None:
    conn = await asyncpg.connect(dsn)
    ready.write_text("ready")  # noqa: ASYNC240 - a one-shot marker file before the loop starts
    await raw_work(conn, schema, lambda done: False)  # until SIGKILL


# --- jobrunner ------------------------------------------------------------------------------------
def make_runner(dsn: str, schema: str, **options: Any) -> tuple[Runner, Any]:
    """Defaults, but for the schema each run gets to itself (and ``options``)."""
    runner = Runner(store=PostgresStore(dsn, schema=schema), **options)

    @runner.job
    async def noop() -> None:
        pass

    @runner.job
    async def stamp(t0: float) -> float:
        return time.time() - t0

    return runner, (noop, stamp)


async def jobrunner_one_process(
    dsn: str, n: int, options: dict[str, Any], one_by_one: bool = False
) -> dict[str, Any]:
    async with fresh_schema(dsn) as schema:
        runner, (noop, _) = make_runner(dsn, schema, **options)
        async with runner:  # started (and the pool connected) before the clock starts
            with Timer() as t:
                if one_by_one:
                    for _ in range(n):
                        await noop.enqueue()
                else:
                    for start in range(0, n, BATCH):
                        await noop.enqueue_many([Call()] * min(BATCH, n - start))
                await runner.run_until_idle()
    return t.figures(n)


async def jobrunner_worker(dsn: str, schema: str, ready: Path, options: dict[str, Any]) -> None:
    runner, _ = make_runner(dsn, schema, **options)
    async with runner:
        ready.write_text("ready")  # noqa: ASYNC240 - a one-shot marker file before the loop starts
        await asyncio.Event().wait()  # until SIGKILL ends the process


async def jobrunner_produce(dsn: str, schema: str, n: int, options: dict[str, Any]) -> None:
    runner, (noop, _) = make_runner(dsn, schema, **options)
    try:
        for start in range(0, n, BATCH):
            await noop.enqueue_many([Call()] * min(BATCH, n - start))
    finally:
        await runner.aclose()


# --- driving worker processes ---------------------------------------------------------------------
class Workers:
    """``count`` worker processes of ``kind``, started and ready, killed on exit.

    jobrunner workers run ``Runner(**options)`` with ``extra`` (a key of
    ``EXTRAS``) turned on first, like the producer that starts them.
    """

    def __init__(
        self,
        kind: str,
        count: int,
        dsn: str,
        schema: str,
        tmp: Path,
        options: dict[str, Any] | None = None,
        extra: str | None = None,
    ) -> None:
        self.ready = [tmp / f"{kind}-{schema}-{i}.ready" for i in range(count)]
        args = ["--worker", kind, "--dsn", dsn, "--schema", schema, "--options", json.dumps(options or {})]
        if extra:
            args += ["--extra", extra]
        self.procs = [
            subprocess.Popen([sys.executable, __file__, *args, "--ready", str(r)]) for r in self.ready
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


async def multi_process(
    kind: str,
    procs: int,
    n: int,
    dsn: str,
    tmp: str,
    options: dict[str, Any] | None = None,
    worker_extra: str | None = None,
) -> dict[str, Any]:
    """This process produces; ``procs`` worker processes claim, run and complete.

    ``measure`` turned the contender's extra on in this process; ``worker_extra``
    (the same) turns it on in the workers."""
    async with (
        fresh_schema(dsn) as schema,
        Workers(kind, procs, dsn, schema, Path(tmp), options, worker_extra),
    ):
        with Timer() as t:
            if kind == "raw":
                await raw_produce(dsn, schema, n)
            else:
                await jobrunner_produce(dsn, schema, n, options or {})
            await wait_all_done(dsn, schema)
    return t.figures(n)


# --- latency --------------------------------------------------------------------------------------
async def paced(rate: int, seconds: float, emit: Callable[[], Any]) -> None:
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


async def latency(dsn: str, tmp: str, rate: int, seconds: float, cross_process: bool) -> dict[str, Any]:
    async with fresh_schema(dsn) as schema:
        runner, (_, stamp) = make_runner(dsn, schema)
        if cross_process:
            async with Workers("jobrunner", 1, dsn, schema, Path(tmp)):
                try:
                    await paced(rate, seconds, lambda: stamp.enqueue(time.time()))
                finally:
                    await runner.aclose()
                await wait_all_done(dsn, schema)
        else:
            async with runner:
                await paced(rate, seconds, lambda: stamp.enqueue(time.time()))
                await runner.run_until_idle()
        return {"latencies": await latencies_of(dsn, schema)}


# --- backlog --------------------------------------------------------------------------------------
async def at_depth(dsn: str, depth: int, measured: int) -> dict[str, Any]:
    """Throughput over ``measured`` jobs with ``depth`` lower-priority jobs waiting behind them."""
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
        runner = Runner(store=PostgresStore(dsn, schema=schema), max_pending=None)
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
            with Timer() as t:
                await done.wait()
                t.stop()  # at the last completion, before the shutdown
                runner.stop(now=True)
        await runner.aclose()
        return {**t.figures(measured), "built": built}


# --- main -----------------------------------------------------------------------------------------
async def reachable(dsn: str) -> str | None:
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


def worker_contenders() -> list[Contender]:
    def mp(
        label: str, kind: str = "jobrunner", procs: int = 1, extra: str | None = None, **options: Any
    ) -> Contender:
        kwargs = {"kind": kind, "procs": procs, "options": options, "worker_extra": extra}
        return Contender(label, "multi_process", extra, kwargs)

    return [
        mp("raw asyncpg batch-100: producer + 1 worker process", "raw"),
        mp("jobrunner, all defaults: producer + 1 worker process  <- headline"),
        mp(
            "  tuned: max_pending=None, instrument=False (both processes)", max_pending=None, instrument=False
        ),
        mp(f"  extra: defaults {STRUCTLOG_LABEL}", extra="structlog"),
        mp(f"  extra: defaults {OTEL_LABEL}", extra="otel"),
        mp("raw asyncpg batch-100: producer + 4 worker processes", "raw", 4),
        mp("jobrunner, all defaults: producer + 4 worker processes", procs=4),
    ]


def one_process_contenders(n: int) -> list[Contender]:
    def jr(label: str, **kwargs: Any) -> Contender:
        return Contender(label, "jobrunner_one_process", None, {"n": n, "options": {}, **kwargs})

    return [
        Contender("raw asyncpg batch-100: producer + claimer tasks", "raw_one_process", kwargs={"n": n}),
        jr("jobrunner, all defaults, enqueue_many(100)"),
        jr(f"jobrunner, all defaults, one enqueue() per job (N={n // 10:,})", n=n // 10, one_by_one=True),
    ]


def main(quick: bool, dsn: str) -> int:
    problem = asyncio.run(reachable(dsn))
    if problem:
        print(f"PostgreSQL benchmark skipped: no server at {dsn} ({problem})")
        return 0
    tmp = os.environ.get("TMPDIR", "/tmp")
    n = 2_000 if quick else 50_000
    rounds = 1 if quick else 3
    print(
        f"PostgreSQL store, no-op jobs, batches of {BATCH}, concurrency {CONCURRENCY}; every figure from"
        f"\na fresh process (the server is shared by all); medians of {rounds} round(s), contenders alternating."
    )
    print(defaults_note(), flush=True)

    contenders = worker_contenders()
    samples = run_rounds(__file__, contenders, rounds, n=n, dsn=dsn, tmp=tmp)
    raw = samples[0]
    print(
        f"\nfull cycle: a producer process enqueues N={n:,} (batches of 100) while worker processes"
        f"\nclaim, run and complete them; jobrunner's producer and workers both run the row's configuration"
    )
    print(
        table(
            [
                [c.label, f"{s.rate:,.0f}", f"{s.rate / raw.rate:.3f}", f"{s.peak_mb:.0f}"]
                for c, s in zip(contenders, samples, strict=True)
            ],
            ["contender", "jobs/s", "x raw (1 worker)", "producer peak RSS MB"],
        )
    )
    print(
        f"\nPostgreSQL, defaults vs raw asyncpg batch-100 (1 worker process): "
        f"{verdict(samples[1].rate / raw.rate, TARGET)}",
        flush=True,
    )

    contenders = one_process_contenders(n)
    samples = run_rounds(__file__, contenders, rounds, dsn=dsn)
    raw = samples[0]
    print(
        f"\none process enqueues N={n:,} and runs them (a backlog builds while the producer outpaces"
        f"\nthe claims; claims slow down with it on a table PostgreSQL has not analyzed yet)"
    )
    print(
        table(
            [
                [c.label, f"{s.rate:,.0f}", f"{s.rate / raw.rate:.3f}", f"{s.cpu_us:.1f}", f"{s.peak_mb:.0f}"]
                for c, s in zip(contenders, samples, strict=True)
            ],
            ["contender", "jobs/s", "x raw", "CPU us/job", "peak RSS MB"],
        ),
        flush=True,
    )

    rate, seconds = 1_000, (1.0 if quick else 5.0)
    lat = [
        (label, run_rounds(__file__, [Contender(label, "latency")], 1, **kw)[0].runs[0]["latencies"])
        for label, kw in (
            (
                "producer in another process (LISTEN/NOTIFY)",
                {"dsn": dsn, "tmp": tmp, "rate": rate, "seconds": seconds, "cross_process": True},
            ),
            (
                "producer in the runner's process",
                {"dsn": dsn, "tmp": tmp, "rate": rate, "seconds": seconds, "cross_process": False},
            ),
        )
    ]
    print(f"\nenqueue-to-start latency at {rate:,} jobs/s for {seconds:.0f} s, defaults")
    print(
        table(
            [
                [label, f"{len(v):,}", f"{percentile(v, 50) * 1e3:.2f}", f"{percentile(v, 99) * 1e3:.2f}"]
                for label, v in lat
            ],
            ["producer", "jobs", "p50 ms", "p99 ms"],
        ),
        flush=True,
    )

    measured = 2_000 if quick else 20_000
    depths = [1_000, 10_000] if quick else [1_000, 1_000_000]
    depth_contenders = [
        Contender(f"{d:,}", "at_depth", kwargs={"depth": d, "measured": measured}) for d in depths
    ]
    at = run_rounds(__file__, depth_contenders, 1, dsn=dsn)
    print(
        f"\nthroughput with a backlog waiting behind the {measured:,} measured jobs (1 process);"
        f"\nRunner(store=..., max_pending=None), otherwise defaults"
    )
    print(
        table(
            [
                [c.label, f"{s.rate:,.0f}", f"{s.rate / at[0].rate:.2f}", f"{s.runs[0]['built']:.1f}"]
                for c, s in zip(depth_contenders, at, strict=True)
            ],
            ["queued", "jobs/s", "x first", "backlog built in s"],
        )
    )
    return 0


def worker_main(kind: str, dsn: str, schema: str, ready: str, options: str, extra: str | None) -> None:
    if kind == "raw":
        asyncio.run(raw_worker(dsn, schema, Path(ready)))
        return
    if extra:
        EXTRAS[extra]()
    asyncio.run(jobrunner_worker(dsn, schema, Path(ready), json.loads(options)))


if __name__ == "__main__" and not serve_child(globals()):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small N and one round, for smoke runs")
    parser.add_argument("--dsn", default=default_dsn())
    parser.add_argument("--worker", choices=["raw", "jobrunner"], help=argparse.SUPPRESS)
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    parser.add_argument("--ready", help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--extra", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker, args.dsn, args.schema, args.ready, args.options, args.extra)
    else:
        sys.exit(main(args.quick, args.dsn))
