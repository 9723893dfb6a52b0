"""A runner process for the flow-control tests across processes.

    python tests/procs/limited_worker.py STORE_URL LOG --worker-id ID
        [--concurrency N] [--queue-limit N] [--name-limit N] [--rate N/SECONDS] [--job-seconds SECONDS]

It serves ``held(n)`` jobs (queue ``limited``) and ``free(n)`` jobs (queue
``other``) until SIGTERM. ``--queue-limit`` declares ``global_limits={"limited":
N}``; ``--name-limit`` declares ``held`` with ``concurrency=N``; ``--rate``
declares ``RateLimit(N, SECONDS, queue="limited")``. Each attempt appends
``start <monotonic> <job id> <worker> <wall>`` and ``end <monotonic> <job id>
<worker>`` to LOG (one ``write`` each on an O_APPEND descriptor, so lines of
several processes never mix; the monotonic clock is the host's, shared by its
processes). ``ready <worker>`` is written once the runner serves.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import structlog

from jobrunner import RateLimit, Runner, current_job


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("log")
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--queue-limit", type=int)
    parser.add_argument("--name-limit", type=int)
    parser.add_argument("--rate", help="N/SECONDS")
    parser.add_argument("--job-seconds", type=float, default=0.05)
    args = parser.parse_args()

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    runner = Runner(
        store=args.store,
        concurrency=args.concurrency,
        worker_id=args.worker_id,
        max_pending=None,
        global_limits=None if args.queue_limit is None else {"limited": args.queue_limit},
        rate_limits=[]
        if args.rate is None
        else [RateLimit(int(n), float(p), queue="limited") for n, p in [args.rate.split("/")]],
    )
    log = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    me = args.worker_id

    async def attempt() -> None:
        job = current_job()
        os.write(log, f"start {time.monotonic()} {job.id} {me} {time.time()}\n".encode())
        await asyncio.sleep(args.job_seconds)
        os.write(log, f"end {time.monotonic()} {job.id} {me}\n".encode())

    @runner.job(queue="limited", concurrency=args.name_limit)
    async def held(n: int) -> None:
        await attempt()

    @runner.job(queue="other")
    async def free(n: int) -> None:
        await attempt()

    async def serve() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(runner.serve())
            while not runner.is_running:
                await asyncio.sleep(0.01)
            os.write(log, f"ready {me}\n".encode())

    asyncio.run(serve())


if __name__ == "__main__":
    main()
