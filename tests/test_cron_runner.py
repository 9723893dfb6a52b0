"""Cron schedules in a runner, on every store: one job per tick, DST, downtime,
clock jumps, retries and timeouts, registration errors, and several runners
(in-process here; real processes on one SQLite file at the end)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import anyio
import pytest

from jobrunner import FixedBackoff, JobStatus, JobTimeout, Runner, Trigger, current_job
from jobrunner.cron import CATCH_UP_LIMIT, CronExpression, Schedule
from jobrunner.models import JobSpec
from jobrunner.scheduler import WALL_CLOCK_RECHECK, CronScheduler
from jobrunner.stores.base import Store
from jobrunner.testing import FakeClock
from tests.helpers import Gate, until

NOON = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
T = TypeVar("T")


def utc(*fields: int) -> float:
    return datetime(*fields, tzinfo=UTC).timestamp()  # type: ignore[misc]


def local(zone: str, *fields: int, fold: int = 0) -> float:
    return datetime(*fields, tzinfo=ZoneInfo(zone), fold=fold).timestamp()  # type: ignore[misc]


async def fired(runner: Runner, name: str) -> list[float]:
    """``scheduled_for`` of every job the schedule ``name`` enqueued, sorted."""
    records = await runner.list_jobs(limit=100_000)
    return sorted(
        float(r.meta["scheduled_for"]) for r in records if r.meta and r.meta.get("schedule") == name
    )


async def eventually(probe: Callable[[], Awaitable[T | None]], *, within: float = 10.0) -> T:
    """Ask ``probe`` until it answers something other than None (or an empty value)."""
    with anyio.fail_after(within):
        while not (answer := await probe()):
            await asyncio.sleep(0.001)
    return answer


async def step_through(
    runners: Runner | Sequence[Runner],
    clock: FakeClock,
    ran: list[Any],
    expected: list[float],
    step: float,
    end: float,
) -> None:
    """Advance to ``end`` in steps; after each, wait for the ticks that became due
    to have run and their outcomes to be recorded (so that a later step cannot
    outlast the lease of a job still being settled)."""
    running = [runners] if isinstance(runners, Runner) else list(runners)
    while clock.now() < end:
        clock.advance(min(step, end - clock.now()))
        due = sum(1 for tick in expected if tick <= clock.now())
        await until(lambda due=due: len(ran) >= due)  # type: ignore[misc]
        for runner in running:
            if runner.is_running:
                await runner.run_until_idle()


# one job per tick -------------------------------------------------------------------
async def test_an_every_minute_schedule_runs_once_per_tick_as_a_cron_job(
    make_runner: Callable[..., Runner],
) -> None:
    clock = FakeClock(NOON)
    runner = make_runner(clock=clock)
    ran: list[tuple[Trigger, float | None, float]] = []

    @runner.cron("* * * * *")
    async def tick() -> None:
        ran.append((current_job().trigger, current_job().scheduled_for, clock.now()))

    expected = [utc(2025, 1, 1, 12, m) for m in range(1, 11)]
    async with runner:
        await step_through(runner, clock, ran, expected, 60.0, expected[-1])
    assert ran == [(Trigger.CRON, tick_at, tick_at) for tick_at in expected]
    assert await fired(runner, "tick") == expected


async def test_a_seconds_schedule(make_runner: Callable[..., Runner]) -> None:
    clock = FakeClock(NOON)
    runner = make_runner(clock=clock)
    ran: list[float | None] = []

    @runner.job
    async def resize(n: int) -> int:
        ran.append(current_job().scheduled_for)
        return n

    runner.schedule(resize, cron="*/10 * * * * */30", args=(1,))
    expected = [utc(2025, 1, 1, 12, m, s) for m in (0, 10, 20, 30) for s in (0, 30)][1:]
    async with runner:
        await step_through(runner, clock, ran, expected, 30.0, expected[-1])
    assert ran == expected
    assert await fired(runner, "resize") == expected


async def test_the_leader_sleeps_until_the_next_tick(make_runner: Callable[..., Runner]) -> None:
    clock = FakeClock(datetime(2025, 1, 1, 12, 59, 50, tzinfo=UTC))
    runner = make_runner(clock=clock)
    ran: list[float | None] = []

    @runner.cron("0 * * * *")
    async def hourly() -> None:
        ran.append(current_job().scheduled_for)

    async with runner:
        clock.advance(10.0)
        await until(lambda: ran == [utc(2025, 1, 1, 13)])


# the duty itself ----------------------------------------------------------------------
class CountingStore:
    """Forwards to a store and counts the cron calls."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def cron_state(self) -> dict[str, float]:
        self.calls["cron_state"] += 1
        return await self._store.cron_state()

    async def fire_tick(self, schedule: str, fire_at: float, job: JobSpec, now: float) -> bool:
        self.calls["fire_tick"] += 1
        return await self._store.fire_tick(schedule, fire_at, job, now)


def cron_spec(schedule: Schedule, tick: float, now: float) -> JobSpec:
    return JobSpec(
        id=f"{schedule.name}-{tick}-{now}",
        name=schedule.job,
        args=schedule.args,
        kwargs=dict(schedule.kwargs),
        queue="default",
        priority=0,
        max_attempts=1,
        timeout=None,
        key=None,
        workspace_id=None,
        enqueued_at=now,
        run_at=tick,
        trigger=Trigger.CRON.value,
        meta={"schedule": schedule.name, "scheduled_for": tick},
    )


def duty(store: Store, clock: FakeClock, *schedules: Schedule) -> CronScheduler:
    return CronScheduler(store=store, clock=clock, schedules=lambda: schedules, build_spec=cron_spec)


def every(expression: str, name: str = "s", **options: Any) -> Schedule:
    return Schedule(name=name, job="job", cron=CronExpression(expression), **options)


async def ticks_in(store: Store, name: str = "s") -> list[float]:
    jobs = await store.list_jobs(limit=100_000)
    return sorted(float(j.meta["scheduled_for"]) for j in jobs if j.meta and j.meta["schedule"] == name)


async def test_the_duty_returns_the_time_to_the_next_tick_and_rechecks_without_io(store: Store) -> None:
    clock = FakeClock(datetime(2025, 1, 1, 12, 59, 50, tzinfo=UTC))
    counting = CountingStore(store)
    scheduler = duty(counting, clock, every("0 * * * *"))  # type: ignore[arg-type]
    assert await scheduler.run(clock.now()) == 10.0
    clock.advance(10.0)
    # Fired; the next tick is an hour away: look again after the re-check period.
    assert await scheduler.run(clock.now()) == WALL_CLOCK_RECHECK
    assert await ticks_in(store) == [utc(2025, 1, 1, 13)]
    calls = dict(counting.calls)
    for _ in range(59):
        clock.advance(WALL_CLOCK_RECHECK)
        assert await scheduler.run(clock.now()) <= WALL_CLOCK_RECHECK
    assert dict(counting.calls) == calls  # nothing due: no store I/O
    clock.advance(WALL_CLOCK_RECHECK)
    await scheduler.run(clock.now())
    assert await ticks_in(store) == [utc(2025, 1, 1, 13), utc(2025, 1, 1, 14)]


async def test_a_wall_clock_step_back_never_fires_a_tick_again(store: Store) -> None:
    clock = FakeClock(NOON)
    scheduler = duty(store, clock, every("* * * * *"))
    for _ in range(5):
        clock.advance(60.0)
        await scheduler.run(clock.now())
    first = [utc(2025, 1, 1, 12, m) for m in range(1, 6)]
    assert await ticks_in(store) == first
    clock.jump(-1800.0)  # back to 11:35
    restarted = duty(store, clock, every("* * * * *"))  # a fresh process reads the store
    for _ in range(30):
        assert await scheduler.run(clock.now()) <= 60.0
        await restarted.run(clock.now())
        clock.advance(60.0)
    assert await ticks_in(store) == first  # 11:35 - 12:05 lived again, nothing fired
    clock.advance(60.0)  # 12:06
    await restarted.run(clock.now())
    await scheduler.run(clock.now())
    assert await ticks_in(store) == [*first, utc(2025, 1, 1, 12, 6)]


async def test_a_wall_clock_step_forward_fires_once_not_a_burst(store: Store) -> None:
    clock = FakeClock(NOON)
    scheduler = duty(store, clock, every("* * * * *"))
    clock.advance(60.0)
    await scheduler.run(clock.now())
    clock.jump(3 * 3600.0)
    await scheduler.run(clock.now())
    await scheduler.run(clock.now())
    assert await ticks_in(store) == [utc(2025, 1, 1, 12, 1), utc(2025, 1, 1, 15, 1)]


async def test_two_schedulers_sharing_a_store_fire_each_tick_once(store: Store) -> None:
    """A takeover: the old leader does not know it lost, and both run the duty."""
    clock = FakeClock(NOON)
    a = duty(store, clock, every("* * * * * */10"), every("* * * * *", name="m"))
    b = duty(store, clock, every("* * * * * */10"), every("* * * * *", name="m"))
    for _ in range(60):
        clock.advance(5.0)
        await a.run(clock.now())
        await b.run(clock.now())
    assert await ticks_in(store) == [NOON.timestamp() + 10 * n for n in range(1, 31)]
    assert await ticks_in(store, "m") == [
        utc(2025, 1, 1, 12, 1),
        utc(2025, 1, 1, 12, 2),
        utc(2025, 1, 1, 12, 3),
        utc(2025, 1, 1, 12, 4),
        utc(2025, 1, 1, 12, 5),
    ]


async def test_a_failing_schedule_does_not_hold_up_the_others(store: Store) -> None:
    clock = FakeClock(NOON)

    def build(schedule: Schedule, tick: float, now: float) -> JobSpec:
        if schedule.name == "bad":
            raise RuntimeError("cannot build")
        return cron_spec(schedule, tick, now)

    schedules = (every("* * * * *", name="bad"), every("* * * * *", name="good"))
    scheduler = CronScheduler(store=store, clock=clock, schedules=lambda: schedules, build_spec=build)
    clock.advance(60.0)
    assert await scheduler.run(clock.now()) == 5.0  # the failed one is retried soon
    assert await ticks_in(store, "good") == [utc(2025, 1, 1, 12, 1)]


async def test_a_failing_schedule_logs_its_traceback_once_then_a_line_per_retry(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(NOON)
    broken = True

    def build(schedule: Schedule, tick: float, now: float) -> JobSpec:
        if broken:
            raise RuntimeError("cannot build")
        return cron_spec(schedule, tick, now)

    caplog.set_level(logging.INFO, logger="jobrunner")
    schedules = (every("* * * * *", name="bad"),)
    scheduler = CronScheduler(store=store, clock=clock, schedules=lambda: schedules, build_spec=build)
    clock.advance(60.0)
    for _ in range(3):
        await scheduler.run(clock.now())
        clock.advance(5.0)
    broken = False
    await scheduler.run(clock.now())
    events = [
        (r.levelname, r.event, r.exc_info is not None)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "jobrunner.cron" and r.event != "cron tick enqueued"  # type: ignore[attr-defined]
    ]
    assert events == [
        ("ERROR", "cron tick could not be enqueued; will retry", True),
        ("WARNING", "cron tick still failing", False),
        ("WARNING", "cron tick still failing", False),
        ("INFO", "cron tick recovered", False),
    ]


# downtime -------------------------------------------------------------------------------
def scheduled_runner(
    make_runner: Callable[..., Runner], clock: FakeClock, ran: list[float | None], **options: Any
) -> Runner:
    runner = make_runner(clock=clock)

    @runner.cron("*/5 * * * *", **options)
    async def report() -> None:
        ran.append(current_job().scheduled_for)

    return runner


@pytest.mark.parametrize("missed", ["latest", "skip", "all"])
async def test_after_downtime(make_runner: Callable[..., Runner], missed: str) -> None:
    clock = FakeClock(NOON)
    ran: list[float | None] = []
    first = utc(2025, 1, 1, 12, 5)
    async with scheduled_runner(make_runner, clock, ran, missed=missed) as runner:
        await step_through(runner, clock, ran, [first], 60.0, first)
    clock.advance(5 * 3600 + 120)  # down until 17:07; 60 ticks missed
    restarted = scheduled_runner(make_runner, clock, ran, missed=missed)
    caught_up = {
        "latest": [utc(2025, 1, 1, 17, 5)],
        "skip": [],
        "all": [first + 300 * n for n in range(1, 61)],
    }[missed]
    after = utc(2025, 1, 1, 17, 10)
    async with restarted:
        await until(lambda: len(ran) == 1 + len(caught_up))
        await step_through(restarted, clock, ran, [first, *caught_up, after], 60.0, after)
    assert ran[:1] + sorted(ran[1:-1]) + ran[-1:] == [first, *caught_up, after]
    assert await fired(restarted, "report") == [first, *caught_up, after]


async def test_all_catches_up_at_most_the_bound(make_runner: Callable[..., Runner]) -> None:
    clock = FakeClock(NOON)
    ran: list[float | None] = []

    def start() -> Runner:
        runner = make_runner(clock=clock)

        @runner.cron("* * * * *", missed="all")
        async def minutely() -> None:
            ran.append(current_job().scheduled_for)

        return runner

    async with start() as runner:
        await step_through(runner, clock, ran, [utc(2025, 1, 1, 12, 1)], 60.0, utc(2025, 1, 1, 12, 1))
    clock.advance(10 * 3600)  # 600 ticks missed
    async with start() as runner:
        await until(lambda: len(ran) == 1 + CATCH_UP_LIMIT)
    latest = utc(2025, 1, 1, 22, 1)
    assert sorted(ran[1:]) == [latest - 60 * n for n in reversed(range(CATCH_UP_LIMIT))]
    assert len(await fired(runner, "minutely")) == 1 + CATCH_UP_LIMIT


# clock jumps in a running runner -----------------------------------------------------------
async def test_a_clock_jump_forward_runs_the_latest_tick_once(make_runner: Callable[..., Runner]) -> None:
    clock = FakeClock(NOON)
    runner = make_runner(clock=clock)
    ran: list[float | None] = []

    @runner.cron("* * * * *")
    async def minutely() -> None:
        ran.append(current_job().scheduled_for)

    async with runner:
        await step_through(runner, clock, ran, [utc(2025, 1, 1, 12, 1)], 60.0, utc(2025, 1, 1, 12, 1))
        clock.jump(3 * 3600.0)
        # The wall clock is re-read within WALL_CLOCK_RECHECK seconds.
        clock.advance(WALL_CLOCK_RECHECK)
        await until(lambda: len(ran) == 2)
        clock.advance(60.0)
        await until(lambda: len(ran) == 3)
    assert ran == [utc(2025, 1, 1, 12, 1), utc(2025, 1, 1, 15, 2), utc(2025, 1, 1, 15, 3)]
    assert await fired(runner, "minutely") == ran


async def test_a_clock_jump_back_does_not_run_ticks_again(make_runner: Callable[..., Runner]) -> None:
    clock = FakeClock(NOON)
    runner = make_runner(clock=clock)
    ran: list[float | None] = []

    @runner.cron("* * * * *")
    async def minutely() -> None:
        ran.append(current_job().scheduled_for)

    before = [utc(2025, 1, 1, 12, m) for m in range(1, 6)]
    after = [utc(2025, 1, 1, 12, m) for m in range(6, 9)]
    async with runner:
        await step_through(runner, clock, ran, before, 60.0, before[-1])
        clock.jump(-1800.0)
        await step_through(runner, clock, ran, [], 60.0, before[-1])  # lives 11:35-12:05 again
        await step_through(runner, clock, ran, before + after, 60.0, after[-1])
    assert ran == before + after
    assert await fired(runner, "minutely") == before + after


# DST in a runner ------------------------------------------------------------------------------
async def test_berlin_fall_back_every_15_minutes_through_both_passes(
    make_runner: Callable[..., Runner],
) -> None:
    zone = "Europe/Berlin"
    clock = FakeClock(local(zone, 2025, 10, 26, 1, 50))
    runner = make_runner(clock=clock)
    ran: list[float | None] = []

    @runner.cron("*/15 * * * *", timezone=zone)
    async def quarter() -> None:
        ran.append(current_job().scheduled_for)

    first = local(zone, 2025, 10, 26, 2, 0)
    expected = [first + 900 * n for n in range(12)]  # 02:00 CEST ... 03:45 CET
    async with runner:
        await step_through(runner, clock, ran, expected, 300.0, expected[-1])
    assert ran == expected
    assert datetime.fromtimestamp(expected[4], ZoneInfo(zone)).isoformat() == "2025-10-26T02:00:00+01:00"


async def test_new_york_daily_tick_through_both_transitions(make_runner: Callable[..., Runner]) -> None:
    zone = "America/New_York"
    clock = FakeClock(local(zone, 2025, 3, 8, 12))
    runner = make_runner(clock=clock)
    ran: list[float | None] = []

    @runner.cron("30 2 * * *", timezone=zone)
    async def nightly() -> None:
        ran.append(current_job().scheduled_for)

    spring = [local(zone, 2025, 3, 9, 3, 0), local(zone, 2025, 3, 10, 2, 30)]
    async with runner:
        await step_through(runner, clock, ran, spring, 1800.0, spring[-1] + 3600)
    assert ran == spring  # the missing 02:30 ran once, at 03:00 EDT

    ran.clear()
    clock.advance(local(zone, 2025, 11, 1, 12) - clock.now())
    runner = make_runner(clock=clock)

    @runner.cron("30 1 * * *", timezone=zone)
    async def early() -> None:
        ran.append(current_job().scheduled_for)

    fall = [local(zone, 2025, 11, 2, 1, 30), local(zone, 2025, 11, 3, 1, 30)]
    async with runner:
        await step_through(runner, clock, ran, fall, 900.0, fall[-1] + 3600)
    assert ran == fall  # 01:30 EDT only, not 01:30 EST as well


# ordinary jobs: context, retries, timeouts, options ----------------------------------------
async def test_cron_jobs_retry_like_any_job(make_runner: Callable[..., Runner]) -> None:
    clock = FakeClock(NOON)
    runner = make_runner(clock=clock)
    attempts: list[tuple[int, Trigger, float | None]] = []

    @runner.cron("* * * * *")
    @runner.job(retries=1, backoff=FixedBackoff(5.0))
    async def flaky() -> str:
        job = current_job()
        attempts.append((job.attempt, job.trigger, job.scheduled_for))
        if job.attempt == 1:
            raise ConnectionError("try again")
        return "ok"

    tick = utc(2025, 1, 1, 12, 1)
    async with runner:
        clock.advance(60.0)
        await until(lambda: len(attempts) == 1)
        clock.advance(5.0)
        await until(lambda: len(attempts) == 2)
        (record,) = await runner.list_jobs(name="flaky")
        assert await runner.result(record.id, timeout=5) == "ok"
    assert attempts == [(1, Trigger.CRON, tick), (2, Trigger.RETRY, tick)]


async def test_cron_jobs_time_out_into_the_dead_letters(make_runner: Callable[..., Runner]) -> None:
    clock = FakeClock(NOON)
    runner = make_runner(clock=clock)
    gate = Gate()

    @runner.cron("* * * * *")
    @runner.job(timeout=5.0, retries=0)
    async def stuck() -> None:
        await gate.wait()

    async with runner:
        clock.advance(60.0)
        await until(lambda: gate.waiting == 1)
        clock.advance(5.0)
        (record,) = await eventually(lambda: runner.dead_letters(name="stuck"))
    assert record.error is not None and record.error.type == JobTimeout.__qualname__
    assert record.trigger is Trigger.CRON
    assert record.meta == {"schedule": "stuck", "scheduled_for": utc(2025, 1, 1, 12, 1)}


async def test_jitter_delays_each_run_by_the_schedules_own_offset(
    make_runner: Callable[..., Runner],
) -> None:
    clock = FakeClock(NOON)
    runner = make_runner(clock=clock)
    ran: list[float] = []

    @runner.cron("* * * * *", jitter=30.0)
    async def spread() -> None:
        ran.append(clock.now())

    (schedule,) = runner._schedules.values()
    tick = utc(2025, 1, 1, 12, 1)
    delay = schedule.jitter_for(tick)
    assert 0.0 < delay < 30.0
    async with runner:
        clock.advance(60.0)
        (record,) = await eventually(lambda: runner.list_jobs(name="spread"))
        assert record.status is JobStatus.SCHEDULED
        assert record.run_at == tick + delay  # the same delay in every process
        assert record.meta == {"schedule": "spread", "scheduled_for": tick}
        clock.advance(record.run_at - clock.now())
        await until(lambda: ran == [record.run_at])


async def test_queue_priority_and_arguments_reach_the_job(make_runner: Callable[..., Runner]) -> None:
    clock = FakeClock(datetime(2025, 1, 2, 7, 59, tzinfo=UTC))  # a Thursday
    runner = make_runner(clock=clock)
    calls: list[tuple[str, int, str]] = []

    @runner.cron("0 9 * * MON-FRI", timezone="Europe/Berlin", args=("daily",), kwargs={"n": 2}, priority=5)
    @runner.job(queue="reports", priority=1)
    async def report(kind: str, n: int = 1) -> None:
        calls.append((kind, n, current_job().queue))

    runner.schedule(report, cron="0 8 * * *", name="report-fast", queue="fast", args=("x",))
    async with runner:
        clock.advance(60.0)
        await until(lambda: sorted(calls) == [("daily", 2, "reports"), ("x", 1, "fast")])
    records = {r.meta["schedule"]: r for r in await runner.list_jobs(name="report") if r.meta}
    assert (records["report"].queue, records["report"].priority) == ("reports", 5)
    assert (records["report-fast"].queue, records["report-fast"].priority) == ("fast", 1)


async def test_schedules_reports_name_expression_timezone_next_and_last_run(
    make_runner: Callable[..., Runner],
) -> None:
    clock = FakeClock(NOON)
    runner = make_runner(clock=clock)
    ran: list[float | None] = []

    @runner.cron("*/5 * * * *")
    async def cleanup() -> None:
        ran.append(current_job().scheduled_for)

    runner.schedule(cleanup, cron="0 9 * * *", timezone="Asia/Tokyo", name="cleanup-tokyo", missed="skip")
    (every5, tokyo) = await runner.schedules()
    assert (every5.name, every5.job, every5.expression, every5.timezone) == (
        "cleanup",
        "cleanup",
        "*/5 * * * *",
        "UTC",
    )
    assert (every5.next_run, every5.last_run, every5.missed) == (
        datetime(2025, 1, 1, 12, 5, tzinfo=ZoneInfo("UTC")),
        None,
        "latest",
    )
    assert (tokyo.name, tokyo.timezone, tokyo.missed) == ("cleanup-tokyo", "Asia/Tokyo", "skip")
    assert tokyo.next_run == datetime(2025, 1, 2, 9, tzinfo=ZoneInfo("Asia/Tokyo"))
    async with runner:
        await step_through(runner, clock, ran, [utc(2025, 1, 1, 12, 5)], 60.0, utc(2025, 1, 1, 12, 6))
        (every5, _) = await runner.schedules()
    assert every5.last_run == datetime(2025, 1, 1, 12, 5, tzinfo=ZoneInfo("UTC"))
    assert every5.next_run == datetime(2025, 1, 1, 12, 10, tzinfo=ZoneInfo("UTC"))


# several runners on one store ------------------------------------------------------------------
async def test_two_runners_on_one_store_fire_each_tick_once_across_a_takeover(
    make_runner: Callable[..., Runner],
) -> None:
    clock = FakeClock(NOON)
    ran: list[tuple[str, float | None]] = []

    def start(worker: str) -> Runner:
        runner = make_runner(clock=clock, worker_id=worker)

        @runner.cron("* * * * * */10")
        async def tick() -> None:
            ran.append((worker, current_job().scheduled_for))

        return runner

    expected = [NOON.timestamp() + 10 * n for n in range(1, 31)]
    a, b = start("a"), start("b")
    async with anyio.create_task_group() as tg, running(tg, a) as stop_a:
        await step_through(a, clock, ran, expected, 10.0, expected[0])  # a is alone: it leads
        async with running(tg, b) as stop_b:
            await step_through((a, b), clock, ran, expected, 10.0, expected[9])
            await stop_a()  # the leader stops (and resigns); b takes over
            await step_through((a, b), clock, ran, expected, 10.0, expected[-1])
            await stop_b()
    assert sorted(t for _, t in ran) == expected
    assert {worker for worker, t in ran if t is not None and t > expected[9]} == {"b"}
    assert await fired(b, "tick") == expected


@asynccontextmanager
async def running(tg: anyio.abc.TaskGroup, runner: Runner) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Run ``runner`` in its own task until the yielded ``stop()`` is awaited."""
    started, stopped, stop = anyio.Event(), anyio.Event(), anyio.Event()

    async def serve() -> None:
        async with runner:
            started.set()
            await stop.wait()
        stopped.set()

    async def stop_it() -> None:
        stop.set()
        await stopped.wait()

    tg.start_soon(serve)
    await started.wait()
    yield stop_it


# registration -------------------------------------------------------------------------------
def test_a_schedule_for_an_unregistered_job_is_refused() -> None:
    runner, other = Runner(), Runner()

    async def loose() -> None: ...

    @other.job
    async def elsewhere() -> None: ...

    for job in ("missing", loose, elsewhere):
        with pytest.raises(
            ValueError, match=r"not a job registered with this runner; register it with @runner\.job"
        ):
            runner.schedule(job, cron="* * * * *")  # type: ignore[arg-type]


async def test_invalid_expressions_and_timezones_are_refused_at_registration() -> None:
    runner = Runner()

    async def job() -> None: ...

    with pytest.raises(ValueError, match=r"cron expression '\* \* \*': has 3 fields"):
        runner.cron("* * *")(job)
    with pytest.raises(ValueError, match="unknown timezone 'Europe/Nowhere'"):
        runner.cron("* * * * *", timezone="Europe/Nowhere", name="tz")(job)
    with pytest.raises(ValueError, match="missed='never'"):
        runner.cron("* * * * *", missed="never", name="m")(job)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="priority='high'"):
        runner.cron("* * * * *", priority="high", name="p")(job)  # type: ignore[arg-type]
    assert await runner.schedules() == []


def test_arguments_are_checked_against_the_job_signature() -> None:
    runner = Runner()

    @runner.job
    async def report(kind: str) -> None: ...

    with pytest.raises(TypeError, match=r"schedule 'report'.*missing a required argument: 'kind'"):
        runner.schedule(report, cron="* * * * *")
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        runner.schedule(report, cron="* * * * *", args=("x",), kwargs={"colour": 1})
    runner.schedule("report", cron="* * * * *", args=("x",))


def test_schedule_names_are_unique() -> None:
    runner = Runner()

    @runner.cron("0 9 * * *", args=("daily",))
    @runner.cron("0 9 * * MON", args=("weekly",), name="report-weekly")
    async def report(kind: str) -> None: ...

    with pytest.raises(
        ValueError, match=r"schedule 'report': a schedule with this name already exists.*name="
    ):
        runner.schedule(report, cron="* * * * *", args=("x",))


def test_cron_on_a_function_registers_it_once() -> None:
    runner = Runner()

    async def cleanup() -> None: ...

    job = runner.cron("*/5 * * * *")(cleanup)
    again = runner.cron("0 * * * *", name="hourly")(cleanup)
    assert job is again is runner.jobs["cleanup"]


# real processes on one SQLite file ----------------------------------------------------------------
PROCS = Path(__file__).resolve().parent / "procs"


class Node:
    """One ``tests/procs/cron_node.py`` process."""

    def __init__(self, db: Path, clock: Path | str, log: Path, worker_id: str, *options: str) -> None:
        command = [sys.executable, str(PROCS / "cron_node.py"), str(db), str(clock), str(log)]
        self.id = worker_id
        self.process = subprocess.Popen(
            [*command, "--worker-id", worker_id, *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def output(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.read()


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        if node.process.poll() is None:
            node.process.kill()
            node.process.wait(10)
        if node.process.stdout is not None:
            node.process.stdout.close()


def set_time(path: Path, t: float) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(repr(t))
    os.replace(tmp, path)


def query(db: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:  # the schema is not created yet
        return []
    finally:
        conn.close()


def tick_jobs(db: Path) -> list[tuple[float, str]]:
    """``(scheduled_for, status)`` of every job of the schedule, by tick."""
    rows = query(db, "SELECT meta, status FROM jobrunner_jobs WHERE name = 'tick'")
    return sorted((float(json.loads(meta)["scheduled_for"]), status) for meta, status in rows)


def ready(log: Path) -> set[str]:
    if not log.exists():
        return set()
    return {line.split()[1] for line in log.read_text().splitlines() if line.startswith("ready ")}


def wait_for(
    condition: Callable[[], bool], what: str, nodes: list[Node], db: Path, within: float = 30.0
) -> None:
    """Poll a condition about other processes until it holds."""
    deadline = time.monotonic() + within
    while not condition():
        for node in nodes:
            if node.process.poll() not in (None, -signal.SIGKILL):
                raise AssertionError(f"{node.id} exited: {node.output()}")
        if time.monotonic() > deadline:
            jobs = tick_jobs(db)
            leaders = query(db, "SELECT holder, expires_at FROM jobrunner_leaders")
            raise AssertionError(
                f"timed out after {within} s waiting for {what}; last jobs {jobs[-3:]}, leaders {leaders}"
            )
        time.sleep(0.005)


@pytest.mark.slow
def test_two_processes_on_one_sqlite_file_fire_every_tick_once_across_a_kill(
    tmp_path: Path, nodes: list[Node]
) -> None:
    pytest.importorskip("jobrunner.stores.sqlite", reason="the SQLite store is not built yet")
    db, clock, log = tmp_path / "jobs.db", tmp_path / "clock", tmp_path / "runs.log"
    start = NOON.timestamp()
    set_time(clock, start)
    now = start

    def advance() -> float:
        nonlocal now
        now += 1
        set_time(clock, now)
        return now

    def settled_through(at: float) -> Callable[[], bool]:
        """Every tick up to ``at`` has its job, and every job has succeeded."""
        return lambda: tick_jobs(db) == [(start + n, "succeeded") for n in range(1, int(at - start) + 1)]

    a = Node(db, clock, log, "node-a")
    nodes.append(a)
    wait_for(lambda: ready(log) == {"node-a"}, "a to start", nodes, db)
    wait_for(settled_through(advance()), "a's first tick (a is alone: it leads)", nodes, db)
    b = Node(db, clock, log, "node-b")
    nodes.append(b)
    wait_for(lambda: ready(log) == {"node-a", "node-b"}, "b to start", nodes, db)

    # Both alive, a leads: one job per second, run by either. Each step waits
    # until the job is settled, so the test never outruns a lease.
    for _ in range(60):
        at = advance()
        wait_for(settled_through(at), f"the tick at +{at - start:.0f} s", nodes, db)
    a.process.send_signal(signal.SIGKILL)
    a.process.wait(10)
    killed_at = now
    # b takes over once it sees a's lock file free (within half a second of
    # this clock), and catches up every tick it missed (missed="all").
    for _ in range(45):
        advance()
        time.sleep(0.01)  # pacing only: what follows waits for the outcome itself
    wait_for(settled_through(now), "b to take over and catch up", nodes, db)
    assert query(db, "SELECT holder FROM jobrunner_leaders") == [("node-b",)]
    for _ in range(30):
        at = advance()
        wait_for(settled_through(at), f"the tick at +{at - start:.0f} s", nodes, db)
    b.process.send_signal(signal.SIGTERM)
    assert b.process.wait(30) == 0, b.output()

    expected = [start + n for n in range(1, int(now - start) + 1)]
    assert [tick for tick, _ in tick_jobs(db)] == expected  # every second once: none twice, none missing
    runs = [line.split() for line in log.read_text().splitlines() if line.startswith("run ")]
    assert sorted(float(line[1]) for line in runs) == expected  # and each job ran once
    assert {line[4] for line in runs if float(line[1]) > killed_at} == {"node-b"}


def leader(db: Path) -> str | None:
    rows = query(db, "SELECT holder FROM jobrunner_leaders")
    return str(rows[0][0]) if rows else None


@pytest.mark.slow
def test_a_killed_sqlite_leader_is_replaced_at_once_and_a_seconds_cron_misses_at_most_one_tick(
    tmp_path: Path, nodes: list[Node]
) -> None:
    # Real time, real processes: a leads a once-a-second schedule that skips
    # ticks nobody fired in time (missed="skip"), b follows; a is killed.
    db, log = tmp_path / "jobs.db", tmp_path / "runs.log"

    def fired() -> list[float]:
        return [tick for tick, _ in tick_jobs(db)]

    a = Node(db, "real", log, "node-a", "--missed", "skip")
    nodes.append(a)
    wait_for(lambda: leader(db) == "node-a" and len(fired()) >= 1, "a to lead and fire a tick", nodes, db)
    b = Node(db, "real", log, "node-b", "--missed", "skip")
    nodes.append(b)
    wait_for(lambda: ready(log) == {"node-a", "node-b"}, "b to start", nodes, db)
    seen = len(fired())
    wait_for(lambda: len(fired()) >= seen + 3, "three more ticks with b following", nodes, db)
    assert leader(db) == "node-a"  # a live leader keeps the role however often b tries

    a.process.send_signal(signal.SIGKILL)
    killed, killed_at = time.monotonic(), time.time()
    a.process.wait(10)
    wait_for(lambda: leader(db) == "node-b", "b to take over", nodes, db, within=2.0)
    took = time.monotonic() - killed
    wait_for(lambda: fired()[-1] >= killed_at + 3, "b to fire three ticks", nodes, db)
    b.process.send_signal(signal.SIGTERM)
    assert b.process.wait(30) == 0, b.output()

    ticks = fired()
    missed = sorted(set(range(int(ticks[0]), int(ticks[-1]) + 1)) - {int(t) for t in ticks})
    print(f"takeover {took:.3f} s after kill -9; ticks missed: {missed}")
    assert all(t == int(t) for t in ticks)  # whole seconds, and (tick_jobs) each once
    assert len(missed) <= 1, f"ticks missed: {missed}; takeover took {took:.3f} s"
    # Only a tick that fell due while nobody led (between the kill and the takeover).
    assert all(killed_at - 1 < t <= killed_at + took + 1 for t in missed)
