"""What the web dashboard asks of every store: progress, keyset paging, the
runners seen and the leaders."""

from __future__ import annotations

import pytest

from jobrunner import JobNotFound, JobStatus
from jobrunner.models import OutcomeKind, Progress, ProgressReport
from jobrunner.stores.base import Store
from tests.test_store_contract import NOW, done, request, spec


async def test_progress_of_a_running_attempt_is_stored_with_the_job(store: Store) -> None:
    await store.enqueue([spec()], NOW)
    (claimed,) = await store.claim(request(1))
    progress = Progress(0.4, "resized 4 of 10", claimed.attempt, NOW + 1)
    assert await store.set_progress([ProgressReport(claimed.spec.id, claimed.token, progress)]) == []
    record = await store.get(claimed.spec.id)
    assert record is not None and record.progress == progress


async def test_progress_is_fenced_by_the_lease_token_and_the_running_status(store: Store) -> None:
    await store.enqueue([spec(), spec()], NOW)
    first, second = await store.claim(request(2))
    await store.settle([done(second)], "w1")
    stale = ProgressReport(first.spec.id, first.token + 1, Progress(0.9, "stale", 1, NOW))
    finished = ProgressReport(second.spec.id, second.token, Progress(0.5, "late", 1, NOW))
    assert sorted(await store.set_progress([stale, finished])) == sorted([first.spec.id, second.spec.id])
    for job_id in (first.spec.id, second.spec.id):
        record = await store.get(job_id)
        assert record is not None and record.progress is None


async def test_the_last_progress_stays_after_the_attempt_ends(store: Store) -> None:
    await store.enqueue([spec()], NOW)
    (claimed,) = await store.claim(request(1))
    progress = Progress(0.25, "a quarter", 1, NOW)
    await store.set_progress([ProgressReport(claimed.spec.id, claimed.token, progress)])
    await store.settle([done(claimed, OutcomeKind.DEAD)], "w1")
    record = await store.get(claimed.spec.id)
    assert record is not None and record.status is JobStatus.DEAD and record.progress == progress


async def test_list_jobs_pages_by_keyset_with_before(store: Store) -> None:
    jobs = [spec("x") for _ in range(5)]
    for offset, job in enumerate(jobs):
        await store.enqueue([job], NOW + offset)
    newest_first = [job.id for job in reversed(jobs)]
    page = await store.list_jobs(limit=2)
    assert [r.id for r in page] == newest_first[:2]
    page = await store.list_jobs(limit=2, before=page[-1].id)
    assert [r.id for r in page] == newest_first[2:4]
    page = await store.list_jobs(limit=2, before=page[-1].id)
    assert [r.id for r in page] == newest_first[4:]
    assert await store.list_jobs(limit=2, before=page[-1].id) == []


async def test_paging_keeps_the_filters(store: Store) -> None:
    jobs = [spec("x" if i % 2 else "y") for i in range(6)]
    await store.enqueue(jobs, NOW)
    xs = [job.id for job in reversed(jobs) if job.name == "x"]
    page = await store.list_jobs(name="x", limit=1)
    assert [r.id for r in await store.list_jobs(name="x", before=page[0].id)] == xs[1:]


async def test_paging_from_a_job_that_is_gone_says_so(store: Store) -> None:
    with pytest.raises(JobNotFound):
        await store.list_jobs(before="no-such-job")


async def test_dead_and_cancelled_jobs_list_newest_first(store: Store) -> None:
    jobs = [spec() for _ in range(4)]
    await store.enqueue(jobs, NOW)
    claimed = await store.claim(request(4))
    await store.settle([done(c, OutcomeKind.DEAD) for c in claimed[:3]], "w1")
    await store.cancel(jobs[3].id, NOW)
    dead = await store.list_jobs(status=JobStatus.DEAD)
    assert [r.id for r in dead] == [jobs[2].id, jobs[1].id, jobs[0].id]
    assert [r.id for r in await store.list_jobs(status=JobStatus.DEAD, before=dead[0].id)] == [
        jobs[1].id,
        jobs[0].id,
    ]
    assert [r.id for r in await store.list_jobs(status=JobStatus.CANCELLED)] == []  # it was running


async def test_a_job_leaves_the_dead_list_when_requeued_and_when_purged(store: Store) -> None:
    jobs = [spec() for _ in range(3)]
    await store.enqueue(jobs, NOW)
    claimed = await store.claim(request(3))
    await store.settle([done(c, OutcomeKind.DEAD) for c in claimed], "w1")
    await store.requeue(jobs[0].id, NOW + 1)
    assert [r.id for r in await store.list_jobs(status=JobStatus.DEAD)] == [jobs[2].id, jobs[1].id]
    (again,) = await store.claim(request(1, now=NOW + 2))
    await store.settle([done(again, OutcomeKind.DEAD)], "w1")  # dead again: listed again
    assert [r.id for r in await store.list_jobs(status=JobStatus.DEAD)] == [j.id for j in reversed(jobs)]
    assert await store.purge(JobStatus.DEAD, NOW + 3600, 10) == 3
    assert await store.list_jobs(status=JobStatus.DEAD) == []
    await store.enqueue([spec()], NOW)  # the store goes on as before
    assert [r.status for r in await store.list_jobs()] == [JobStatus.QUEUED]


async def test_the_dead_list_keeps_the_queue_and_name_filters(store: Store) -> None:
    jobs = [spec("x" if i % 2 else "y") for i in range(4)]
    await store.enqueue(jobs, NOW)
    claimed = await store.claim(request(4, names=frozenset({"x", "y"})))
    await store.settle([done(c, OutcomeKind.DEAD) for c in claimed], "w1")
    xs = [job.id for job in reversed(jobs) if job.name == "x"]
    assert [r.id for r in await store.list_jobs(status=JobStatus.DEAD, name="x")] == xs
    assert await store.list_jobs(status=JobStatus.DEAD, queue="elsewhere") == []


async def test_workers_are_the_runners_that_claimed_recently(store: Store) -> None:
    await store.claim(request(1, names=frozenset({"resize", "email"}), worker="w1"))
    await store.claim(request(1, now=NOW + 5, names=frozenset({"email"}), worker="w2"))
    workers = await store.workers(NOW + 10)
    assert [(w.worker, w.names) for w in workers] == [("w2", ("email",)), ("w1", ("email", "resize"))]
    assert await store.workers(NOW + 3600) == []


async def test_leaders_lists_each_role_and_its_holder(store: Store) -> None:
    assert await store.leaders(NOW) == []
    assert await store.try_lead("maintenance", "w1", 30.0, NOW)
    (leader,) = await store.leaders(NOW)
    assert (leader.role, leader.holder, leader.expires_at) == ("maintenance", "w1", NOW + 30.0)


async def test_a_rare_match_far_down_the_table_is_still_found(store: Store) -> None:
    # PostgreSQL reads a window of the newest jobs and widens it: the match is
    # older than the first window (1,000 jobs).
    rare = spec("rare")
    await store.enqueue([rare, *(spec("common") for _ in range(2_500))], NOW)
    assert [r.id for r in await store.list_jobs(name="rare")] == [rare.id]
    newest = await store.list_jobs(limit=1)
    assert [r.id for r in await store.list_jobs(name="rare", before=newest[0].id)] == [rare.id]
