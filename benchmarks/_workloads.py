"""The enqueue-then-run workload, as each contender runs it; shared by the scripts.

Every function runs N no-op jobs and returns ``Timer.figures(n)``; the scripts
call them by name in a fresh child process (``_common.serve_child``).
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import Any

from benchmarks._common import Timer

CONCURRENCY = 100


async def noop() -> None:
    pass


async def aiojobs_defaults(n: int) -> dict[str, Any]:
    """``aiojobs.Scheduler(limit=100)``: spawn N, then ``wait_and_close()``, its way to wait for all."""
    import aiojobs

    scheduler = aiojobs.Scheduler(limit=CONCURRENCY)
    with Timer() as t:
        for _ in range(n):
            await scheduler.spawn(noop())
        await scheduler.wait_and_close()
    return t.figures(n)


async def aiojobs_counted(n: int) -> dict[str, Any]:
    """aiojobs' fastest way to learn that all N ran: the jobs count themselves.

    ``wait_and_close()`` gathers a waiter per job still known to the scheduler
    (up to 10,000 pending), which is most of its cost in the row above; this
    row shows aiojobs without it, so a comparison does not rest on it.
    """
    import aiojobs

    done = asyncio.Event()
    count = 0

    async def counted() -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    scheduler = aiojobs.Scheduler(limit=CONCURRENCY)
    with Timer() as t:
        for _ in range(n):
            await scheduler.spawn(counted())
        await done.wait()
    await scheduler.close()
    return t.figures(n)


async def jobrunner_run(
    n: int, options: dict[str, Any] | None = None, batched: bool = False, sqlite: bool = False
) -> dict[str, Any]:
    """``Runner(**options)`` (on a fresh SQLite file with ``sqlite``): N enqueues,
    or one ``enqueue_many``, into the started runner, then ``run_until_idle()``."""
    from jobrunner import Runner

    with tempfile.TemporaryDirectory(prefix="bench-jobrunner-") as tmp:
        settings = dict(options or {})
        if sqlite:
            settings["store"] = f"sqlite:///{tmp}/jobs.db"
        runner = Runner(**settings)

        @runner.job
        async def noop() -> None:
            pass

        async with runner:  # started (and the store opened) before the clock starts
            with Timer() as t:
                if batched:
                    await noop.enqueue_many([()] * n)
                else:
                    for _ in range(n):
                        await noop.enqueue()
                await runner.run_until_idle()
    return t.figures(n)
