"""SQLite-store benchmark: jobrunner against raw ``sqlite3``, in one run.

Scenarios:

* cycle: N no-op jobs enqueued in batches of 100, claimed, run and completed,
  with ``synchronous=FULL`` (the default) and ``NORMAL``. The baseline is the
  least a program can do for the same work with stdlib ``sqlite3``: the same
  file settings (WAL, same ``synchronous``), the same schema and indexes,
  inserts in transactions of 100 rows, claims of 100 by ``UPDATE ...
  RETURNING`` and completions of 100 in one transaction, in one thread, with
  no lease, no fencing check, no history, no JSON and no event loop.
* depth: jobrunner's cycle throughput with 1k, 100k or 1M other jobs queued
  behind the measured ones (same name and queue, lower priority).
* latency: enqueue-to-start at a steady 1,000 jobs/s (one ``enqueue()`` per
  job, as a web app would); for reference, the time of one raw insert
  transaction with the same settings.

Usage: python benchmarks/bench_sqlite.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import Timer, median_of, percentile, quiet_logs, table
from jobrunner import Runner
from jobrunner.stores.sqlite import MIGRATIONS, SQLiteStore

CONCURRENCY = 100
BATCH = 100

_INSERT = """
INSERT INTO jobrunner_jobs (id, name, queue, priority, status, due, max_attempts, timeout, key,
    workspace_id, trigger, enqueued_at, run_at, payload, headers, meta)
VALUES (?, ?, 'default', 0, 'queued', 1, 4, 300.0, NULL, NULL, 'enqueue', ?, ?, NULL, NULL, NULL)
"""
_CLAIM = """
UPDATE jobrunner_jobs SET status = 'running', due = NULL, attempts = attempts + 1, token = token + 1,
    started_at = :now, worker = 'raw', lease_until = :now + 330.0
WHERE seq IN (SELECT seq FROM jobrunner_jobs WHERE due = 1 AND name = 'noop' AND queue = 'default'
    AND run_at <= :now ORDER BY priority, run_at, seq LIMIT :limit)
RETURNING id, token, payload
"""
_COMPLETE = """
UPDATE jobrunner_jobs SET status = 'succeeded', lease_until = NULL, finished_at = ?, result = NULL
WHERE id = ? AND token = ? AND status = 'running'
"""


def fresh_file(directory: Path, name: str) -> Path:
    path = directory / name
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


# --- raw sqlite3 ---------------------------------------------------------------------------------------
def raw_connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA cache_size = -16000")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("CREATE TABLE jobrunner_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    for version, (name, statements) in enumerate(MIGRATIONS, start=1):
        for statement in statements:
            conn.execute(statement)
        conn.execute("INSERT INTO jobrunner_migrations VALUES (?, ?)", (version, name))
    conn.execute("COMMIT")
    return conn


def raw_cycle(path: Path, n: int, synchronous: str) -> float:
    conn = raw_connect(path, synchronous)

    def noop() -> None:
        pass

    with Timer() as t:
        for start in range(0, n, BATCH):
            now = time.time()
            rows = [(f"raw-{i}", "noop", now, now) for i in range(start, min(n, start + BATCH))]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_INSERT, rows)
            conn.execute("COMMIT")
        while True:
            conn.execute("BEGIN IMMEDIATE")
            claimed = conn.execute(_CLAIM, {"now": time.time(), "limit": BATCH}).fetchall()
            conn.execute("COMMIT")
            if not claimed:
                break
            for _ in claimed:
                noop()
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_COMPLETE, [(now, job_id, token) for job_id, token, _ in claimed])
            conn.execute("COMMIT")
    conn.close()
    return n / t.seconds


def raw_commit_latency(path: Path, synchronous: str, count: int) -> list[float]:
    """Seconds for one single-row insert transaction."""
    conn = raw_connect(path, synchronous)
    out = []
    for i in range(count):
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(_INSERT, (f"lat-{i}", "noop", 0.0, 0.0))
        conn.execute("COMMIT")
        out.append(time.perf_counter() - t0)
    conn.close()
    return out


# --- jobrunner -----------------------------------------------------------------------------------------
def make_runner(path: Path, synchronous: Literal["FULL", "NORMAL"]) -> tuple[Runner, Any]:
    runner = Runner(
        store=SQLiteStore(path, synchronous=synchronous),
        concurrency=CONCURRENCY,
        max_pending=None,
    )

    @runner.job
    async def noop() -> None:
        pass

    return runner, noop


async def jobrunner_cycle(path: Path, n: int, synchronous: Literal["FULL", "NORMAL"]) -> float:
    runner, noop = make_runner(path, synchronous)
    calls = [()] * BATCH
    async with runner:
        with Timer() as t:
            for start in range(0, n, BATCH):
                await noop.enqueue_many(calls[: min(BATCH, n - start)])
            await runner.run_until_idle()
    await runner.store.close()
    return n / t.seconds


def fill(path: Path, depth: int) -> None:
    """``depth`` jobs of the same name and queue, waiting behind the measured ones (priority 1)."""
    conn = raw_connect(path, "NORMAL")
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        _INSERT.replace("'default', 0,", "'default', 1,"),
        ((f"backlog-{i}", "noop", now, now) for i in range(depth)),
    )
    conn.execute("COMMIT")
    conn.close()


async def jobrunner_at_depth(path: Path, measured: int) -> float:
    """Full-cycle throughput of ``measured`` jobs while the backlog already in ``path`` waits."""
    runner = Runner(store=SQLiteStore(path), concurrency=CONCURRENCY, max_pending=None)
    finished = 0
    done = asyncio.Event()

    @runner.job
    async def noop() -> None:
        nonlocal finished
        finished += 1
        if finished == measured:
            done.set()

    calls = [()] * BATCH
    gc.collect()
    start = time.perf_counter()
    for _ in range(0, measured, BATCH):
        await noop.enqueue_many(calls)
    async with runner:
        await done.wait()
        seconds = time.perf_counter() - start
        runner.stop(now=True)
    await runner.store.close()
    return measured / seconds


async def jobrunner_latency(path: Path, rate: int, seconds: float) -> list[float]:
    runner = Runner(store=SQLiteStore(path), concurrency=CONCURRENCY)
    latencies: list[float] = []

    @runner.job
    async def stamp(t0: float) -> None:
        latencies.append(time.perf_counter() - t0)

    async with runner:
        total = int(rate * seconds)
        start = time.perf_counter()
        sent = 0
        while sent < total:
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            while sent < due:
                await stamp.enqueue(time.perf_counter())
                sent += 1
            await asyncio.sleep(0.001)
        await runner.run_until_idle()
    await runner.store.close()
    return latencies


async def main(quick: bool) -> None:
    quiet_logs()
    n = 20_000 if quick else 100_000
    rounds = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as tmp:
        directory = Path(tmp)
        print(f"SQLite store, N={n:,} no-op jobs, concurrency {CONCURRENCY}, batches of {BATCH}")
        print(f"SQLite {sqlite3.sqlite_version}, WAL, files in {directory}")
        print(f"each figure: the median of {rounds} rounds, contenders alternating (fsync times drift)\n")

        modes: tuple[Literal["FULL", "NORMAL"], ...] = ("FULL", "NORMAL")
        raw: dict[str, list[float]] = {mode: [] for mode in modes}
        ours: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(rounds):
            for mode in modes:
                raw[mode].append(raw_cycle(fresh_file(directory, "raw.db"), n, mode))
                ours[mode].append(await jobrunner_cycle(fresh_file(directory, "jr.db"), n, mode))
        rows: list[list[object]] = []
        for mode in modes:
            base, rate = median_of(raw[mode]), median_of(ours[mode])
            rows.append([f"raw sqlite3, synchronous={mode}", f"{base:,.0f}", "1.00"])
            rows.append([f"jobrunner SQLiteStore, synchronous={mode}", f"{rate:,.0f}", f"{rate / base:.2f}"])
        print("full cycle: enqueue (batches of 100), claim, run a no-op, complete")
        print(table(rows, ["contender", "jobs/s", "x raw (same settings)"]))

        depths = [1_000, 100_000] if quick else [1_000, 100_000, 1_000_000]
        measured = 10_000 if quick else 50_000
        files = {depth: fresh_file(directory, f"depth-{depth}.db") for depth in depths}
        for depth, path in files.items():
            fill(path, depth)
        rates: dict[int, list[float]] = {depth: [] for depth in depths}
        for _ in range(rounds):
            for depth, path in files.items():
                rates[depth].append(await jobrunner_at_depth(path, measured))
        first = median_of(rates[depths[0]])
        print(
            f"\nthroughput with a backlog (full cycle of {measured:,} jobs, synchronous=FULL, others queued behind)"
        )
        print(
            table(
                [[f"{d:,}", f"{median_of(r):,.0f}", f"{median_of(r) / first:.2f}"] for d, r in rates.items()],
                ["queued", "jobs/s", "x 1k"],
            )
        )

        seconds = 2.0 if quick else 5.0
        lat = await jobrunner_latency(fresh_file(directory, "latency.db"), 1_000, seconds)
        commit = raw_commit_latency(fresh_file(directory, "commit.db"), "FULL", 1_000)
        print("\nenqueue-to-start latency at 1,000 jobs/s (synchronous=FULL)")
        print(
            table(
                [
                    [
                        label,
                        f"{len(values):,}",
                        f"{percentile(values, 50) * 1e3:,.2f}",
                        f"{percentile(values, 99) * 1e3:,.2f}",
                    ]
                    for label, values in (
                        ("jobrunner: enqueue() called -> job starts", lat),
                        ("raw sqlite3: one insert transaction (reference)", commit),
                    )
                ],
                ["measure", "samples", "p50 ms", "p99 ms"],
            )
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller N, for CI smoke runs")
    asyncio.run(main(parser.parse_args().quick))
