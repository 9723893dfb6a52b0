"""Whatever a handler does, it fails its own attempt only.

A handler may raise anything (BaseException included), block the event loop
past its deadline, swallow the runner's cancellation, or return a value no
store can keep. Each of these ends that attempt (retried as its policy says)
and the runner goes on with the next job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from jobrunner import JobFailed, JobHooks, JobStatus, Runner, current_job
from jobrunner.context import JobContext
from jobrunner.testing import FakeClock, drain
from tests.helpers import Gate, until, until_status


async def dead_error(handle: Any) -> tuple[str, str]:
    record = await handle.record()
    assert record.status is JobStatus.DEAD, record
    assert record.error is not None
    return record.error.type, record.error.message


async def test_a_handler_raising_cancelled_error_fails_its_attempt_and_the_runner_goes_on(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(retries=1, backoff=0)
    attempts: list[int] = []

    @runner.job
    async def awaits_a_cancelled_future() -> None:
        attempts.append(current_job().attempt)
        await asyncio.sleep(0)  # suspended first: not in the executor's first step
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        await future

    @runner.job
    async def next_one() -> str:
        return "ran"

    async with runner:
        failing = await awaits_a_cancelled_future.enqueue()
        behind = await next_one.enqueue()
        await drain(runner, clock)
        assert await behind.result(timeout=5) == "ran"
        assert runner.is_running
    assert attempts == [1, 2]  # counted, and retried like any failure
    assert (await dead_error(failing))[0] == "CancelledError"


@pytest.mark.parametrize("exception", [GeneratorExit, KeyboardInterrupt, SystemExit])
async def test_a_sync_handler_raising_a_base_exception_fails_its_attempt_only(
    make_runner: Callable[..., Runner], clock: FakeClock, exception: type[BaseException]
) -> None:
    runner = make_runner(retries=0)

    @runner.job
    def raises() -> None:
        raise exception()

    @runner.job
    def fine() -> int:
        return 7

    async with runner:
        failing = await raises.enqueue()
        behind = await fine.enqueue()
        await drain(runner, clock)
        assert await behind.result(timeout=5) == 7
    assert (await dead_error(failing))[0] == exception.__name__


@pytest.mark.parametrize("exception", [GeneratorExit, KeyboardInterrupt, SystemExit])
async def test_an_async_handler_raising_a_base_exception_after_suspending_fails_its_attempt_only(
    make_runner: Callable[..., Runner], clock: FakeClock, exception: type[BaseException]
) -> None:
    runner = make_runner(retries=0)

    @runner.job
    async def raises() -> None:
        await asyncio.sleep(0)
        raise exception()

    async with runner:
        failing = await raises.enqueue()
        await drain(runner, clock)
    assert (await dead_error(failing))[0] == exception.__name__


async def test_a_handler_that_blocks_the_loop_past_its_timeout_and_returns_timed_out(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(retries=0)

    @runner.job(timeout=1.0)
    async def blocks() -> str:
        clock.advance(2.5)  # what time.sleep(2.5) on the loop looks like to the runner
        return "too late"

    async with runner:
        handle = await blocks.enqueue()
        await drain(runner, clock)
    kind, message = await dead_error(handle)
    assert kind == "JobTimeout"
    assert "past its 1.0 s timeout" in message
    with pytest.raises(JobFailed):
        await handle.result(timeout=5)


async def test_a_handler_that_swallows_the_timeouts_cancellation_and_returns_timed_out(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(retries=0)
    gate = Gate()

    @runner.job(timeout=1.0)
    async def swallows() -> str:
        try:
            await gate.wait()
        except asyncio.CancelledError:
            pass  # as a badly written job would
        return "finished anyway"

    async with runner:
        handle = await swallows.enqueue()
        await until(lambda: gate.waiting == 1)
        clock.advance(1.5)
        await until_status(handle, JobStatus.DEAD)
    kind, message = await dead_error(handle)
    assert kind == "JobTimeout"
    assert "ignored its cancellation and returned" in message


async def test_a_handler_finishing_within_its_timeout_succeeds(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()

    @runner.job(timeout=1.0)
    async def quick() -> str:
        clock.advance(0.9)
        return "in time"

    async with runner:
        handle = await quick.enqueue()
        assert await handle.result(timeout=5) == "in time"


async def test_a_result_that_cannot_be_stored_fails_the_attempt_with_type_error_and_retries(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(retries=1, backoff=0)
    attempts: list[int] = []

    @runner.job
    async def makes() -> object:
        attempts.append(current_job().attempt)
        return {1, 2}

    handle = await makes.enqueue()
    await drain(runner, clock)
    assert attempts == [1, 2]
    kind, message = await dead_error(handle)
    assert kind == "TypeError"
    assert "job 'makes' returned a value of type set that cannot be stored as JSON" in message
    with pytest.raises(JobFailed, match="TypeError"):
        await handle.result(timeout=5)


async def test_a_result_over_the_payload_limit_fails_the_attempt(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(retries=0, max_payload=1_000)

    @runner.job
    async def big() -> str:
        return "x" * 2_000

    @runner.job
    async def small() -> str:
        return "x" * 500

    large, fits = await big.enqueue(), await small.enqueue()
    await drain(runner, clock)
    kind, message = await dead_error(large)
    assert kind == "TypeError" and "2,002 bytes as JSON, over the 1,000-byte limit" in message
    assert await fits.result(timeout=5) == "x" * 500


async def test_a_result_comes_back_as_the_store_keeps_it(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()

    @runner.job
    async def pair() -> Any:
        return (1, {"nested": (2.5, "x")})

    handle = await pair.enqueue()
    await drain(runner, clock)
    assert await handle.result(timeout=5) == [1, {"nested": [2.5, "x"]}]


async def test_a_backoff_policy_that_raises_dead_letters_the_job_with_the_reason(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    def broken_backoff(attempt: int) -> float:
        raise ZeroDivisionError("bad policy")

    runner = make_runner(retries=3)

    @runner.job(backoff=broken_backoff)
    async def fails() -> None:
        raise ValueError("boom")

    @runner.job
    async def fine() -> int:
        return 1

    handle, behind = await fails.enqueue(), await fine.enqueue()
    await drain(runner, clock)
    assert await behind.result(timeout=5) == 1
    assert (await dead_error(handle))[0] == "ValueError"
    assert (await handle.record()).attempts == 1


async def test_a_hook_that_raises_is_logged_and_the_job_still_succeeds(
    make_runner: Callable[..., Runner], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(JobHooks):
        def started(self, job: JobContext) -> None:
            raise RuntimeError("hook bug")

        def succeeded(self, job: JobContext, result: Any, duration: float) -> None:
            raise RuntimeError("hook bug")

    runner = make_runner()
    runner.add_hooks(Broken())

    @runner.job
    async def fine() -> int:
        return 3

    handle = await fine.enqueue()
    await drain(runner, clock)
    assert await handle.result(timeout=5) == 3
    failures = [r for r in caplog.records if r.getMessage().startswith("job hook failed")]
    assert len(failures) == 2 and all(r.exc_info for r in failures)
