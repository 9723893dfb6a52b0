"""Flow control across real processes, on SQLite and on PostgreSQL: three
worker processes (``tests/procs/limited_worker.py``), each with room for one
job (three together), keep a store-wide limit of two; three with room for ten
keep a rate limit together; and a pause stored by another process holds for
all of them.

Each attempt logs its start and end on the host's monotonic clock; the test
sweeps those intervals for the most jobs that ever overlapped.
"""

from __future__ import annotations

import asyncio
import math
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from jobrunner import JobStatus, Runner
from tests.pg_support import temporary_schema

pytestmark = pytest.mark.slow

PROCS = Path(__file__).resolve().parent / "procs"
JOBS = 30


@asynccontextmanager
async def store_url(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh store's URL, polled often so that waits across processes stay short."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}?poll_interval=0.05"
    else:
        async with temporary_schema() as (dsn, schema):
            yield f"{dsn}?schema={schema}&poll_interval=0.2"


@pytest.fixture
def workers() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(url: str, log: Path, worker_id: str, *options: str) -> subprocess.Popen[str]:
        command = [sys.executable, str(PROCS / "limited_worker.py"), url, str(log), "--worker-id", worker_id]
        process = subprocess.Popen(
            [*command, *options], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def lines(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


async def wait_for(condition: Callable[[], bool], what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)


def peak_overlap(log: Path) -> int:
    """The most attempts that were running at the same moment."""
    events = sorted(
        (float(at), 1 if kind == "start" else -1) for kind, at, *_ in lines(log) if kind in ("start", "end")
    )
    # At equal times an end sorts before a start (-1 < 1): touching is not overlapping.
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


async def run_limited(
    kind: str, tmp_path: Path, workers: Callable[..., subprocess.Popen[str]], *options: str, jobs: int = JOBS
) -> Path:
    """Three workers with ``options``; ``jobs`` ``held`` jobs enqueued and run; the log."""
    log = tmp_path / "attempts.log"
    async with store_url(kind, tmp_path) as url:
        producer = Runner(store=url, max_pending=None)
        held = producer.declare("held", queue="limited")
        await producer.store.open()  # the schema exists before the workers race to create it
        for n in range(3):
            workers(url, log, f"w{n}", *options)
        await wait_for(
            lambda: sum(1 for line in lines(log) if line[0] == "ready") == 3, "three ready workers"
        )
        handles = await held.enqueue_many([(n,) for n in range(jobs)])
        for handle in handles:
            await wait_for_status(handle.status, JobStatus.SUCCEEDED)
        await producer.aclose()
    return log


async def wait_for_status(status: Callable[[], object], wanted: JobStatus) -> None:
    deadline = time.monotonic() + 60
    while await status() is not wanted:  # type: ignore[misc]
        if time.monotonic() > deadline:
            raise AssertionError(f"job not {wanted.value} after 60 s")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_global_queue_limit_holds_across_processes(
    kind: str, tmp_path: Path, workers: Callable[..., subprocess.Popen[str]]
) -> None:
    log = await run_limited(kind, tmp_path, workers, "--concurrency", "1", "--queue-limit", "2")
    starts = [line for line in lines(log) if line[0] == "start"]
    assert len(starts) == JOBS
    assert len({line[3] for line in starts}) >= 2, "the jobs should spread over several processes"
    assert peak_overlap(log) == 2


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_job_concurrency_limit_holds_across_processes(
    kind: str, tmp_path: Path, workers: Callable[..., subprocess.Popen[str]]
) -> None:
    log = await run_limited(kind, tmp_path, workers, "--concurrency", "1", "--name-limit", "2")
    starts = [line for line in lines(log) if line[0] == "start"]
    assert len(starts) == JOBS
    assert len({line[3] for line in starts}) >= 2, "the jobs should spread over several processes"
    assert peak_overlap(log) == 2


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_pause_holds_for_every_process_until_resumed(
    kind: str, tmp_path: Path, workers: Callable[..., subprocess.Popen[str]]
) -> None:
    log = tmp_path / "attempts.log"
    async with store_url(kind, tmp_path) as url:
        producer = Runner(store=url, max_pending=None)
        held = producer.declare("held", queue="limited")
        free = producer.declare("free", queue="other")
        await producer.pause("limited")
        for n in range(3):
            workers(url, log, f"w{n}", "--job-seconds", "0.001")
        await wait_for(
            lambda: sum(1 for line in lines(log) if line[0] == "ready") == 3, "three ready workers"
        )
        paused = await held.enqueue_many([(n,) for n in range(10)])
        # Enqueued later, with the same priority: a worker that takes it would
        # have taken the held jobs first, had their queue not been paused.
        sentinels = await free.enqueue_many([(n,) for n in range(10)])
        for handle in sentinels:
            await wait_for_status(handle.status, JobStatus.SUCCEEDED)
        assert [await h.status() for h in paused] == [JobStatus.QUEUED] * 10
        assert await producer.resume("limited") is True
        for handle in paused:
            await wait_for_status(handle.status, JobStatus.SUCCEEDED)
        await producer.aclose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_rate_limit_holds_across_processes(
    kind: str, tmp_path: Path, workers: Callable[..., subprocess.Popen[str]]
) -> None:
    # 4 starts per second for 16 jobs that each process alone could start at once.
    log = await run_limited(kind, tmp_path, workers, "--rate", "4/1", "--job-seconds", "0.001", jobs=16)
    starts = [line for line in lines(log) if line[0] == "start"]
    assert len(starts) == 16
    per_window = Counter(math.floor(float(line[4])) for line in starts)
    assert max(per_window.values()) <= 4, per_window
    assert len(per_window) >= 4, per_window
