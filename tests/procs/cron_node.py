"""A runner process with a cron schedule on an SQLite file, on a clock the test drives.

    python tests/procs/cron_node.py DB CLOCK LOG --worker-id ID [--cron EXPR] [--missed POLICY]
        [--lease SECONDS]

Time comes from the file CLOCK (epoch seconds as text, replaced atomically by
the test), so several processes share one clock that moves only when the test
says; wall and monotonic time are the same line. CLOCK ``real`` is the system
clock instead. The job ``tick`` appends
``run <scheduled_for> <trigger> <attempt> <worker id>`` to LOG, one ``write``
on an O_APPEND descriptor per line, after ``ready <worker id>`` once the runner
has started. Runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import structlog

from jobrunner import Runner, current_job
from jobrunner.clock import Clock, SystemClock
from jobrunner.stores.sqlite import SQLiteStore

POLL = 0.002
"""Real seconds between looks at the clock file while sleeping."""


class FileClock:
    """``jobrunner.clock.Clock`` reading the time from a file."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._last = 0.0

    def now(self) -> float:
        try:
            text = Path(self._path).read_text()
            self._last = float(text)
        except (OSError, ValueError):
            pass  # mid-replace on an odd filesystem: the last value is still true
        return self._last

    def monotonic(self) -> float:
        return self.now()

    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> None:
        # From the time the caller last read, not a fresh read: the test may
        # have moved the clock since the caller computed ``seconds`` from it.
        until = self._last + seconds
        while not (wake is not None and wake.is_set()):
            if self.now() >= until:
                return
            await asyncio.sleep(POLL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("clock")
    parser.add_argument("log")
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--cron", default="* * * * * *")
    parser.add_argument("--missed", default="all")
    parser.add_argument("--lease", type=float, default=20.0)
    args = parser.parse_args()

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    clock: Clock = SystemClock() if args.clock == "real" else FileClock(args.clock)
    runner = Runner(
        store=SQLiteStore(args.db, poll_interval=0.05),
        clock=clock,
        lease=args.lease,
        worker_id=args.worker_id,
        max_pending=None,
    )
    log = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    me = args.worker_id

    @runner.cron(args.cron, missed=args.missed)
    async def tick() -> None:
        job = current_job()
        os.write(log, f"run {job.scheduled_for} {job.trigger} {job.attempt} {me}\n".encode())

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with runner:
            os.write(log, f"ready {me}\n".encode())
            await stop.wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
