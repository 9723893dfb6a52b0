"""Dependencies across real processes, on SQLite and on PostgreSQL.

Two worker processes (``tests/procs/dep_worker.py``) run parents and children
while this process enqueues children after parents that are, at that moment,
queued, running in either worker, or already ended: a child never starts
before every parent ended, none is lost, none runs twice, each reads its
parents' results, and the children of a failed parent are cancelled. Then
the same with one worker SIGKILLed mid-run: its jobs come back when their
leases expire, and only jobs it had started run twice.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

import pytest

from jobrunner import JobStatus, Runner
from tests.processes import Proc, lines, store_target, wait_for

pytestmark = pytest.mark.slow

PARENTS = 240
CHILDREN = 160


@pytest.mark.parametrize("kill", [False, True], ids=["", "kill -9"])
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_children_start_only_after_their_parents_ended_in_other_processes(
    kind: str, kill: bool, tmp_path: Path, procs: list[Proc]
) -> None:
    log = tmp_path / "runs.log"
    rng = random.Random(13)
    async with store_target(kind, tmp_path) as (store, where):
        producer = Runner(store=store, max_pending=None)
        step = producer.declare("dep_step", retries=3)
        child = producer.declare("dep_child", retries=3)
        try:
            await store.open()  # the schema, before the workers race to install it
            lease = ["--lease", "1"] if kill else []
            for n in range(2):
                procs.append(Proc("dep_worker.py", *where, str(log), *lease, worker_id=f"w{n}"))
            await wait_for(lambda: sum(line[0] == "ready" for line in lines(log)) == 2, "workers", procs)

            values: dict[str, int] = {}
            parents_of: dict[str, list[str]] = {}
            # Enqueued in waves while the workers run: a child's parents are a mix
            # of jobs just enqueued, running in either process, and already ended.
            for wave in range(CHILDREN // 10):
                for i in range(PARENTS // (CHILDREN // 10)):
                    n = wave * 100 + i
                    value = -n if n % 23 == 5 else n  # about one parent in 23 fails
                    handle = await step.enqueue(value)
                    values[handle.id] = value
                for _ in range(10):
                    parents = rng.sample(sorted(values), k=rng.randint(1, 3))
                    handle = await child.options(after=parents).enqueue()
                    parents_of[handle.id] = parents
                await asyncio.sleep(rng.uniform(0, 0.05))
                if kill and wave == CHILDREN // 20:  # halfway
                    await wait_for(
                        lambda: any(line[-1] == "w0" for line in lines(log)[2:]), "w0 to run", procs
                    )
                    procs[0].process.send_signal(signal.SIGKILL)
                    procs[0].process.wait(10)
            # A chain across processes too.
            chain = await producer.chain(step.call(1), child.call(), child.call())

            async def settled() -> bool:
                stats = await store.stats(time.time())
                busy = (JobStatus.BLOCKED, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SCHEDULED)
                return not any(stats.counts[s] for s in busy)

            await wait_for(settled, "every job to end", procs)

            events = lines(log)
            starts = [line[1] for line in events if line[0] == "start"]
            if kill:  # at least once: only what the dead worker had started may run again
                by_w0 = {line[1] for line in events if line[0] == "start" and line[2] == "w0"}
                again = {job_id for job_id in starts if starts.count(job_id) > 1}
                assert again <= by_w0 and all(starts.count(job_id) == 2 for job_id in again)
            else:
                assert len(starts) == len(set(starts)), "a job ran twice"
            position: dict[tuple[str, str], int] = {}
            for i, line in enumerate(events):
                position.setdefault((line[0], line[1]), i)  # the first start, the first end
            for child_id, parents in parents_of.items():
                record = await store.get(child_id)
                assert record is not None
                if all(values[p] >= 0 for p in parents):
                    assert record.status is JobStatus.SUCCEEDED, record
                    assert record.result == sum(values[p] for p in parents)
                    for parent in parents:
                        assert position[("end", parent)] < position[("start", child_id)]
                else:
                    assert record.status is JobStatus.CANCELLED, record
                    assert ("start", child_id) not in position
            assert [(await store.get(h.id)).result for h in chain] == [1, 1, 1]  # type: ignore[union-attr]
            # The run covered what it is about: both outcomes, both processes.
            children = [await store.get(c) for c in parents_of]
            assert {r.status for r in children if r is not None} == {JobStatus.SUCCEEDED, JobStatus.CANCELLED}
            assert {line[2] for line in events if line[0] == "start"} == {"w0", "w1"}
            if kill:
                assert procs[0].process.returncode == -signal.SIGKILL
        finally:
            await store.close()
