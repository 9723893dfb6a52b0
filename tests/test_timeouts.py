"""Per-job timeouts, driven by the fake clock; jobs that ignore cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio
import pytest

from jobrunner import JobFailed, JobStatus, Runner
from jobrunner.testing import FakeClock
from tests.helpers import Gate, until, until_status


async def test_a_job_over_its_timeout_fails_with_job_timeout(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    gate = Gate()

    @runner.job(timeout=5.0, retries=0)
    async def stuck() -> None:
        await gate.wait()

    async with runner:
        handle = await stuck.enqueue()
        await until(lambda: gate.waiting == 1)
        clock.advance(4.9)
        await asyncio.sleep(0)
        assert await handle.status() is JobStatus.RUNNING
        clock.advance(0.2)
        await until_status(handle, JobStatus.DEAD)
    record = await handle.record()
    assert record.error is not None
    assert record.error.type == "JobTimeout"
    assert "timed out after 5.0 s" in record.error.message


async def test_a_timed_out_attempt_is_retried(make_runner: Callable[..., Runner], clock: FakeClock) -> None:
    runner = make_runner(backoff=0)
    gate = Gate()
    attempts: list[int] = []

    @runner.job(timeout=1.0, retries=1)
    async def slow_then_fast() -> str:
        from jobrunner import current_job

        attempts.append(current_job().attempt)
        if current_job().attempt == 1:
            await gate.wait()
        return "done"

    async with runner:
        handle = await slow_then_fast.enqueue()
        await until(lambda: gate.waiting == 1)
        clock.advance(1.5)
        assert await handle.result(timeout=10) == "done"
    assert attempts == [1, 2]


async def test_a_job_that_swallows_cancellation_is_abandoned_and_logged(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(cancel_grace=2.0)
    stubborn_started = asyncio.Event()
    ignored = 0

    @runner.job(timeout=1.0, retries=0)
    async def stubborn() -> None:
        nonlocal ignored
        stubborn_started.set()
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                ignored += 1  # and carries on, as a badly written job would

    async with runner:
        handle = await stubborn.enqueue()
        await stubborn_started.wait()
        clock.advance(1.0)  # timeout: cancelled once, ignores it
        await until(lambda: ignored == 1)
        assert await handle.status() is JobStatus.RUNNING
        clock.advance(2.0)  # cancel grace over: abandoned
        await until_status(handle, JobStatus.DEAD)
        record = await handle.record()
        assert record.error is not None
        assert "ignored cancellation; it was abandoned" in record.error.message
    # The runner stopped (the ``async with`` returned) although the job never yielded.


async def test_shutdown_is_not_held_by_a_job_that_ignores_cancellation(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(shutdown_grace=1.0, cancel_grace=1.0)
    started = asyncio.Event()
    cancelled: list[float] = []  # fake monotonic times: the cancellations the job swallowed
    dropped: list[float] = []  # and when the runner gave up on it (closed the coroutine)

    @runner.job(timeout=None)
    async def stubborn() -> None:
        started.set()
        try:
            while True:
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    cancelled.append(clock.monotonic())
        finally:
            dropped.append(clock.monotonic())

    stop = asyncio.Event()
    handles = []

    async def run() -> None:
        async with runner:
            handles.append(await stubborn.enqueue())
            await started.wait()
            await stop.wait()

    stopping = asyncio.ensure_future(run())
    await started.wait()
    stop.set()  # the runner begins its drain with the job still running
    # Move fake time in small steps until the runner drops the job: no later
    # than shutdown_grace + cancel_grace, whatever the job does. What follows
    # (settling, closing the store) waits on the store, not on the clock, so
    # time stands still for it: real I/O must not count as fake seconds.
    begun = clock.monotonic()
    with anyio.fail_after(10):
        while not dropped:
            clock.advance(0.25)
            await asyncio.sleep(0.001)
    assert cancelled[0] - begun == pytest.approx(1.0, abs=0.5)  # asked to stop after the grace
    assert dropped[0] - cancelled[0] == pytest.approx(1.0, abs=0.25)  # dropped after the cancel grace
    with anyio.fail_after(10):
        await stopping
    handle = handles[0]
    # Interrupted by shutdown: back to the queue, the attempt not counted.
    record = await handle.record()
    assert record.status is JobStatus.QUEUED
    assert record.attempts == 0


async def test_a_job_without_timeout_is_never_timed_out(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    # A month-long fixed lease: this test is about timeouts, not lease expiry.
    runner = make_runner(lease=30 * 86_400.0)
    gate = Gate()

    @runner.job(timeout=None)
    async def patient() -> str:
        await gate.wait()
        return "ok"

    async with runner:
        handle = await patient.enqueue()
        await until(lambda: gate.waiting == 1)
        clock.advance(10 * 86_400)
        for _ in range(10):
            await asyncio.sleep(0)
        assert await handle.status() is JobStatus.RUNNING
        gate.open()
        assert await handle.result(timeout=10) == "ok"


async def test_timeout_per_call_overrides_the_job_default(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    gate = Gate()

    @runner.job(timeout=100.0, retries=0)
    async def stuck() -> None:
        await gate.wait()

    async with runner:
        handle = await stuck.options(timeout=2.0).enqueue()
        await until(lambda: gate.waiting == 1)
        clock.advance(2.0)
        try:
            await handle.result(timeout=10)
        except JobFailed as failed:
            assert failed.error is not None and failed.error.type == "JobTimeout"
        else:
            raise AssertionError("the job should have timed out")
