"""Priority and time order: lower priority first, then enqueue order; delays wait."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from jobrunner import JobStatus, Runner
from jobrunner.testing import FakeClock, drain


async def test_lower_priority_number_runs_first(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner(concurrency=1)
    ran: list[int] = []

    @runner.job
    async def record(n: int) -> None:
        ran.append(n)

    for n, priority in [(1, 5), (2, 0), (3, -3), (4, 10)]:
        await record.options(priority=priority).enqueue(n)
    await runner.run_until_idle()
    assert ran == [3, 2, 1, 4]


async def test_equal_priority_runs_in_enqueue_order(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner(concurrency=1)
    ran: list[int] = []

    @runner.job
    async def record(n: int) -> None:
        ran.append(n)

    for n in range(50):
        await record.enqueue(n)
    await runner.run_until_idle()
    assert ran == list(range(50))


async def test_enqueue_many_keeps_order_and_returns_handles_in_order(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner(concurrency=1)
    ran: list[int] = []

    @runner.job
    async def record(n: int) -> int:
        ran.append(n)
        return n * 10

    handles = await record.enqueue_many([record.call(n) for n in range(20)] + [(20,), (21,)])
    await runner.run_until_idle()
    assert ran == list(range(22))
    assert [await h.result() for h in handles] == [n * 10 for n in range(22)]


async def test_delayed_job_waits_for_its_time(make_runner: Callable[..., Runner], clock: FakeClock) -> None:
    runner = make_runner()
    ran: list[str] = []

    @runner.job
    async def later() -> None:
        ran.append("later")

    handle = await later.options(delay=10.0).enqueue()
    await runner.run_until_idle()
    assert ran == []
    assert await handle.status() is JobStatus.SCHEDULED
    clock.advance(9.5)
    await runner.run_until_idle()
    assert ran == []
    clock.advance(0.5)
    await runner.run_until_idle()
    assert ran == ["later"]


async def test_run_at_takes_an_aware_datetime(make_runner: Callable[..., Runner], clock: FakeClock) -> None:
    runner = make_runner()

    @runner.job
    async def at_time() -> float:
        return clock.now()

    when = datetime.fromtimestamp(clock.now() + 3600, tz=UTC)
    handle = await at_time.options(run_at=when).enqueue()
    await drain(runner, clock)
    assert await handle.result() == when.timestamp()


async def test_a_running_runner_wakes_for_a_delayed_job_without_being_told(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()

    @runner.job
    async def ping() -> str:
        return "pong"

    async with runner:
        handle = await ping.options(delay=30.0).enqueue()
        await runner.run_until_idle()
        assert await handle.status() is JobStatus.SCHEDULED
        clock.advance(30.0)
        assert await handle.result(timeout=10) == "pong"


async def test_delayed_job_that_became_due_runs_before_later_equal_priority_jobs(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(concurrency=1)
    ran: list[str] = []

    @runner.job
    async def record(tag: str) -> None:
        ran.append(tag)

    await record.options(delay=5.0).enqueue("delayed")
    clock.advance(6.0)
    await record.enqueue("fresh")
    await runner.run_until_idle()
    # Ordered by when each became ready: the delayed one was due first.
    assert ran == ["delayed", "fresh"]
