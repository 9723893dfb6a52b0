"""Flow control through the runner, on every store: pausing queues, expiry,
and concurrency limits that hold across runners sharing a store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from structlog.testing import capture_logs

from jobrunner import Instrumentation, JobCancelled, JobStatus, RateLimit, Runner
from jobrunner.flow import EXPIRED_ERROR
from jobrunner.retry import FixedBackoff
from jobrunner.stores.base import Store
from jobrunner.testing import FakeClock, drain
from tests.helpers import Gate, until

# pausing ---------------------------------------------------------------------------------


async def test_a_paused_queue_is_not_started_and_other_queues_run(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()
    ran: list[str] = []

    @runner.job
    async def record(what: str) -> None:
        ran.append(what)

    assert await runner.pause("emails") is True
    held = await record.options(queue="emails").enqueue("email")
    await record.enqueue("default")
    await runner.run_until_idle()
    assert ran == ["default"]
    assert await held.status() is JobStatus.QUEUED


async def test_resume_lets_the_queued_jobs_run(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()
    ran: list[str] = []

    @runner.job(queue="emails")
    async def send(to: str) -> None:
        ran.append(to)

    await runner.pause("emails")
    async with runner:
        await send.enqueue("a")
        await send.enqueue("b")
        await runner.run_until_idle()
        assert ran == []
        assert await runner.resume("emails") is True
        await until(lambda: len(ran) == 2)
    assert ran == ["a", "b"]


async def test_pausing_twice_and_resuming_an_unpaused_queue_answer_false(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    assert await runner.pause("emails") is True
    assert await runner.pause("emails") is False
    assert await runner.paused_queues() == {"emails": clock.now()}
    assert await runner.resume("emails") is True
    assert await runner.resume("emails") is False
    assert await runner.paused_queues() == {}


async def test_a_pause_is_kept_by_the_store_across_restarts(store: Store, clock: FakeClock) -> None:
    first = Runner(store=store, clock=clock)
    await first.pause("reports")
    await store.close()
    await store.open()
    second = Runner(store=store, clock=clock)
    ran: list[int] = []

    @second.job(queue="reports")
    async def report(n: int) -> None:
        ran.append(n)

    assert "reports" in await second.paused_queues()
    await report.enqueue(1)
    await second.run_until_idle()
    assert ran == []


async def test_a_job_running_when_its_queue_is_paused_finishes(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()
    gate = Gate()

    @runner.job(queue="emails")
    async def send() -> str:
        await gate.wait()
        return "sent"

    async with runner:
        handle = await send.enqueue()
        await until(lambda: gate.waiting == 1)
        await runner.pause("emails")
        gate.open()
        assert await handle.result(timeout=10) == "sent"


# expiry ------------------------------------------------------------------------------------


async def test_a_job_not_started_by_its_deadline_is_cancelled_as_expired_and_never_runs(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    ran: list[int] = []

    @runner.job(queue="slow")
    async def work(n: int) -> None:
        ran.append(n)

    await runner.pause("slow")
    handle = await work.options(ttl=60).enqueue(1)
    clock.advance(61)
    await runner.resume("slow")
    await runner.run_until_idle()
    assert ran == []
    record = await handle.record()
    assert record.status is JobStatus.CANCELLED
    assert record.error is not None and record.error.type == EXPIRED_ERROR
    assert record.expires_at == record.enqueued_at + 60
    assert record.finished_at == clock.now()
    assert record.history[-1].note == "expired before it started"
    with pytest.raises(JobCancelled):
        await handle.result()


async def test_a_job_started_before_its_deadline_runs(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()

    @runner.job
    async def work() -> str:
        return "done"

    deadline = datetime.fromtimestamp(clock.now() + 30, UTC)
    handle = await work.options(expires=deadline).enqueue()
    await runner.run_until_idle()
    assert await handle.result() == "done"
    assert (await handle.record()).expires_at == deadline.timestamp()


async def test_a_handler_ttl_is_the_default_of_its_jobs(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()

    @runner.job(ttl=10, queue="q")
    async def work() -> None:
        pass

    await runner.pause("q")
    plain = await work.enqueue()
    longer = await work.options(ttl=100).enqueue()
    clock.advance(11)
    await runner.resume("q")
    await runner.run_until_idle()
    assert await plain.status() is JobStatus.CANCELLED
    assert await longer.status() is JobStatus.SUCCEEDED


async def test_retries_do_not_extend_the_deadline(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    attempts: list[float] = []

    @runner.job(retries=5, backoff=FixedBackoff(100.0))
    async def flaky() -> None:
        attempts.append(clock.now())
        raise ValueError("not yet")

    handle = await flaky.options(ttl=150).enqueue()
    await drain(runner, clock)
    assert len(attempts) == 2  # at 0 and 100; the retry due at 200 is past the deadline
    record = await handle.record()
    assert record.status is JobStatus.CANCELLED
    assert record.error is not None and record.error.type == EXPIRED_ERROR


async def test_a_job_still_running_at_its_deadline_is_not_expired(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(concurrency=2)
    gate = Gate()

    @runner.job
    async def slow() -> str:
        await gate.wait()
        return "done"

    @runner.job
    async def quick() -> None:
        pass

    handle = await slow.options(ttl=10).enqueue()
    async with runner:
        await until(lambda: gate.waiting == 1)
        clock.advance(11)  # past the deadline while it runs
        other = await quick.enqueue()  # claims look for expired jobs meanwhile
        assert await other.result(timeout=10) is None
        assert await handle.status() is JobStatus.RUNNING
        gate.open()
        assert await handle.result(timeout=10) == "done"


async def test_a_requeued_expired_job_is_held_to_its_deadline_again(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    ran: list[int] = []

    @runner.job(queue="slow")
    async def work() -> None:
        ran.append(1)

    await runner.pause("slow")
    handle = await work.options(ttl=60).enqueue()
    clock.advance(61)
    await runner.resume("slow")
    await runner.run_until_idle()
    assert await handle.status() is JobStatus.CANCELLED
    await runner.requeue(handle.id)  # the deadline is a time, not a span: it has passed
    await runner.run_until_idle()
    record = await handle.record()
    assert ran == []
    assert record.status is JobStatus.CANCELLED
    assert [entry.note for entry in record.history].count("expired before it started") == 2


async def test_the_deadline_of_a_purged_job_does_not_touch_later_jobs(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()

    @runner.job(queue="q")
    async def work() -> str:
        return "ran"

    await runner.pause("q")
    first = await work.options(ttl=60).enqueue()
    await runner.cancel(first.id)
    assert await runner.store.purge(JobStatus.CANCELLED, clock.now() + 1, 10) == 1
    # On SQLite these take the purged job's place (its seq): neither may inherit its deadline.
    later = await work.enqueue()
    with_own = await work.options(ttl=600).enqueue()
    clock.advance(61)
    await runner.resume("q")
    await runner.run_until_idle()
    assert [await later.result(), await with_own.result()] == ["ran", "ran"]


async def test_an_expired_job_is_logged_at_warning(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()

    @runner.job(queue="q")
    async def work() -> None:
        pass

    await runner.pause("q")
    handle = await work.options(ttl=1).enqueue()
    clock.advance(2)
    await runner.resume("q")
    with capture_logs() as logs:
        await runner.run_until_idle()
    expired = [e for e in logs if e["event"] == "job expired before it started"]
    assert [(e["log_level"], e["job_id"]) for e in expired] == [("warning", handle.id)]


async def test_expired_jobs_are_counted_in_a_metric(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    runner = make_runner(instrument=Instrumentation(meter_provider=meters))

    @runner.job(queue="q")
    async def work() -> None:
        pass

    await runner.pause("q")
    await work.options(ttl=1).enqueue()
    await work.options(ttl=1).enqueue()
    clock.advance(2)
    await runner.resume("q")
    await runner.run_until_idle()
    data = reader.get_metrics_data()
    points = [
        (dict(point.attributes or {}), point.value)
        for resource in (data.resource_metrics if data else ())
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "jobrunner.jobs.expired"
        for point in metric.data.data_points
    ]
    meters.shutdown()
    assert points == [({"jobrunner.job.name": "work", "messaging.destination.name": "q"}, 2)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ttl": 5, "expires": 2_000_000_000.0}, "not both"),
        ({"ttl": 0}, "ttl=0"),
        ({"expires": datetime(2030, 1, 1)}, "naive datetime"),
    ],
)
async def test_invalid_deadlines_are_refused(
    make_runner: Callable[..., Runner], options: dict[str, object], message: str
) -> None:
    runner = make_runner()

    @runner.job
    async def work() -> None:
        pass

    with pytest.raises(ValueError, match=message):
        work.options(**options)  # type: ignore[arg-type]


async def test_a_deadline_before_the_run_at_is_refused(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()

    @runner.job
    async def work() -> None:
        pass

    with pytest.raises(ValueError, match="could never run"):
        await work.options(delay=60, expires=clock.now() + 30).enqueue()


async def test_a_ttl_counts_from_when_a_delayed_job_is_due(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()

    @runner.job(ttl=30)
    async def work() -> None:
        pass

    handle = await work.options(delay=60).enqueue()
    assert (await handle.record()).expires_at == clock.now() + 90
    await drain(runner, clock)
    assert await handle.status() is JobStatus.SUCCEEDED


# global concurrency ------------------------------------------------------------------------


async def _two_runners_share_a_limit(make: Callable[[], Runner], enqueue_queue: str | None) -> None:
    """Two runners with room for many jobs each, on one store, under a limit of one."""
    gate = Gate()
    peak = 0
    runners = [make(), make()]
    for runner in runners:

        @runner.job(name="task", queue=enqueue_queue or "default", concurrency=None if enqueue_queue else 1)
        async def task() -> None:
            nonlocal peak
            peak = max(peak, gate.waiting + 1)
            await gate.wait()

    async with runners[0], runners[1]:
        handles = [await runners[0].enqueue("task") for _ in range(4)]
        await until(lambda: gate.waiting == 1)
        # The runner not running the job has looked for work since, and found none it may take.
        idle = [r for r in runners if (await r.stats()).running == 0]
        assert len(idle) == 1
        await idle[0].run_until_idle()
        assert gate.waiting == 1
        assert [await h.status() for h in handles].count(JobStatus.QUEUED) == 3
        gate.open()
        for handle in handles:
            await handle.result(timeout=10)
    assert peak == 1
    assert gate.entered == 4


async def test_a_global_queue_limit_holds_across_runners(make_runner: Callable[..., Runner]) -> None:
    await _two_runners_share_a_limit(
        lambda: make_runner(concurrency=10, global_limits={"emails": 1}), enqueue_queue="emails"
    )


async def test_a_job_concurrency_limit_holds_across_runners(make_runner: Callable[..., Runner]) -> None:
    await _two_runners_share_a_limit(lambda: make_runner(concurrency=10), enqueue_queue=None)


async def test_jobs_outside_a_full_limit_still_run(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner(concurrency=10)
    gate = Gate()
    ran: list[int] = []

    @runner.job(concurrency=1)
    async def exclusive() -> None:
        await gate.wait()

    @runner.job
    async def other(n: int) -> None:
        ran.append(n)

    async with runner:
        first = await exclusive.enqueue()
        second = await exclusive.enqueue()
        await until(lambda: gate.waiting == 1)
        for n in range(3):
            await other.enqueue(n)
        await until(lambda: len(ran) == 3)
        assert await second.status() is JobStatus.QUEUED
        gate.open()
        await first.result(timeout=10)
        await second.result(timeout=10)


async def test_a_global_limit_counts_jobs_running_in_other_runners(store: Store, clock: FakeClock) -> None:
    # A busy runner that declares no limit holds the queue's only slot.
    free = Runner(store=store, clock=clock, concurrency=1)
    limited = Runner(store=store, clock=clock, global_limits={"q": 1})
    gate = Gate()
    for runner in (free, limited):

        @runner.job(name="task", queue="q")
        async def task() -> None:
            await gate.wait()

    async with free:
        first = await free.enqueue("task")
        await until(lambda: gate.waiting == 1)
        async with limited:
            second = await limited.enqueue("task")
            await limited.run_until_idle()
            assert await second.status() is JobStatus.QUEUED
            gate.open()
            await first.result(timeout=10)
            await second.result(timeout=10)
    assert gate.entered == 2


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        Runner(global_limits={"q": 0})
    runner = Runner()
    with pytest.raises(ValueError, match="concurrency=0"):
        runner.job(concurrency=0)(lambda: None)


# rate limits -----------------------------------------------------------------------------


async def test_a_queue_rate_limit_spreads_starts_over_windows(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(rate_limits=[RateLimit(2, 10, queue="api")])
    starts: list[float] = []

    @runner.job(queue="api")
    async def call(n: int) -> None:
        starts.append(clock.now())

    begin = clock.now()  # 1_750_000_000: a window starts here
    await call.enqueue_many([(n,) for n in range(5)])
    await runner.run_until_idle()
    assert starts == [begin, begin]
    # The runner sleeps until the window ends, not a moment less.
    assert await runner.store.next_run_at(clock.now()) == begin + 10
    await drain(runner, clock)
    assert [s - begin for s in starts] == [0, 0, 10, 10, 20]


async def test_a_rate_limit_per_workspace_counts_each_tenant_alone(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner(rate_limits=[RateLimit(1, 60, name="sync", per_workspace=True)])
    ran: list[str] = []

    @runner.job
    async def sync(label: str) -> None:
        ran.append(label)

    for tenant, label in [("a", "a1"), ("a", "a2"), ("b", "b1"), ("b", "b2")]:
        await sync.options(workspace_id=tenant).enqueue(label)
    await sync.enqueue("no tenant")
    await sync.enqueue("no tenant either")
    await runner.run_until_idle()
    assert sorted(ran) == ["a1", "b1", "no tenant", "no tenant either"]


async def test_a_rate_limit_holds_across_runners_on_one_store(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    limit = [RateLimit(3, 60, name="call")]
    runners = [make_runner(rate_limits=limit, concurrency=10) for _ in range(2)]
    ran: list[int] = []
    for runner in runners:

        @runner.job(name="call")
        async def call(n: int) -> None:
            ran.append(n)

    async with runners[0], runners[1]:
        await runners[0].enqueue("call", 0)
        await runners[0].job_named("call").enqueue_many([(n,) for n in range(1, 10)])
        await runners[0].run_until_idle()
        await runners[1].run_until_idle()
        assert len(ran) == 3
        clock.advance(60)
        await until(lambda: len(ran) == 6)
        await runners[0].run_until_idle()
        await runners[1].run_until_idle()
        assert len(ran) == 6


def test_rate_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="limit=0"):
        RateLimit(0, 1)
    with pytest.raises(ValueError, match="period=0"):
        RateLimit(1, 0)
    with pytest.raises(TypeError, match=r"not a jobrunner\.RateLimit"):
        Runner(rate_limits=[(1, 1)])  # type: ignore[list-item]
