"""``current_job().progress()``: stored with the job, fenced, throttled, and cheap."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence

import anyio
import pytest

from jobrunner import MemoryStore, Runner, current_job
from jobrunner.defaults import PROGRESS_INTERVAL
from jobrunner.models import Progress, ProgressReport
from jobrunner.stores.base import Store
from jobrunner.testing import FakeClock
from tests.helpers import Gate, until


async def progress_of(store: Store, job_id: str) -> Progress | None:
    record = await store.get(job_id)
    assert record is not None
    return record.progress


async def first_progress(store: Store, job_id: str) -> Progress:
    """The job's progress once the store has one (read again each millisecond)."""
    with anyio.fail_after(10):
        while (progress := await progress_of(store, job_id)) is None:
            await asyncio.sleep(0.001)
    return progress


async def test_a_job_reports_progress_that_the_store_keeps(
    make_runner: Callable[..., Runner], store: Store, clock: FakeClock
) -> None:
    runner = make_runner()
    gate = Gate()

    @runner.job
    async def resize() -> None:
        current_job().progress(0.4, "resized 4 of 10")
        await gate.wait()

    async with runner:
        handle = await resize.enqueue()
        assert await first_progress(store, handle.id) == Progress(0.4, "resized 4 of 10", 1, clock.now())
        gate.open()
        await handle.result(timeout=10)
    assert await progress_of(store, handle.id) == Progress(0.4, "resized 4 of 10", 1, clock.now())


async def test_a_sync_handler_reports_progress_from_its_thread(
    make_runner: Callable[..., Runner], store: Store
) -> None:
    runner = make_runner()
    release = threading.Event()

    @runner.job
    def count() -> None:
        current_job().progress(0.5, "half way")
        release.wait(10)

    async with runner:
        handle = await count.enqueue()
        try:
            assert (await first_progress(store, handle.id)).message == "half way"
        finally:
            release.set()
        await handle.result(timeout=10)


class CountingStore(MemoryStore):
    """Counts progress writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[list[ProgressReport]] = []

    async def set_progress(self, reports: Sequence[ProgressReport]) -> list[str]:
        self.writes.append(list(reports))
        return await super().set_progress(reports)


async def test_a_tight_loop_of_reports_costs_one_write_per_interval() -> None:
    store, clock = CountingStore(), FakeClock()
    runner = Runner(store, clock=clock)
    gate = Gate()

    @runner.job
    async def crunch() -> None:
        for i in range(1, 10_001):
            current_job().progress(i / 10_000, f"{i} of 10000")
        await gate.wait()
        current_job().progress(1.0, "finishing")

    async with runner:
        handle = await crunch.enqueue()
        await until(lambda: gate.waiting == 1 and len(store.writes) == 1)
        # Ten thousand reports, one write: of the latest.
        assert [r.progress.message for r in store.writes[0]] == ["10000 of 10000"]
        gate.open()
        await handle.result(timeout=10)
        # The interval has not passed, but the attempt ended: its last report
        # was written just before the settle, once.
        assert [[r.progress.message for r in write] for write in store.writes[1:]] == [["finishing"]]
        clock.advance(PROGRESS_INTERVAL)
        await asyncio.sleep(0.05)
        assert len(store.writes) == 2  # nothing was left for the writer
    record = await store.get(handle.id)
    assert record is not None and record.progress is not None
    assert record.progress.message == "finishing"


async def test_the_last_report_of_a_job_that_ends_at_once_is_kept(
    make_runner: Callable[..., Runner], store: Store, clock: FakeClock
) -> None:
    runner = make_runner()

    @runner.job
    async def render() -> None:
        current_job().progress(0.5, "half")
        await asyncio.sleep(0)  # the writer may write "half" now, and then waits out its interval
        current_job().progress(1.0, "done")

    async with runner:
        handle = await render.enqueue()
        await handle.result(timeout=10)
    assert await progress_of(store, handle.id) == Progress(1.0, "done", 1, clock.now())


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), True, "half"])
async def test_progress_outside_zero_to_one_is_refused(bad: object) -> None:
    runner = Runner()
    errors: list[BaseException] = []

    @runner.job
    async def job() -> None:
        try:
            current_job().progress(bad)  # type: ignore[arg-type]
        except (ValueError, TypeError) as exc:
            errors.append(exc)

    async with runner:
        await (await job.enqueue()).result(timeout=10)
    assert len(errors) == 1 and "from 0.0 to 1.0" in str(errors[0])


async def test_progress_outside_a_runner_is_a_no_op_for_the_store() -> None:
    from jobrunner.models import ClaimedJob, JobSpec
    from jobrunner.progress import report_progress

    spec = JobSpec("id", "n", (), {}, "default", 0, 1, None, None, None, 0.0, 0.0, "enqueue")
    report_progress(ClaimedJob(spec, 1, 1, "enqueue", 0.0), 0.5, "x")  # no writer: nothing happens
