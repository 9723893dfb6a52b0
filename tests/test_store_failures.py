"""A store that keeps failing: the runner backs off, logs each failing spell once
with its traceback, reports the store in ``health()``, and ``serve()`` gives up
after ``store_give_up`` seconds with a StoreError, losing no job.

A memory store that fails on demand (``FlakyStore``) and a clock that records
the sleeps each task asks for make every step deterministic: the backoff is on
the runner's clock, so the test moves it. The real thing (a damaged SQLite
file) is in ``tests/test_sqlite_files.py``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from jobrunner import JobStatus, Runner, StoreError
from jobrunner.maintenance import LEADER_ROLE
from jobrunner.models import ClaimedJob, ClaimRequest, LeaseReport, LeaseTerms, Outcome
from jobrunner.stores.memory import MemoryStore
from jobrunner.testing import FakeClock
from tests.helpers import Gate, serving, until


class RecordingClock(FakeClock):
    """A FakeClock that records every sleep asked of it, by the asking task's name."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: dict[str, list[float]] = defaultdict(list)

    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> None:
        task = asyncio.current_task()
        self.sleeps[task.get_name() if task is not None else "?"].append(seconds)
        await super().sleep(seconds, wake)


class FlakyStore(MemoryStore):
    """A memory store whose calls named in ``broken`` raise StoreError.

    ``calls[name]`` holds the clock's monotonic time of each call."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.broken: set[str] = set()
        self.calls: dict[str, list[float]] = defaultdict(list)

    def _call(self, name: str) -> None:
        self.calls[name].append(self.clock.monotonic())
        if name in self.broken:
            raise StoreError(f"{name}: disk on fire")

    async def claim(self, request: ClaimRequest) -> list[ClaimedJob]:
        self._call("claim")
        return await super().claim(request)

    async def settle(self, outcomes: Sequence[Outcome], worker: str) -> list[str]:
        self._call("settle")
        return await super().settle(outcomes, worker)

    async def extend_leases(
        self, leases: Sequence[tuple[str, int]], now: float, terms: LeaseTerms
    ) -> LeaseReport:
        self._call("extend_leases")
        return await super().extend_leases(leases, now, terms)

    async def try_lead(self, role: str, holder: str, ttl: float, now: float) -> bool:
        self._call("try_lead")
        return await super().try_lead(role, holder, ttl, now)


WORKER, SETTLER, HEARTBEAT, LEADER = (
    "jobrunner.worker",
    "jobrunner.settler",
    "jobrunner.heartbeat",
    "jobrunner.leader",
)


def make(**options: Any) -> tuple[RecordingClock, FlakyStore, Runner]:
    clock = RecordingClock()
    store = FlakyStore(clock)
    return clock, store, Runner(store=store, clock=clock, **options)


# --- backoff --------------------------------------------------------------------------------------


async def test_failing_claims_are_retried_after_a_backoff_doubling_from_1_s_to_30_s() -> None:
    clock, store, runner = make()
    store.broken.add("claim")
    delays = [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    async with runner:
        for n, delay in enumerate(delays, start=1):
            await until(lambda n=n: len(clock.sleeps[WORKER]) == n)
            assert clock.sleeps[WORKER][-1] == pytest.approx(delay)
            assert len(store.calls["claim"]) == n  # no other try while it waits
            clock.advance(delay)
            await until(lambda n=n: len(store.calls["claim"]) == n + 1)
    calls = store.calls["claim"]
    assert [b - a for a, b in itertools.pairwise(calls)] == pytest.approx(delays)


async def test_an_enqueue_does_not_cut_a_claim_backoff_short() -> None:
    clock, store, runner = make()

    @runner.job
    async def job() -> None:
        pass

    store.broken.add("claim")
    async with runner:
        await until(lambda: len(clock.sleeps[WORKER]) == 1)
        await job.enqueue()  # wakes the fetcher, which goes back to its backoff
        await until(lambda: len(clock.sleeps[WORKER]) == 2)
        assert len(store.calls["claim"]) == 1
        store.broken.clear()
        clock.advance(1.0)
        await runner.run_until_idle()
    assert len(store.calls["claim"]) >= 2


async def test_outcomes_that_cannot_be_recorded_are_kept_and_retried_with_backoff() -> None:
    clock, store, runner = make()

    @runner.job
    async def answer() -> int:
        return 42

    store.broken.add("settle")
    async with runner:
        handle = await answer.enqueue()
        for n, delay in enumerate([1.0, 2.0, 4.0], start=1):
            await until(lambda n=n: len(clock.sleeps[SETTLER]) == n)
            assert clock.sleeps[SETTLER][-1] == pytest.approx(delay)
            assert len(store.calls["settle"]) == n  # not a busy loop
            assert await handle.status() is JobStatus.RUNNING  # still leased; outcome kept here
            clock.advance(delay)
            await until(lambda n=n: len(store.calls["settle"]) == n + 1)
        store.broken.clear()
        clock.advance(8.0)
        assert await handle.result(timeout=5) == 42


async def test_failing_heartbeats_back_off_but_never_pause_longer_than_half_the_lease() -> None:
    # A fixed 30 s lease: a heartbeat every 10 s, and no pause over 15 s, so that
    # a store that comes back finds the leases still held.
    clock, store, runner = make(lease=30.0)
    gate = Gate()

    @runner.job
    async def hold() -> None:
        await gate.wait()

    assert await store.try_lead(LEADER_ROLE, "elsewhere", 86_400.0, clock.now())  # nobody rescues here
    async with runner:
        await hold.enqueue()
        await until(lambda: gate.waiting == 1)
        store.broken.add("extend_leases")
        expected = [10.0, 10.0, 10.0, 10.0, 10.0, 15.0, 15.0]  # backoff 1, 2, 4, 8, 16, 30 s
        for n, pause in enumerate(expected, start=1):
            await until(lambda n=n: len(clock.sleeps[HEARTBEAT]) == n)
            assert clock.sleeps[HEARTBEAT][-1] == pytest.approx(pause)
            clock.advance(pause)
            await until(lambda n=n: len(store.calls["extend_leases"]) == n)
        store.broken.clear()
        await until(lambda: len(clock.sleeps[HEARTBEAT]) == len(expected) + 1)
        clock.advance(15.0)
        await until(lambda: runner.health().store_ok)
        await until(lambda: len(clock.sleeps[HEARTBEAT]) == len(expected) + 2)
        assert clock.sleeps[HEARTBEAT][-1] == pytest.approx(10.0)  # back to its cadence
        gate.open()


async def test_failing_leader_elections_back_off_from_the_followers_cadence() -> None:
    clock, store, runner = make()
    store.broken.add("try_lead")
    third = 10.0 / 3  # a follower tries every third of the 10 s leader lease
    expected = [third, third, 4.0, 8.0, 16.0, 30.0]  # backoff 1, 2, 4, 8, 16, 30 s
    async with runner:
        for n, pause in enumerate(expected, start=1):
            await until(lambda n=n: len(clock.sleeps[LEADER]) == n)
            assert clock.sleeps[LEADER][-1] == pytest.approx(pause)
            clock.advance(pause)
            await until(lambda n=n: len(store.calls["try_lead"]) == n + 1)


# --- logs and health ---------------------------------------------------------------------------------


async def test_a_failing_spell_logs_one_traceback_then_one_line_per_retry_and_one_on_recovery() -> None:
    clock, store, runner = make()
    store.broken.add("claim")
    with capture_logs() as logs:
        async with runner:
            for n, delay in enumerate([1.0, 2.0], start=1):
                await until(lambda n=n: len(clock.sleeps[WORKER]) == n)
                clock.advance(delay)
            await until(lambda: len(clock.sleeps[WORKER]) == 3)
            store.broken.clear()
            clock.advance(4.0)
            await until(lambda: any(e["event"] == "store call recovered" for e in logs))
    events = [e for e in logs if e.get("call") == "claim"]
    assert [e["event"] for e in events] == [
        "store call failed; retrying with backoff",
        "store call still failing",
        "store call still failing",
        "store call recovered",
    ]
    first, second, third, recovered = events
    assert first["log_level"] == "error" and isinstance(first["exc_info"], StoreError)
    assert (first["store"], first["retry_in"], first["error"]) == (
        "FlakyStore",
        1.0,
        "StoreError: claim: disk on fire",
    )
    for event, failures, failing_for, retry_in in ((second, 2, 1.0, 2.0), (third, 3, 3.0, 4.0)):
        assert event["log_level"] == "warning" and "exc_info" not in event
        assert (event["failures"], event["failing_for"], event["retry_in"]) == (
            failures,
            failing_for,
            retry_in,
        )
    assert recovered["log_level"] == "info"
    assert (recovered["failures"], recovered["failed_for"]) == (3, 7.0)


async def test_health_reports_a_failing_store_with_its_error_and_since_when() -> None:
    clock, store, runner = make()

    @runner.job
    async def job() -> None:
        pass

    async with runner:
        assert runner.health().store_ok and runner.health().ok
        store.broken.add("claim")
        failed_at = clock.now()
        await job.enqueue()
        await until(lambda: not runner.health().store_ok)
        tries = len(store.calls["claim"])
        clock.advance(1.0)
        await until(lambda: len(store.calls["claim"]) == tries + 1)
        health = runner.health()
        assert not health.ok and health.workers_alive and health.loop_responsive
        assert health.store_error == "claim: StoreError: claim: disk on fire"
        assert health.store_failing_since == failed_at  # since the spell began, not the last failure
        store.broken.clear()
        clock.advance(2.0)
        await runner.run_until_idle()
        health = runner.health()
        assert health.store_ok and health.ok
        assert (health.store_error, health.store_failing_since) == (None, None)


async def test_an_app_duty_failing_with_its_own_error_does_not_make_the_store_failing() -> None:
    clock, _, runner = make()

    class Broken:
        name = "app-report"

        async def run(self, now: float) -> float:
            raise ValueError("the report template is missing")

    runner.add_duty(Broken())
    with capture_logs() as logs:
        async with runner:
            await until(lambda: any(e.get("call") == "app-report" for e in logs))
            clock.advance(1.0)
            await until(lambda: len([e for e in logs if e.get("call") == "app-report"]) == 2)
            assert runner.health().store_ok
    first, second = [e for e in logs if e.get("call") == "app-report"]
    assert first["event"] == "maintenance duty failed; retrying with backoff"
    assert isinstance(first["exc_info"], ValueError)
    assert second["event"] == "maintenance duty still failing" and "exc_info" not in second


# --- giving up --------------------------------------------------------------------------------------


async def test_serve_gives_up_after_store_give_up_and_raises_a_store_error_saying_what_to_do() -> None:
    clock, store, runner = make(store_give_up=60.0)
    store.broken.add("claim")
    async with serving(runner) as raised:
        await until(lambda: not runner.health().store_ok)
        clock.advance(59.0)
        await until(lambda: len(store.calls["claim"]) == 2)  # the jump ended one backoff
        assert runner.is_running
        clock.advance(1.0)
        await until(lambda: not runner.is_running)
    (error,) = raised
    assert isinstance(error, StoreError)
    message = str(error)
    assert "FlakyStore has failed for 60 s without a break" in message
    assert "the last error, from claim: StoreError: claim: disk on fire" in message
    assert "Fix the store" in message and "store_give_up=None" in message
    assert isinstance(error.__cause__, StoreError)
    assert not runner.health().store_ok  # what it was when it stopped


async def test_giving_up_still_records_the_outcomes_the_store_accepts() -> None:
    clock, store, runner = make(store_give_up=30.0, concurrency=2)
    gate = Gate()

    @runner.job
    async def hold() -> str:
        await gate.wait()
        return "done"

    with capture_logs() as logs:
        async with serving(runner) as raised:
            running = await hold.enqueue()
            await until(lambda: gate.waiting == 1)
            store.broken.add("claim")  # claims break; settles still work
            waiting = await hold.enqueue()
            await until(lambda: not runner.health().store_ok)
            clock.advance(30.0)
            await until(lambda: any(e["event"].startswith("store failing for too long") for e in logs))
            gate.open()  # the running job finishes within the shutdown grace
            await until(lambda: not runner.is_running)
    assert [type(e) for e in raised] == [StoreError]
    assert await running.result(timeout=1) == "done"
    assert await waiting.status() is JobStatus.QUEUED  # never claimed: waits for another worker


async def test_outcomes_the_store_refuses_at_give_up_stay_leased_and_the_jobs_are_rescued_later() -> None:
    clock, store, runner = make(store_give_up=30.0, lease=100.0)
    ran: list[int] = []

    @runner.job
    async def job(n: int) -> int:
        ran.append(n)
        return n

    store.broken.add("settle")
    async with serving(runner) as raised:
        handle = await job.enqueue(7)
        await until(lambda: ran == [7] and len(store.calls["settle"]) >= 1)
        store.broken.add("claim")
        clock.advance(30.0)
        await until(lambda: not runner.is_running)
    assert [type(e) for e in raised] == [StoreError]
    assert await handle.status() is JobStatus.RUNNING  # its outcome was not recorded: still leased

    # The store recovers; another runner's leader rescues the job once the lease ran out.
    store.broken.clear()
    survivor = Runner(store=store, clock=clock, worker_id="survivor")

    @survivor.job(name="job")
    async def job_again(n: int) -> int:
        ran.append(n)
        return n

    async with survivor:
        clock.advance(100.0)
        assert await handle.result(timeout=5) == 7
    record = await handle.record()
    assert (record.status, record.attempts, record.trigger.value) == (JobStatus.SUCCEEDED, 2, "retry")
    assert ran == [7, 7]  # at least once: ran again, not lost


async def test_with_store_give_up_none_serve_keeps_retrying() -> None:
    clock, store, runner = make(store_give_up=None)
    store.broken.add("claim")
    async with serving(runner) as raised:
        for _ in range(20):
            await until(lambda: clock.next_wakeup is not None)
            clock.advance(30.0)
        await until(lambda: len(store.calls["claim"]) >= 15)
        assert runner.is_running and not runner.health().store_ok
        runner.stop()
        await until(lambda: not runner.is_running)
    assert raised == []


async def test_a_runner_used_with_async_with_never_gives_up_by_itself() -> None:
    clock, store, runner = make(store_give_up=5.0)
    store.broken.add("claim")
    async with runner:
        await until(lambda: not runner.health().store_ok)
        clock.advance(60.0)
        await until(lambda: len(store.calls["claim"]) >= 2)
        assert runner.is_running  # the app owns the lifecycle; health() tells it


async def test_a_stop_waits_for_a_store_that_refuses_outcomes_no_longer_than_store_give_up() -> None:
    clock, store, runner = make(store_give_up=30.0, lease=100.0)
    stop, stopped = anyio.Event(), anyio.Event()

    @runner.job
    async def job() -> str:
        return "done"

    async def host() -> None:
        async with runner:
            await stop.wait()
        stopped.set()

    store.broken.add("settle")
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(host, name="host")
            await until(lambda: runner.is_running)
            handle = await job.enqueue()
            await until(lambda: len(store.calls["settle"]) == 1)
            began = clock.monotonic()
            stop.set()
            # Leaving the block drains, and retries the outcome until the store has
            # failed for 30 s; each step moves the clock to the drain's next look.
            for step in range(1, 20):
                await until(lambda step=step: len(clock.sleeps["host"]) == step or stopped.is_set())
                if stopped.is_set():
                    break
                clock.advance(clock.sleeps["host"][-1])
            with anyio.fail_after(10):
                await stopped.wait()
    assert clock.monotonic() - began == 30.0
    assert await handle.status() is JobStatus.RUNNING  # leased: rescued once the lease ends
    (left,) = [e for e in logs if e["event"].startswith("outcomes not recorded")]
    assert left["job_ids"] == [handle.id]


@pytest.mark.parametrize("value", [0, -1.0, True, "60"])
def test_store_give_up_must_be_positive_seconds_or_none(value: object) -> None:
    with pytest.raises(ValueError, match=r"store_give_up=.*must be seconds > 0, or None"):
        Runner(store_give_up=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -1.0, True, "60"])
def test_configure_checks_store_give_up_as_the_constructor_does(value: object) -> None:
    with pytest.raises(ValueError, match=r"store_give_up=.*must be seconds > 0, or None"):
        Runner().configure(store_give_up=value)


async def test_configure_store_give_up_sets_when_serve_gives_up() -> None:
    clock, store, runner = make()  # the default: 120 s
    runner.configure(store_give_up=5.0)
    runner.configure(concurrency=2)  # leaving store_give_up out keeps it
    store.broken.add("claim")
    async with serving(runner) as raised:
        await until(lambda: not runner.health().store_ok)
        clock.advance(5.0)
        await until(lambda: not runner.is_running)
    (error,) = raised
    assert isinstance(error, StoreError) and "has failed for 5 s without a break" in str(error)


async def test_configure_store_give_up_none_retries_for_ever() -> None:
    clock, store, runner = make(store_give_up=5.0)
    runner.configure(store_give_up=None)
    store.broken.add("claim")
    async with serving(runner) as raised:
        for _ in range(5):
            await until(lambda: clock.next_wakeup is not None)
            clock.advance(30.0)
        await until(lambda: len(store.calls["claim"]) >= 5)
        assert runner.is_running and not runner.health().store_ok
        runner.stop()
        await until(lambda: not runner.is_running)
    assert raised == []
