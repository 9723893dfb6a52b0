"""Dependencies (``Store.enqueue_after``): the rules of ``transitions.after`` and
``transitions.parent_ended``, checked directly against every store."""

from __future__ import annotations

from typing import Any

import pytest

from jobrunner import JobNotFound, JobStatus
from jobrunner.models import Dependency, ErrorInfo, Outcome, OutcomeKind, ParentFailure
from jobrunner.stores.base import Store
from tests.test_store_contract import NOW, request, spec

CANCEL, DEAD, RUN = ParentFailure.CANCEL.value, ParentFailure.DEAD.value, ParentFailure.RUN.value
BOOM = ErrorInfo("Boom", "it broke", "tb")


async def status(store: Store, job_id: str) -> JobStatus:
    record = await store.get(job_id)
    assert record is not None
    return record.status


async def run(
    store: Store, job_id: str, kind: OutcomeKind = OutcomeKind.SUCCEEDED, result: Any = None
) -> None:
    """Claim ``job_id`` (it must be the only ready job) and settle it."""
    (claimed,) = await store.claim(request(limit=1))
    assert claimed.spec.id == job_id
    error = None if kind is OutcomeKind.SUCCEEDED else BOOM
    lost = await store.settle(
        [
            Outcome(
                job_id, claimed.token, kind, NOW + 1, result if kind is OutcomeKind.SUCCEEDED else None, error
            )
        ],
        "w1",
    )
    assert lost == []


async def test_a_child_waits_blocked_until_its_parent_succeeds(store: Store) -> None:
    parent, child = spec(), spec()
    await store.enqueue([parent], NOW)
    await store.enqueue_after([child], [Dependency((parent.id,))], NOW)

    assert await status(store, child.id) is JobStatus.BLOCKED
    await run(store, parent.id, result={"rows": 3})

    assert await status(store, child.id) is JobStatus.QUEUED
    (claimed,) = await store.claim(request())
    assert claimed.spec.id == child.id
    (outcome,) = await store.parent_outcomes(child.id)
    assert (outcome.id, outcome.status, outcome.result) == (parent.id, JobStatus.SUCCEEDED, {"rows": 3})


async def test_a_claim_never_takes_a_blocked_job(store: Store) -> None:
    parent, child = spec(), spec()
    await store.enqueue([parent], NOW)
    await store.enqueue_after([child], [Dependency((parent.id,))], NOW)

    claimed = await store.claim(request())

    assert [c.spec.id for c in claimed] == [parent.id]
    assert await store.claim(request()) == []


async def test_a_child_waits_for_every_parent(store: Store) -> None:
    first, second, child = spec(), spec(), spec()
    await store.enqueue([first, second], NOW)
    await store.enqueue_after([child], [Dependency((first.id, second.id))], NOW)
    (a, b) = await store.claim(request())
    await store.settle([Outcome(a.spec.id, a.token, OutcomeKind.SUCCEEDED, NOW + 1, 1)], "w1")

    assert await status(store, child.id) is JobStatus.BLOCKED
    await store.settle([Outcome(b.spec.id, b.token, OutcomeKind.SUCCEEDED, NOW + 1, 2)], "w1")
    assert await status(store, child.id) is JobStatus.QUEUED
    assert [o.result for o in await store.parent_outcomes(child.id)] == [1, 2]


async def test_parents_that_already_succeeded_count_at_enqueue(store: Store) -> None:
    parent, child = spec(), spec()
    await store.enqueue([parent], NOW)
    await run(store, parent.id, result="done")

    await store.enqueue_after([child], [Dependency((parent.id,))], NOW + 2)

    assert await status(store, child.id) is JobStatus.QUEUED
    assert [o.result for o in await store.parent_outcomes(child.id)] == ["done"]


@pytest.mark.parametrize(
    ("policy", "ends"), [(CANCEL, JobStatus.CANCELLED), (DEAD, JobStatus.DEAD), (RUN, JobStatus.QUEUED)]
)
async def test_a_dead_parent_ends_its_child_per_the_policy(
    store: Store, policy: str, ends: JobStatus
) -> None:
    parent, child = spec(max_attempts=1), spec()
    await store.enqueue([parent], NOW)
    await store.enqueue_after([child], [Dependency((parent.id,), policy)], NOW)

    await run(store, parent.id, OutcomeKind.DEAD)

    record = await store.get(child.id)
    assert record is not None and record.status is ends
    if ends is not JobStatus.QUEUED:
        assert record.error is not None and record.error.type == "ParentFailed"
    (outcome,) = await store.parent_outcomes(child.id)
    assert outcome.status is JobStatus.DEAD
    assert outcome.error == ErrorInfo("Boom", "it broke", "")


@pytest.mark.parametrize(("policy", "ends"), [(CANCEL, JobStatus.CANCELLED), (DEAD, JobStatus.DEAD)])
async def test_a_parent_that_already_failed_ends_the_child_at_enqueue(
    store: Store, policy: str, ends: JobStatus
) -> None:
    parent, child = spec(), spec()
    await store.enqueue([parent], NOW)
    await store.cancel(parent.id, NOW)

    await store.enqueue_after([child], [Dependency((parent.id,), policy)], NOW)

    assert await status(store, child.id) is ends


async def test_a_failed_parent_ends_its_descendants_transitively(store: Store) -> None:
    root, child, grandchild = spec(), spec(), spec()
    await store.enqueue([root], NOW)
    await store.enqueue_after(
        [child, grandchild], [Dependency((root.id,), DEAD), Dependency((child.id,), CANCEL)], NOW
    )

    await store.cancel(root.id, NOW)

    assert await status(store, child.id) is JobStatus.DEAD
    assert await status(store, grandchild.id) is JobStatus.CANCELLED


async def test_a_blocked_job_can_be_cancelled_and_its_children_follow(store: Store) -> None:
    root, child, grandchild = spec(), spec(), spec()
    await store.enqueue([root], NOW)
    await store.enqueue_after([child, grandchild], [Dependency((root.id,)), Dependency((child.id,))], NOW)

    assert await store.cancel(child.id, NOW) is JobStatus.CANCELLED

    assert await status(store, grandchild.id) is JobStatus.CANCELLED
    await run(store, root.id)
    assert await status(store, child.id) is JobStatus.CANCELLED  # a parent's success revives nobody


async def test_a_chain_in_one_batch_runs_step_by_step(store: Store) -> None:
    a, b, c = spec(), spec(), spec()
    await store.enqueue_after([a, b, c], [Dependency(()), Dependency((a.id,)), Dependency((b.id,))], NOW)

    assert [await status(store, j.id) for j in (a, b, c)] == [
        JobStatus.QUEUED,
        JobStatus.BLOCKED,
        JobStatus.BLOCKED,
    ]
    await run(store, a.id)
    await run(store, b.id)
    await run(store, c.id)


async def test_an_unknown_parent_writes_nothing(store: Store) -> None:
    child = spec()
    with pytest.raises(JobNotFound):
        await store.enqueue_after([child], [Dependency(("no-such-job",))], NOW)
    assert await store.get(child.id) is None


async def test_a_key_with_parents_is_refused(store: Store) -> None:
    parent, child = spec(), spec(key="k")
    await store.enqueue([parent], NOW)
    with pytest.raises(ValueError, match="key"):
        await store.enqueue_after([child], [Dependency((parent.id,))], NOW)


async def test_a_child_with_a_deadline_is_refused(store: Store) -> None:
    parent, child = spec(), spec()._replace(expires_at=NOW + 60)
    await store.enqueue([parent], NOW)
    with pytest.raises(ValueError, match="deadline"):
        await store.enqueue_after([child], [Dependency((parent.id,))], NOW)
    assert await store.get(child.id) is None


async def test_a_waiting_parent_with_a_deadline_cannot_have_children(store: Store) -> None:
    parent, child = spec()._replace(expires_at=NOW + 60), spec()
    await store.enqueue([parent], NOW)
    with pytest.raises(ValueError, match=f"job {parent.id} has a deadline"):
        await store.enqueue_after([child], [Dependency((parent.id,))], NOW)
    assert await store.get(child.id) is None


async def test_a_parent_with_a_deadline_in_the_same_batch_is_refused(store: Store) -> None:
    parent, child = spec()._replace(expires_at=NOW + 60), spec()
    with pytest.raises(ValueError, match="deadline"):
        await store.enqueue_after([parent, child], [Dependency(()), Dependency((parent.id,))], NOW)
    assert await store.get(parent.id) is None


async def test_a_parent_that_ended_before_its_deadline_can_have_children(store: Store) -> None:
    parent, child = spec()._replace(expires_at=NOW + 60), spec()
    await store.enqueue([parent], NOW)
    await run(store, parent.id, result=5)
    await store.enqueue_after([child], [Dependency((parent.id,))], NOW + 2)
    assert await status(store, child.id) is JobStatus.QUEUED


async def test_a_blocked_job_counts_in_stats_and_lists(store: Store) -> None:
    parent, child = spec(), spec()
    await store.enqueue([parent], NOW)
    await store.enqueue_after([child], [Dependency((parent.id,))], NOW)

    stats = await store.stats(NOW)
    assert stats.counts[JobStatus.BLOCKED] == 1
    assert stats.counts[JobStatus.QUEUED] == 1
    assert [r.id for r in await store.list_jobs(status=JobStatus.BLOCKED)] == [child.id]
    assert await store.count_pending() == 1


async def test_a_requeued_parent_that_succeeds_updates_what_children_see(store: Store) -> None:
    parent, child = spec(max_attempts=1), spec()
    await store.enqueue([parent], NOW)
    await store.enqueue_after([child], [Dependency((parent.id,), DEAD)], NOW)
    await run(store, parent.id, OutcomeKind.DEAD)
    assert await status(store, child.id) is JobStatus.DEAD

    await store.requeue(parent.id, NOW)
    await run(store, parent.id, result=7)

    assert await status(store, child.id) is JobStatus.DEAD  # not revived
    (outcome,) = await store.parent_outcomes(child.id)
    assert (outcome.status, outcome.result) == (JobStatus.SUCCEEDED, 7)
    await store.requeue(child.id, NOW)
    await run(store, child.id)


async def test_a_delayed_child_is_scheduled_when_its_parents_end(store: Store) -> None:
    parent, child = spec(), spec(run_at=NOW + 100)
    await store.enqueue([parent], NOW)
    await store.enqueue_after([child], [Dependency((parent.id,))], NOW)

    await run(store, parent.id)

    assert await status(store, child.id) is JobStatus.SCHEDULED
    assert await store.claim(request(now=NOW + 99)) == []
    (claimed,) = await store.claim(request(now=NOW + 100))
    assert claimed.spec.id == child.id


async def test_a_job_without_parents_has_no_parent_outcomes(store: Store) -> None:
    job = spec()
    await store.enqueue([job], NOW)
    assert await store.parent_outcomes(job.id) == []
    with pytest.raises(JobNotFound):
        await store.parent_outcomes("no-such-job")


async def test_a_rescued_parent_that_used_its_attempts_ends_its_children(store: Store) -> None:
    parent, child = spec(max_attempts=1, timeout=1.0), spec()
    await store.enqueue([parent], NOW)
    await store.enqueue_after([child], [Dependency((parent.id,), DEAD)], NOW)
    await store.claim(request())

    (rescued,) = await store.rescue_expired(NOW + 1_000)

    assert rescued.status is JobStatus.DEAD
    record = await store.get(child.id)
    assert record is not None and record.status is JobStatus.DEAD
    (outcome,) = await store.parent_outcomes(child.id)
    assert outcome.error is not None and outcome.error.type == "LeaseExpired"


async def test_a_rescued_parent_that_will_retry_keeps_its_children_blocked(store: Store) -> None:
    parent, child = spec(max_attempts=2, timeout=1.0), spec()
    await store.enqueue([parent], NOW)
    await store.enqueue_after([child], [Dependency((parent.id,))], NOW)
    await store.claim(request())

    await store.rescue_expired(NOW + 1_000)

    assert await status(store, child.id) is JobStatus.BLOCKED


async def test_a_running_parent_cancelled_then_settled_cancels_its_children(store: Store) -> None:
    parent, child = spec(), spec()
    await store.enqueue([parent], NOW)
    await store.enqueue_after([child], [Dependency((parent.id,))], NOW)
    (claimed,) = await store.claim(request())
    assert await store.cancel(parent.id, NOW) is JobStatus.RUNNING
    assert await status(store, child.id) is JobStatus.BLOCKED  # the parent has not ended yet

    await store.settle([Outcome(parent.id, claimed.token, OutcomeKind.RETRY, NOW + 1, None, BOOM)], "w1")

    assert await status(store, parent.id) is JobStatus.CANCELLED  # cancel wins over the retry
    assert await status(store, child.id) is JobStatus.CANCELLED


async def test_a_retried_parent_keeps_its_children_waiting(store: Store) -> None:
    parent, child = spec(), spec()
    await store.enqueue([parent], NOW)
    await store.enqueue_after([child], [Dependency((parent.id,))], NOW)
    (claimed,) = await store.claim(request())

    await store.settle([Outcome(parent.id, claimed.token, OutcomeKind.RETRY, NOW + 1, None, BOOM, NOW)], "w1")

    assert await status(store, child.id) is JobStatus.BLOCKED
    await run(store, parent.id, result=1)
    assert await status(store, child.id) is JobStatus.QUEUED


async def test_pruning_a_parent_keeps_what_its_child_read_and_pruning_the_child_forgets_it(
    store: Store,
) -> None:
    parent, child = spec(), spec()
    await store.enqueue([parent], NOW)
    await store.enqueue_after([child], [Dependency((parent.id,))], NOW)
    await run(store, parent.id, result="kept")

    assert await store.prune(NOW + 10, 100) == 1
    assert await store.get(parent.id) is None
    assert [o.result for o in await store.parent_outcomes(child.id)] == ["kept"]

    await run(store, child.id)
    assert await store.prune(NOW + 10, 100) == 1
    with pytest.raises(JobNotFound):
        await store.parent_outcomes(child.id)


async def test_one_settle_ending_two_parents_of_a_child_unblocks_it_once(store: Store) -> None:
    first, second, child = spec(), spec(), spec()
    await store.enqueue([first, second], NOW)
    await store.enqueue_after([child], [Dependency((first.id, second.id))], NOW)
    a, b = await store.claim(request())

    await store.settle(
        [
            Outcome(a.spec.id, a.token, OutcomeKind.SUCCEEDED, NOW + 1, "a"),
            Outcome(b.spec.id, b.token, OutcomeKind.SUCCEEDED, NOW + 1, "b"),
        ],
        "w1",
    )

    assert await status(store, child.id) is JobStatus.QUEUED
    assert [c.spec.id for c in await store.claim(request())] == [child.id]
    assert [o.result for o in await store.parent_outcomes(child.id)] == ["a", "b"]


async def test_a_parent_named_twice_counts_once(store: Store) -> None:
    parent, child = spec(), spec()
    await store.enqueue([parent], NOW)
    await store.enqueue_after([child], [Dependency((parent.id, parent.id))], NOW)

    await run(store, parent.id, result=5)

    assert await status(store, child.id) is JobStatus.QUEUED
    assert [o.result for o in await store.parent_outcomes(child.id)] == [5]
