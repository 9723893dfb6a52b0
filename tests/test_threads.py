"""Sync (``def``) handlers in threads: the thread bound holds, a timeout starts
when a thread does, and a thread that cannot be stopped never lets its job run
twice or keep the process alive."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from jobrunner import JobStatus, Runner, current_job
from jobrunner.stores.sqlite import SQLiteStore
from jobrunner.testing import FakeClock
from tests.helpers import until, until_status

PROCS = Path(__file__).resolve().parent / "procs"


class Blocker:
    """Sync handlers block in ``hold()`` until ``release()``; counts who is inside."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._released = threading.Event()
        self.inside = 0
        self.peak = 0
        self.entered = 0

    def hold(self) -> None:
        with self._lock:
            self.inside += 1
            self.entered += 1
            self.peak = max(self.peak, self.inside)
        try:
            self._released.wait(30)
        finally:
            with self._lock:
                self.inside -= 1

    def release(self) -> None:
        self._released.set()


async def test_timed_out_threads_keep_their_place_in_the_thread_bound(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(threads=2, concurrency=10, retries=0)
    blocker = Blocker()

    @runner.job(timeout=1.0)
    def blocking() -> None:
        blocker.hold()

    async with runner:
        handles = await blocking.enqueue_many([()] * 8)
        await until(lambda: blocker.inside == 2)
        clock.advance(1.5)  # both running attempts time out; their threads cannot be stopped
        timed_out = [h for h in handles if await h.status() is JobStatus.DEAD]
        with anyio.fail_after(10):
            while len(timed_out) < 2:
                await asyncio.sleep(0.001)
                timed_out = [h for h in handles if await h.status() is JobStatus.DEAD]
        # The abandoned threads still hold both places: nobody else got a thread.
        await asyncio.sleep(0.05)
        assert blocker.inside == 2 and blocker.entered == 2
        blocker.release()
        await until(lambda: blocker.entered == 8)
        await runner.run_until_idle()
    assert blocker.peak == 2


async def test_a_sync_jobs_timeout_starts_when_its_thread_does(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(threads=1, concurrency=10, retries=0)
    blocker = Blocker()
    started_at: list[float] = []

    @runner.job(timeout=1.0, priority=-1)
    def first() -> None:
        blocker.hold()

    @runner.job(timeout=1.0)
    def waits_for_the_thread() -> float:
        deadline = current_job().deadline
        assert deadline is not None
        started_at.append(deadline - 1.0)
        return deadline

    async with runner:
        holder = await first.enqueue()
        waiting = [await waits_for_the_thread.enqueue() for _ in range(3)]
        await until(lambda: blocker.inside == 1)
        clock.advance(5.0)  # far past every claim's timeout; only `first` was in a thread
        await until_status(holder, JobStatus.DEAD)
        for handle in waiting:
            assert await handle.status() is JobStatus.RUNNING
        blocker.release()
        for handle in waiting:
            assert await handle.result(timeout=10) > 0
    # Each one's deadline was a second after its own thread start, all after the jump.
    assert len(started_at) == 3 and min(started_at) >= clock.now() - 0.001


async def test_a_sync_job_cancelled_while_waiting_for_a_thread_never_runs(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(threads=1, concurrency=10)
    blocker = Blocker()
    ran: list[str] = []

    @runner.job(priority=-1)
    def first() -> None:
        blocker.hold()

    @runner.job
    def second() -> None:
        ran.append(current_job().id)

    async with runner:
        await first.enqueue()
        queued = await second.enqueue()
        await until(lambda: blocker.inside == 1)
        await until(lambda: runner._pool is not None and queued.id in runner._pool.running)
        await queued.cancel()
        await until_status(queued, JobStatus.CANCELLED)
        blocker.release()
        await runner.run_until_idle()
    assert ran == []


@pytest.mark.slow
def test_a_double_interrupt_with_a_stuck_sync_job_exits_and_does_not_release_the_job(tmp_path: Path) -> None:
    db, log = tmp_path / "jobs.db", tmp_path / "log"

    async def enqueue() -> str:
        producer = Runner(store=SQLiteStore(db))

        @producer.job
        def stuck() -> None: ...

        handle = await stuck.enqueue()
        await producer.aclose()
        return handle.id

    job_id = asyncio.run(enqueue())
    worker = subprocess.Popen(
        [sys.executable, str(PROCS / "sync_worker.py"), str(db), str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not (log.exists() and f"started {job_id}" in log.read_text()):
            assert worker.poll() is None, worker.communicate()[0]
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.01)
        worker.send_signal(signal.SIGINT)
        time.sleep(0.1)
        worker.send_signal(signal.SIGINT)  # the impatient second Ctrl-C
        output, _ = worker.communicate(timeout=15)  # grace 0.5 s + cancel grace 0.5 s, then out
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, output
    assert "job left running at shutdown" in output

    async def inspect() -> tuple[JobStatus, int, list[str]]:
        store = SQLiteStore(db)
        await store.open()
        try:
            record = await store.get(job_id)
        finally:
            await store.close()
        assert record is not None
        return record.status, record.attempts, [h.note for h in record.history]

    status, attempts, notes = asyncio.run(inspect())
    # Still leased to the dead process (rescued as a retry once the lease runs
    # out), never put back for another worker while its thread might still run.
    assert status is JobStatus.RUNNING and attempts == 1
    assert "released at shutdown" not in notes
