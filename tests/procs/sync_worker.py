"""A runner process whose only job is a sync handler that never returns.

    python tests/procs/sync_worker.py DB LOG

The job writes ``started <job id>`` to LOG, then blocks its thread for good
(``time.sleep``), as a handler stuck in a C call would. The test interrupts
the process (SIGINT twice: a user's double Ctrl-C) and checks that it exits
after the grace periods and that the job was not released to other workers.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jobrunner import Runner, current_job
from jobrunner.stores.sqlite import SQLiteStore


def main() -> None:
    db, log_path = sys.argv[1], sys.argv[2]
    runner = Runner(
        store=SQLiteStore(db, poll_interval=0.05), shutdown_grace=0.5, cancel_grace=0.5, worker_id="stuck"
    )
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    @runner.job(timeout=None)
    def stuck() -> None:
        os.write(log, f"started {current_job().id}\n".encode())
        time.sleep(3600)

    asyncio.run(runner.serve())


if __name__ == "__main__":
    main()
