"""Enqueue jobs one at a time and print each id once ``enqueue`` has returned.

    python -m tests.procs.producer DB COUNT

The test kills this process with SIGKILL part way and checks that every id it
printed is in the database: an accepted job is on disk.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import structlog

from jobrunner import Runner
from jobrunner.stores.sqlite import SQLiteStore


async def produce(db: str, count: int) -> None:
    runner = Runner(store=SQLiteStore(db), max_pending=None)
    work = runner.declare("work")
    for n in range(count):
        handle = await work.enqueue(n)
        sys.stdout.write(f"{handle.id}\n")
        sys.stdout.flush()


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(produce(sys.argv[1], int(sys.argv[2])))


if __name__ == "__main__":
    main()
