"""The store protocol's rules, checked directly against every store.

The runner relies on these; a new store passes this file before anything else.
``tests/test_store_model.py`` then holds every store to ``jobrunner.transitions``
over random sequences of operations.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobrunner import InvalidJobState, JobNotFound, JobStatus, QueueFull, Runner
from jobrunner.models import (
    ClaimedJob,
    ClaimRequest,
    ErrorInfo,
    JobSpec,
    LeaseTerms,
    Outcome,
    OutcomeKind,
    Trigger,
)
from jobrunner.stores.base import Store
from jobrunner.stores.postgres import PostgresStore
from jobrunner.stores.sqlite import SQLiteStore
from tests.helpers import strictly_equal

NOW = 1_750_000_000.0
TERMS = LeaseTerms(fixed=None, margin=30.0, without_timeout=60.0)
_ids = itertools.count()


def spec(
    name: str = "job",
    *,
    priority: int = 0,
    queue: str = "default",
    run_at: float = NOW,
    key: str | None = None,
    timeout: float | None = 10.0,
    max_attempts: int = 3,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
) -> JobSpec:
    return JobSpec(
        id=f"job-{next(_ids):06d}",
        name=name,
        args=args,
        kwargs=kwargs or {},
        queue=queue,
        priority=priority,
        max_attempts=max_attempts,
        timeout=timeout,
        key=key,
        workspace_id=None,
        enqueued_at=NOW,
        run_at=run_at,
        trigger=Trigger.ENQUEUE.value,
    )


def request(
    limit: int = 100,
    *,
    now: float = NOW,
    names: frozenset[str] | None = None,
    room: dict[str, int] | None = None,
    worker: str = "w1",
    lease: LeaseTerms = TERMS,
    queues: frozenset[str] | None = None,
) -> ClaimRequest:
    return ClaimRequest(worker, limit, now, names, room or {}, lease, queues)


def done(claimed: ClaimedJob, kind: OutcomeKind = OutcomeKind.SUCCEEDED, **extra: Any) -> Outcome:
    return Outcome(claimed.spec.id, claimed.token, kind, extra.pop("at", NOW + 1), **extra)


async def status_of(store: Store, job_id: str) -> JobStatus:
    record = await store.get(job_id)
    assert record is not None
    return record.status


async def test_claims_follow_priority_then_run_at_then_insertion(store: Store) -> None:
    jobs = [
        spec(priority=5),
        spec(priority=0, run_at=NOW - 1),
        spec(priority=0, run_at=NOW - 5),
        spec(priority=-1),
        spec(priority=0, run_at=NOW - 1),
    ]
    await store.enqueue(jobs, NOW)
    claimed = await store.claim(request())
    assert [c.spec.id for c in claimed] == [jobs[i].id for i in (3, 2, 1, 4, 0)]


async def test_a_batch_mixing_absent_and_present_fields_keeps_its_order_and_fields(store: Store) -> None:
    jobs = [
        spec(),
        spec(key="k1", timeout=None),
        spec(args=(1, "two")),
        spec()._replace(workspace_id="acme", meta={"m": 1}),
        spec(),
        spec()._replace(headers={"traceparent": "00-x"}, expires_at=NOW + 60),
        spec(kwargs={"a": None}),
    ]
    await store.enqueue(jobs, NOW)
    claimed = await store.claim(request())
    assert [c.spec.id for c in claimed] == [job.id for job in jobs]  # one priority: insertion order
    for job, got in zip(jobs, claimed, strict=True):
        fields = ("key", "timeout", "args", "kwargs", "workspace_id", "meta", "headers", "expires_at")
        assert [getattr(got.spec, f) for f in fields] == [getattr(job, f) for f in fields], job.id


async def test_a_claim_takes_at_most_limit_jobs(store: Store) -> None:
    await store.enqueue([spec() for _ in range(10)], NOW)
    assert len(await store.claim(request(4))) == 4
    assert len(await store.claim(request(100))) == 6
    assert await store.claim(request(100)) == []


async def test_jobs_not_yet_due_are_not_claimed(store: Store) -> None:
    later = spec(run_at=NOW + 60)
    await store.enqueue([later], NOW)
    assert await status_of(store, later.id) is JobStatus.SCHEDULED
    assert await store.claim(request()) == []
    assert await store.next_run_at(NOW) == NOW + 60
    claimed = await store.claim(request(now=NOW + 60))
    assert [c.spec.id for c in claimed] == [later.id]


async def test_a_claim_sets_attempt_token_and_running(store: Store) -> None:
    job = spec(args=(1, "two"), kwargs={"three": [3]})
    await store.enqueue([job], NOW)
    (claimed,) = await store.claim(request())
    assert claimed.attempt == 1
    assert claimed.trigger == Trigger.ENQUEUE
    assert claimed.spec.args == (1, "two")
    assert claimed.spec.kwargs == {"three": [3]}
    record = await store.get(job.id)
    assert record is not None
    assert record.status is JobStatus.RUNNING
    assert record.attempts == 1
    assert record.worker == "w1"
    assert record.started_at == NOW


async def test_claims_only_take_the_names_asked_for(store: Store) -> None:
    mine, theirs = spec("mine"), spec("theirs")
    await store.enqueue([theirs, mine], NOW)
    claimed = await store.claim(request(names=frozenset({"mine"})))
    assert [c.spec.id for c in claimed] == [mine.id]
    assert await status_of(store, theirs.id) is JobStatus.QUEUED
    claimed = await store.claim(request(names=frozenset({"theirs"})))
    assert [c.spec.id for c in claimed] == [theirs.id]


async def test_claims_respect_queue_room(store: Store) -> None:
    await store.enqueue(
        [spec(queue="emails") for _ in range(5)] + [spec(queue="other") for _ in range(2)], NOW
    )
    claimed = await store.claim(request(room={"emails": 2}))
    queues = sorted(c.spec.queue for c in claimed)
    assert queues == ["emails", "emails", "other", "other"]
    assert await store.claim(request(room={"emails": 0})) == []


async def test_claims_take_only_the_queues_asked_for(store: Store) -> None:
    await store.enqueue([spec(queue="a"), spec(queue="b"), spec(queue="c")], NOW)
    claimed = await store.claim(request(queues=frozenset({"a", "c"})))
    assert sorted(c.spec.queue for c in claimed) == ["a", "c"]
    claimed = await store.claim(request())
    assert [c.spec.queue for c in claimed] == ["b"]


async def test_settle_records_each_kind_of_outcome(store: Store) -> None:
    jobs = [spec(max_attempts=3) for _ in range(4)]
    await store.enqueue(jobs, NOW)
    a, b, c, d = await store.claim(request())
    error = ErrorInfo("ValueError", "bad", "Traceback ...")
    lost = await store.settle(
        [
            done(a, result={"ok": 1}),
            done(b, OutcomeKind.RETRY, error=error, retry_at=NOW + 30),
            done(c, OutcomeKind.DEAD, error=error),
            done(d, OutcomeKind.CANCELLED),
        ],
        "w1",
    )
    assert lost == []
    ra, rb, rc, rd = [await store.get(j.id) for j in jobs]
    assert ra is not None and ra.status is JobStatus.SUCCEEDED and ra.result == {"ok": 1}
    assert ra.finished_at == NOW + 1
    assert rb is not None and rb.status is JobStatus.RETRYING and rb.run_at == NOW + 30
    assert rb.error == error
    assert rc is not None and rc.status is JobStatus.DEAD and rc.error == error
    assert rd is not None and rd.status is JobStatus.CANCELLED
    assert await store.next_run_at(NOW + 1) == NOW + 30
    (again,) = await store.claim(request(now=NOW + 30))
    assert again.spec.id == jobs[1].id
    assert again.attempt == 2
    assert again.trigger == Trigger.RETRY


async def test_a_released_attempt_does_not_count(store: Store) -> None:
    job = spec()
    await store.enqueue([job], NOW)
    (first,) = await store.claim(request())
    await store.settle([done(first, OutcomeKind.RELEASED)], "w1")
    record = await store.get(job.id)
    assert record is not None and record.status is JobStatus.QUEUED and record.attempts == 0
    (second,) = await store.claim(request())
    assert second.attempt == 1
    assert second.token != first.token


async def test_settles_with_a_stale_token_are_fenced_out(store: Store) -> None:
    job = spec(max_attempts=5)
    await store.enqueue([job], NOW)
    (old,) = await store.claim(request(lease=LeaseTerms(fixed=5.0, margin=0, without_timeout=0)))
    # The worker stalls; its lease expires and the job is rescued and claimed again.
    await store.rescue_expired(NOW + 6)
    (new,) = await store.claim(request(now=NOW + 6, worker="w2"))
    assert new.token != old.token
    assert await store.settle([done(old, result="stale")], "w1") == [job.id]
    assert await status_of(store, job.id) is JobStatus.RUNNING
    assert await store.settle([done(new, result="fresh")], "w2") == []
    record = await store.get(job.id)
    assert record is not None and record.result == "fresh"


async def test_heartbeats_extend_leases_and_report_lost_ones_and_cancel_requests(store: Store) -> None:
    short = LeaseTerms(fixed=5.0, margin=0, without_timeout=0)
    jobs = [spec(), spec()]
    await store.enqueue(jobs, NOW)
    a, b = await store.claim(request(lease=short))
    await store.cancel(b.spec.id, NOW + 1)
    report = await store.extend_leases(
        [(a.spec.id, a.token), (b.spec.id, b.token), ("nope", 1)], NOW + 4, short
    )
    assert report.lost == ("nope",)
    assert report.cancel_requested == (b.spec.id,)
    # Extended to NOW+9: not expired at NOW+8.
    assert await store.rescue_expired(NOW + 8) == []
    rescued = await store.rescue_expired(NOW + 10)
    assert sorted(r.id for r in rescued) == sorted(j.id for j in jobs)
    statuses = {r.id: r.status for r in rescued}
    assert statuses[a.spec.id] is JobStatus.RETRYING
    assert statuses[b.spec.id] is JobStatus.CANCELLED
    report = await store.extend_leases([(a.spec.id, a.token)], NOW + 11, short)
    assert report.lost == (a.spec.id,)


async def test_rescue_dead_letters_a_job_out_of_attempts(store: Store) -> None:
    job = spec(max_attempts=1)
    await store.enqueue([job], NOW)
    await store.claim(request(lease=LeaseTerms(fixed=1.0, margin=0, without_timeout=0)))
    (rescued,) = await store.rescue_expired(NOW + 2)
    assert rescued.status is JobStatus.DEAD
    record = await store.get(job.id)
    assert record is not None and record.error is not None and record.error.type == "LeaseExpired"


async def test_the_default_lease_is_the_timeout_plus_margin(store: Store) -> None:
    with_timeout, without = spec(timeout=100.0), spec(timeout=None)
    await store.enqueue([with_timeout, without], NOW)
    await store.claim(request())
    assert await store.rescue_expired(NOW + 89) == []  # 60 + 30 for the one without
    rescued = await store.rescue_expired(NOW + 91)
    assert [r.id for r in rescued] == [without.id]
    rescued = await store.rescue_expired(NOW + 131)
    assert [r.id for r in rescued] == [with_timeout.id]


async def test_a_key_is_unique_among_active_jobs(store: Store) -> None:
    first = spec(key="k")
    results = await store.enqueue([first, spec(key="k")], NOW)
    assert [tuple(r) for r in results] == [(first.id, True), (first.id, False)]
    (claimed,) = await store.claim(request())
    (again,) = await store.enqueue([spec(key="k")], NOW)
    assert tuple(again) == (first.id, False)  # still active while running
    await store.settle([done(claimed)], "w1")
    fresh = spec(key="k")
    (after,) = await store.enqueue([fresh], NOW)
    assert tuple(after) == (fresh.id, True)


async def test_cancel_and_requeue(store: Store) -> None:
    waiting, running = spec(), spec()
    await store.enqueue([waiting], NOW)
    await store.enqueue([running], NOW + 1)
    (claimed,) = await store.claim(request(1))
    assert claimed.spec.id == waiting.id
    assert await store.cancel(running.id, NOW) is JobStatus.CANCELLED
    assert await store.cancel(waiting.id, NOW) is JobStatus.RUNNING  # flagged
    with pytest.raises(InvalidJobState, match="only dead or cancelled"):
        await store.requeue(waiting.id, NOW)
    record = await store.requeue(running.id, NOW + 2)
    assert record.status is JobStatus.QUEUED and record.attempts == 0 and record.trigger is Trigger.REQUEUE
    (again,) = await store.claim(request(now=NOW + 2))
    assert again.spec.id == running.id and again.trigger == Trigger.REQUEUE
    with pytest.raises(JobNotFound):
        await store.cancel("missing", NOW)
    with pytest.raises(JobNotFound):
        await store.requeue("missing", NOW)


async def test_wait_done_returns_the_final_record(store: Store) -> None:
    job = spec()
    await store.enqueue([job], NOW)

    async def finish() -> None:
        (claimed,) = await store.claim(request())
        await store.settle([done(claimed, result=5)], "w1")

    async with anyio.create_task_group() as tg:
        tg.start_soon(finish)
        with anyio.fail_after(10):
            record = await store.wait_done(job.id)
    assert record.status is JobStatus.SUCCEEDED and record.result == 5
    with pytest.raises(JobNotFound):
        await store.wait_done("missing")


async def test_prune_and_purge(store: Store) -> None:
    jobs = [spec() for _ in range(3)]
    await store.enqueue(jobs, NOW)
    a, b, c = await store.claim(request())
    await store.settle(
        [done(a, at=NOW + 10), done(b, OutcomeKind.DEAD, at=NOW + 10), done(c, at=NOW + 20)], "w1"
    )
    assert await store.prune(NOW + 15, 100) == 1  # only the succeeded one finished before
    assert await store.get(a.spec.id) is None
    assert await store.get(b.spec.id) is not None  # dead jobs are not pruned
    assert await store.purge(JobStatus.DEAD, NOW + 15, 100) == 1
    assert await store.get(b.spec.id) is None
    assert await store.get(c.spec.id) is not None


async def test_leadership_is_exclusive_and_taken_over_when_it_lapses(store: Store) -> None:
    assert await store.try_lead("maintenance", "a", 30.0, NOW)
    assert not await store.try_lead("maintenance", "b", 30.0, NOW + 10)
    assert await store.try_lead("maintenance", "a", 30.0, NOW + 20)  # renewal
    assert not await store.try_lead("maintenance", "b", 30.0, NOW + 49)
    assert await store.try_lead("maintenance", "b", 30.0, NOW + 51)  # lapsed: b takes over
    assert not await store.try_lead("maintenance", "a", 30.0, NOW + 52)
    await store.resign("maintenance", "b")
    assert await store.try_lead("maintenance", "a", 30.0, NOW + 53)


async def test_a_cron_tick_fires_once_and_never_goes_back(store: Store) -> None:
    t1, t2 = NOW + 60, NOW + 120
    assert await store.fire_tick("nightly", t1, spec("report"), NOW)
    assert not await store.fire_tick("nightly", t1, spec("report"), NOW)
    assert await store.fire_tick("nightly", t2, spec("report"), NOW)
    assert not await store.fire_tick("nightly", t1, spec("report"), NOW)  # older than the last
    assert await store.fire_tick("hourly", t1, spec("report"), NOW)
    assert await store.cron_state() == {"nightly": t2, "hourly": t1}
    assert await store.count_pending() == 3


async def test_list_jobs_filters_and_returns_newest_first(store: Store) -> None:
    a, b, c = spec("x", queue="q1"), spec("y", queue="q2"), spec("x", queue="q2")
    await store.enqueue([a], NOW)
    await store.enqueue([b], NOW + 1)
    await store.enqueue([c], NOW + 2)
    assert [r.id for r in await store.list_jobs()] == [c.id, b.id, a.id]
    assert [r.id for r in await store.list_jobs(name="x")] == [c.id, a.id]
    assert [r.id for r in await store.list_jobs(queue="q2", name="x")] == [c.id]
    assert [r.id for r in await store.list_jobs(status=JobStatus.QUEUED, limit=1)] == [c.id]


async def test_stats_and_pending_counts(store: Store) -> None:
    await store.enqueue([spec(queue="a"), spec(queue="a", run_at=NOW + 5), spec(queue="b")], NOW)
    assert await store.count_pending() == 3
    (claimed,) = await store.claim(request(1))
    stats = await store.stats(NOW + 2)
    assert stats.counts[JobStatus.QUEUED] == 1
    assert stats.counts[JobStatus.SCHEDULED] == 1
    assert stats.counts[JobStatus.RUNNING] == 1
    assert stats.queues["a"][JobStatus.SCHEDULED] == 1
    assert stats.oldest_waiting_age == 2.0
    assert await store.count_pending() == 2
    await store.settle([done(claimed)], "w1")
    assert (await store.stats(NOW + 2)).counts[JobStatus.SUCCEEDED] == 1


async def test_work_listeners_hear_enqueues_and_can_unsubscribe(store: Store) -> None:
    heard: list[str] = []
    remove = store.add_work_listener(lambda: heard.append("work"))
    await store.enqueue([spec()], NOW)
    with anyio.fail_after(10):
        while not heard:
            await anyio.sleep(0.001)
    remove()
    count = len(heard)
    await store.enqueue([spec()], NOW)
    # A negative can only be checked over some time: stores that notify through
    # the database deliver well within this.
    await anyio.sleep(0.05)
    assert len(heard) == count


# --- the rows of issue 11: one rule on every store ------------------------------------------


async def cancel_while_running(store: Store, **fields: Any) -> ClaimedJob:
    await store.enqueue([spec(**fields)], NOW)
    (claimed,) = await store.claim(request())
    assert await store.cancel(claimed.spec.id, NOW) is JobStatus.RUNNING
    return claimed


async def test_a_release_after_a_cancel_was_asked_ends_the_job_cancelled(store: Store) -> None:
    claimed = await cancel_while_running(store)
    # The runner stopped before it heard of the cancel, and released the job.
    assert await store.settle([done(claimed, OutcomeKind.RELEASED, at=NOW + 2)], "w1") == []
    record = await store.get(claimed.spec.id)
    assert record is not None and record.status is JobStatus.CANCELLED
    assert record.finished_at == NOW + 2 and record.attempts == 1
    assert await store.count_pending() == 0


async def test_a_retry_after_a_cancel_was_asked_ends_the_job_cancelled_with_its_error(store: Store) -> None:
    claimed = await cancel_while_running(store)
    error = ErrorInfo("ConnectionError", "link down", "Traceback ...")
    await store.settle([done(claimed, OutcomeKind.RETRY, error=error, retry_at=NOW + 30)], "w1")
    record = await store.get(claimed.spec.id)
    assert record is not None and record.status is JobStatus.CANCELLED and record.error == error
    assert await store.claim(request(now=NOW + 30)) == []  # it does not run again


async def test_a_dead_end_after_a_cancel_was_asked_is_cancelled_not_a_dead_letter(store: Store) -> None:
    claimed = await cancel_while_running(store)
    await store.settle([done(claimed, OutcomeKind.DEAD, error=ErrorInfo("ValueError", "bad"))], "w1")
    assert await status_of(store, claimed.spec.id) is JobStatus.CANCELLED
    assert await store.list_jobs(status=JobStatus.DEAD) == []


async def test_a_success_after_a_cancel_was_asked_stays_a_success(store: Store) -> None:
    claimed = await cancel_while_running(store)
    await store.settle([done(claimed, result="done")], "w1")
    record = await store.get(claimed.spec.id)
    assert record is not None and record.status is JobStatus.SUCCEEDED and record.result == "done"


async def test_a_second_outcome_for_the_same_attempt_in_one_batch_is_reported_lost(store: Store) -> None:
    jobs = [spec(), spec()]
    await store.enqueue(jobs, NOW)
    a, b = await store.claim(request())
    lost = await store.settle(
        [done(a, result=1), done(b, OutcomeKind.RETRY, retry_at=NOW + 5), done(a, result=2), done(b)], "w1"
    )
    assert lost == [a.spec.id, b.spec.id]
    ra, rb = await store.get(a.spec.id), await store.get(b.spec.id)
    assert ra is not None and ra.status is JobStatus.SUCCEEDED and ra.result == 1
    assert rb is not None and rb.status is JobStatus.RETRYING


async def test_a_rescued_job_keeps_its_run_at_and_is_ready_at_once(store: Store) -> None:
    job = spec(run_at=NOW - 100, max_attempts=3)
    await store.enqueue([job], NOW)
    await store.claim(request(lease=LeaseTerms(fixed=5.0, margin=0, without_timeout=0)))
    (rescued,) = await store.rescue_expired(NOW + 60)
    assert rescued.status is JobStatus.RETRYING
    record = await store.get(job.id)
    # min(run_at, now), which is its run_at: its place in line among equal priorities.
    assert record is not None and record.run_at == NOW - 100
    # Ready for a process whose clock is behind the rescuer's.
    (again,) = await store.claim(request(now=NOW + 1, worker="w2"))
    assert again.spec.id == job.id and again.attempt == 2 and again.trigger == Trigger.RETRY


async def test_a_heartbeat_with_a_stale_token_is_lost_even_beside_the_current_one(store: Store) -> None:
    job = spec(max_attempts=5)
    await store.enqueue([job], NOW)
    (old,) = await store.claim(request(lease=LeaseTerms(fixed=1.0, margin=0, without_timeout=0)))
    await store.rescue_expired(NOW + 2)
    (new,) = await store.claim(request(now=NOW + 2))
    report = await store.extend_leases([(job.id, old.token), (job.id, new.token)], NOW + 3, TERMS)
    assert report.lost == (job.id,)


# --- payloads: one codec, exact round trips -----------------------------------------------

# Every value JSON can hold, as the codec takes it: no lone surrogates (not Unicode),
# ints within the codec's digit limit, finite floats (the awkward ones named).
json_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=8) | st.sampled_from(
    ["", "\x00", "a\x00b", "𝄞", "\U0010ffff", "zoë ✓", "\\u0000", '"']
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**13_000), 2**13_000)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([-0.0, 0.0, 1e20, 1e300, -1e300, 5e-324, 1.5, 2.0**53 + 2, float(2**63)])
    | json_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(json_text, children, max_size=4),
    max_leaves=12,
)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=json_values)
async def test_every_json_value_comes_back_identical(make_runner: Callable[..., Runner], value: Any) -> None:
    runner = make_runner()

    @runner.job(retries=0)
    async def echo(item: Any, *, also: Any = None) -> Any:
        assert strictly_equal(item, value) and strictly_equal(also, value)
        return item

    handle = await echo.enqueue(value, also=value)
    await runner.run_until_idle()
    record = await handle.record()
    assert record.status is JobStatus.SUCCEEDED, record.error
    assert strictly_equal(record.result, value)
    assert strictly_equal(await handle.result(), value)
    assert strictly_equal(record.args, (value,)) and strictly_equal(record.kwargs, {"also": value})


async def test_tuple_arguments_come_back_as_lists(store: Store, make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()
    seen: list[Any] = []

    @runner.job
    async def echo(item: Any) -> None:
        seen.append(item)

    handle = await echo.enqueue((1, ("a", [2.0])))
    await runner.run_until_idle()
    assert strictly_equal(seen, [[1, ["a", [2.0]]]])
    assert strictly_equal((await handle.record()).args, ([1, ["a", [2.0]]],))


class _Thing:
    pass


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ({1, 2}, "set is not JSON"),
        (lambda: None, "function is not JSON"),
        (_Thing(), "_Thing is not JSON"),
        ({1: "one"}, "it has a int key 1"),
        ([1.0, float("nan")], r"\[1\] cannot be stored as JSON: nan is not a JSON number"),
        ({"x": float("inf")}, "inf is not a JSON number"),
        (float("-inf"), "-inf is not a JSON number"),
        ("lone \ud800 surrogate", "lone surrogate"),
        ({"key \udfff": 1}, "lone surrogate"),
        (b"bytes", "bytes is not JSON"),
    ],
)
async def test_a_value_json_cannot_hold_is_refused_naming_job_and_argument_and_nothing_is_written(
    store: Store, make_runner: Callable[..., Runner], value: Any, why: str
) -> None:
    runner = make_runner()

    @runner.job
    async def save(first: Any, second: Any = None) -> None: ...

    with pytest.raises(TypeError, match=rf"job 'save': argument 'second'.*{why}.*Nothing was enqueued"):
        await save.enqueue(1, second=value)
    with pytest.raises(TypeError, match=rf"job 'save': positional argument 0.*{why}"):
        await save.enqueue_many([(2,), (value,)])  # one bad call: none of the batch is written
    assert await store.count_pending() == 0
    assert await store.list_jobs() == []


async def test_arguments_over_the_payload_limit_are_refused_and_nothing_is_written(
    store: Store, make_runner: Callable[..., Runner]
) -> None:
    runner = make_runner(max_payload=1_000)

    @runner.job
    async def upload(data: str) -> None: ...

    with pytest.raises(
        TypeError, match=r"job 'upload': its arguments are 1,\d{3} bytes as JSON, over the 1,000"
    ):
        await upload.enqueue("x" * 1_000)
    assert await store.list_jobs() == []
    await upload.enqueue("x" * 900)  # under the limit: accepted
    assert await store.count_pending() == 1


async def test_a_tuple_result_comes_back_as_a_list(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()

    @runner.job
    async def pair() -> Any:
        return (1, ("a", 2.0))

    handle = await pair.enqueue()
    await runner.run_until_idle()
    assert strictly_equal(await handle.result(), [1, ["a", 2.0]])


@pytest.mark.parametrize(
    ("returned", "why"),
    [({"a set"}, "set that cannot be stored as JSON"), ("x" * 2_000, "over the 1,000-byte limit")],
)
async def test_a_result_over_the_limit_or_not_json_fails_the_attempt_and_is_not_stored(
    make_runner: Callable[..., Runner], returned: Any, why: str
) -> None:
    runner = make_runner(max_payload=1_000)

    @runner.job(retries=0)
    async def make() -> Any:
        return returned

    handle = await make.enqueue()
    await runner.run_until_idle()
    record = await handle.record()
    assert record.status is JobStatus.DEAD and record.result is None
    assert record.error is not None and record.error.type == "TypeError" and why in record.error.message


async def test_what_a_job_or_a_caller_changes_in_what_it_got_does_not_change_the_store(store: Store) -> None:
    job = spec(args=([1, 2], {"k": [3]}), kwargs={"opts": {"deep": [4]}})
    await store.enqueue([job], NOW)
    (first,) = await store.claim(request())
    first.spec.args[0].append("job changed it")
    first.spec.args[1]["k"].clear()
    first.spec.kwargs["opts"]["deep"].append(5)
    await store.settle([done(first, OutcomeKind.RELEASED)], "w1")
    (second,) = await store.claim(request())
    assert strictly_equal(second.spec.args, ([1, 2], {"k": [3]}))
    assert strictly_equal(second.spec.kwargs, {"opts": {"deep": [4]}})
    await store.settle([done(second, result={"rows": [1, 2]})], "w1")
    record = await store.get(job.id)
    assert record is not None and record.result is not None
    record.result["rows"].append(3)
    record.args[0].append("caller changed it")
    again = await store.get(job.id)
    assert again is not None and again.result == {"rows": [1, 2]} and again.args == ([1, 2], {"k": [3]})


# --- backpressure: max_pending holds across producers -------------------------------------


@asynccontextmanager
async def another_process(store: Store) -> AsyncIterator[Store]:
    """The same jobs opened as another process would (memory: the same store)."""
    if isinstance(store, SQLiteStore):
        other: Store = SQLiteStore(store.path)
    elif isinstance(store, PostgresStore):
        other = PostgresStore(store._dsn, schema=store.schema, max_connections=4)
    else:
        yield store
        return
    await other.open()
    try:
        yield other
    finally:
        await other.close()


async def test_max_pending_admits_a_batch_only_while_it_fits(store: Store) -> None:
    await store.enqueue([spec() for _ in range(3)], NOW, max_pending=5)
    with pytest.raises(QueueFull) as full:
        await store.enqueue([spec() for _ in range(3)], NOW, max_pending=5)  # 3 + 3 > 5: none of them
    assert full.value.max_pending == 5 and full.value.pending >= 3
    assert await store.count_pending() == 3
    await store.enqueue([spec(), spec()], NOW, max_pending=5)  # 3 + 2 = 5: fits
    with pytest.raises(QueueFull):
        await store.enqueue([spec(run_at=NOW + 60)], NOW, max_pending=5)  # delayed jobs count too
    await store.enqueue([spec()], NOW)  # no max_pending: no check
    assert await store.count_pending() == 6


async def test_a_batch_larger_than_max_pending_goes_into_an_empty_queue(store: Store) -> None:
    await store.enqueue([spec() for _ in range(8)], NOW, max_pending=5)
    assert await store.count_pending() == 8
    with pytest.raises(QueueFull):
        await store.enqueue([spec()], NOW, max_pending=5)
    # Claimed and finished jobs do not count: room again once they leave the queue.
    claimed = await store.claim(request(limit=4))
    await store.settle([done(c) for c in claimed], "w1")
    await store.enqueue([spec()], NOW, max_pending=5)
    assert await store.count_pending() == 5


async def test_a_keyed_job_answered_by_an_active_one_needs_no_room(store: Store) -> None:
    first = spec(key="report")
    await store.enqueue([first, spec()], NOW, max_pending=2)
    (again,) = await store.enqueue([spec(key="report")], NOW, max_pending=2)
    assert tuple(again) == (first.id, False)
    with pytest.raises(QueueFull):
        await store.enqueue([spec(key="report"), spec(key="other")], NOW, max_pending=2)


@pytest.mark.parametrize("way_back", ["retry", "release", "rescue", "requeue"])
async def test_jobs_back_in_the_queue_count_toward_max_pending(store: Store, way_back: str) -> None:
    await store.enqueue([spec(max_attempts=3), spec(max_attempts=3)], NOW, max_pending=2)
    a, b = await store.claim(request(lease=LeaseTerms(fixed=5.0, margin=0, without_timeout=0)))
    # Both running, none waiting: a bounded enqueue fits, whatever it counted before.
    await store.enqueue([spec()], NOW, max_pending=1)
    if way_back == "retry":
        await store.settle([done(a, OutcomeKind.RETRY), done(b, OutcomeKind.RETRY)], "w1")
    elif way_back == "release":
        await store.settle([done(a, OutcomeKind.RELEASED), done(b, OutcomeKind.RELEASED)], "w1")
    elif way_back == "rescue":
        assert len(await store.rescue_expired(NOW + 6)) == 2
    else:
        await store.settle([done(a, OutcomeKind.DEAD), done(b, OutcomeKind.CANCELLED)], "w1")
        await store.requeue(a.spec.id, NOW)
        await store.requeue(b.spec.id, NOW)
    assert await store.count_pending() == 3
    with pytest.raises(QueueFull):
        await store.enqueue([spec()], NOW, max_pending=3)
    await store.enqueue([spec()], NOW, max_pending=4)


async def test_two_producers_never_hold_more_than_max_pending_together(store: Store) -> None:
    async with another_process(store) as other:

        async def produce(into: Store) -> int:
            admitted = 0
            for _ in range(10):
                try:
                    await into.enqueue([spec()], NOW, max_pending=7)
                    admitted += 1
                except QueueFull:
                    pass
            return admitted

        counts = await asyncio.gather(*(produce(s) for s in (store, other, store, other)))
    assert sum(counts) == 7
    assert await store.count_pending() == 7


async def test_two_runners_on_one_store_share_one_bound(
    store: Store, make_runner: Callable[..., Runner], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[int | None] = []
    enqueue = type(store).enqueue

    async def recording(self: Store, jobs: Any, now: float, **options: Any) -> Any:
        asked.append(options.get("max_pending"))
        return await enqueue(self, jobs, now, **options)

    monkeypatch.setattr(type(store), "enqueue", recording)  # the memory store has slots
    admitted = 0
    for runner in (make_runner(max_pending=3), make_runner(max_pending=3)):

        @runner.job(name="work")
        async def work() -> None: ...

        for _ in range(3):
            try:
                await work.options(block=False).enqueue()
                admitted += 1
            except QueueFull:
                pass
    assert asked and all(limit == 3 for limit in asked)
    assert admitted == 3
    assert await store.count_pending() == 3
