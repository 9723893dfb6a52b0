"""Memory-store benchmark: jobrunner against bare asyncio and aiojobs, in one run.

Scenarios (N no-op async jobs, concurrency 100):

* enqueue-all-then-run: enqueue N jobs, then run them all;
* steady: a producer enqueues N jobs while the workers run (backpressure on);
* latency: enqueue-to-start at a steady 10,000 jobs/s;
* depth: throughput while the queue holds 1k, 100k or 1M jobs;
* memory: bytes of RSS per queued job.

jobrunner runs with everything on: priorities, the default 300 s timeout and
retries, a job context per attempt, results kept. The baseline is an
``asyncio.PriorityQueue`` feeding 100 long-lived worker tasks.

Usage: python benchmarks/bench_memory.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import Timer, percentile, quiet_logs, rss_bytes, table
from jobrunner import MemoryStore, Runner

CONCURRENCY = 100


# --- bare asyncio ------------------------------------------------------------------
async def baseline_all_then_run(n: int) -> float:
    queue: asyncio.PriorityQueue[tuple[int, int, Callable[[], Awaitable[None]]]] = asyncio.PriorityQueue()
    done = asyncio.Event()
    count = 0

    async def noop() -> None:
        pass

    async def worker() -> None:
        nonlocal count
        while True:
            _, _, fn = await queue.get()
            await fn()
            count += 1
            if count == n:
                done.set()

    with Timer() as t:
        for i in range(n):
            queue.put_nowait((0, i, noop))
        workers = [asyncio.create_task(worker()) for _ in range(CONCURRENCY)]
        await done.wait()
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    return n / t.seconds


async def baseline_steady(n: int) -> float:
    queue: asyncio.PriorityQueue[tuple[int, int, Callable[[], Awaitable[None]]]] = asyncio.PriorityQueue(
        maxsize=10_000
    )
    done = asyncio.Event()
    count = 0

    async def noop() -> None:
        pass

    async def worker() -> None:
        nonlocal count
        while True:
            _, _, fn = await queue.get()
            await fn()
            count += 1
            if count == n:
                done.set()

    with Timer() as t:
        workers = [asyncio.create_task(worker()) for _ in range(CONCURRENCY)]
        for i in range(n):
            await queue.put((0, i, noop))
        await done.wait()
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    return n / t.seconds


async def baseline_latency(rate: int, seconds: float) -> list[float]:
    queue: asyncio.PriorityQueue[tuple[int, int, float]] = asyncio.PriorityQueue()
    latencies: list[float] = []

    async def worker() -> None:
        while True:
            _, _, t0 = await queue.get()
            latencies.append(time.perf_counter() - t0)

    workers = [asyncio.create_task(worker()) for _ in range(CONCURRENCY)]
    seq = itertools.count()
    await _paced(rate, seconds, lambda: queue.put_nowait((0, next(seq), time.perf_counter())))
    await asyncio.sleep(0.05)
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    return latencies


async def _paced(rate: int, seconds: float, emit: Callable[[], Any]) -> None:
    """Call ``emit`` ``rate`` times a second for ``seconds``, in 1 ms ticks."""
    total = int(rate * seconds)
    start = time.perf_counter()
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        while sent < due:
            result = emit()
            if asyncio.iscoroutine(result):
                await result
            sent += 1
        await asyncio.sleep(0.001)


# --- aiojobs ---------------------------------------------------------------------------
async def aiojobs_run(n: int, pending_limit: int) -> float:
    import aiojobs

    done = asyncio.Event()
    count = 0

    async def noop() -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    scheduler = aiojobs.Scheduler(limit=CONCURRENCY, pending_limit=pending_limit)
    with Timer() as t:
        for _ in range(n):
            await scheduler.spawn(noop())
        await done.wait()
    await scheduler.close()
    return n / t.seconds


# --- jobrunner -------------------------------------------------------------------------
def make_runner(**kwargs: Any) -> tuple[Runner, Any]:
    runner = Runner(store=MemoryStore(max_finished=200_000), concurrency=CONCURRENCY, **kwargs)

    @runner.job
    async def noop() -> None:
        pass

    return runner, noop


async def jobrunner_all_then_run(n: int) -> float:
    runner, noop = make_runner(max_pending=None)
    async with runner:
        with Timer() as t:
            for _ in range(n):
                await noop.enqueue()
            await runner.run_until_idle()
    return n / t.seconds


async def jobrunner_all_then_run_batched(n: int) -> float:
    runner, noop = make_runner(max_pending=None)
    calls = [()] * n
    async with runner:
        with Timer() as t:
            await noop.enqueue_many(calls)
            await runner.run_until_idle()
    return n / t.seconds


async def jobrunner_steady(n: int) -> float:
    runner, noop = make_runner(max_pending=10_000)
    async with runner:
        with Timer() as t:
            for _ in range(n):
                await noop.enqueue()
            await runner.run_until_idle()
    return n / t.seconds


async def jobrunner_latency(rate: int, seconds: float) -> list[float]:
    runner = Runner(concurrency=CONCURRENCY)
    latencies: list[float] = []

    @runner.job
    async def stamp(t0: float) -> None:
        latencies.append(time.perf_counter() - t0)

    async with runner:
        await _paced(rate, seconds, lambda: stamp.enqueue(time.perf_counter()))
        await runner.run_until_idle()
    return latencies


async def jobrunner_at_depth(depth: int, measured: int) -> float:
    """Throughput over ``measured`` jobs while ``depth`` jobs wait behind them."""
    runner = Runner(store=MemoryStore(max_finished=10_000), concurrency=CONCURRENCY, max_pending=None)
    finished = 0
    done = asyncio.Event()

    @runner.job
    async def refill() -> None:
        # Each job puts one back, so the queue stays at ``depth``.
        nonlocal finished
        finished += 1
        if finished == measured:
            done.set()
        await refill.enqueue()

    await refill.enqueue_many([()] * depth)
    gc.collect()
    async with runner:
        with Timer() as t:
            await done.wait()
        runner.stop()
    return measured / t.seconds


async def jobrunner_memory_per_job(n: int) -> float:
    runner, noop = make_runner(max_pending=None)
    gc.collect()
    before = rss_bytes()
    handles = await noop.enqueue_many([()] * n)
    del handles
    gc.collect()
    after = rss_bytes()
    assert await runner.store.count_pending() == n
    return (after - before) / n


async def main(quick: bool) -> None:
    quiet_logs()
    n = 20_000 if quick else 100_000
    print(f"memory store, N={n:,} no-op jobs, concurrency {CONCURRENCY}\n")

    base_all = await baseline_all_then_run(n)
    rows: list[list[object]] = [["bare asyncio (PriorityQueue + 100 tasks)", f"{base_all:,.0f}", "1.00"]]
    for label, fn in (
        ("jobrunner, enqueue() each", jobrunner_all_then_run),
        ("jobrunner, enqueue_many()", jobrunner_all_then_run_batched),
    ):
        rate = await fn(n)
        rows.append([label, f"{rate:,.0f}", f"{rate / base_all:.2f}"])
    aio_all = await aiojobs_run(n, n + 1)
    rows.append(["aiojobs (spawn all, pending_limit=N)", f"{aio_all:,.0f}", f"{aio_all / base_all:.2f}"])
    print("enqueue all, then run")
    print(table(rows, ["contender", "jobs/s", "x baseline"]))

    base_steady = await baseline_steady(n)
    jr_steady = await jobrunner_steady(n)
    aio_steady = await aiojobs_run(n, 10_000)
    print("\nsteady (producer and workers together, 10,000 pending at most)")
    print(
        table(
            [
                ["bare asyncio (maxsize=10,000)", f"{base_steady:,.0f}", "1.00"],
                ["jobrunner (max_pending=10,000)", f"{jr_steady:,.0f}", f"{jr_steady / base_steady:.2f}"],
                ["aiojobs (pending_limit=10,000)", f"{aio_steady:,.0f}", f"{aio_steady / base_steady:.2f}"],
            ],
            ["contender", "jobs/s", "x baseline"],
        )
    )

    seconds = 1.0 if quick else 3.0
    base_lat = await baseline_latency(10_000, seconds)
    jr_lat = await jobrunner_latency(10_000, seconds)
    print("\nenqueue-to-start latency at 10,000 jobs/s")
    print(
        table(
            [
                [
                    label,
                    f"{len(lat):,}",
                    f"{percentile(lat, 50) * 1e6:,.0f}",
                    f"{percentile(lat, 99) * 1e6:,.0f}",
                ]
                for label, lat in (("bare asyncio", base_lat), ("jobrunner", jr_lat))
            ],
            ["contender", "jobs", "p50 us", "p99 us"],
        )
    )

    depths = [1_000, 100_000] if quick else [1_000, 100_000, 1_000_000]
    measured = 20_000 if quick else 100_000
    rates = {d: await jobrunner_at_depth(d, measured) for d in depths}
    print(f"\nthroughput with a backlog (each job enqueues the next; {measured:,} measured)")
    print(
        table(
            [[f"{d:,}", f"{r:,.0f}", f"{r / rates[depths[0]]:.2f}"] for d, r in rates.items()],
            ["queued", "jobs/s", "x 1k"],
        )
    )

    per_job = await jobrunner_memory_per_job(200_000 if quick else 1_000_000)
    print(f"\nmemory per queued job: {per_job:,.0f} bytes (RSS growth / jobs)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller N, for CI smoke runs")
    asyncio.run(main(parser.parse_args().quick))
