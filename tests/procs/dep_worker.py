"""A runner process for the dependency tests, on SQLite or PostgreSQL.

    python tests/procs/dep_worker.py sqlite DB LOG --worker-id ID [--lease SECONDS]
    python tests/procs/dep_worker.py postgres DSN SCHEMA LOG --worker-id ID [--lease SECONDS]

It runs ``dep_step(n)`` (returns ``n``; fails for a negative ``n``) and
``dep_child()`` (returns the sum of its parents' results) until SIGTERM;
both retry (a rescued attempt runs again), Abort does not.
Every attempt appends ``start <job id> <worker id>`` to LOG when it begins and
``end <job id> <worker id>`` just before it returns, one ``write`` each on an
O_APPEND descriptor, so the file's order is the order the lines happened in
across processes. ``ready <worker id>`` is written once the runner serves.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jobrunner import Abort, current_job
from tests.procs.pg_worker import serve_forever
from tests.procs.store_worker import parse, start


def main() -> None:
    args = parse(argparse.ArgumentParser())
    runner, log = start(args, concurrency=8)
    me = args.worker_id

    def write(event: str) -> None:
        os.write(log, f"{event} {current_job().id} {me}\n".encode())

    @runner.job(retries=3, backoff=0)
    async def dep_step(n: int) -> int:
        write("start")
        await asyncio.sleep(random.uniform(0, 0.01))
        write("end")
        if n < 0:
            raise Abort("a failing parent")
        return n

    @runner.job(retries=3, backoff=0)
    async def dep_child() -> int:
        write("start")
        results = await current_job().parent_results()
        write("end")
        return sum(results)

    asyncio.run(serve_forever(runner, log, me))


if __name__ == "__main__":
    main()
