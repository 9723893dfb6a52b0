"""Open an SQLite store and enqueue one job; print the outcome as one line.

    python tests/procs/open_store.py DB [--as-user UID]

Prints ``ok``, or ``StoreError: <message>`` (exit 3), or ``<Type>: <message>``
(exit 4). ``--as-user`` drops root's privileges first: root may write any
file whatever its mode, so the read-only test runs the store as another user.
Everything the attempt needs is imported (and run once on a scratch file)
before privileges are dropped, since the interpreter's own files may be
readable by root only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jobrunner import StoreError
from jobrunner.models import JobSpec, Trigger
from jobrunner.stores.sqlite import SQLiteStore


async def open_and_enqueue(db: str) -> None:
    store = SQLiteStore(db, busy_timeout=1.0)
    try:
        await store.open()
        spec = JobSpec(
            "job-1", "work", (), {}, "default", 0, 1, None, None, None, 0.0, 0.0, Trigger.ENQUEUE.value
        )
        await store.enqueue([spec], 0.0)
    finally:
        await store.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("--as-user", type=int)
    args = parser.parse_args()
    if args.as_user is not None:
        with tempfile.TemporaryDirectory() as scratch:
            asyncio.run(open_and_enqueue(os.path.join(scratch, "warm-up.db")))
        os.setgid(args.as_user)
        os.setuid(args.as_user)
    try:
        asyncio.run(open_and_enqueue(args.db))
    except StoreError as exc:
        print(f"StoreError: {exc}")
        return 3
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}")
        return 4
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
