"""A runner process with a cron schedule on a PostgreSQL schema, on a clock the test drives.

    python tests/procs/pg_cron_node.py DSN SCHEMA CLOCK LOG --worker-id ID

Time comes from the file CLOCK (epoch seconds as text, replaced atomically by
the test), so several processes share one clock that moves only when the test
says; wall and monotonic time are the same line. The schedule fires every
second (``missed="all"``: a new leader catches up every tick it finds missing).
The job ``tick`` appends ``run <scheduled_for> <trigger> <attempt> <worker id>``
to LOG, one ``write`` on an O_APPEND descriptor per line, after
``ready <worker id>`` once the runner has started. Runs until SIGTERM/SIGINT.
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

from jobrunner import Runner, current_job, defaults
from jobrunner.stores.postgres import PostgresStore

POLL = 0.002
"""Real seconds between looks at the clock file while sleeping."""


class FileClock:
    """``jobrunner.clock.Clock`` reading the time from a file."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._last = 0.0

    def now(self) -> float:
        try:
            self._last = float(Path(self._path).read_text())
        except (OSError, ValueError):
            pass  # caught mid-replace: the last value still holds
        return self._last

    def monotonic(self) -> float:
        return self.now()

    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> None:
        until = self.now() + seconds
        while not (wake is not None and wake.is_set()):
            if self.now() >= until:
                return
            await asyncio.sleep(POLL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("schema")
    parser.add_argument("clock")
    parser.add_argument("log")
    parser.add_argument("--worker-id", required=True)
    args = parser.parse_args()

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    defaults.RESCUE_INTERVAL = 1.0  # in file-clock seconds: a dead node's jobs come back soon
    runner = Runner(
        store=PostgresStore(
            args.dsn, schema=args.schema, max_connections=3, application_name=f"jobrunner {args.worker_id}"
        ),
        clock=FileClock(args.clock),
        lease=3.0,
        worker_id=args.worker_id,
        max_pending=None,
    )
    log = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    me = args.worker_id

    @runner.cron("* * * * * *", missed="all")
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
        await runner.aclose()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
