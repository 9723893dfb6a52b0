"""Property tests: for random mixes of priorities, delays, failures and
cancellations, no job is lost and ready jobs run in priority order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobrunner import JobStatus, MemoryStore, Runner, current_job
from jobrunner.testing import FakeClock, drain


@dataclass(frozen=True)
class Plan:
    priority: int
    delay: float
    failures: int
    cancel: bool


plans = st.lists(
    st.builds(
        Plan,
        priority=st.integers(-3, 3),
        delay=st.sampled_from([0.0, 0.0, 0.0, 1.0, 5.0, 30.0]),
        failures=st.integers(0, 3),
        cancel=st.booleans(),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans=plans, concurrency=st.integers(1, 8))
def test_every_job_reaches_the_end_it_should(plans: list[Plan], concurrency: int) -> None:
    asyncio.run(_every_job_reaches_the_end_it_should(plans, concurrency))


async def _every_job_reaches_the_end_it_should(plans: list[Plan], concurrency: int) -> None:
    clock = FakeClock()
    runner = Runner(MemoryStore(), clock=clock, concurrency=concurrency, backoff=2.0)
    runs: dict[str, int] = {}
    plan_of: dict[str, Plan] = {}

    @runner.job(retries=2)
    async def step(index: int) -> int:
        job = current_job()
        runs[job.id] = runs.get(job.id, 0) + 1
        await asyncio.sleep(0)  # give other jobs a turn
        if job.attempt <= plan_of[job.id].failures:
            raise RuntimeError(f"planned failure {job.attempt}")
        return index

    handles = []
    for index, plan in enumerate(plans):
        handle = await step.options(priority=plan.priority, delay=plan.delay).enqueue(index)
        plan_of[handle.id] = plan
        handles.append(handle)
    for handle in handles:
        if plan_of[handle.id].cancel:
            await handle.cancel()
    await drain(runner, clock)

    for index, handle in enumerate(handles):
        plan = plan_of[handle.id]
        record = await handle.record()
        if plan.cancel:
            assert record.status is JobStatus.CANCELLED
            assert handle.id not in runs
        elif plan.failures >= 3:
            assert record.status is JobStatus.DEAD
            assert runs[handle.id] == 3
        else:
            assert record.status is JobStatus.SUCCEEDED
            assert record.result == index
            assert runs[handle.id] == plan.failures + 1
    assert await runner.store.count_pending() == 0


@settings(max_examples=60, deadline=None)
@given(priorities=st.lists(st.integers(-5, 5), min_size=1, max_size=60))
def test_ready_jobs_start_in_priority_then_enqueue_order(priorities: list[int]) -> None:
    async def scenario() -> list[int]:
        runner = Runner(MemoryStore(), clock=FakeClock(), concurrency=1)
        started: list[int] = []

        @runner.job
        async def record(index: int) -> None:
            started.append(index)

        for index, priority in enumerate(priorities):
            await record.options(priority=priority).enqueue(index)
        await runner.run_until_idle()
        return started

    started = asyncio.run(scenario())
    expected = sorted(range(len(priorities)), key=lambda i: (priorities[i], i))
    assert started == expected


@settings(max_examples=40, deadline=None)
@given(delays=st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=30))
def test_no_job_starts_before_its_time(delays: list[float]) -> None:
    async def scenario() -> list[tuple[float, float]]:
        clock = FakeClock()
        runner = Runner(MemoryStore(), clock=clock)
        seen: list[tuple[float, float]] = []

        @runner.job
        async def timed(due: float) -> None:
            seen.append((due, clock.now()))

        for delay in delays:
            await timed.options(delay=delay).enqueue(clock.now() + delay)
        await drain(runner, clock)
        return seen

    seen = asyncio.run(scenario())
    assert len(seen) == len(delays)
    for due, started in seen:
        assert started >= due
