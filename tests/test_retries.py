"""Retries with backoff, Retry and Abort, dead letters and requeue."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from jobrunner import Abort, FixedBackoff, JobFailed, JobStatus, Retry, Runner, Trigger, current_job
from jobrunner.testing import FakeClock, drain


async def test_a_failed_attempt_is_retried_after_the_backoff(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    attempts: list[tuple[int, float]] = []

    @runner.job(retries=2, backoff=FixedBackoff(10.0))
    async def flaky() -> str:
        attempts.append((current_job().attempt, clock.now()))
        if current_job().attempt < 3:
            raise ConnectionError("try again")
        return "ok"

    start = clock.now()
    handle = await flaky.enqueue()
    await runner.run_until_idle()
    assert await handle.status() is JobStatus.RETRYING
    clock.advance(9.9)
    await runner.run_until_idle()
    assert len(attempts) == 1
    clock.advance(0.1)
    await runner.run_until_idle()
    assert len(attempts) == 2
    await drain(runner, clock)
    assert await handle.result() == "ok"
    assert [(a, t - start) for a, t in attempts] == [(1, 0.0), (2, 10.0), (3, 20.0)]


async def test_retry_context_says_trigger_retry_and_counts_attempts(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(backoff=0)
    seen: list[tuple[int, int, str]] = []

    @runner.job(retries=2)
    async def failing() -> None:
        job = current_job()
        seen.append((job.attempt, job.max_attempts, job.trigger))
        raise ValueError("no")

    handle = await failing.enqueue()
    await drain(runner, clock)
    assert seen == [(1, 3, Trigger.ENQUEUE), (2, 3, Trigger.RETRY), (3, 3, Trigger.RETRY)]
    assert await handle.status() is JobStatus.DEAD


async def test_the_default_backoff_is_exponential_with_jitter_and_capped(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    times: list[float] = []

    @runner.job(retries=5)
    async def failing() -> None:
        times.append(clock.now())
        raise ValueError("no")

    await failing.enqueue()
    await drain(runner, clock)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 5
    for n, gap in enumerate(gaps, start=1):
        assert 0.0 <= gap <= min(300.0, 2.0 ** (n - 1))


async def test_retry_asks_for_another_attempt_after_its_delay(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    times: list[float] = []

    @runner.job(retries=3, backoff=FixedBackoff(1000.0))
    async def poll() -> str:
        times.append(clock.now())
        if len(times) < 2:
            raise Retry(delay=42.0)
        return "ready"

    handle = await poll.enqueue()
    await drain(runner, clock)
    assert await handle.result() == "ready"
    assert times[1] - times[0] == 42.0


async def test_abort_sends_the_job_straight_to_the_dead_letters(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    calls = 0

    @runner.job(retries=5)
    async def doomed() -> None:
        nonlocal calls
        calls += 1
        raise Abort("the account was deleted")

    handle = await doomed.enqueue()
    await drain(runner, clock)
    assert calls == 1
    with pytest.raises(JobFailed, match="the account was deleted"):
        await handle.result()


async def test_an_exhausted_job_is_dead_with_its_last_error_and_traceback(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(backoff=0)

    @runner.job(retries=1)
    async def broken(x: int) -> None:
        raise KeyError(f"missing {x}")

    handle = await broken.enqueue(7)
    await drain(runner, clock)
    dead = await runner.dead_letters()
    assert [d.id for d in dead] == [handle.id]
    record = dead[0]
    assert record.name == "broken"
    assert record.args == (7,)
    assert record.attempts == 2
    assert record.error is not None
    assert record.error.type == "KeyError"
    assert "missing 7" in record.error.message
    assert 'raise KeyError(f"missing {x}")' in record.error.traceback
    assert record.finished_at is not None and record.enqueued_at <= record.finished_at
    statuses = [h.status for h in record.history]
    assert statuses == [
        JobStatus.QUEUED,
        JobStatus.RUNNING,
        JobStatus.RETRYING,
        JobStatus.RUNNING,
        JobStatus.DEAD,
    ]


async def test_requeue_brings_a_dead_job_back_with_attempts_reset(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(backoff=0)
    fixed = False
    seen: list[tuple[int, str]] = []

    @runner.job(retries=1)
    async def needs_fix() -> str:
        seen.append((current_job().attempt, current_job().trigger))
        if not fixed:
            raise RuntimeError("bug")
        return "fixed"

    handle = await needs_fix.enqueue()
    await drain(runner, clock)
    assert await handle.status() is JobStatus.DEAD
    fixed = True
    again = await runner.requeue(handle.id)
    assert again.id == handle.id
    await drain(runner, clock)
    assert await handle.result() == "fixed"
    assert seen[-1] == (1, Trigger.REQUEUE)
    assert await runner.dead_letters() == []


async def test_a_backoff_function_of_the_attempt_is_used(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    times: list[float] = []

    @runner.job(retries=3, backoff=lambda attempt: 5.0 * attempt)
    async def failing() -> None:
        times.append(clock.now())
        raise ValueError

    await failing.enqueue()
    await drain(runner, clock)
    assert [b - a for a, b in itertools.pairwise(times)] == [5.0, 10.0, 15.0]


async def test_a_policy_that_declines_sends_the_job_to_dead_letters(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    class OnlyConnectionErrors:
        def delay(self, attempt: int, error: BaseException) -> float | None:
            return 1.0 if isinstance(error, ConnectionError) else None

    runner = make_runner()
    calls = 0

    @runner.job(retries=5, backoff=OnlyConnectionErrors())
    async def picky() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("not retryable")

    await picky.enqueue()
    await drain(runner, clock)
    assert calls == 1
    assert len(await runner.dead_letters()) == 1


async def test_retries_per_call_override_the_job_default(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(backoff=0)
    calls = 0

    @runner.job(retries=5)
    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise ValueError

    await failing.options(retries=0).enqueue()
    await drain(runner, clock)
    assert calls == 1
