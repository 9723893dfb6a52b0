"""Lifecycle hooks and middleware."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from jobrunner import JobContext, JobHooks, Runner, current_job
from jobrunner.models import JobSpec
from jobrunner.retry import Decision
from jobrunner.testing import FakeClock, drain
from tests.helpers import Gate, until


class Recorder(JobHooks):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def enqueued(self, jobs: Any) -> None:
        self.events.extend(("enqueued", spec.name) for spec in jobs)

    def started(self, job: JobContext) -> None:
        # Hooks run inside the job's context.
        assert current_job() is job
        self.events.append(("started", f"{job.name}#{job.attempt}"))

    def succeeded(self, job: JobContext, result: Any, duration: float) -> None:
        self.events.append(("succeeded", f"{job.name}={result}"))

    def failed(self, job: JobContext, error: BaseException, decision: Decision, duration: float) -> None:
        self.events.append(("failed", f"{job.name}:{type(error).__name__}:{decision.kind.value}"))

    def cancelled(self, job: JobContext, duration: float) -> None:
        self.events.append(("cancelled", job.name))


async def test_hooks_see_every_lifecycle_event(make_runner: Callable[..., Runner], clock: FakeClock) -> None:
    runner = make_runner(backoff=0)
    recorder = Recorder()
    runner.add_hooks(recorder)
    gate = Gate()

    @runner.job
    async def ok() -> int:
        return 7

    @runner.job(retries=1)
    async def bad() -> None:
        raise ValueError

    @runner.job
    async def waits() -> None:
        await gate.wait()

    await ok.enqueue()
    await bad.enqueue()
    async with runner:
        await drain(runner, clock)
        handle = await waits.enqueue()
        await until(lambda: gate.waiting == 1)
        await handle.cancel()
        await runner.run_until_idle()
    assert recorder.events == [
        ("enqueued", "ok"),
        ("enqueued", "bad"),
        ("started", "ok#1"),
        ("succeeded", "ok=7"),
        ("started", "bad#1"),
        ("failed", "bad:ValueError:retry"),
        ("started", "bad#2"),
        ("failed", "bad:ValueError:dead"),
        ("enqueued", "waits"),
        ("started", "waits#1"),
        ("cancelled", "waits"),
    ]


async def test_hooks_can_add_headers_that_travel_with_the_job(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()

    class Tracing(JobHooks):
        def headers(self) -> dict[str, str]:
            return {"traceparent": "00-abc-def-01"}

    runner.add_hooks(Tracing())
    seen: list[Any] = []

    @runner.job
    async def traced() -> None:
        seen.append(current_job().claimed.spec.headers)

    await traced.enqueue()
    await runner.run_until_idle()
    assert seen == [{"traceparent": "00-abc-def-01"}]


async def test_middleware_wraps_each_attempt_in_order(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()
    calls: list[str] = []

    @runner.middleware
    async def outer(job: JobContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
        calls.append(f"outer>{job.name}")
        result = await call_next()
        calls.append("outer<")
        return result

    @runner.middleware
    async def inner(job: JobContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
        calls.append("inner>")
        return (await call_next()) * 2

    @runner.job
    async def value() -> int:
        calls.append("handler")
        return 21

    handle = await value.enqueue()
    await runner.run_until_idle()
    assert await handle.result() == 42
    assert calls == ["outer>value", "inner>", "handler", "outer<"]


def test_enqueued_hook_receives_specs() -> None:
    seen: list[JobSpec] = []

    class Spy(JobHooks):
        def enqueued(self, jobs: Any) -> None:
            seen.extend(jobs)

    import asyncio

    runner = Runner()
    runner.add_hooks(Spy())

    @runner.job
    async def j(x: int) -> None:
        pass

    asyncio.run(j.enqueue_many([(1,), (2,)]))
    assert [s.args for s in seen] == [(1,), (2,)]
