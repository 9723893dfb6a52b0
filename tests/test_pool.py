"""The worker pool: bounded, per-queue limits, elastic, threads for sync handlers,
and backpressure at enqueue."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import anyio
import pytest
from structlog.testing import capture_logs

from jobrunner import JobStatus, QueueFull, Runner
from jobrunner.maintenance import LEADER_ROLE
from jobrunner.testing import FakeClock
from tests.helpers import Gate, until


async def test_at_most_concurrency_jobs_run_at_once(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner(concurrency=3)
    gate = Gate()
    peak = 0

    @runner.job
    async def hold() -> None:
        nonlocal peak
        peak = max(peak, gate.waiting + 1)
        await gate.wait()

    async with runner:
        await hold.enqueue_many([()] * 10)
        await until(lambda: gate.waiting == 3)
        # Every slot is taken; nothing more starts while they hold.
        for _ in range(20):
            await asyncio.sleep(0)
        assert gate.waiting == 3
        gate.open()
        await runner.run_until_idle()
    assert peak == 3
    assert gate.entered == 10


async def test_a_queue_limit_caps_that_queue_and_leaves_others_free(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner(concurrency=10, queues={"emails": 2})
    emails, other = Gate(), Gate()

    @runner.job(queue="emails")
    async def send() -> None:
        await emails.wait()

    @runner.job
    async def work() -> None:
        await other.wait()

    async with runner:
        await send.enqueue_many([()] * 6)
        await work.enqueue_many([()] * 4)
        await until(lambda: emails.waiting == 2 and other.waiting == 4)
        for _ in range(20):
            await asyncio.sleep(0)
        assert emails.waiting == 2
        emails.open()
        other.open()
        await runner.run_until_idle()
    assert emails.entered == 6


async def test_workers_grow_with_waiting_jobs_and_retire_when_idle(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner(concurrency=50)
    gate = Gate()

    @runner.job
    async def hold() -> None:
        await gate.wait()

    async with runner:
        await runner.run_until_idle()
        assert (await runner.stats()).workers <= 1  # idle: one sleeping fetcher at most
        await hold.enqueue_many([()] * 40)
        await until(lambda: gate.waiting == 40)
        assert (await runner.stats()).workers >= 40
        gate.open()
        await runner.run_until_idle()
        await until(lambda: runner_workers(runner) <= 1)


def runner_workers(runner: Runner) -> int:
    pool = runner._pool
    return 0 if pool is None else pool.workers


async def test_jobs_that_never_suspend_share_one_worker(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner(concurrency=100)
    seen: set[int] = set()

    @runner.job
    async def quick() -> None:
        seen.add(id(asyncio.current_task()))

    async with runner:
        await quick.enqueue_many([()] * 200)
        await runner.run_until_idle()
    assert len(seen) == 1


async def test_sync_handlers_run_in_a_thread_not_on_the_loop(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()
    loop_thread = threading.get_ident()

    @runner.job
    def blocking(x: int) -> int:
        assert threading.get_ident() != loop_thread
        return x + 1

    handle = await blocking.enqueue(41)
    await runner.run_until_idle()
    assert await handle.result() == 42


async def test_sync_handlers_respect_the_thread_limit(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner(threads=2, concurrency=10)
    lock = threading.Lock()
    release = threading.Event()
    inside = 0
    peak = 0

    @runner.job
    def blocking() -> None:
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        release.wait(10)
        with lock:
            inside -= 1

    async with runner:
        await blocking.enqueue_many([()] * 6)
        assert runner._pool is not None
        threads = runner._pool._executor._threads
        # Two in threads, the other four waiting for one, not in threads.
        await until(lambda: inside == 2 and threads.waiting == 4)
        assert inside == 2
        release.set()
        await runner.run_until_idle()
    assert peak == 2


async def test_enqueue_without_blocking_raises_queue_full_at_max_pending(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner(max_pending=3)

    @runner.job
    async def noop() -> None:
        pass

    for _ in range(3):
        await noop.enqueue()
    with pytest.raises(QueueFull, match="max_pending=3"):
        await noop.options(block=False).enqueue()
    assert await runner.store.count_pending() == 3


async def test_enqueue_waits_for_room_and_then_succeeds(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner(max_pending=2, concurrency=1)
    gate = Gate()

    @runner.job
    async def hold() -> None:
        await gate.wait()

    await hold.enqueue()
    await hold.enqueue()
    third = asyncio.ensure_future(hold.enqueue())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not third.done()  # waiting for room, not dropped, not raised
    async with runner:
        handle = await asyncio.wait_for(third, 10)
        gate.open()
        await runner.run_until_idle()
        assert await handle.result() is None


async def test_an_enqueue_storm_stays_bounded_and_loses_nothing(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner(max_pending=50, concurrency=8)
    done: list[int] = []
    peak_pending = 0

    @runner.job
    async def work(n: int) -> None:
        nonlocal peak_pending
        peak_pending = max(peak_pending, await runner.store.count_pending())
        done.append(n)
        await asyncio.sleep(0)

    async def producer(start: int) -> None:
        for n in range(start, start + 100):
            await work.enqueue(n)

    async with runner:
        async with anyio.create_task_group() as tg:
            for p in range(5):
                tg.start_soon(producer, p * 100)
        await runner.run_until_idle()
    assert sorted(done) == list(range(500))
    # The store checks the bound and inserts in one step: no overshoot at all.
    assert peak_pending <= 50


async def test_a_producer_blocked_at_the_bound_resumes_when_another_runner_makes_room(
    make_runner: Callable[..., Runner],
) -> None:
    # Two Runner objects on one store, as two processes would be: the producer
    # never claims, so only re-asking the store can tell it about room.
    producer, worker = make_runner(max_pending=2), make_runner(max_pending=2)
    gate = Gate()
    for runner in (producer, worker):

        @runner.job(name="work")
        async def work() -> None:
            await gate.wait()

    produce = producer.job_named("work")
    first = [await produce.enqueue(), await produce.enqueue()]
    third = asyncio.ensure_future(produce.enqueue())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not third.done()
    with pytest.raises(QueueFull):
        await produce.options(block=False).enqueue()  # the bound is the store's, for every producer
    async with worker:
        handle = await asyncio.wait_for(third, 10)
        gate.open()
        for h in [*first, handle]:
            assert await h.result(timeout=10) is None


async def test_a_runner_can_be_dedicated_to_some_queues(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner(consume=["images"])
    ran: list[str] = []

    @runner.job(queue="images")
    async def resize() -> None:
        ran.append("resize")

    @runner.job(queue="emails")
    async def send() -> None:
        ran.append("send")

    mail = await send.enqueue()
    await resize.enqueue()
    await runner.run_until_idle()
    assert ran == ["resize"]
    assert (await mail.status()).value == "queued"


async def test_a_job_rescued_while_still_running_here_does_not_break_the_pool(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    # A leader elsewhere whose clock says the lease is over (this process was
    # suspended, say) rescues a job that is still running here, and the store
    # hands it out again. The stale attempt is stopped; the fresh one's outcome
    # is the one recorded.
    runner = make_runner(lease=5.0)
    first_started = asyncio.Event()
    attempts: list[int] = []
    stale_cancelled = asyncio.Event()

    @runner.job(timeout=None, retries=3)
    async def slow() -> str:
        from jobrunner import current_job

        attempts.append(current_job().attempt)
        if current_job().attempt == 1:
            first_started.set()
            try:
                await asyncio.Event().wait()  # only cancellation ends it
            except asyncio.CancelledError:
                stale_cancelled.set()
                raise
        return "second attempt"

    # The leader is elsewhere (the store fixture is open): were it this runner,
    # the jump below could have it rescue the fresh attempt too, if that was
    # claimed before the jump.
    assert await runner.store.try_lead(LEADER_ROLE, "elsewhere", 86_400.0, clock.now())
    async with runner:
        handle = await slow.enqueue()
        await first_started.wait()
        rescued = await runner.store.rescue_expired(runner.clock.now() + 3600)
        assert [r.id for r in rescued] == [handle.id]
        clock.jump(3600)  # this process's wall clock catches up with the rescuer's
        assert await handle.result(timeout=10) == "second attempt"
        with anyio.fail_after(10):
            await stale_cancelled.wait()
    assert attempts == [1, 2]


async def test_an_attempt_whose_lease_was_taken_elsewhere_stops_at_the_next_heartbeat(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    # A leader elsewhere (its clock runs ahead, say) rescues a job still running
    # here whose cancellation was asked for, so the job ends cancelled. This
    # runner learns of it only from its heartbeat: the attempt is stopped
    # there, and nothing it does afterwards overwrites the job's outcome.
    runner = make_runner(lease=6.0)  # a heartbeat every 2 s
    started = asyncio.Event()
    stopped = asyncio.Event()

    @runner.job(timeout=None, retries=3)
    async def slow() -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # only cancellation ends it
        except asyncio.CancelledError:
            stopped.set()
            raise

    assert await runner.store.try_lead(
        LEADER_ROLE, "elsewhere", 86_400.0, clock.now()
    )  # the fixture's store is open
    with capture_logs() as logs:
        async with runner:
            handle = await slow.enqueue()
            await started.wait()
            assert await runner.store.cancel(handle.id, clock.now()) is JobStatus.RUNNING  # flagged
            rescued = await runner.store.rescue_expired(clock.now() + 3600)
            assert [(r.id, r.status) for r in rescued] == [(handle.id, JobStatus.CANCELLED)]
            assert not stopped.is_set()
            with anyio.fail_after(10):
                while not stopped.is_set():  # the heartbeat may be mid-call: step until it looks
                    clock.advance(2.0)
                    await asyncio.sleep(0.01)
            await runner.run_until_idle()
    assert [e["job_id"] for e in logs if e["event"] == "job lease lost"] == [handle.id]
    record = await handle.record()
    assert record.status is JobStatus.CANCELLED
    assert record.attempts == 1
