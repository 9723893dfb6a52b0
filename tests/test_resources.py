"""Process-scoped and job-scoped resources, and their disposal on every path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from jobrunner import Depends, JobStatus, ResourceError, Runner, current_job
from jobrunner.testing import FakeClock, drain
from tests.helpers import Gate, until, until_status


class Client:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False


async def test_a_process_resource_is_created_once_and_disposed_at_shutdown(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner()
    events: list[str] = []

    @runner.resource
    async def http() -> AsyncIterator[Client]:
        events.append("open")
        client = Client("http")
        yield client
        client.closed = True
        events.append("close")

    @runner.job
    async def fetch(n: int, client: Client = Depends(http)) -> str:
        assert not client.closed
        return f"{client.name}-{n}"

    async with runner:
        handles = await fetch.enqueue_many([(n,) for n in range(5)])
        await runner.run_until_idle()
        assert events == ["open"]
        assert [await h.result() for h in handles] == [f"http-{n}" for n in range(5)]
    assert events == ["open", "close"]


async def test_a_job_resource_is_made_per_attempt_and_disposed_after_it(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner()
    events: list[str] = []

    @runner.resource(scope="job")
    async def session() -> AsyncIterator[str]:
        job_id = current_job().id
        events.append(f"open {job_id}")
        yield f"session-{job_id}"
        events.append(f"close {job_id}")

    @runner.job
    async def use(s: str = Depends(session)) -> str:
        events.append(f"use {current_job().id}")
        return s

    a = await use.enqueue()
    b = await use.enqueue()
    await runner.run_until_idle()
    assert await a.result() == f"session-{a.id}"
    assert events == [
        f"open {a.id}",
        f"use {a.id}",
        f"close {a.id}",
        f"open {b.id}",
        f"use {b.id}",
        f"close {b.id}",
    ]


@pytest.mark.parametrize("ending", ["success", "failure", "timeout", "cancel", "shutdown"])
async def test_job_resources_are_disposed_however_the_attempt_ends(
    make_runner: Callable[..., Runner], clock: FakeClock, ending: str
) -> None:
    runner = make_runner(shutdown_grace=0.0)
    opened: list[str] = []
    closed: list[str] = []
    gate = Gate()

    @runner.resource(scope="job")
    async def tmpdir() -> AsyncIterator[str]:
        opened.append(current_job().id)
        try:
            yield "/tmp/x"
        finally:
            closed.append(current_job().id)

    @runner.job(timeout=5.0, retries=0)
    async def work(mode: str, path: str = Depends(tmpdir)) -> None:
        if mode == "failure":
            raise RuntimeError("boom")
        if mode in ("timeout", "cancel", "shutdown"):
            await gate.wait()

    async with runner:
        handle = await work.enqueue(ending)
        if ending in ("timeout", "cancel", "shutdown"):
            await until(lambda: gate.waiting == 1)
        if ending == "timeout":
            clock.advance(5.0)
        elif ending == "cancel":
            await handle.cancel()
        if ending != "shutdown":
            await until(lambda: len(closed) == 1)
    assert opened == [handle.id]
    assert closed == [handle.id]
    expected = {
        "success": JobStatus.SUCCEEDED,
        "failure": JobStatus.DEAD,
        "timeout": JobStatus.DEAD,
        "cancel": JobStatus.CANCELLED,
        "shutdown": JobStatus.QUEUED,
    }[ending]
    assert await handle.status() is expected


async def test_resources_are_disposed_in_reverse_order_of_creation(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner()
    events: list[str] = []

    @runner.resource(scope="job")
    async def first() -> AsyncIterator[str]:
        events.append("open first")
        yield "1"
        events.append("close first")

    @runner.resource(scope="job")
    async def second(a: str = Depends(first)) -> AsyncIterator[str]:
        events.append("open second")
        yield a + "2"
        events.append("close second")

    @runner.job
    async def both(x: str = Depends(second), y: str = Depends(first)) -> str:
        return x + y

    handle = await both.enqueue()
    await runner.run_until_idle()
    assert await handle.result() == "121"
    assert events == ["open first", "open second", "close second", "close first"]


async def test_job_resources_can_use_process_resources(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()
    pools: list[str] = []

    @runner.resource
    async def pool() -> AsyncIterator[str]:
        pools.append("pool")
        yield "pool"

    @runner.resource(scope="job")
    async def conn(p: str = Depends(pool)) -> AsyncIterator[str]:
        yield f"conn-from-{p}"

    @runner.job
    async def query(c: str = Depends(conn)) -> str:
        return c

    handles = await query.enqueue_many([(), ()])
    await runner.run_until_idle()
    assert [await h.result() for h in handles] == ["conn-from-pool"] * 2
    assert pools == ["pool"]


async def test_a_failing_resource_fails_the_attempt_naming_the_resource(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(backoff=0)
    tries = 0

    @runner.resource(scope="job")
    async def flaky_db() -> AsyncIterator[str]:
        nonlocal tries
        tries += 1
        if tries == 1:
            raise ConnectionError("db down")
        yield "db"

    @runner.job(retries=1)
    async def query(db: str = Depends(flaky_db)) -> str:
        return db

    handle = await query.enqueue()
    await drain(runner, clock)
    assert await handle.result() == "db"
    record = await handle.record()
    assert record.attempts == 2
    first_failure = [h for h in record.history if h.status is JobStatus.RETRYING]
    assert first_failure and first_failure[0].note == "ResourceError"


async def test_the_resource_error_message_names_it(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()

    @runner.resource(scope="job")
    async def broken() -> AsyncIterator[str]:
        raise ConnectionError("refused")
        yield "never"  # pragma: no cover

    @runner.job(retries=0)
    async def query(db: str = Depends(broken)) -> None:
        pass

    handle = await query.enqueue()
    await drain(runner, clock)
    record = await handle.record()
    assert record.error is not None
    assert record.error.type == "ResourceError"
    assert "broken" in record.error.message and "refused" in record.error.message


async def test_injected_parameters_are_not_enqueued_arguments(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()

    @runner.resource
    async def http() -> AsyncIterator[str]:
        yield "client"

    @runner.job
    async def fetch(url: str, client: str = Depends(http)) -> str:
        return f"{client}:{url}"

    handle = await fetch.enqueue("https://x")
    await runner.run_until_idle()
    assert await handle.result() == "client:https://x"
    assert (await handle.record()).args == ("https://x",)
    with pytest.raises(TypeError, match="fetch"):
        await fetch.enqueue("https://x", "not-a-client")  # type: ignore[call-arg]


async def test_an_unregistered_dependency_is_reported_when_the_runner_starts(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner()

    async def not_registered() -> AsyncIterator[str]:
        yield "x"

    @runner.job
    async def uses(x: str = Depends(not_registered)) -> None:
        pass

    with pytest.raises(ResourceError, match=r"not_registered.*@runner.resource"):
        async with runner:
            pass


def test_a_process_resource_cannot_depend_on_a_job_resource() -> None:
    runner = Runner()

    @runner.resource(scope="job")
    async def per_job() -> AsyncIterator[str]:
        yield "j"

    @runner.resource
    async def shared(x: str = Depends(per_job)) -> AsyncIterator[str]:
        yield x

    @runner.job
    async def uses(s: str = Depends(shared)) -> None:
        pass

    with pytest.raises(ResourceError, match="cannot hold a per-job one"):
        asyncio.run(runner.run_until_idle())


def test_a_resource_must_be_an_async_generator() -> None:
    runner = Runner()

    async def plain() -> str:
        return "x"

    with pytest.raises(ValueError, match="async generator"):
        runner.resource(plain)  # type: ignore[type-var]


async def test_a_process_resource_does_not_capture_the_first_jobs_context(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner()
    inside_resource: list[str] = []

    @runner.resource
    async def background() -> AsyncIterator[None]:
        try:
            inside_resource.append(current_job().id)
        except LookupError:
            inside_resource.append("no job")
        yield None

    @runner.job
    async def uses(b: None = Depends(background)) -> None:
        pass

    await uses.enqueue()
    await runner.run_until_idle()
    assert inside_resource == ["no job"]


async def test_a_running_job_whose_process_resource_is_slow_to_start_waits_for_one_copy(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner(concurrency=5)
    made = 0
    release = asyncio.Event()

    @runner.resource
    async def slow() -> AsyncIterator[int]:
        nonlocal made
        made += 1
        await release.wait()
        yield made

    @runner.job
    async def uses(n: int = Depends(slow)) -> int:
        return n

    async with runner:
        handles = await uses.enqueue_many([()] * 5)
        await until(lambda: made == 1)
        release.set()
        await runner.run_until_idle()
    assert made == 1
    assert [await h.result() for h in handles] == [1] * 5
    await until_status(handles[0], JobStatus.SUCCEEDED)
