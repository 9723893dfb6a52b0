"""Flow control's cost: the default enqueue-then-run cycle before and after it, in one run.

Every claim now reads the paused queues and looks for expired jobs, and
enqueues carry a deadline field; this measures what that costs a user who
uses none of it, against the release before it, and what the features cost
when used.

Rows (no-op jobs, ``Runner()`` defaults, on the memory store with one
``enqueue()`` per job, and on a fresh SQLite file with ``enqueue_many`` of 100;
with ``--postgres DSN`` also on a fresh PostgreSQL schema, batches of 100):

* before: the package as it was at ``--baseline`` (default: where this branch
  was the last commit before flow control, ``_baseline.BEFORE_FLOW``), extracted with ``git archive`` into
  a temporary directory and imported from there by the child process: the
  same workload on the old code, in the same run, no stash or checkout.
* unused: this tree, no flow control in use.
* global limit: ``Runner(global_limits={"default": concurrency})``, so every
  claim takes the limited path (store-wide counts; on PostgreSQL its locks)
  without the limit ever binding.
* ttl: every job enqueued with a deadline (``@runner.job(ttl=3600)``).

Each measurement runs in a fresh interpreter; contenders alternate over
rounds in a rotating order; the table shows medians, CPU time per job (all
threads) and each row's ratio to "before" of its store.

Usage: python benchmarks/bench_flow.py [--quick] [--baseline REV] [--postgres DSN]
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._baseline import BEFORE_FLOW, extract_package
from benchmarks._common import Contender, Timer, defaults_note, run_rounds, serve_child, table


async def cycle(
    n: int, store: str, flow: str = "", baseline: str | None = None, dsn: str | None = None
) -> dict[str, Any]:
    """N no-op jobs into a started ``Runner()``, then ``run_until_idle()``; ``baseline``:
    import jobrunner from that directory (the old code) instead of this tree."""
    if baseline is not None:
        sys.path.insert(0, baseline)
    import jobrunner
    from jobrunner import Runner, defaults

    if baseline is not None and not jobrunner.__file__.startswith(baseline):  # pragma: no cover
        raise RuntimeError(f"the baseline was not imported: jobrunner is {jobrunner.__file__}")
    schema = f"bench_flow_{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="bench-flow-") as tmp:
        settings: dict[str, Any] = {}
        if store == "sqlite":
            settings["store"] = f"sqlite:///{tmp}/jobs.db"
        elif store == "postgres":
            settings["store"] = f"{dsn}?schema={schema}"
        if flow == "limit":
            settings["global_limits"] = {"default": defaults.CONCURRENCY}
        runner = Runner(**settings)
        job_options: dict[str, Any] = {"ttl": 3600.0} if flow == "ttl" else {}

        @runner.job(**job_options)
        async def noop() -> None:
            pass

        async with runner:  # started (and the store opened) before the clock starts
            with Timer() as t:
                if store != "memory":
                    for start in range(0, n, 100):
                        await noop.enqueue_many([()] * min(100, n - start))
                else:
                    for _ in range(n):
                        await noop.enqueue()
                await runner.run_until_idle()
    if store == "postgres":
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await conn.close()
    return t.figures(n)


def main(n_memory: int, n_sqlite: int, rounds: int, baseline_rev: str, dsn: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-flow-baseline-") as tmp:
        old, commit = extract_package(baseline_rev, Path(tmp))
        commit = commit[:12]
        print(
            f"N={n_memory:,} jobs on the memory store (one enqueue() each), {n_sqlite:,} on SQLite "
            f"(enqueue_many of 100); Runner() defaults; {rounds} rounds, contenders alternating, "
            f"one fresh process each. 'before' is commit {commit}, imported from a git archive."
        )
        print(defaults_note(), flush=True)
        rows = []
        stores = [("memory", n_memory), ("sqlite", n_sqlite)] + ([("postgres", n_sqlite)] if dsn else [])
        for store, n in stores:
            common = {"store": store, "dsn": dsn}
            contenders = [
                Contender(f"{store}: before ({commit})", "cycle", kwargs={**common, "baseline": old}),
                Contender(f"{store}: this tree, flow control unused", "cycle", kwargs=common),
                Contender(
                    f"{store}: global_limits on the queue (never binding)",
                    "cycle",
                    kwargs={**common, "flow": "limit"},
                ),
                Contender(f"{store}: every job with ttl=", "cycle", kwargs={**common, "flow": "ttl"}),
            ]
            samples = run_rounds(__file__, contenders, rounds, n=n)
            before = samples[0]
            for c, s in zip(contenders, samples, strict=True):
                per_round = ", ".join(f"{r['jobs'] / r['seconds']:,.0f}" for r in s.runs)
                rows.append(
                    [c.label, f"{s.rate:,.0f}", f"{s.rate / before.rate:.3f}", f"{s.cpu_us:.1f}", per_round]
                )
        print(f"\nend to end, first enqueue to last completion (medians of {rounds})")
        print(table(rows, ["contender", "jobs/s", "x before", "CPU us/job", "jobs/s per round"]))


if __name__ == "__main__" and not serve_child(globals()):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small N and 1 round, for smoke runs")
    parser.add_argument("--rounds", type=int, help="rounds (default 7; 1 with --quick)")
    parser.add_argument(
        "--baseline",
        default=BEFORE_FLOW,
        help=f"the git revision to compare with (default: {BEFORE_FLOW}, the tree before flow control)",
    )
    parser.add_argument(
        "--postgres", metavar="DSN", help="also measure on PostgreSQL (a fresh schema per run)"
    )
    args = parser.parse_args()
    main(
        2_000 if args.quick else 50_000,
        500 if args.quick else 20_000,
        args.rounds or (1 if args.quick else 7),
        args.baseline,
        args.postgres,
    )
