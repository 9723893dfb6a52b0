"""Dependencies and batch handlers: what ``after=``, chains, groups and
``batch=`` cost, and proof that jobs using none of them cost what they cost before.

Two tables, every figure from a fresh interpreter, contenders alternating over
rounds, medians:

* hot path: the enqueue-then-run workload every script runs
  (``_workloads.jobrunner_run``, no-op jobs, all defaults), run with this
  tree's jobrunner and with a baseline tree, the package as it was at
  ``--base`` (default: the last commit before dependencies,
  ``_baseline.BEFORE_FLOW``), extracted with
  ``git archive`` into a temporary directory and put first on the child's
  ``sys.path`` (each row prints which package it imported). Memory store with
  one ``enqueue()`` per job; SQLite store with ``enqueue_many`` of 100. The
  ratio this / base is the figure to read: within the noise of the machine
  (a few percent on a shared VM) means unchanged.
* dependencies (this tree): the same no-op jobs enqueued as chains of 10
  (``runner.chain``), as groups of 100 plus a callback (``runner.group``), as
  calls of a ``batch=100`` handler, and, for reference, plainly with
  ``enqueue_many`` of 100; timed from the first enqueue until every job ran.

Usage: python benchmarks/bench_dependencies.py [--quick] [--base REV]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._baseline import BEFORE_FLOW, extract_package
from benchmarks._common import Contender, Timer, defaults_note, run_rounds, serve_child, table
from benchmarks._workloads import jobrunner_run

DSN = os.environ.get(
    "JOBRUNNER_BENCH_POSTGRES_DSN",
    os.environ.get("JOBRUNNER_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
)
CHAIN = 10
GROUP = 100


# --- children --------------------------------------------------------------------------
async def hot_path(n: int, tree: str, store: str) -> dict[str, Any]:
    """The workload with the package of ``tree`` ("" for this one) first on sys.path:
    ``jobrunner_run`` (memory: one ``enqueue()`` per job; SQLite: one
    ``enqueue_many``), or on PostgreSQL ``enqueue_many`` of 100 into a fresh schema."""
    if tree:
        sys.path.insert(0, tree)
    import jobrunner

    if store == "postgres":
        figures = await postgres_run(n)
    else:
        figures = await jobrunner_run(n, batched=store == "sqlite", sqlite=store == "sqlite")
    figures["package"] = str(Path(jobrunner.__file__).parent)
    return figures


async def postgres_run(n: int) -> dict[str, Any]:
    import asyncpg

    from jobrunner import Runner
    from jobrunner.stores.postgres import PostgresStore

    schema = f"bench_deps_{secrets.token_hex(5)}"
    runner = Runner(store=PostgresStore(DSN, schema=schema))

    @runner.job
    async def noop() -> None:
        pass

    try:
        async with runner:
            with Timer() as t:
                for _ in range(0, n, GROUP):
                    await noop.enqueue_many([()] * GROUP)
                await runner.run_until_idle()
    finally:
        conn = await asyncpg.connect(DSN)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
    return t.figures(n)


def postgres_answers() -> bool:
    """Whether a PostgreSQL server answers at DSN (its row is left out otherwise)."""

    async def ping() -> None:
        import asyncpg

        conn = await asyncpg.connect(DSN, timeout=3)
        await conn.close()

    try:
        asyncio.run(ping())
    except Exception:
        return False
    return True


async def flows(n: int, shape: str, sqlite: bool) -> dict[str, Any]:
    """N no-op jobs enqueued as ``shape`` (plain, chain or group) into a started runner."""
    from jobrunner import JobStatus, Runner

    with tempfile.TemporaryDirectory(prefix="bench-deps-") as tmp:
        runner = Runner(store=f"sqlite:///{tmp}/jobs.db") if sqlite else Runner()

        @runner.job
        async def noop() -> None:
            pass

        @runner.job(batch=GROUP)
        async def batched(items: list[None]) -> None:
            pass

        async with runner:
            with Timer() as t:
                if shape == "batch":
                    for _ in range(0, n, GROUP):
                        await batched.enqueue_many([(None,)] * GROUP)
                elif shape == "plain":
                    for _ in range(0, n, GROUP):
                        await noop.enqueue_many([()] * GROUP)
                elif shape == "chain":
                    for _ in range(0, n, CHAIN):
                        await runner.chain(*(noop.call() for _ in range(CHAIN)))
                else:
                    for _ in range(0, n, GROUP + 1):
                        await runner.group([noop.call() for _ in range(GROUP)], then=noop.call())
                await runner.run_until_idle()
            stats = await runner.stats()
            assert not stats.counts.get(JobStatus.BLOCKED), "a job was left blocked"
    return t.figures(n)


# --- parent ----------------------------------------------------------------------------
def base_tree(rev: str, into: Path) -> str:
    """The jobrunner package as of ``rev``, extracted under ``into``."""
    tree, commit = extract_package(rev, into)
    print(f"baseline: jobrunner at {commit[:12]}")
    return tree


def main(quick: bool, base: str) -> None:
    rounds = 2 if quick else 5
    n_memory, n_sqlite, n_flows = (2_000, 1_000, 1_010) if quick else (50_000, 20_000, 20_200)
    n_postgres = 1_000 if quick else 20_000
    print(f"no-op jobs, all defaults; {rounds} rounds, contenders alternating, one fresh process each.")
    print(defaults_note(), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-deps-base-") as tmp:
        tree = base_tree(base, Path(tmp))
        rows = []
        workloads = [("memory, enqueue()", n_memory, "memory"), ("SQLite, enqueue_many", n_sqlite, "sqlite")]
        if postgres_answers():
            workloads.append(("PostgreSQL, enqueue_many(100)", n_postgres, "postgres"))
        else:
            print(f"PostgreSQL at {DSN} does not answer: its row is left out")
        for label, n, store in workloads:
            contenders = [
                Contender(f"{label}: base", "hot_path", None, {"tree": tree, "store": store}),
                Contender(f"{label}: this tree", "hot_path", None, {"tree": "", "store": store}),
            ]
            before, after = run_rounds(__file__, contenders, rounds, n=n)
            for contender, samples in ((contenders[0], before), (contenders[1], after)):
                packages = {r["package"] for r in samples.runs}
                rows.append(
                    [contender.label, f"{samples.rate:,.0f}", f"{samples.cpu_us:.1f}", ", ".join(packages)]
                )
            rows.append([f"{label}: this / base", f"{after.rate / before.rate:.3f}", "", ""])
    print(
        f"\nhot path without after= or batch=: enqueue then run "
        f"(memory N={n_memory:,}, SQLite N={n_sqlite:,}, PostgreSQL N={n_postgres:,})"
    )
    print(table(rows, ["workload", "jobs/s", "CPU us/job", "package imported"]), flush=True)

    rows = []
    for store, sqlite in (("memory", False), ("SQLite", True)):
        contenders = [
            Contender(
                f"{store}: plain enqueue_many({GROUP})", "flows", None, {"shape": "plain", "sqlite": sqlite}
            ),
            Contender(f"{store}: chains of {CHAIN}", "flows", None, {"shape": "chain", "sqlite": sqlite}),
            Contender(
                f"{store}: groups of {GROUP} + callback", "flows", None, {"shape": "group", "sqlite": sqlite}
            ),
        ]
        samples = run_rounds(__file__, contenders, rounds, n=n_flows)
        for contender, s in zip(contenders, samples, strict=True):
            rows.append(
                [contender.label, f"{s.rate:,.0f}", f"{s.rate / samples[0].rate:.3f}", f"{s.cpu_us:.1f}"]
            )
    print(f"\ndependencies and batches: N={n_flows:,} no-op jobs, enqueued then run to the end")
    print(table(rows, ["workload", "jobs/s", "x plain", "CPU us/job"]), flush=True)


if __name__ == "__main__" and not serve_child(globals()):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and 2 rounds, for smoke runs")
    parser.add_argument(
        "--base",
        default=BEFORE_FLOW,
        help=f"git revision of the baseline (default: {BEFORE_FLOW}, before dependencies)",
    )
    args = parser.parse_args()
    main(args.quick, args.base)
