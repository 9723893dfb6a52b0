"""Batch handlers across real processes, on SQLite and on PostgreSQL.

Worker processes (``tests/procs/batch_worker.py``) run ``@runner.job(batch=4)``
while this process enqueues in waves: every call is in one invocation at a
time, no invocation has more than 4 items, none is lost, none runs twice, and
each member ends on its own (every 17th item fails, retries and goes dead, the
others succeed with their own result). Then the same with one worker SIGKILLed
while a batch is in flight: held past two leases first, its members stay with
that worker (each member's lease is renewed); once it is dead they come back
when their leases expire and the other worker runs them; only what the dead
worker had started runs twice.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from jobrunner import JobStatus, Runner
from tests.processes import Proc, lines, store_target, wait_for

pytestmark = pytest.mark.slow

BATCH = 4
WAVES = 12
WAVE = 40  # items per wave
ATTEMPTS = 3  # retries=2
LEASE = 1.0  # in the kill run
STALL_FROM = WAVES // 2 * WAVE  # in the kill run, w0 keeps a batch of the second half in flight


@dataclass
class Invocation:
    """One call of the batch handler, as the log tells it: its items and where
    its ``batch`` and ``done`` lines are (no ``done``: the process was killed)."""

    worker: str
    number: str  # the worker's count of its invocations
    items: list[int]
    start: int
    end: int | None = None


def invocations(events: list[list[str]]) -> list[Invocation]:
    calls: list[Invocation] = []
    running: dict[tuple[str, str], Invocation] = {}
    for i, line in enumerate(events):
        if line[0] == "batch":
            _, worker, k, items = line
            call = Invocation(worker, k, [int(n) for n in items.split(",")], i)
            running[(worker, k)] = call
            calls.append(call)
        elif line[0] == "done":
            running.pop((line[1], line[2])).end = i
    return calls


def fails(n: int) -> bool:
    """The items the worker's handler returns a ValueError for."""
    return n % 17 == 0


@pytest.mark.parametrize("kill", [False, True], ids=["", "kill -9"])
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_batch_members_are_claimed_run_and_settled_one_by_one_across_processes(
    kind: str, kill: bool, tmp_path: Path, procs: list[Proc]
) -> None:
    log = tmp_path / "runs.log"
    rng = random.Random(13)
    async with store_target(kind, tmp_path) as (store, where):
        producer = Runner(store=store, max_pending=None)
        batch_item = producer.declare("batch_item", retries=ATTEMPTS - 1)
        try:
            await store.open()  # the schema, before the workers race to install it
            workers = 2 if kill else 3
            for n in range(workers):
                options = ["--batch", str(BATCH)]
                if kill:
                    options += ["--lease", str(LEASE)] + (["--stall-from", str(STALL_FROM)] if n == 0 else [])
                procs.append(Proc("batch_worker.py", *where, str(log), *options, worker_id=f"w{n}"))
            await wait_for(
                lambda: sum(line[0] == "ready" for line in lines(log)) == workers, "workers", procs
            )

            def stalled() -> bool:
                return any(line[0] == "stall" for line in lines(log))

            async def kill_w0() -> None:
                # The stalled batch stays in flight past two leases first: w0's
                # renewals must keep every member, so none comes back meanwhile.
                await asyncio.sleep(2 * LEASE)
                events = lines(log)
                number = next(line[2] for line in events if line[0] == "stall")
                (stalled_call,) = [c for c in invocations(events) if (c.worker, c.number) == ("w0", number)]
                for n in stalled_call.items:
                    record = await store.get(ids[n])
                    assert record is not None
                    assert (record.status, record.worker) == (JobStatus.RUNNING, "w0"), (n, record.history)
                # Written before the signal: w0 was alive up to this line, so no
                # other worker may start one of its items before it.
                fd = os.open(log, os.O_WRONLY | os.O_APPEND)
                try:
                    os.write(fd, b"kill w0\n")
                finally:
                    os.close(fd)
                procs[0].process.send_signal(signal.SIGKILL)
                procs[0].process.wait(10)

            # Enqueued in waves while the workers run, each wave in one round trip:
            # a worker's claim then holds several items, which go in one invocation.
            ids: list[str] = []
            for wave in range(WAVES):
                items = range(wave * WAVE, (wave + 1) * WAVE)
                handles = await batch_item.enqueue_many([(n,) for n in items])
                ids += [h.id for h in handles]
                await asyncio.sleep(rng.uniform(0, 0.05))  # a pause between waves, not a wait
                if kill and procs[0].process.poll() is None and stalled():
                    await kill_w0()
            if kill and procs[0].process.poll() is None:
                await wait_for(stalled, "w0 to have a batch in flight", procs)
                await kill_w0()

            async def settled() -> bool:
                stats = await store.stats(time.time())
                return not any(stats.counts[s] for s in JobStatus if not s.is_final)

            await wait_for(settled, "every job to end", procs)

            events = lines(log)
            calls = invocations(events)
            killed_at = next((i for i, line in enumerate(events) if line == ["kill", "w0"]), None)
            assert (killed_at is not None) == kill
            runs: dict[int, list[Invocation]] = {n: [] for n in range(len(ids))}
            for call in calls:
                assert 1 <= len(call.items) <= BATCH, call
                assert len(set(call.items)) == len(call.items), call
                for n in call.items:
                    runs[n].append(call)
            in_flight = [call for call in calls if call.end is None]  # when w0 was killed
            if killed_at is not None:
                assert in_flight and all(call.worker == "w0" and call.start < killed_at for call in in_flight)
            else:
                assert not in_flight, in_flight

            again: set[int] = set()  # succeeding items that ran twice
            rescued: set[int] = set()  # items with an attempt whose lease expired
            for n, its_runs in runs.items():
                # In one invocation at a time: each begins after the one before it
                # ended (one in flight in w0 ended when w0 was killed).
                spans = [(call.start, killed_at if call.end is None else call.end) for call in its_runs]
                for (_, ended), (began, _) in itertools.pairwise(spans):
                    assert ended is not None and ended < began, (n, its_runs)
                record = await store.get(ids[n])
                assert record is not None
                # Each attempt the store counted ran once at most (a claim the dead
                # worker had not started yet counted, and did not run).
                assert 1 <= len(its_runs) <= record.attempts, (n, its_runs, record)
                if not kill:
                    assert len(its_runs) == record.attempts, (n, its_runs, record)
                expired = [entry.worker for entry in record.history if entry.note == "lease expired"]
                if expired:
                    rescued.add(n)
                    assert expired == ["w0"], record.history  # only the dead worker's, once
                assert record.error is None or record.error.type == "LeaseExpired" or fails(n), record
                if fails(n):
                    assert (record.status, record.attempts) == (JobStatus.DEAD, ATTEMPTS), record
                    assert record.error is not None
                    if record.history[-1].note != "lease expired":  # else the rescuer ended it
                        assert record.error.type == "ValueError", record
                        assert f"item {n} " in record.error.message, record
                else:
                    assert (record.status, record.result) == (JobStatus.SUCCEEDED, n * 10), record
                    assert record.attempts == 1 + len(expired), record
                    if len(its_runs) == 2:
                        # At least once: it ran in w0, which died before its outcome
                        # was stored, and again in the other worker after that.
                        again.add(n)
                        first, second = its_runs
                        assert expired and first.worker == "w0" and second.worker != "w0", its_runs
                        assert killed_at is not None and second.start > killed_at, its_runs
                    else:
                        assert len(its_runs) == 1, its_runs

            if kill:
                # What w0 had in flight came back: the rescuer took each item back,
                # and the other worker ran it again (unless it was a failing item's
                # last attempt, which the rescuer dead-lettered).
                held = {n for call in in_flight for n in call.items}
                assert held <= rescued, held - rescued
                for n in held:
                    assert fails(n) or runs[n][-1].worker == "w1", runs[n]
                assert any(not fails(n) for n in held), in_flight
                assert procs[0].process.returncode == -signal.SIGKILL
            else:
                assert not rescued and not again
            stats = await store.stats(time.time())
            failing = sum(fails(n) for n in range(len(ids)))
            assert stats.counts[JobStatus.SUCCEEDED] == len(ids) - failing
            assert stats.counts[JobStatus.DEAD] == failing
            # The run covered what it is about: batches of several items, in more
            # than one process, with a failing member next to succeeding ones.
            assert len({call.worker for call in calls if len(call.items) > 1}) >= 2
            assert any(len(call.items) > 1 and any(map(fails, call.items)) for call in calls)
            assert any(len(call.items) == BATCH for call in calls)
        finally:
            await store.close()
