"""SQLite-store benchmark: jobrunner as a user gets it against raw ``sqlite3``, in one run.

Scenarios:

* cycle: N no-op jobs enqueued in batches of 100 into a started runner,
  claimed, run and completed; timed from the first enqueue to the last
  completion. The headline row is ``Runner(store="sqlite:///file")`` with every
  default (synchronous=FULL, max_pending 10,000, instrumentation on, logging
  as the app left it: here not configured at all), enqueueing with
  ``enqueue_many`` of 100. Beside it: the same defaults with one ``enqueue()``
  per job (each its own transaction, as a web app would; fewer jobs, it is
  slow), tuned rows (no backpressure, no instrumentation; synchronous=NORMAL)
  and one row for each extra a user may turn on (structlog configured at INFO;
  an OpenTelemetry SDK). The baseline is the least a program can do for the
  same work with stdlib ``sqlite3``: the same file settings (WAL, same
  ``synchronous``), the same schema and indexes, inserts in transactions of
  100 rows, claims of 100 by ``UPDATE ... RETURNING`` and completions of 100
  in one transaction, in one thread, with no lease, no fencing check, no
  history, no JSON and no event loop. Target: jobrunner with defaults at 30%
  or more of raw batch-100.
* backlog: the cycle's throughput with 1k, 100k or 1M other jobs queued behind
  the measured ones (same name and queue, lower priority). A backlog beyond
  the default max_pending would block the enqueues, so this runs
  ``max_pending=None``, otherwise defaults.
* latency: enqueue-to-start at a steady 1,000 jobs/s (one ``enqueue()`` per
  job), defaults; for reference, the time of one raw insert transaction with
  the same settings.

Every measurement runs in its own fresh interpreter (``_common.measure``),
contenders alternating over rounds (fsync times drift); the tables show
medians, CPU time per job (all threads) and the peak RSS of the process.

Usage: python benchmarks/bench_sqlite.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    OTEL_LABEL,
    STRUCTLOG_LABEL,
    Contender,
    Timer,
    defaults_note,
    percentile,
    run_rounds,
    serve_child,
    table,
    verdict,
)
from jobrunner.stores.sqlite import MIGRATIONS

CONCURRENCY = 100
BATCH = 100
TARGET = 0.30  # of raw sqlite3 batch-100, with defaults

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


async def raw_cycle(directory: str, n: int, synchronous: str) -> dict[str, Any]:
    """No event loop work: async only to be called like the others."""
    conn = raw_connect(fresh_file(Path(directory), "raw.db"), synchronous)

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
    return t.figures(n)


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
def url_of(path: str, query: str = "") -> str:
    """``sqlite:////abs/path.db`` (four slashes: the path is absolute)."""
    return f"sqlite:///{path}{query}"


async def jobrunner_cycle(
    directory: str, n: int, options: dict[str, Any], query: str = "", one_by_one: bool = False
) -> dict[str, Any]:
    from jobrunner import Runner

    runner = Runner(store=url_of(str(fresh_file(Path(directory), "jr.db")), query), **options)

    @runner.job
    async def noop() -> None:
        pass

    calls = [()] * BATCH
    async with runner:  # started (and the file's schema installed) before the clock starts
        with Timer() as t:
            if one_by_one:
                for _ in range(n):
                    await noop.enqueue()
            else:
                for start in range(0, n, BATCH):
                    await noop.enqueue_many(calls[: min(BATCH, n - start)])
            await runner.run_until_idle()
    return t.figures(n)


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


async def jobrunner_at_depth(path: str, measured: int) -> dict[str, Any]:
    """Full-cycle throughput of ``measured`` jobs while the backlog already in ``path`` waits."""
    from jobrunner import Runner

    runner = Runner(store=url_of(path), max_pending=None)
    finished = 0
    done = asyncio.Event()

    @runner.job
    async def noop() -> None:
        nonlocal finished
        finished += 1
        if finished == measured:
            done.set()

    calls = [()] * BATCH
    with Timer() as t:
        for _ in range(0, measured, BATCH):
            await noop.enqueue_many(calls)
        async with runner:
            await done.wait()
            t.stop()  # at the last completion, before the shutdown
            runner.stop(now=True)
    return t.figures(measured)


async def jobrunner_latency(path: str, rate: int, seconds: float) -> dict[str, Any]:
    from jobrunner import Runner

    runner = Runner(store=url_of(path))
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
    return {"latencies": latencies}


# --- report --------------------------------------------------------------------------------------------
def cycle_contenders(n: int) -> list[Contender]:
    def raw(synchronous: str) -> Contender:
        return Contender(
            f"raw sqlite3 batch-100, synchronous={synchronous}",
            "raw_cycle",
            kwargs={"n": n, "synchronous": synchronous},
        )

    def jr(label: str, extra: str | None = None, **kwargs: Any) -> Contender:
        return Contender(label, "jobrunner_cycle", extra, {"n": n, "options": {}, **kwargs})

    return [
        raw("FULL"),
        jr('jobrunner Runner(store="sqlite:///f"), all defaults, enqueue_many(100)  <- headline'),
        jr(f"  defaults, one enqueue() per job (N={n // 10:,})", n=n // 10, one_by_one=True),
        jr(
            "  tuned: Runner(store=url, max_pending=None, instrument=False)",
            options={"max_pending": None, "instrument": False},
        ),
        jr(f"  extra: defaults {STRUCTLOG_LABEL}", "structlog"),
        jr(f"  extra: defaults {OTEL_LABEL}", "otel"),
        raw("NORMAL"),
        jr('  tuned: Runner(store="sqlite:///f?synchronous=NORMAL")', query="?synchronous=NORMAL"),
    ]


def main(quick: bool) -> None:
    n = 2_000 if quick else 50_000
    rounds = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as tmp:
        directory = Path(tmp)
        print(f"SQLite store, no-op jobs, concurrency {CONCURRENCY}; SQLite {sqlite3.sqlite_version}, WAL")
        print(
            f"files in {directory}; every figure from a fresh process, contenders alternating;"
            f" medians of {rounds} round(s)."
        )
        print(defaults_note(), flush=True)

        contenders = cycle_contenders(n)
        samples = run_rounds(__file__, contenders, rounds, directory=tmp)
        raw = {
            c.kwargs["synchronous"]: s
            for c, s in zip(contenders, samples, strict=True)
            if c.fn == "raw_cycle"
        }
        rows = []
        for c, s in zip(contenders, samples, strict=True):
            base = raw["NORMAL" if "NORMAL" in c.label else "FULL"]
            rows.append(
                [
                    c.label,
                    f"{s.rate:,.0f}",
                    f"{s.rate / base.rate:.3f}",
                    f"{s.cpu_us:.1f}",
                    f"{s.peak_mb:.0f}",
                ]
            )
        print(f"\nfull cycle: N={n:,} jobs enqueued (batches of 100 unless said), claimed, run, completed")
        print(table(rows, ["contender", "jobs/s", "x raw (same synchronous)", "CPU us/job", "peak RSS MB"]))
        print(
            f"\nSQLite, defaults vs raw sqlite3 batch-100: {verdict(samples[1].rate / raw['FULL'].rate, TARGET)}",
            flush=True,
        )

        depths = [1_000, 10_000] if quick else [1_000, 100_000, 1_000_000]
        measured = 2_000 if quick else 50_000
        files = {depth: fresh_file(directory, f"depth-{depth}.db") for depth in depths}
        for depth, path in files.items():
            fill(path, depth)
        depth_contenders = [
            Contender(f"{d:,}", "jobrunner_at_depth", kwargs={"path": str(p), "measured": measured})
            for d, p in files.items()
        ]
        at = run_rounds(__file__, depth_contenders, rounds)
        print(
            f"\nthroughput with a backlog: full cycle of {measured:,} jobs, others queued behind;"
            f"\nRunner(store=url, max_pending=None), otherwise defaults"
        )
        print(
            table(
                [
                    [c.label, f"{s.rate:,.0f}", f"{s.rate / at[0].rate:.2f}", f"{s.cpu_us:.1f}"]
                    for c, s in zip(depth_contenders, at, strict=True)
                ],
                ["queued", "jobs/s", "x first", "CPU us/job"],
            ),
            flush=True,
        )

        rate, seconds = 1_000, (1.0 if quick else 5.0)
        lat = run_rounds(
            __file__,
            [Contender("latency", "jobrunner_latency")],
            1,
            path=str(fresh_file(directory, "latency.db")),
            rate=rate,
            seconds=seconds,
        )[0].runs[0]["latencies"]
        commit = raw_commit_latency(fresh_file(directory, "commit.db"), "FULL", 1_000)
        print(f"\nenqueue-to-start latency at {rate:,} jobs/s (synchronous=FULL)")
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
                        ('jobrunner Runner(store="sqlite:///f"), defaults: enqueue() -> job starts', lat),
                        ("raw sqlite3: one insert transaction (reference)", commit),
                    )
                ],
                ["measure", "samples", "p50 ms", "p99 ms"],
            )
        )


if __name__ == "__main__" and not serve_child(globals()):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small N and one round, for smoke runs")
    main(parser.parse_args().quick)
