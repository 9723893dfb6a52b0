"""Real processes on one SQLite file: SIGKILL at any moment loses no accepted
job and runs none twice while its lease lives; SIGTERM drains and exits 0.

Workers are ``tests/procs/worker.py``; each attempt logs its start and end to
a file, so the test can count how often each job really ran.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jobrunner import Runner
from jobrunner.stores.sqlite import SQLiteStore

pytestmark = pytest.mark.slow

PROCS = Path(__file__).resolve().parent / "procs"
JOBS = 1_000


class Worker:
    """One ``tests/procs/worker.py`` process."""

    def __init__(self, db: Path, log: Path, worker_id: str, **options: float) -> None:
        command = [sys.executable, str(PROCS / "worker.py"), str(db), str(log), "--worker-id", worker_id]
        for name, value in options.items():
            command += [f"--{name.replace('_', '-')}", str(value)]
        self.id = worker_id
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        """SIGTERM, then the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def output(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.read()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(10)
        if worker.process.stdout is not None:
            worker.process.stdout.close()


def wait_for(condition: Callable[[], bool], what: str, within: float = 60.0) -> None:
    """Poll a condition about other processes (files, the database) until it holds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        time.sleep(0.01)


def query(db: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(sql, params).fetchall()
    conn.close()
    return rows


def counts(db: Path) -> dict[str, int]:
    return {
        str(s): int(str(n))
        for s, n in query(db, "SELECT status, count(*) FROM jobrunner_jobs GROUP BY status")
    }


def log_lines(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [line.split() for line in log.read_text().splitlines()]


def starts(log: Path) -> list[list[str]]:
    return [line for line in log_lines(log) if line[0] == "start"]


async def enqueue_jobs(db: Path, n: int) -> list[str]:
    """Enqueue ``work(i)`` jobs from this process, as a producer would."""
    store = SQLiteStore(db)
    producer = Runner(store=store, max_pending=None)
    work = producer.declare("work", retries=5)
    try:
        handles = await work.enqueue_many([(i,) for i in range(n)])
    finally:
        await store.close()
    return [h.id for h in handles]


def test_sigkill_mid_run_then_restart_loses_nothing(tmp_path: Path, workers: list[Worker]) -> None:
    db, log = tmp_path / "jobs.db", tmp_path / "runs.log"
    ids = asyncio.run(enqueue_jobs(db, JOBS))
    first = Worker(db, log, "host-1", concurrency=20, lease=1.0, job_seconds=0.02)
    workers.append(first)
    wait_for(lambda: len(starts(log)) >= 200, "200 jobs to start")
    first.kill()

    in_flight = counts(db).get("running", 0)
    assert in_flight > 0, "the kill should land while jobs are running"
    assert in_flight <= 20  # never more than the concurrency is claimed
    done_before = counts(db).get("succeeded", 0)
    assert done_before < JOBS

    # The same service restarts (same worker id: it leads again at once).
    second = Worker(db, log, "host-1", concurrency=20, lease=1.0, job_seconds=0.02)
    workers.append(second)
    wait_for(lambda: counts(db).get("succeeded", 0) == JOBS, "every job to succeed")
    assert second.stop() == 0

    assert counts(db) == {"succeeded": JOBS}
    runs = Counter(line[1] for line in starts(log))
    assert set(runs) == set(ids)  # none lost
    duplicates = sum(n - 1 for n in runs.values())
    assert duplicates <= in_flight  # only the attempts the kill interrupted ran again
    # An attempt that died with the worker comes back as a retry, counted.
    retried = [line for line in starts(log) if line[3] == "retry"]
    # (A job claimed but not yet started when the kill came is retried without a duplicate run.)
    assert duplicates <= len(retried) <= in_flight
    assert all(line[2] == "2" for line in retried)


def test_two_workers_one_killed_the_other_finishes_everything(tmp_path: Path, workers: list[Worker]) -> None:
    db, log = tmp_path / "jobs.db", tmp_path / "runs.log"
    ids = asyncio.run(enqueue_jobs(db, JOBS))
    a = Worker(db, log, "worker-a", concurrency=10, lease=1.0, job_seconds=0.05)
    workers.append(a)
    wait_for(lambda: bool(query(db, "SELECT holder FROM jobrunner_leaders")), "a leader")
    b = Worker(db, log, "worker-b", concurrency=10, lease=1.0, job_seconds=0.05)
    workers.append(b)
    wait_for(
        lambda: {line[4] for line in starts(log)} == {"worker-a", "worker-b"}, "both workers to run jobs"
    )
    # Kill the leader: the survivor must take over rescue as well as the work.
    ((leader,),) = query(db, "SELECT holder FROM jobrunner_leaders")
    victim, survivor = (a, b) if leader == "worker-a" else (b, a)
    victim.kill()
    in_flight = query(db, "SELECT id FROM jobrunner_jobs WHERE status = 'running' AND worker = ?", victim.id)
    assert in_flight, "the kill should land while the victim runs jobs"

    wait_for(lambda: counts(db).get("succeeded", 0) == JOBS, "the survivor to finish every job", 90.0)
    assert query(db, "SELECT holder FROM jobrunner_leaders") == [(survivor.id,)]
    assert survivor.stop() == 0

    lines = starts(log)
    runs = Counter(line[1] for line in lines)
    assert set(runs) == set(ids)
    twice = {job_id for job_id, n in runs.items() if n > 1}
    # Only jobs the victim held ran again; nothing ran twice while its lease lived.
    assert twice <= {row[0] for row in in_flight}
    assert all(n == 2 for job_id, n in runs.items() if job_id in twice)
    first_runs = {}
    for line in lines:
        first_runs.setdefault(line[1], line[4])
    assert all(first_runs[job_id] == victim.id for job_id in twice)


def test_sigterm_drains_running_jobs_within_the_grace_and_exits_zero(
    tmp_path: Path, workers: list[Worker]
) -> None:
    db, log = tmp_path / "jobs.db", tmp_path / "runs.log"
    asyncio.run(enqueue_jobs(db, 50))
    worker = Worker(db, log, "w", concurrency=5, lease=30.0, job_seconds=0.5, grace=10.0)
    workers.append(worker)
    wait_for(lambda: len(starts(log)) >= 5, "five jobs to start")
    began = time.monotonic()
    assert worker.stop() == 0, worker.output()
    took = time.monotonic() - began
    assert took < 10.0  # within the grace

    lines = log_lines(log)
    started = {line[1] for line in lines if line[0] == "start"}
    ended = {line[1] for line in lines if line[0] == "end"}
    assert started == ended  # every job that had started finished: drained, not cut off
    by_status = counts(db)
    assert by_status["succeeded"] == len(started)
    assert by_status["queued"] == 50 - len(started)  # the rest went back, uncounted
    assert query(db, "SELECT count(*) FROM jobrunner_jobs WHERE status = 'queued' AND attempts > 0") == [(0,)]
    assert query(db, "SELECT count(*) FROM jobrunner_leaders") == [(0,)]  # it resigned


def test_an_enqueue_that_returned_survives_sigkill_of_the_producer(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    producer = subprocess.Popen(
        [sys.executable, str(PROCS / "producer.py"), str(db), "100000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert producer.stdout is not None
    accepted = []
    try:
        for line in producer.stdout:
            accepted.append(line.strip())
            if len(accepted) == 300:
                producer.send_signal(signal.SIGKILL)  # mid-stream, between or during enqueues
                break
    finally:
        producer.kill()
        producer.wait(10)
    accepted += [line.strip() for line in producer.stdout.read().splitlines() if line.strip()]
    producer.stdout.close()
    # The kill left a WAL to recover from (a clean close removes it), and then:
    assert os.path.exists(f"{db}-wal")
    stored = {row[0] for row in query(db, "SELECT id FROM jobrunner_jobs")}
    assert len(accepted) >= 300
    assert set(accepted) <= stored
