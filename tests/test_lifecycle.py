"""Results, statuses, cancellation, unique keys, shutdown and retention."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio
import pytest

from jobrunner import JobCancelled, JobFailed, JobNotFound, JobStatus, Runner, current_job
from jobrunner.testing import FakeClock, drain
from tests.helpers import Gate, until, until_status


async def test_result_returns_the_handlers_value(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()

    @runner.job
    async def add(a: int, b: int = 1) -> int:
        return a + b

    handle = await add.enqueue(2, b=3)
    await runner.run_until_idle()
    assert await handle.result(timeout=5) == 5
    assert await handle.status() is JobStatus.SUCCEEDED


async def test_result_waits_for_a_job_that_is_still_running(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()
    gate = Gate()

    @runner.job
    async def slow() -> str:
        await gate.wait()
        return "late"

    async with runner:
        handle = await slow.enqueue()
        waiter = asyncio.ensure_future(handle.result(timeout=10))
        await until(lambda: gate.waiting == 1)
        assert not waiter.done()
        gate.open()
        assert await waiter == "late"


async def test_result_times_out_with_timeout_error(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()

    @runner.job
    async def never() -> None:
        pass

    handle = await never.enqueue()  # no runner running: it stays queued
    with pytest.raises(TimeoutError):
        await handle.result(timeout=0.01)


async def test_statuses_follow_the_job(make_runner: Callable[..., Runner], clock: FakeClock) -> None:
    runner = make_runner(backoff=5.0)
    gate = Gate()
    seen: list[JobStatus] = []

    @runner.job(retries=1)
    async def tracked() -> None:
        seen.append(await runner.status(current_job().id))
        if current_job().attempt == 1:
            await gate.wait()
            raise ValueError

    delayed = await tracked.options(delay=1.0).enqueue()
    assert await delayed.status() is JobStatus.SCHEDULED
    await delayed.cancel()
    handle = await tracked.enqueue()
    assert await handle.status() is JobStatus.QUEUED
    async with runner:
        await until(lambda: gate.waiting == 1)
        assert await handle.status() is JobStatus.RUNNING
        gate.open()
        await until_status(handle, JobStatus.RETRYING)
        clock.advance(5.0)
        await handle.result(timeout=10)
    assert seen == [JobStatus.RUNNING, JobStatus.RUNNING]
    assert await delayed.status() is JobStatus.CANCELLED


async def test_a_cancelled_waiting_job_never_runs(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()
    ran = False

    @runner.job
    async def victim() -> None:
        nonlocal ran
        ran = True

    handle = await victim.enqueue()
    assert await handle.cancel() is JobStatus.CANCELLED
    await runner.run_until_idle()
    assert not ran
    with pytest.raises(JobCancelled):
        await handle.result()


async def test_a_cancelled_running_job_stops_and_is_not_retried(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()
    gate = Gate()
    attempts = 0

    @runner.job(retries=3)
    async def long() -> None:
        nonlocal attempts
        attempts += 1
        await gate.wait()

    async with runner:
        handle = await long.enqueue()
        await until(lambda: gate.waiting == 1)
        assert await handle.cancel() is JobStatus.RUNNING
        with pytest.raises(JobCancelled):
            await handle.result(timeout=10)
        await runner.run_until_idle()
    assert attempts == 1
    assert await handle.status() is JobStatus.CANCELLED


async def test_cancelling_a_finished_job_changes_nothing(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()

    @runner.job
    async def done() -> int:
        return 1

    handle = await done.enqueue()
    await runner.run_until_idle()
    assert await handle.cancel() is JobStatus.SUCCEEDED
    assert await handle.result() == 1


async def test_a_key_makes_enqueue_return_the_active_job(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()
    runs = 0

    @runner.job
    async def sync_account(account: str) -> None:
        nonlocal runs
        runs += 1

    first = await sync_account.options(key="acct-1").enqueue("1")
    second = await sync_account.options(key="acct-1").enqueue("1")
    assert first.created and not second.created
    assert second.id == first.id
    await runner.run_until_idle()
    assert runs == 1
    third = await sync_account.options(key="acct-1").enqueue("1")
    assert third.created and third.id != first.id  # the first one finished: the key is free


async def test_a_key_holds_while_the_job_waits_for_a_retry(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(backoff=10.0)

    @runner.job(retries=1)
    async def flaky() -> None:
        if current_job().attempt == 1:
            raise ValueError

    first = await flaky.options(key="k").enqueue()
    await runner.run_until_idle()
    assert await first.status() is JobStatus.RETRYING
    again = await flaky.options(key="k").enqueue()
    assert again.id == first.id and not again.created
    await drain(runner, clock)


async def test_graceful_shutdown_lets_running_jobs_finish(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(shutdown_grace=30.0)
    gate = Gate()

    @runner.job
    async def finishing() -> str:
        await gate.wait()
        return "finished"

    stop = asyncio.Event()
    handles = []

    async def run() -> None:
        async with runner:
            handles.append(await finishing.enqueue())
            await until(lambda: gate.waiting == 1)
            stop.set()

    task = asyncio.ensure_future(run())
    await stop.wait()
    await until(lambda: clock.next_wakeup is not None)
    clock.advance(10.0)  # within the grace
    await asyncio.sleep(0)
    assert not task.done()
    gate.open()
    with anyio.fail_after(10):
        await task
    assert await handles[0].result() == "finished"


async def test_jobs_still_running_after_the_grace_go_back_uncounted(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(shutdown_grace=5.0)
    gate = Gate()
    cancelled = 0

    @runner.job(retries=0)
    async def long() -> None:
        nonlocal cancelled
        try:
            await gate.wait()
        except asyncio.CancelledError:
            cancelled += 1
            raise

    handles = []

    async def run() -> None:
        async with runner:
            handles.append(await long.enqueue())
            await until(lambda: gate.waiting == 1)

    task = asyncio.ensure_future(run())
    with anyio.fail_after(10):
        while not task.done():
            clock.advance(1.0)
            await asyncio.sleep(0.001)
    await task
    assert cancelled == 1
    record = await handles[0].record()
    assert record.status is JobStatus.QUEUED
    assert record.attempts == 0  # not counted: retries=0 and it may still run
    notes = [h.note for h in record.history]
    assert "released at shutdown" in notes
    # The next runner picks it up as if it had never started.
    gate.open()
    await runner.run_until_idle()
    assert await handles[0].status() is JobStatus.SUCCEEDED


async def test_serve_returns_after_stop_and_leaves_no_task_behind(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()

    @runner.job
    async def hello() -> str:
        return "hi"

    before = asyncio.all_tasks()
    serving = asyncio.ensure_future(runner.serve())
    handle = await hello.enqueue()
    assert await handle.result(timeout=10) == "hi"
    runner.stop()
    with anyio.fail_after(10):
        await serving
    assert asyncio.all_tasks() - before == set()


async def test_run_until_idle_starts_and_stops_the_runner_around_itself(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner()

    @runner.job
    async def one() -> int:
        return 1

    handle = await one.enqueue()
    await runner.run_until_idle()
    assert not runner.is_running
    assert await handle.result() == 1


async def test_finished_jobs_are_pruned_after_result_ttl(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(result_ttl=3600.0)

    @runner.job
    async def short_lived() -> int:
        return 1

    async with runner:
        handle = await short_lived.enqueue()
        assert await handle.result(timeout=10) == 1
        clock.advance(1800.0)
        await runner.run_until_idle()
        assert await handle.status() is JobStatus.SUCCEEDED
        # Past the retention, the leader's next prune forgets it.
        clock.advance(1900.0)
        with anyio.fail_after(10):
            while True:
                try:
                    await handle.status()
                except JobNotFound:
                    break
                clock.advance(60.0)
                await asyncio.sleep(0.001)


async def test_dead_jobs_are_kept_past_result_ttl(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(result_ttl=60.0)

    @runner.job(retries=0)
    async def fails() -> None:
        raise ValueError

    async with runner:
        handle = await fails.enqueue()
        await until_status(handle, JobStatus.DEAD)
        for _ in range(10):
            clock.advance(60.0)
            await asyncio.sleep(0.001)
        assert await handle.status() is JobStatus.DEAD
        purged = await runner.purge(JobStatus.DEAD)
        assert purged == 1
        with pytest.raises(JobNotFound):
            await handle.status()


@pytest.mark.parametrize("error", [SystemExit(3), KeyboardInterrupt()])
async def test_a_handler_raising_base_exception_does_not_kill_the_pool(
    make_runner: Callable[..., Runner], error: BaseException
) -> None:
    runner = make_runner()

    @runner.job(retries=0)
    async def rude() -> None:
        raise error

    @runner.job
    async def polite() -> str:
        return "still here"

    async with runner:
        bad = await rude.enqueue()
        good = await polite.enqueue()
        assert await good.result(timeout=10) == "still here"
        with pytest.raises(JobFailed, match=type(error).__name__):
            await bad.result(timeout=10)


async def test_keyboard_interrupt_from_a_sync_handler_thread_is_contained(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner()

    @runner.job(retries=0)
    def rude() -> None:
        raise KeyboardInterrupt

    async with runner:
        handle = await rude.enqueue()
        with pytest.raises(JobFailed, match="KeyboardInterrupt"):
            await handle.result(timeout=10)


async def test_a_job_can_enqueue_another_job(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()

    @runner.job
    async def child(n: int) -> int:
        return n * 2

    @runner.job
    async def parent(n: int) -> str:
        handle = await child.enqueue(n)
        return handle.id

    handle = await parent.enqueue(21)
    await runner.run_until_idle()
    child_id = await handle.result()
    assert await runner.result(child_id) == 42


async def test_stats_count_jobs_by_status_and_queue(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()

    @runner.job(queue="a")
    async def ok() -> None:
        pass

    @runner.job(queue="b", retries=0)
    async def bad() -> None:
        raise ValueError

    await ok.enqueue_many([()] * 3)
    await bad.enqueue()
    waiting = await runner.stats()
    assert waiting.counts[JobStatus.QUEUED] == 4
    assert waiting.oldest_waiting_age == 0.0
    clock.advance(5.0)
    assert (await runner.stats()).oldest_waiting_age == 5.0
    await runner.run_until_idle()
    stats = await runner.stats()
    assert stats.counts[JobStatus.SUCCEEDED] == 3
    assert stats.counts[JobStatus.DEAD] == 1
    assert stats.queues["a"][JobStatus.SUCCEEDED] == 3
    assert stats.queues["b"][JobStatus.DEAD] == 1
    assert stats.oldest_waiting_age is None
