"""A runner process on an SQLite file, for the crash and shutdown tests.

    python -m tests.procs.worker DB LOG --worker-id ID [--concurrency N]
        [--lease SECONDS] [--job-seconds SECONDS] [--grace SECONDS]

It runs ``work(n)`` jobs until SIGTERM/SIGINT (``runner.serve()``). Every
attempt appends ``start <job id> <attempt> <trigger> <worker id>`` to LOG when
it begins and ``end <job id> <worker id>`` when it returns; each line is one
``write`` on an O_APPEND descriptor, so lines from several processes never mix.
The store is never closed explicitly: exiting must not depend on it.
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
from jobrunner.stores.sqlite import SQLiteStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("log")
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--job-seconds", type=float, default=0.02)
    parser.add_argument("--grace", type=float, default=10.0)
    args = parser.parse_args()

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    # The tests are about recovery, not the default cadence: look for expired
    # leases often, so a dead worker's jobs come back within a second or two.
    defaults.RESCUE_INTERVAL = 0.2

    runner = Runner(
        store=SQLiteStore(args.db, poll_interval=0.05),
        concurrency=args.concurrency,
        lease=args.lease,
        shutdown_grace=args.grace,
        worker_id=args.worker_id,
        max_pending=None,
    )
    log = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    me = args.worker_id

    @runner.job(retries=5, backoff=0.0)
    async def work(n: int) -> int:
        job = current_job()
        os.write(log, f"start {job.id} {job.attempt} {job.trigger} {me}\n".encode())
        await asyncio.sleep(args.job_seconds)
        os.write(log, f"end {job.id} {me}\n".encode())
        return n

    asyncio.run(runner.serve())


if __name__ == "__main__":
    main()
