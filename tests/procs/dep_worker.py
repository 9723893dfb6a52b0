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
import logging
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import structlog

from jobrunner import Abort, Runner, current_job, defaults
from jobrunner.stores.base import Store
from tests.procs.pg_worker import serve_forever


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["sqlite", "postgres"])
    parser.add_argument("where", nargs="+", help="DB, or DSN and SCHEMA")
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--lease", type=float, default=None)
    args = parser.parse_args()
    *where, log_path = args.where

    store: Store
    if args.kind == "sqlite":
        from jobrunner.stores.sqlite import SQLiteStore

        store = SQLiteStore(where[0], poll_interval=0.02)
    else:
        from jobrunner.stores.postgres import PostgresStore

        store = PostgresStore(where[0], schema=where[1], max_connections=4)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    # The kill test is about recovery, not the default cadence: expired leases
    # are looked for often, so a dead worker's jobs come back within a second.
    defaults.RESCUE_INTERVAL = 0.2
    options = {} if args.lease is None else {"lease": args.lease}
    runner = Runner(store=store, concurrency=8, worker_id=args.worker_id, max_pending=None, **options)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
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
