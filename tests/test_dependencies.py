"""Dependencies through the runner: ``after=``, ``runner.chain``, ``runner.group``
and what a job reads of its parents, on every store."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from jobrunner import Abort, JobStatus, Runner, current_job
from jobrunner.errors import JobCancelled, JobFailed, ParentFailed
from jobrunner.testing import FakeClock, drain


async def test_a_job_after_others_runs_once_they_succeeded_and_reads_their_results(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    order: list[str] = []

    @runner.job()
    async def fetch(part: int) -> int:
        order.append(f"fetch {part}")
        return part * 10

    @runner.job()
    async def merge() -> int:
        order.append("merge")
        results: list[int] = await current_job().parent_results()
        return sum(results)

    first, second = await fetch.enqueue(1), await fetch.enqueue(2)
    total = await merge.options(after=[second, first]).enqueue()
    await drain(runner, clock)

    assert await total.result() == 30
    assert order[-1] == "merge"
    assert [o.result for o in await runner.parent_outcomes(total.id)] == [20, 10]


async def test_a_job_after_a_failed_parent_is_cancelled_by_default(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    ran: list[str] = []

    @runner.job(retries=0)
    async def parent() -> None:
        raise Abort("gave up")

    @runner.job()
    async def child() -> None:
        ran.append("child")

    failing = await parent.enqueue()
    waiting = await child.options(after=failing).enqueue()
    await drain(runner, clock)

    with pytest.raises(JobCancelled):
        await waiting.result()
    record = await waiting.record()
    assert record.error is not None and record.error.type == "ParentFailed"
    assert ran == []


async def test_the_dead_policy_dead_letters_the_dependents_transitively(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()

    @runner.job(retries=0)
    async def step(fail: bool) -> None:
        if fail:
            raise Abort("no")

    root = await step.enqueue(True)
    child = await step.options(after=root, on_parent_failure="dead").enqueue(False)
    grandchild = await step.options(after=child, on_parent_failure="dead").enqueue(False)
    await drain(runner, clock)

    with pytest.raises(JobFailed, match="ParentFailed"):
        await grandchild.result()
    assert [r.id for r in await runner.dead_letters()] == [grandchild.id, child.id, root.id]


async def test_a_chain_runs_its_steps_in_order_each_reading_the_one_before(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()

    @runner.job()
    async def start(n: int) -> int:
        return n

    @runner.job()
    async def double() -> int:
        (previous,) = await current_job().parent_results()
        return int(previous) * 2

    handles = await runner.chain(start.call(3), double.call(), double.call())
    assert [await h.status() for h in handles] == [JobStatus.QUEUED, JobStatus.BLOCKED, JobStatus.BLOCKED]
    await drain(runner, clock)

    assert [await h.result() for h in handles] == [3, 6, 12]


async def test_a_failed_chain_step_cancels_the_steps_after_it(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    ran: list[int] = []

    @runner.job(retries=0)
    async def step(n: int) -> None:
        ran.append(n)
        if n == 2:
            raise Abort("broken")

    handles = await runner.chain(step.call(1), step.call(2), step.call(3), step.call(4))
    await drain(runner, clock)

    assert ran == [1, 2]
    assert [await h.status() for h in handles] == [
        JobStatus.SUCCEEDED,
        JobStatus.DEAD,
        JobStatus.CANCELLED,
        JobStatus.CANCELLED,
    ]


async def test_a_group_callback_runs_when_every_member_ended_and_sees_each_outcome(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()

    @runner.job(retries=0)
    async def square(n: int) -> int:
        if n < 0:
            raise Abort("negative")
        return n * n

    @runner.job()
    async def report() -> list[object]:
        outcomes = await current_job().parent_outcomes()
        return [
            o.result if o.status is JobStatus.SUCCEEDED else o.error.type if o.error else None
            for o in outcomes
        ]

    group = await runner.group([square.call(2), square.call(-1), square.call(3)], then=report.call())
    await drain(runner, clock)

    assert await group.callback.result() == [4, "Abort", 9]
    assert [await m.status() for m in group.members] == [
        JobStatus.SUCCEEDED,
        JobStatus.DEAD,
        JobStatus.SUCCEEDED,
    ]


async def test_parent_results_raises_when_a_parent_failed(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    seen: list[str] = []

    @runner.job(retries=0)
    async def member() -> None:
        raise Abort("no")

    @runner.job()
    async def callback() -> None:
        try:
            await current_job().parent_results()
        except ParentFailed as exc:
            seen.append(exc.status)

    await runner.group([member.call()], then=callback.call())
    await drain(runner, clock)

    assert seen == ["dead"]


async def test_a_blocked_job_can_be_cancelled(make_runner: Callable[..., Runner], clock: FakeClock) -> None:
    runner = make_runner()

    @runner.job()
    async def slow() -> None: ...

    parent = await slow.options(delay=60).enqueue()
    child = await slow.options(after=parent).enqueue()

    assert await child.cancel() is JobStatus.CANCELLED
    clock.advance(60)
    await drain(runner, clock)
    assert await parent.status() is JobStatus.SUCCEEDED
    assert await child.status() is JobStatus.CANCELLED


async def test_a_job_without_parents_reads_no_parent_results(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()

    @runner.job()
    async def alone() -> list[object]:
        return await current_job().parent_results()

    handle = await alone.enqueue()
    await drain(runner, clock)
    assert await handle.result() == []


def test_a_key_cannot_be_combined_with_after(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()

    @runner.job()
    async def job() -> None: ...

    with pytest.raises(ValueError, match="key= cannot be combined with after="):
        job.options(key="k", after="some-id")
    with pytest.raises(ValueError, match="on_parent_failure"):
        job.options(after="some-id", on_parent_failure="ignore")


async def test_a_chain_step_must_name_its_job(make_runner: Callable[..., Runner]) -> None:
    from jobrunner import Call

    runner = make_runner()
    with pytest.raises(TypeError, match=r"job\.call"):
        await runner.chain(Call(1))
