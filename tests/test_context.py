"""The job context: current_job(), isolation between jobs, inheritance by tasks."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable

import pytest

from jobrunner import JobContext, Runner, Trigger, current_job
from jobrunner.testing import FakeClock

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


async def test_current_job_describes_the_running_attempt(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    seen: list[JobContext] = []

    @runner.job(queue="images", priority=3, timeout=30.0, retries=2)
    async def resize(image_id: int) -> None:
        seen.append(current_job())

    handle = await resize.options(workspace_id="acme").enqueue(42)
    await runner.run_until_idle()
    job = seen[0]
    assert job.id == handle.id
    assert job.name == "resize"
    assert job.attempt == 1
    assert job.max_attempts == 3
    assert job.queue == "images"
    assert job.priority == 3
    assert job.workspace_id == "acme"
    assert job.trigger is Trigger.ENQUEUE
    assert job.enqueued_at == clock.now()
    assert job.deadline == clock.now() + 30.0
    assert job.scheduled_for is None


def test_current_job_outside_a_job_raises_lookup_error() -> None:
    with pytest.raises(LookupError, match="outside a job"):
        current_job()


async def test_context_variables_set_by_a_job_do_not_leak_to_the_next(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner(concurrency=1)
    seen: list[str] = []

    @runner.job
    async def tagged(tag: str) -> None:
        seen.append(request_id.get())
        request_id.set(tag)

    await tagged.enqueue("first")
    await tagged.enqueue("second")
    await runner.run_until_idle()
    assert seen == ["none", "none"]
    assert request_id.get() == "none"


async def test_jobs_see_the_context_the_runner_started_in(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()
    seen: list[str] = []

    @runner.job
    async def read() -> None:
        seen.append(request_id.get())

    token = request_id.set("app-wide")
    try:
        async with runner:
            await read.enqueue()
            await runner.run_until_idle()
    finally:
        request_id.reset(token)
    assert seen == ["app-wide"]


async def test_tasks_a_job_spawns_inherit_its_context(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()
    seen: list[tuple[str, str]] = []

    @runner.job
    async def parent() -> None:
        request_id.set("from-parent")

        async def child() -> None:
            await asyncio.sleep(0)
            seen.append((current_job().name, request_id.get()))

        await asyncio.gather(child(), asyncio.create_task(child()))

    await parent.enqueue()
    await runner.run_until_idle()
    assert seen == [("parent", "from-parent"), ("parent", "from-parent")]


async def test_concurrent_jobs_each_see_their_own_context(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner(concurrency=10)
    seen: dict[str, str] = {}
    both_in = asyncio.Barrier(2)

    @runner.job
    async def worker(tag: str) -> None:
        request_id.set(tag)
        await both_in.wait()  # both are suspended inside their jobs at once
        seen[tag] = f"{request_id.get()}:{current_job().id}"

    a = await worker.enqueue("a")
    b = await worker.enqueue("b")
    await runner.run_until_idle()
    assert seen == {"a": f"a:{a.id}", "b": f"b:{b.id}"}


async def test_sync_handlers_see_the_job_context_in_their_thread(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()

    @runner.job
    def in_thread() -> str:
        return current_job().name

    handle = await in_thread.enqueue()
    await runner.run_until_idle()
    assert await handle.result() == "in_thread"


async def test_requeued_job_context_says_trigger_requeue(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    triggers: list[Trigger] = []

    @runner.job(retries=0)
    async def once() -> None:
        triggers.append(current_job().trigger)
        if len(triggers) == 1:
            raise ValueError

    handle = await once.enqueue()
    await runner.run_until_idle()
    await runner.requeue(handle.id)
    await runner.run_until_idle()
    assert triggers == [Trigger.ENQUEUE, Trigger.REQUEUE]
