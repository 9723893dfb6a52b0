"""Process-scoped and job-scoped resources, and their disposal on every path."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable

import pytest

from jobrunner import JobStatus, ResourceError, Runner, current_job, uses
from jobrunner.testing import FakeClock, drain, override
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
    @uses(http)
    async def fetch(client: Client, n: int) -> str:
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
    @uses(session)
    async def use(s: str) -> str:
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
    @uses(tmpdir)
    async def work(path: str, mode: str) -> None:
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
    @uses(first)
    async def second(a: str) -> AsyncIterator[str]:
        events.append("open second")
        yield a + "2"
        events.append("close second")

    @runner.job
    @uses(second, first)
    async def both(x: str, y: str) -> str:
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
    @uses(pool)
    async def conn(p: str) -> AsyncIterator[str]:
        yield f"conn-from-{p}"

    @runner.job
    @uses(conn)
    async def query(c: str) -> str:
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
    @uses(flaky_db)
    async def query(db: str) -> str:
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
    @uses(broken)
    async def query(db: str) -> None:
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
    @uses(http)
    async def fetch(client: str, url: str) -> str:
        return f"{client}:{url}"

    handle = await fetch.enqueue("https://x")
    await runner.run_until_idle()
    assert await handle.result() == "client:https://x"
    assert (await handle.record()).args == ("https://x",)
    with pytest.raises(TypeError, match="fetch"):
        await fetch.enqueue("https://x", "not-a-client")  # type: ignore[call-arg]


def test_a_resource_that_is_not_registered_is_reported_naming_who_uses_it() -> None:
    async def not_registered() -> AsyncIterator[str]:
        yield "x"

    async def handler(x: str) -> None:
        pass

    with pytest.raises(
        ResourceError,
        match=r"handler' uses '.*not_registered', which is not a registered resource; decorate it with @runner.resource",
    ):
        uses(not_registered)(handler)  # type: ignore[call-overload]


def test_a_resource_of_another_runner_is_reported_when_the_job_is_registered() -> None:
    other, runner = Runner(), Runner()

    @other.resource
    async def elsewhere() -> AsyncIterator[str]:
        yield "x"

    with pytest.raises(ResourceError, match=r"job 'needs_it' uses resource .*elsewhere.*another runner"):

        @runner.job
        @uses(elsewhere)
        async def needs_it(x: str) -> None:
            pass


def test_a_process_resource_cannot_use_a_job_resource() -> None:
    runner = Runner()

    @runner.resource(scope="job")
    async def per_job() -> AsyncIterator[str]:
        yield "j"

    with pytest.raises(
        ResourceError, match=r"cannot hold a per-job one; make it @runner.resource\(scope='job'\)"
    ):

        @runner.resource
        @uses(per_job)
        async def shared(x: str) -> AsyncIterator[str]:
            yield x


def test_a_job_needs_a_leading_parameter_for_each_resource() -> None:
    runner = Runner()

    @runner.resource
    async def http() -> AsyncIterator[str]:
        yield "client"

    async def fetch(*, url: str) -> None:
        pass

    with pytest.raises(ValueError, match=r"fetch' uses 1 resource.*first 1 positional"):
        uses(http)(fetch)  # type: ignore[arg-type]


def test_uses_above_runner_job_is_refused_as_the_job_is_registered_already() -> None:
    runner = Runner()

    @runner.resource
    async def http() -> AsyncIterator[str]:
        yield "client"

    with pytest.raises(ValueError, match=r"already a job; put @uses\(...\) below @runner.job"):

        @uses(http)
        @runner.job
        async def fetch(client: str, url: str) -> None:
            pass


def test_a_resource_takes_no_parameters_but_its_resources() -> None:
    runner = Runner()

    async def needs_an_argument(size: int) -> AsyncIterator[str]:
        yield "x" * size

    with pytest.raises(ValueError, match="cannot be called with just the 0 resource"):
        runner.resource(needs_an_argument)  # type: ignore[arg-type]


def test_a_resource_must_be_an_async_generator() -> None:
    runner = Runner()

    async def plain() -> str:
        return "x"

    with pytest.raises(ValueError, match="async generator"):
        runner.resource(plain)  # type: ignore[arg-type]


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
    @uses(background)
    async def needs_it(b: None) -> None:
        pass

    await needs_it.enqueue()
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
    @uses(slow)
    async def needs_it(n: int) -> int:
        return n

    async with runner:
        handles = await needs_it.enqueue_many([()] * 5)
        await until(lambda: made == 1)
        release.set()
        await runner.run_until_idle()
    assert made == 1
    assert [await h.result() for h in handles] == [1] * 5
    await until_status(handles[0], JobStatus.SUCCEEDED)


async def test_process_resources_are_disposed_newest_first_at_shutdown(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner()
    events: list[str] = []

    @runner.resource
    async def pool() -> AsyncIterator[str]:
        events.append("open pool")
        yield "pool"
        events.append("close pool")

    @runner.resource
    @uses(pool)
    async def cache(p: str) -> AsyncIterator[str]:
        events.append("open cache")
        yield f"cache on {p}"
        events.append("close cache")

    @runner.job
    @uses(cache)
    async def lookup(c: str) -> str:
        return c

    async with runner:
        handle = await lookup.enqueue()
        assert await handle.result(timeout=5) == "cache on pool"
        assert events == ["open pool", "open cache"]
    assert events == ["open pool", "open cache", "close cache", "close pool"]


async def test_a_sync_handler_gets_resources_made_on_the_event_loop(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner()
    loop_thread = threading.get_ident()
    closed: list[str] = []

    @runner.resource(scope="job")
    async def session() -> AsyncIterator[Client]:
        client = Client(f"made on the loop: {threading.get_ident() == loop_thread}")
        yield client
        client.closed = True
        closed.append(client.name)

    @runner.job
    @uses(session)
    def report(client: Client, n: int) -> str:
        in_thread = threading.get_ident() != loop_thread
        return f"{client.name}, n={n}, in a thread: {in_thread}, closed: {client.closed}"

    handle = await report.enqueue(3)
    await runner.run_until_idle()
    assert await handle.result() == "made on the loop: True, n=3, in a thread: True, closed: False"
    assert closed == ["made on the loop: True"]


async def test_calling_a_job_that_uses_resources_directly_says_how_to_call_it() -> None:
    runner = Runner()

    @runner.resource
    async def http() -> AsyncIterator[str]:
        yield "client"

    @runner.job
    @uses(http)
    async def fetch(client: str, url: str) -> str:
        return f"{client}:{url}"

    with pytest.raises(TypeError, match=r"'fetch' uses resources .*http.*__wrapped__"):
        fetch("https://x")
    assert await fetch.__wrapped__("fake", "https://x") == "fake:https://x"


async def test_an_overridden_resource_gives_jobs_the_fake_and_is_never_made(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner()
    made: list[str] = []

    @runner.resource
    async def pool() -> AsyncIterator[str]:
        made.append("pool")
        yield "pool"

    @runner.resource(scope="job")
    @uses(pool)
    async def http(p: str) -> AsyncIterator[Client]:
        made.append("http")
        yield Client("real")

    @runner.job
    @uses(http)
    async def fetch(client: Client, n: int) -> str:
        return f"{client.name}-{n}"

    with override(http, Client("fake")):
        handle = await fetch.enqueue(1)
        await runner.run_until_idle()
    assert await handle.result() == "fake-1"
    assert made == []


async def test_leaving_an_override_block_restores_what_was_there(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()

    @runner.resource
    async def http() -> AsyncIterator[Client]:
        yield Client("real")

    @runner.job
    @uses(http)
    async def fetch(client: Client) -> str:
        return client.name

    async def run_one() -> str:
        handle = await fetch.enqueue()
        await runner.run_until_idle()
        return await handle.result()

    seen = []
    with override(http, Client("outer")):
        with override(http, Client("inner")):
            seen.append(await run_one())
        seen.append(await run_one())
    seen.append(await run_one())
    assert seen == ["inner", "outer", "real"]


async def test_a_resource_cannot_be_overridden_while_its_runner_runs(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner()

    @runner.resource
    async def http() -> AsyncIterator[Client]:
        yield Client("real")

    async with runner:
        with (
            pytest.raises(ResourceError, match=r"while its runner is running; override it before"),
            override(http, Client("fake")),
        ):
            pass
    with override(http, Client("fake")) as fake:
        assert fake.name == "fake"
