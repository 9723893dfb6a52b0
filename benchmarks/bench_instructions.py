"""Instructions per job of the default enqueue-then-run cycle: this tree vs an older one.

Wall-clock rates on a shared machine move by 10 to 30 % from run to run, far
more than the few per cent a change to the hot path costs. Instructions, as
valgrind's callgrind counts them, do not depend on what else the machine is
doing: this script measures the cycle of ``bench_flow.py`` (no-op jobs,
``Runner()`` with every default, logging not configured) in instructions per
job, for this tree and for the package at ``--baseline`` (extracted with
``git archive``, as ``bench_flow.py`` does), side by side in one run.

Per job = (count for N2 jobs - count for N1 jobs) / (N2 - N1), so start-up,
imports and the store's set-up cancel out. Each count is one fresh process
under ``valgrind --tool=callgrind`` with ``PYTHONHASHSEED=0``; the cyclic
garbage collector is run once before the measured jobs, so that both trees
start their collections at the same point. On the memory store jobs are
enqueued with one ``enqueue()`` each; on SQLite with ``enqueue_many`` of 100,
and the count includes the store's thread and SQLite itself.

Needs valgrind (``apt-get install valgrind``).

Usage: python benchmarks/bench_instructions.py [--quick] [--baseline REV] [--store memory|sqlite|both]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._baseline import BEFORE_FLOW, extract_package

REPO = Path(__file__).resolve().parent.parent
SIZES = {"memory": (2000, 6000), "sqlite": (1000, 3000)}
QUICK_SIZES = {"memory": (300, 900), "sqlite": (200, 600)}


async def cycle(store: str, n: int) -> None:
    """``n`` no-op jobs through a started ``Runner()``, after a warm-up of 200."""
    from jobrunner import Runner

    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        runner = Runner(store=f"sqlite:///{tmp}/jobs.db") if store == "sqlite" else Runner()

        @runner.job()
        async def noop() -> None:
            pass

        async def enqueue(count: int) -> None:
            if store == "sqlite":
                for start in range(0, count, 100):
                    await noop.enqueue_many([()] * min(100, count - start))
            else:
                for _ in range(count):
                    await noop.enqueue()

        async with runner:
            await enqueue(200)
            await runner.run_until_idle()
            gc.collect()
            await enqueue(n)
            await runner.run_until_idle()


def count(tree: Path, store: str, n: int) -> int:
    """Instructions of one child process running ``cycle(store, n)`` on ``tree``'s jobrunner."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the child puts ``tree`` first on its path
    result = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--child",
            str(tree),
            store,
            str(n),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    found = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"the measured process failed ({tree}, {store}, n={n}):\n{result.stderr[-3000:]}")
    return int(found.group(1))


def per_job(tree: Path, store: str, sizes: tuple[int, int]) -> float:
    small, large = sizes
    return (count(tree, store, large) - count(tree, store, small)) / (large - small)


def child(tree: str, store: str, n: int) -> None:
    sys.path.insert(0, tree)
    import jobrunner

    if not jobrunner.__file__ or not jobrunner.__file__.startswith(tree):  # pragma: no cover
        raise SystemExit(f"jobrunner came from {jobrunner.__file__}, not {tree}")
    asyncio.run(cycle(store, n))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument(
        "--baseline", default=BEFORE_FLOW, help=f"git revision to compare with ({BEFORE_FLOW})"
    )
    parser.add_argument("--store", choices=["memory", "sqlite", "both"], default="both")
    parser.add_argument("--child", nargs=3, metavar=("TREE", "STORE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        tree, store, n = args.child
        child(tree, store, int(n))
        return
    if shutil.which("valgrind") is None:
        # Skipped, as bench_postgres.py is without a server: nothing to count with.
        print("skipped: valgrind is not installed (apt-get install valgrind); this benchmark counts with it")
        return
    stores = ["memory", "sqlite"] if args.store == "both" else [args.store]
    sizes = QUICK_SIZES if args.quick else SIZES
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        base_dir, commit = extract_package(args.baseline, Path(tmp))
        trees = {f"before ({commit[:12]})": Path(base_dir), "this tree": REPO}
        print(
            "Instructions per job (callgrind), default Runner(), no-op jobs, flow control unused; "
            f"'before' is commit {commit[:12]} from a git archive."
        )
        print(f"{'store':8}  {'tree':24}  {'per job':>9}  {'x before':>8}")
        for store in stores:
            # The two trees side by side: one process each on the two cores.
            with ThreadPoolExecutor(2) as pool:
                futures = {
                    label: pool.submit(per_job, tree, store, sizes[store]) for label, tree in trees.items()
                }
                figures = {label: future.result() for label, future in futures.items()}
            before = next(iter(figures.values()))
            for label, value in figures.items():
                print(f"{store:8}  {label:24}  {value:9,.0f}  {value / before:8.3f}")


if __name__ == "__main__":
    main()
