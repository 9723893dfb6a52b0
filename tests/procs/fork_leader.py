"""A leader on an SQLite file that forks a child (as a job's multiprocessing helper
would), for the test that the child does not keep the leader's lock alive.

    python tests/procs/fork_leader.py DB NOW

Leads the maintenance role at time NOW, forks a child that only sleeps (60 s at
most), prints ``ready <child pid>`` and waits to be killed.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jobrunner.maintenance import LEADER_ROLE
from jobrunner.stores.sqlite import SQLiteStore


async def lead(db: str, now: float) -> None:
    store = SQLiteStore(db)
    await store.open()
    if not await store.try_lead(LEADER_ROLE, "parent", 10.0, now):
        raise SystemExit("could not lead")
    # Python 3.12 warns about forking a process with threads (the store's); the
    # child only sleeps, so nothing can deadlock.
    warnings.simplefilter("ignore", DeprecationWarning)
    child = os.fork()
    if child == 0:
        time.sleep(60)  # holds whatever descriptors the fork left it
        os._exit(0)
    print(f"ready {child}", flush=True)
    await asyncio.sleep(60)


if __name__ == "__main__":
    asyncio.run(lead(sys.argv[1], float(sys.argv[2])))
