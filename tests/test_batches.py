"""Batch handlers (``@runner.job(batch=N)``): one invocation for many queued calls,
each call still its own job with its own outcome, on every store."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from jobrunner import JobStatus, Runner, current_job
from jobrunner.testing import FakeClock, drain
from tests.helpers import Gate, until, until_status


async def test_a_batch_handler_gets_up_to_its_size_of_queued_calls_at_once(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    calls: list[list[int]] = []

    @runner.job(batch=3)
    async def index(items: list[int]) -> None:
        calls.append(items)

    handles = [await index.enqueue(n) for n in range(7)]
    await drain(runner, clock)

    assert calls == [[0, 1, 2], [3, 4, 5], [6]]
    assert [await h.status() for h in handles] == [JobStatus.SUCCEEDED] * 7


async def test_each_member_gets_its_own_result(make_runner: Callable[..., Runner], clock: FakeClock) -> None:
    runner = make_runner()

    @runner.job(batch=10)
    async def square(items: list[int]) -> list[int]:
        return [n * n for n in items]

    handles = [await square.enqueue(n) for n in (2, 3, 4)]
    await drain(runner, clock)

    assert [await h.result() for h in handles] == [4, 9, 16]


async def test_an_exception_in_the_list_fails_only_its_member(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    seen: list[list[int]] = []

    @runner.job(batch=10, retries=1, backoff=0)
    async def check(items: list[int]) -> list[object]:
        seen.append(items)
        return [ValueError("odd") if n % 2 else n for n in items]

    handles = [await check.enqueue(n) for n in (1, 2, 3)]
    await drain(runner, clock)

    assert seen == [[1, 2, 3], [1, 3]]  # the failed members retried, together
    assert [await h.status() for h in handles] == [JobStatus.DEAD, JobStatus.SUCCEEDED, JobStatus.DEAD]
    record = await handles[0].record()
    assert record.error is not None and (record.error.type, record.attempts) == ("ValueError", 2)


async def test_a_raising_handler_fails_every_member_per_its_own_attempts(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    attempts: list[list[int]] = []

    @runner.job(batch=10, retries=0)
    async def flaky(items: list[int]) -> None:
        attempts.append([current_job().attempt for _ in items])
        raise ConnectionError("down")

    first = await flaky.enqueue(1)
    second = await flaky.options(retries=1).enqueue(2)
    await drain(runner, clock)

    assert await first.status() is JobStatus.DEAD
    assert (await second.record()).attempts == 2
    assert await second.status() is JobStatus.DEAD


async def test_a_batch_takes_the_best_jobs_first(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    calls: list[list[str]] = []

    @runner.job(batch=2)
    async def handle(items: list[str]) -> None:
        calls.append(items)

    await handle.enqueue("late")
    await handle.options(priority=-1).enqueue("urgent")
    await handle.enqueue("later")
    await drain(runner, clock)

    assert calls == [["urgent", "late"], ["later"]]


async def test_a_wrong_number_of_results_fails_the_members(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()

    @runner.job(batch=5, retries=0)
    async def short(items: list[int]) -> list[int]:
        return items[:1]

    handles = [await short.enqueue(n) for n in (1, 2)]
    await drain(runner, clock)

    record = await handles[0].record()
    assert record.status is JobStatus.DEAD
    assert record.error is not None and "one result (or exception) per item" in record.error.message


async def test_a_member_timing_out_stops_the_batch_and_the_others_go_back(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    gate = Gate()
    runs: list[list[str]] = []

    @runner.job(batch=5, retries=0)
    async def slow(items: list[str]) -> None:
        runs.append(items)
        if "slow" in items:
            await gate.wait()  # never opened: the runner stops it

    stuck = await slow.options(timeout=5).enqueue("slow")
    other = await slow.options(timeout=60).enqueue("fast")
    async with runner:
        await until(lambda: gate.waiting == 1)
        clock.advance(5.1)
        await until_status(other, JobStatus.SUCCEEDED)

    record = await stuck.record()
    assert record.status is JobStatus.DEAD
    assert record.error is not None and record.error.type == "JobTimeout"
    assert runs == [["slow", "fast"], ["fast"]]
    assert (await other.record()).attempts == 1  # the interrupted attempt did not count


def test_a_batch_handler_takes_one_list(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()
    with pytest.raises(ValueError, match="batch handler"):

        @runner.job(batch=3)
        async def two(a: list[int], b: int) -> None: ...

    with pytest.raises(ValueError, match="batch=0"):

        @runner.job(batch=0)
        async def none(items: list[int]) -> None: ...


async def test_each_call_of_a_batch_job_takes_one_item(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()

    @runner.job(batch=3)
    async def index(items: list[int]) -> None: ...

    with pytest.raises(TypeError):
        await index.enqueue(1, 2)  # type: ignore[call-arg]


async def test_cancelling_a_member_stops_the_batch_and_reruns_the_others(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    gate = Gate()
    runs: list[list[str]] = []

    @runner.job(batch=5)
    async def wait(items: list[str]) -> None:
        runs.append(items)
        if "victim" in items:
            await gate.wait()

    victim = await wait.enqueue("victim")
    bystander = await wait.enqueue("bystander")
    async with runner:
        await until(lambda: gate.waiting == 1)
        await victim.cancel()
        await until_status(bystander, JobStatus.SUCCEEDED)

    assert await victim.status() is JobStatus.CANCELLED
    assert runs == [["victim", "bystander"], ["bystander"]]
    assert (await bystander.record()).attempts == 1


async def test_stopping_the_runner_puts_a_running_batch_back(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(shutdown_grace=0)
    gate = Gate()

    @runner.job(batch=5)
    async def wait(items: list[int]) -> None:
        await gate.wait()

    handles = [await wait.enqueue(n) for n in range(3)]
    async with runner:
        await until(lambda: gate.waiting == 1)
        runner.stop(now=True)
    assert [await h.status() for h in handles] == [JobStatus.QUEUED] * 3
    assert [(await h.record()).attempts for h in handles] == [0, 0, 0]
