"""A runner process on a PostgreSQL schema, for the multi-process crash tests.

    python tests/procs/pg_worker.py DSN SCHEMA LOG --worker-id ID [--concurrency N]
        [--lease SECONDS] [--job-seconds SECONDS] [--slow-every N --slow-seconds SECONDS]

It runs ``pg_work(n)`` jobs until SIGTERM/SIGINT (``runner.serve()``). Every
attempt appends ``start <job id> <attempt> <worker id>`` to LOG when it begins,
as one ``write`` on an O_APPEND descriptor: the kernel has it even if the
process is SIGKILLed the next instant, and lines from several processes never
mix. ``ready <worker id>`` is written once the runner is serving.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import structlog

from jobrunner import Runner, current_job, defaults
from jobrunner.stores.postgres import PostgresStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("schema")
    parser.add_argument("log")
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--job-seconds", type=float, default=0.002)
    parser.add_argument("--slow-every", type=int, default=0, help="every Nth job (by n) is slow")
    parser.add_argument("--slow-seconds", type=float, default=0.2)
    args = parser.parse_args()

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    # The test is about recovery, not the default cadence: the leader looks for
    # expired leases often, so a dead worker's jobs come back within seconds.
    defaults.RESCUE_INTERVAL = 0.25

    runner = Runner(
        store=PostgresStore(
            args.dsn, schema=args.schema, max_connections=4, application_name=f"jobrunner {args.worker_id}"
        ),
        concurrency=args.concurrency,
        lease=args.lease,
        worker_id=args.worker_id,
        max_pending=None,
    )
    log = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    me = args.worker_id

    @runner.job(retries=5, backoff=0.0)
    async def pg_work(n: int) -> int:
        job = current_job()
        os.write(log, f"start {job.id} {job.attempt} {me}\n".encode())
        slow = args.slow_every and n % args.slow_every == 0
        await asyncio.sleep(args.slow_seconds if slow else args.job_seconds)
        return n

    asyncio.run(serve_forever(runner, log, me))


async def serve_forever(runner: Runner, log: int, me: str) -> None:
    """``runner.serve()``, writing ``ready`` once it has started."""

    async def announce() -> None:
        while not runner.is_running:
            await asyncio.sleep(0.005)
        os.write(log, f"ready {me}\n".encode())

    task = asyncio.ensure_future(announce())
    try:
        await runner.serve()
    finally:
        task.cancel()
        await runner.aclose()


if __name__ == "__main__":
    main()
