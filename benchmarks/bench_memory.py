"""Memory-store benchmark: jobrunner as a user gets it, beside tuned setups, bare asyncio and aiojobs.

Scenarios (no-op async jobs, concurrency 100):

* throughput: enqueue N jobs one ``await noop.enqueue()`` at a time into a
  started runner, then ``await runner.run_until_idle()``; timed from the first
  enqueue to the last completion. The headline row is ``Runner()`` with every
  default (max_pending 10,000, so the producer waits for room; instrumentation
  on; the default ``MemoryStore()``; logging as the app left it, here not
  configured at all). Beside it: tuned rows (no backpressure, no
  instrumentation, one ``enqueue_many``) and one row for each extra a user may
  turn on (structlog configured at INFO; an OpenTelemetry SDK). Baselines: 100
  worker tasks reading an ``asyncio.PriorityQueue(maxsize=10,000)`` (jobrunner
  orders by priority and bounds its queue at the same size), and
  ``aiojobs.Scheduler(limit=100)`` with its defaults.
* latency: enqueue-to-start at a steady 10,000 jobs/s (a contender that cannot
  keep up shows it in its p99).
* backlog: throughput while 1k, 100k or 1M jobs wait (each job enqueues its
  successor). A backlog beyond the default max_pending would block every
  refill, so this scenario runs ``Runner(max_pending=None)``.
* memory: bytes of RSS per queued job, ``Runner()`` with M jobs enqueued by
  one ``enqueue_many`` before it starts.

Every measurement runs in its own fresh interpreter (``_common.measure``);
contenders alternate over rounds in a rotating order; the tables show medians,
CPU time per job (all threads; steadier than wall time on a shared machine)
and the peak RSS of the measuring process.

Usage: python benchmarks/bench_memory.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    OTEL_LABEL,
    STRUCTLOG_LABEL,
    Contender,
    Samples,
    Timer,
    defaults_note,
    percentile,
    rss_bytes,
    run_rounds,
    serve_child,
    table,
)
from benchmarks._workloads import CONCURRENCY, aiojobs_counted, aiojobs_defaults, jobrunner_run, noop

PENDING = 10_000  # jobrunner's default max_pending, and aiojobs' default pending_limit
# Named here so serve_child finds them in this script.
__all__ = ["aiojobs_counted", "aiojobs_defaults", "jobrunner_run"]


# --- baselines -------------------------------------------------------------------------
async def bare_asyncio(n: int) -> dict[str, Any]:
    queue: asyncio.PriorityQueue[tuple[int, int, Any]] = asyncio.PriorityQueue(maxsize=PENDING)

    async def worker() -> None:
        while True:
            _, _, fn = await queue.get()
            await fn()
            queue.task_done()

    workers = [asyncio.create_task(worker()) for _ in range(CONCURRENCY)]
    with Timer() as t:
        for i in range(n):
            await queue.put((0, i, noop))
        await queue.join()
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    return t.figures(n)


# --- jobrunner -------------------------------------------------------------------------
def throughput_contenders() -> list[Contender]:
    def jr(label: str, extra: str | None = None, batched: bool = False, **options: Any) -> Contender:
        return Contender(label, "jobrunner_run", extra, {"options": options, "batched": batched})

    return [
        Contender("bare asyncio: PriorityQueue(maxsize=10,000) + 100 tasks", "bare_asyncio"),
        Contender("aiojobs.Scheduler(limit=100), other defaults", "aiojobs_defaults"),
        Contender("aiojobs, same, jobs count themselves (no wait_and_close)", "aiojobs_counted"),
        jr("jobrunner Runner(), all defaults  <- headline"),
        jr("  tuned: Runner(max_pending=None)", max_pending=None),
        jr("  tuned: Runner(instrument=False)", instrument=False),
        jr("  tuned: Runner(max_pending=None, instrument=False)", max_pending=None, instrument=False),
        jr("  tuned: Runner(), one enqueue_many(N calls)", batched=True),
        jr(f"  extra: Runner() {STRUCTLOG_LABEL}", "structlog"),
        jr(f"  extra: Runner() {OTEL_LABEL}", "otel"),
    ]


# --- latency ---------------------------------------------------------------------------
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


def _latency_figures(latencies: list[float]) -> dict[str, Any]:
    return {
        "jobs": len(latencies),
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "max": max(latencies),
    }


async def bare_asyncio_latency(rate: int, seconds: float) -> dict[str, Any]:
    queue: asyncio.PriorityQueue[tuple[int, int, float]] = asyncio.PriorityQueue(maxsize=PENDING)
    latencies: list[float] = []

    async def worker() -> None:
        while True:
            _, _, t0 = await queue.get()
            latencies.append(time.perf_counter() - t0)
            queue.task_done()

    workers = [asyncio.create_task(worker()) for _ in range(CONCURRENCY)]
    seq = itertools.count()
    await _paced(rate, seconds, lambda: queue.put((0, next(seq), time.perf_counter())))
    await queue.join()
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    return _latency_figures(latencies)


async def jobrunner_latency(rate: int, seconds: float) -> dict[str, Any]:
    from jobrunner import Runner

    runner = Runner()
    latencies: list[float] = []

    @runner.job
    async def stamp(t0: float) -> None:
        latencies.append(time.perf_counter() - t0)

    async with runner:
        await _paced(rate, seconds, lambda: stamp.enqueue(time.perf_counter()))
        await runner.run_until_idle()
    return _latency_figures(latencies)


LATENCY_CONTENDERS = [
    Contender("bare asyncio: PriorityQueue(maxsize=10,000) + 100 tasks", "bare_asyncio_latency"),
    Contender("jobrunner Runner(), all defaults", "jobrunner_latency"),
    Contender(f"  extra: Runner() {STRUCTLOG_LABEL}", "jobrunner_latency", "structlog"),
    Contender(f"  extra: Runner() {OTEL_LABEL}", "jobrunner_latency", "otel"),
]


# --- backlog and memory ----------------------------------------------------------------
async def jobrunner_at_depth(depth: int, measured: int) -> dict[str, Any]:
    """Throughput over ``measured`` jobs while ``depth`` jobs wait behind them."""
    from jobrunner import Runner

    runner = Runner(max_pending=None)
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
    async with runner:
        with Timer() as t:
            await done.wait()
        runner.stop(now=True)
    return t.figures(measured)


async def jobrunner_memory_per_job(m: int) -> dict[str, Any]:
    from jobrunner import Runner

    runner = Runner()

    @runner.job
    async def noop() -> None:
        pass

    # One batch, into an empty queue: a batch larger than max_pending is admitted only there.
    before = rss_bytes()
    handles = await noop.enqueue_many([()] * m)
    del handles
    after = rss_bytes()
    assert await runner.store.count_pending() == m
    return {"per_job": (after - before) / m}


# --- report ----------------------------------------------------------------------------
def throughput_rows(contenders: list[Contender], samples: list[Samples]) -> list[list[object]]:
    base, aio = samples[0], samples[1]
    return [
        [
            c.label,
            f"{s.rate:,.0f}",
            f"{s.rate / base.rate:.3f}",
            f"{s.rate / aio.rate:.2f}",
            f"{s.cpu_us:.1f}",
            f"{s.peak_mb:.0f}",
        ]
        for c, s in zip(contenders, samples, strict=True)
    ]


def main(quick: bool) -> None:
    n = 2_000 if quick else 100_000
    rounds = 1 if quick else 3
    print(
        f"memory store, no-op jobs, concurrency {CONCURRENCY}; every figure from a fresh process,"
        f"\ncontenders alternating; medians of {rounds} round(s)."
    )
    print(defaults_note(), flush=True)

    contenders = throughput_contenders()
    samples = run_rounds(__file__, contenders, rounds, n=n)
    print(f"\nthroughput: N={n:,} enqueue() calls into a started runner, then run_until_idle()")
    print(
        table(
            throughput_rows(contenders, samples),
            ["contender", "jobs/s", "x asyncio", "x aiojobs", "CPU us/job", "peak RSS MB"],
        ),
        flush=True,
    )

    rate, seconds = 10_000, (0.5 if quick else 3.0)
    lat = run_rounds(__file__, LATENCY_CONTENDERS, rounds, rate=rate, seconds=seconds)
    print(f"\nenqueue-to-start latency at {rate:,} jobs/s for {seconds} s (medians over rounds)")

    print(
        table(
            [
                [
                    c.label,
                    f"{s.median('jobs'):,.0f}",
                    f"{s.median('p50') * 1e6:,.0f}",
                    f"{s.median('p99') * 1e6:,.0f}",
                    f"{s.median('max') * 1e6:,.0f}",
                ]
                for c, s in zip(LATENCY_CONTENDERS, lat, strict=True)
            ],
            ["contender", "jobs", "p50 us", "p99 us", "max us"],
        ),
        flush=True,
    )

    depths = [1_000, 10_000] if quick else [1_000, 100_000, 1_000_000]
    measured = 2_000 if quick else 100_000
    depth_contenders = [
        Contender(f"{d:,}", "jobrunner_at_depth", kwargs={"depth": d, "measured": measured}) for d in depths
    ]
    at = run_rounds(__file__, depth_contenders, 1)
    print(f"\nthroughput with a backlog: Runner(max_pending=None), otherwise defaults; {measured:,} measured")
    print(
        table(
            [
                [
                    c.label,
                    f"{s.rate:,.0f}",
                    f"{s.rate / at[0].rate:.2f}",
                    f"{s.cpu_us:.1f}",
                    f"{s.peak_mb:.0f}",
                ]
                for c, s in zip(depth_contenders, at, strict=True)
            ],
            ["queued", "jobs/s", "x first", "CPU us/job", "peak RSS MB"],
        ),
        flush=True,
    )

    m = 20_000 if quick else 1_000_000
    (mem,) = run_rounds(__file__, [Contender("memory", "jobrunner_memory_per_job", kwargs={"m": m})], 1)
    print(
        f"\nmemory per queued job, Runner() with {m:,} jobs from one enqueue_many(): "
        f"{mem.runs[0]['per_job']:,.0f} bytes (RSS growth / jobs)"
    )


if __name__ == "__main__" and not serve_child(globals()):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small N and one round, for smoke runs")
    main(parser.parse_args().quick)
