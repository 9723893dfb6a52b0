"""A runner process with a batch handler, on SQLite or PostgreSQL.

    python tests/procs/batch_worker.py sqlite DB LOG --worker-id ID --batch N [--lease SECONDS] [--stall-from M]
    python tests/procs/batch_worker.py postgres DSN SCHEMA LOG --worker-id ID --batch N [...]

It runs ``batch_item`` (``@runner.job(batch=N)``, the items are integers) with
6 slots until SIGTERM: the result for item ``n`` is ``n * 10``, except for
every 17th (``n % 17 == 0``), which gets a ``ValueError`` and so retries until
it is dead.
Every invocation appends ``batch <worker id> <k> <n1,n2,...>`` to LOG when it
begins and ``done <worker id> <k>`` just before it returns (``k`` counts this
process's invocations), one ``write`` each on an O_APPEND descriptor, so the
file's order is the order the lines happened in across processes. The items
name the jobs: ``current_job()`` in a batch handler is only its first member.
``ready <worker id>`` is written once the runner serves. With ``--stall-from M``,
the first invocation with an item from ``M`` on that succeeds writes ``stall
<worker id> <k>`` and never returns: a batch in flight when the test kills the
process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.procs.pg_worker import serve_forever
from tests.procs.store_worker import parse, start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--stall-from", type=int, default=None, help="an item from M on stalls its batch")
    args = parse(parser)
    runner, log = start(args, concurrency=6)
    me = args.worker_id
    size: int = args.batch
    stall_from: int | None = args.stall_from
    invocations = 0
    stalled = False

    @runner.job(batch=size, retries=2, backoff=0)
    async def batch_item(items: list[int]) -> list[object]:
        nonlocal invocations, stalled
        invocations += 1
        k = invocations
        os.write(log, f"batch {me} {k} {','.join(map(str, items))}\n".encode())
        if stall_from is not None and not stalled and any(n >= stall_from and n % 17 for n in items):
            stalled = True
            os.write(log, f"stall {me} {k}\n".encode())
            await asyncio.Event().wait()  # in flight until the test kills this process
        await asyncio.sleep(random.uniform(0, 0.01))
        os.write(log, f"done {me} {k}\n".encode())
        return [ValueError(f"item {n} is every 17th") if n % 17 == 0 else n * 10 for n in items]

    asyncio.run(serve_forever(runner, log, me))


if __name__ == "__main__":
    main()
