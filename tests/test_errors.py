"""Bad input gets a clear, specific error and loses nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from jobrunner import Runner, UnknownJob


async def test_arguments_that_do_not_fit_the_handler_raise_type_error_naming_the_job(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner()

    @runner.job
    async def resize(image_id: int, width: int = 800) -> None:
        pass

    bad: Any = resize
    with pytest.raises(TypeError, match=r"job 'resize':.*missing a required argument"):
        await bad.enqueue()
    with pytest.raises(TypeError, match=r"job 'resize':.*unexpected keyword argument 'height'"):
        await bad.enqueue(1, height=3)
    with pytest.raises(TypeError, match=r"job 'resize':.*too many positional"):
        await bad.enqueue(1, 2, 3)
    with pytest.raises(TypeError, match=r"job 'resize':.*multiple values"):
        await bad.enqueue(1, image_id=2)
    assert await runner.store.count_pending() == 0


async def test_keyword_only_and_variadic_signatures_are_checked(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()

    @runner.job
    async def flexible(a: int, *rest: int, flag: bool, **extra: str) -> None:
        pass

    job: Any = flexible
    await job.enqueue(1, 2, 3, flag=True, note="x")
    with pytest.raises(TypeError, match="flag"):
        await job.enqueue(1)


async def test_enqueue_by_unknown_name_suggests_the_closest_registered_names(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner()

    @runner.job
    async def resize_image() -> None:
        pass

    @runner.job
    async def send_email() -> None:
        pass

    with pytest.raises(UnknownJob, match=r"Did you mean 'resize_image'") as caught:
        await runner.enqueue("resize_imag")
    assert "runner.declare" in str(caught.value)
    assert await runner.store.count_pending() == 0


async def test_enqueue_by_name_runs_the_registered_job(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()

    @runner.job
    async def greet(name: str) -> str:
        return f"hello {name}"

    handle = await runner.enqueue("greet", "ada")
    await runner.run_until_idle()
    assert await handle.result() == "hello ada"


async def test_a_declared_remote_job_is_enqueued_but_never_claimed_here(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner()

    @runner.job
    async def local() -> None:
        pass

    charge = runner.declare("billing.charge", queue="billing")
    remote = await charge.enqueue(100, currency="EUR")
    by_name = await runner.enqueue("billing.charge", 5)
    await local.enqueue()
    await runner.run_until_idle()
    record = await remote.record()
    assert record.status.value == "queued"
    assert record.queue == "billing"
    assert record.kwargs == {"currency": "EUR"}
    assert (await by_name.record()).status.value == "queued"
    stats = await runner.stats()
    assert "billing.charge" in stats.unknown_names


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": -1}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"retries": -1}, "retries"),
        ({"retries": 1.5}, "retries"),
        ({"priority": "high"}, "priority"),
        ({"queue": ""}, "queue"),
        ({"backoff": "soon"}, "backoff"),
    ],
)
def test_invalid_job_options_raise_value_error_at_decoration(options: dict[str, Any], message: str) -> None:
    runner = Runner()
    with pytest.raises(ValueError, match=message):

        @runner.job(**options)
        async def job() -> None:
            pass


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delay": -5}, "delay"),
        ({"delay": 1, "run_at": 5.0}, "not both"),
        ({"timeout": -2}, "timeout"),
        ({"retries": -1}, "retries"),
        ({"key": ""}, "key"),
        ({"run_at": "tomorrow"}, "run_at"),
    ],
)
def test_invalid_enqueue_options_raise_value_error(options: dict[str, Any], message: str) -> None:
    runner = Runner()

    @runner.job
    async def job() -> None:
        pass

    with pytest.raises(ValueError, match=message):
        job.options(**options)


def test_a_naive_run_at_datetime_is_rejected() -> None:
    from datetime import datetime

    runner = Runner()

    @runner.job
    async def job() -> None:
        pass

    with pytest.raises(ValueError, match="naive datetime"):
        job.options(run_at=datetime(2030, 1, 1))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"max_pending": 0}, "max_pending"),
        ({"queues": {"emails": 0}}, "emails"),
        ({"shutdown_grace": -1}, "shutdown_grace"),
        ({"lease": 0}, "lease"),
        ({"store": "redis://localhost"}, "unknown scheme"),
        ({"store": "jobs.db"}, "not a URL"),
    ],
)
def test_invalid_runner_options_raise_value_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Runner(**options)


def test_two_jobs_cannot_share_a_name() -> None:
    runner = Runner()

    @runner.job(name="same")
    async def one() -> None:
        pass

    with pytest.raises(ValueError, match="already registered"):

        @runner.job(name="same")
        async def two() -> None:
            pass


def test_a_generator_cannot_be_a_job() -> None:
    runner = Runner()

    async def agen() -> Any:
        yield 1

    with pytest.raises(ValueError, match="generator"):
        runner.job(agen)


def test_entering_a_running_runner_twice_is_an_error() -> None:
    import asyncio

    runner = Runner()

    async def twice() -> None:
        async with runner:
            with pytest.raises(RuntimeError, match="already running"):
                await runner.__aenter__()

    asyncio.run(twice())
