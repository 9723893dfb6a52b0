"""Same workload, default settings: jobrunner against aiojobs and bare asyncio (issue 11).

The independent harness's workload, exactly: enqueue N = 20,000 no-op jobs one
``await`` at a time into a started runner, then wait until all have run;
timed from the first enqueue to the last completion.

* jobrunner: ``Runner()`` as a user gets it (memory store, concurrency 100,
  max_pending 10,000, instrumentation on, logging not configured here);
  ``await noop.enqueue()`` N times, then ``await runner.run_until_idle()``.
* aiojobs: ``aiojobs.Scheduler(limit=100)`` (its default limit, and its default
  pending_limit of 10,000); ``await scheduler.spawn(noop())`` N times, then
  ``await scheduler.wait_and_close()``, its documented way to wait for all
  jobs; and again with the jobs counting themselves and the last one setting
  an event, aiojobs' fastest way to wait (``wait_and_close`` gathers a waiter
  per job it still holds).
* bare asyncio: 100 worker tasks reading an ``asyncio.Queue(maxsize=10,000)``;
  ``await queue.put(noop)`` N times, then ``await queue.join()``.
* for information: jobrunner ``Runner(store="sqlite:///<fresh file>")``, defaults.

Each measurement runs in its own fresh interpreter (``_common.measure``), so
its peak RSS is its own and nothing configured for one row leaks into another.
The contenders alternate over several rounds, in an order that rotates; the
table shows medians. CPU time per job (all threads) is steadier than wall time
on a shared machine. Target: the memory store, end to end, at least as fast as
aiojobs, both with their defaults.

Usage: python benchmarks/bench_vs_aiojobs.py [--quick] [--rounds R] [-n N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import Contender, Timer, defaults_note, run_rounds, serve_child, table, verdict
from benchmarks._workloads import CONCURRENCY, aiojobs_counted, aiojobs_defaults, jobrunner_run, noop

# Named here so serve_child finds them in this script.
__all__ = ["aiojobs_counted", "aiojobs_defaults", "jobrunner_run"]
PENDING = 10_000  # aiojobs' default pending_limit, and jobrunner's default max_pending


# --- contenders (each runs in a child process) ---------------------------------------
async def bare_asyncio(n: int) -> dict[str, Any]:
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=PENDING)

    async def worker() -> None:
        while True:
            fn = await queue.get()
            await fn()
            queue.task_done()

    workers = [asyncio.create_task(worker()) for _ in range(CONCURRENCY)]
    with Timer() as t:
        for _ in range(n):
            await queue.put(noop)
        await queue.join()
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    return t.figures(n)


CONTENDERS = [
    Contender("bare asyncio: Queue(maxsize=10,000) + 100 worker tasks", "bare_asyncio"),
    Contender("aiojobs.Scheduler(limit=100), other defaults", "aiojobs_defaults"),
    Contender("aiojobs, same, jobs count themselves (no wait_and_close)", "aiojobs_counted"),
    Contender("jobrunner Runner(), all defaults (memory store)", "jobrunner_run"),
    Contender(
        'jobrunner Runner(store="sqlite:///tmpfile"), defaults (info)',
        "jobrunner_run",
        kwargs={"sqlite": True},
    ),
]


def main(n: int, rounds: int) -> None:
    print(
        f"N={n:,} no-op jobs enqueued one await at a time into a started runner, then run to the end;"
        f"\nconcurrency {CONCURRENCY}; {rounds} rounds, contenders alternating, one fresh process each."
    )
    print(defaults_note(), flush=True)
    samples = run_rounds(__file__, CONTENDERS, rounds, n=n)
    base, aio, aio_counted, memory, sqlite = samples
    rows = [
        [
            c.label,
            f"{s.rate:,.0f}",
            f"{s.rate / aio.rate:.2f}",
            f"{s.rate / base.rate:.2f}",
            f"{s.cpu_us:.1f}",
            f"{s.peak_mb:.0f}",
        ]
        for c, s in zip(CONTENDERS, samples, strict=True)
    ]
    print(f"\nend to end, first enqueue to last completion (medians of {rounds})")
    print(table(rows, ["contender", "jobs/s", "x aiojobs", "x asyncio", "CPU us/job", "peak RSS MB"]))
    print(
        f"\nmemory store end to end vs aiojobs, both with defaults: {verdict(memory.rate / aio.rate, 1.0)}"
        f"\nmemory store vs aiojobs without wait_and_close (its fastest wait): "
        f"{verdict(memory.rate / aio_counted.rate, 1.0)}"
        f"\nSQLite store end to end vs aiojobs (information): {sqlite.rate / aio.rate:.2f}"
        f"\nper-round ratios jobrunner/aiojobs: "
        + ", ".join(
            f"{m['jobs'] / m['seconds'] / (a['jobs'] / a['seconds']):.2f}"
            for m, a in zip(memory.runs, aio.runs, strict=True)
        )
    )


if __name__ == "__main__" and not serve_child(globals()):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="N=2,000 and 2 rounds, for smoke runs")
    parser.add_argument("--rounds", type=int, help="rounds (default 5; 2 with --quick)")
    parser.add_argument("-n", type=int, help="jobs per run (default 20,000; 2,000 with --quick)")
    args = parser.parse_args()
    main(args.n or (2_000 if args.quick else 20_000), args.rounds or (2 if args.quick else 5))
