"""The test helpers jobrunner gives its users."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from jobrunner import Runner
from jobrunner.testing import FakeClock, drain


async def test_fake_clock_wakes_sleepers_when_advanced_past_their_time() -> None:
    clock = FakeClock(start=1000.0)
    woke: list[float] = []

    async def sleeper(seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(clock.monotonic())

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, 5.0)
        tg.start_soon(sleeper, 10.0)
        await asyncio.sleep(0)
        start = clock.monotonic()
        clock.advance(4.0)
        await asyncio.sleep(0)
        assert woke == []
        clock.advance(1.0)
        for _ in range(3):
            await asyncio.sleep(0)
        assert woke == [start + 5.0]
        clock.advance(5.0)
    assert woke == [start + 5.0, start + 10.0]
    assert clock.now() == 1010.0


async def test_fake_clock_sleep_returns_early_when_its_event_is_set() -> None:
    clock = FakeClock()
    wake = asyncio.Event()

    async def sleeper() -> None:
        await clock.sleep(3600.0, wake=wake)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper)
            await asyncio.sleep(0)
            wake.set()


def test_a_wall_clock_jump_leaves_monotonic_time_alone() -> None:
    clock = FakeClock(start=100.0)
    mono = clock.monotonic()
    clock.jump(-50.0)
    assert clock.now() == 50.0
    assert clock.monotonic() == mono
    with pytest.raises(ValueError, match="jump"):
        clock.advance(-1.0)


async def test_drain_runs_delayed_jobs_and_retries_by_moving_the_clock() -> None:
    clock = FakeClock()
    runner = Runner(clock=clock, backoff=60.0)
    ran: list[float] = []

    @runner.job(retries=1)
    async def later() -> None:
        ran.append(clock.now())
        if len(ran) == 1:
            raise ValueError("once")

    start = clock.now()
    handle = await later.options(delay=3600.0).enqueue()
    await drain(runner, clock)
    assert await handle.result() is None
    assert [t - start for t in ran] == [3600.0, 3660.0]
