"""What only the SQLite store has to get right: JSON payloads, damaged rows,
unknown job names, restarts, locks, retention and its URL.

The behaviour every store shares is checked by the shared suites (run them with
``-k sqlite``); these run in this process, on a file in ``tmp_path``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jobrunner import InvalidJobState, JobFailed, JobStatus, Runner, StoreError, current_job
from jobrunner.models import ClaimRequest, JobSpec, LeaseTerms, Outcome, OutcomeKind, Trigger
from jobrunner.stores import sqlite as sqlite_module
from jobrunner.stores import store_from_url
from jobrunner.stores._sqlite_thread import _TAKEN
from jobrunner.stores.sqlite import SQLiteStore
from jobrunner.testing import FakeClock, drain
from tests.helpers import Gate, until
from tests.sqlite_support import open_sqlite_store

NOW = 1_750_000_000.0
TERMS = LeaseTerms(fixed=None, margin=30.0, without_timeout=60.0)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with open_sqlite_store(tmp_path) as opened:
        yield opened


def spec(job_id: str, name: str = "job", *args: Any, **kwargs: Any) -> JobSpec:
    return JobSpec(
        job_id, name, args, kwargs, "default", 0, 3, 10.0, None, None, NOW, NOW, Trigger.ENQUEUE.value
    )


def claim_request(
    names: frozenset[str] | None = None, *, worker: str = "w1", now: float = NOW
) -> ClaimRequest:
    return ClaimRequest(worker, 100, now, names, {}, TERMS)


def raw(path: Path | str) -> sqlite3.Connection:
    """A plain connection to the file, as another program (or a damaged disk) would use it."""
    return sqlite3.connect(path, isolation_level=None)


# --- the URL and the options --------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///jobs.db", "jobs.db"),
        ("sqlite:///var/lib/jobs.db", "var/lib/jobs.db"),
        ("sqlite:////var/lib/jobs.db", "/var/lib/jobs.db"),
        ("SQLITE:///my%20jobs.db", "my jobs.db"),
    ],
)
def test_a_url_names_a_relative_or_absolute_file(url: str, path: str) -> None:
    store = store_from_url(url)
    assert isinstance(store, SQLiteStore)
    assert store.path == path


def test_url_options_configure_the_store() -> None:
    store = SQLiteStore.from_url("sqlite:///jobs.db?synchronous=normal&poll_interval=0.2&busy_timeout=3")
    assert (store.synchronous, store.poll_interval, store.busy_timeout) == ("NORMAL", 0.2, 3.0)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://", "sqlite:///relative/path.db"),
        ("sqlite:///", "names no file"),
        ("sqlite://host/jobs.db", "sqlite:///relative/path.db"),
        ("sqlite:///jobs.db?fsync=1", "unknown option 'fsync'"),
        ("sqlite:///jobs.db?poll_interval=soon", "not a number"),
        ("sqlite:///jobs.db?synchronous=OFF", "'FULL' or 'NORMAL'"),
    ],
)
def test_a_bad_url_raises_value_error_saying_what_to_write(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SQLiteStore.from_url(url)


def test_an_in_memory_database_is_refused_in_favour_of_the_memory_store() -> None:
    with pytest.raises(ValueError, match="MemoryStore"):
        SQLiteStore(":memory:")


# --- JSON payloads --------------------------------------------------------------------------


async def test_a_row_the_schema_refuses_fails_alone_and_later_rows_insert(store: SQLiteStore) -> None:
    # Rows are inserted by one statement per pattern of NULLs, made on first use:
    # a bad first row of a pattern must not shape the statement the next ones use.
    sqlite_module._INSERTS.clear()  # so that this pattern's first use is the bad row
    bad = spec("bad")._replace(enqueued_at=None)
    with pytest.raises(StoreError):
        await store.enqueue([bad], NOW)
    await store.enqueue([spec("good")], NOW)
    record = await store.get("good")
    assert record is not None and record.enqueued_at == NOW
    assert await store.get("bad") is None


async def test_arguments_come_back_as_json_with_positional_ones_as_a_tuple(store: SQLiteStore) -> None:
    job = spec("a", "job", 1, "two", [3, {"four": 4.5}], None, flag=True, items={"x": [1, 2]})
    await store.enqueue([job], NOW)
    (claimed,) = await store.claim(claim_request())
    assert claimed.spec.args == (1, "two", [3, {"four": 4.5}], None)
    assert claimed.spec.kwargs == {"flag": True, "items": {"x": [1, 2]}}
    assert claimed.decode_error is None
    record = await store.get("a")
    assert record is not None and record.args == claimed.spec.args and record.kwargs == claimed.spec.kwargs


async def test_arguments_json_cannot_hold_raise_type_error_naming_job_and_argument(tmp_path: Path) -> None:
    class Point:
        pass

    async with open_sqlite_store(tmp_path) as store:
        runner = Runner(store=store, clock=FakeClock())

        @runner.job
        async def draw(x: int, shape: Any = None, **style: Any) -> None:
            pass

        with pytest.raises(
            TypeError, match=r"job 'draw': positional argument 1 cannot be stored as JSON: Point is not JSON"
        ):
            await draw.enqueue(1, Point())
        with pytest.raises(
            TypeError, match=r"job 'draw': argument 'colour' cannot be stored as JSON: set is not JSON"
        ):
            await draw.enqueue(1, colour={"red"})
        with pytest.raises(TypeError, match="Nothing was enqueued"):
            # One bad call in a batch: none of the batch is written.
            await draw.enqueue_many([(1,), (2,), (3, Point())])
        assert await store.count_pending() == 0
        assert await store.list_jobs() == []


async def test_a_result_error_written_by_an_older_release_is_still_read(store: SQLiteStore) -> None:
    await store.enqueue([spec("a")], NOW)
    with raw(store.path) as conn:
        conn.execute(
            "UPDATE jobrunner_jobs SET status = 'succeeded', due = NULL, finished_at = ?, result_error = ? "
            "WHERE id = 'a'",
            (NOW, "the result of job a (object) cannot be stored as JSON"),
        )
    record = await store.get("a")
    assert record is not None and record.status is JobStatus.SUCCEEDED
    assert record.result is None and record.result_error is not None


async def test_a_row_whose_payload_cannot_be_decoded_is_dead_lettered_and_the_runner_goes_on(
    tmp_path: Path,
) -> None:
    async with open_sqlite_store(tmp_path) as store:
        clock = FakeClock()
        runner = Runner(store=store, clock=clock)

        @runner.job(retries=3)
        async def echo(value: int) -> int:
            return value

        damaged = await echo.enqueue(1)
        healthy = await echo.enqueue(2)
        with raw(store.path) as conn:
            conn.execute("UPDATE jobrunner_jobs SET payload = '[[1], {oops' WHERE id = ?", (damaged.id,))
        await drain(runner, clock)
        assert await healthy.result() == 2
        record = await damaged.record()
        assert record.status is JobStatus.DEAD
        assert record.attempts == 1  # dead on its first attempt, not retried
        assert record.error is not None and record.error.type == "PayloadDecodeError"
        assert damaged.id in record.error.message and "not valid JSON" in record.error.message


# --- job names no runner knows --------------------------------------------------------------


async def test_stats_report_waiting_names_no_live_runner_registered(store: SQLiteStore) -> None:
    await store.enqueue([spec("old", "billing.charge"), spec("mine", "resize")], NOW)
    await store.enqueue([spec("newer", "billing.charge")], NOW + 5)
    # A runner that knows only "resize" claims: it leaves billing.charge queued.
    claimed = await store.claim(claim_request(frozenset({"resize"}), worker="w1", now=NOW + 10))
    assert [c.spec.id for c in claimed] == ["mine"]
    stats = await store.stats(NOW + 10)
    assert stats.unknown_names == {"billing.charge": 10.0}
    assert stats.counts[JobStatus.QUEUED] == 2

    # Another runner registers billing.charge (it claims nothing this time: a full queue).
    busy = ClaimRequest("w2", 100, NOW + 11, frozenset({"billing.charge"}), {"default": 0}, TERMS)
    assert await store.claim(busy) == []
    assert (await store.stats(NOW + 12)).unknown_names == {}
    # Once that runner has been silent past the liveness window, the name is unknown again.
    assert (await store.stats(NOW + 11 + 301)).unknown_names == {"billing.charge": 312.0}


async def test_a_runner_busy_with_long_jobs_keeps_its_names_known_through_heartbeats(
    store: SQLiteStore,
) -> None:
    await store.enqueue([spec("long", "report"), spec("waiting", "report")], NOW)
    limited = ClaimRequest("w1", 1, NOW, frozenset({"report"}), {}, TERMS)
    (claimed,) = await store.claim(limited)
    later = NOW + 400
    report = await store.extend_leases([(claimed.spec.id, claimed.token)], later, TERMS)
    assert report.lost == ()
    assert (await store.stats(later)).unknown_names == {}


# --- restarts and audit -------------------------------------------------------------------------


async def test_a_restart_picks_up_where_the_last_process_left_off(tmp_path: Path) -> None:
    clock = FakeClock(NOW)

    def make_runner(store: SQLiteStore) -> tuple[Runner, Any]:
        runner = Runner(store=store, clock=clock, backoff=0)

        @runner.job(retries=0)
        async def step(n: int) -> int:
            if n < 0:
                raise ValueError(f"negative {n}")
            return n * 10

        return runner, step

    async with open_sqlite_store(tmp_path) as store:
        runner, step = make_runner(store)
        done_before = await step.enqueue(1)
        await runner.run_until_idle()
        waiting = await step.enqueue_many([(n,) for n in range(2, 6)])
        later = await step.options(delay=60).enqueue(6)
        failing = await step.enqueue(-1)
        await store.fire_tick("nightly", NOW + 30, spec("tick", "step", 7), NOW)

    # A new process: a new store object and runner on the same file.
    async with open_sqlite_store(tmp_path) as store:
        runner, step = make_runner(store)
        assert await store.cron_state() == {"nightly": NOW + 30}
        assert await runner.result(done_before.id) == 10
        assert await store.count_pending() == 7
        await drain(runner, clock)
        assert [await runner.result(h.id) for h in waiting] == [20, 30, 40, 50]
        assert await runner.result(later.id) == 60
        assert await runner.result("tick") == 70
        with pytest.raises(JobFailed, match="negative -1"):
            await runner.result(failing.id)
        assert [r.id for r in await runner.dead_letters()] == [failing.id]


async def test_records_keep_every_transition_with_times_workers_and_errors(tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path) as store:
        clock = FakeClock(NOW)
        runner = Runner(store=store, clock=clock, worker_id="worker-a")

        @runner.job(retries=1, backoff=5.0)
        async def flaky() -> str:
            if current_job().attempt == 1:
                raise ConnectionError("link down")
            return "ok"

        handle = await flaky.enqueue()
        await drain(runner, clock)
        record = await handle.record()
    assert record.status is JobStatus.SUCCEEDED and record.attempts == 2 and record.worker == "worker-a"
    assert [(h.status, h.attempt, h.at - NOW) for h in record.history] == [
        (JobStatus.QUEUED, 0, 0.0),
        (JobStatus.RUNNING, 1, 0.0),
        (JobStatus.RETRYING, 1, 0.0),
        (JobStatus.RUNNING, 2, 5.0),
        (JobStatus.SUCCEEDED, 2, 5.0),
    ]
    assert {h.worker for h in record.history[1:]} == {"worker-a"}
    assert record.history[2].note == "ConnectionError"
    # The last error stays for audit, with its traceback.
    assert record.error is not None and record.error.message == "link down"
    assert "ConnectionError" in record.error.traceback


async def test_a_release_of_a_job_whose_cancel_was_asked_ends_it_cancelled(store: SQLiteStore) -> None:
    await store.enqueue([spec("a")], NOW)
    (claimed,) = await store.claim(claim_request())
    assert await store.cancel("a", NOW + 1) is JobStatus.RUNNING
    # The runner stopped before it heard of the cancel, and released the job.
    await store.settle([Outcome("a", claimed.token, OutcomeKind.RELEASED, NOW + 2)], "w1")
    record = await store.get("a")
    assert record is not None and record.status is JobStatus.CANCELLED and record.finished_at == NOW + 2


# --- retention --------------------------------------------------------------------------------------


async def test_prune_deletes_finished_jobs_in_bounded_batches_and_keeps_dead_ones(store: SQLiteStore) -> None:
    await store.enqueue([spec(f"j{i:02d}") for i in range(27)], NOW)
    claimed = await store.claim(claim_request())
    kinds = [OutcomeKind.SUCCEEDED] * 20 + [OutcomeKind.CANCELLED] * 5 + [OutcomeKind.DEAD] * 2
    outcomes = [Outcome(c.spec.id, c.token, kind, NOW + 1) for c, kind in zip(claimed, kinds, strict=True)]
    assert await store.settle(outcomes, "w1") == []
    assert await store.prune(NOW + 1, 10) == 0  # finished at NOW+1: not before it
    assert [await store.prune(NOW + 2, 10) for _ in range(4)] == [10, 10, 5, 0]
    remaining = await store.list_jobs()
    assert sorted(r.id for r in remaining) == ["j25", "j26"]
    assert {r.status for r in remaining} == {JobStatus.DEAD}


# --- locks ----------------------------------------------------------------------------------------------


async def test_a_write_waits_for_another_process_holding_the_lock_then_succeeds(store: SQLiteStore) -> None:
    other = raw(store.path)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        writing = asyncio.ensure_future(store.enqueue([spec("a")], NOW))
        await asyncio.sleep(0.3)  # long enough to go through several busy retries
        assert not writing.done()  # it cannot commit while the lock is held
    finally:
        other.execute("COMMIT")
        other.close()
    assert [tuple(e) for e in await writing] == [("a", True)]
    assert await store.count_pending() == 1


async def test_a_lock_held_past_busy_timeout_is_a_store_error_naming_the_file(tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path, busy_timeout=0.2) as store:
        other = raw(store.path)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreError, match="held the database locked") as caught:
                await store.enqueue([spec("a")], NOW)
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert store.path in str(caught.value)
        assert "database is locked" not in str(caught.value).split(":", 1)[0]
        await store.enqueue([spec("b")], NOW)  # and the store works once the lock is free
        assert await store.count_pending() == 1


async def test_an_enqueue_cancelled_before_its_transaction_started_writes_nothing(store: SQLiteStore) -> None:
    writer = store._writer
    assert writer is not None
    gate = threading.Event()
    # Hold the writer thread, so that the enqueue waits in its queue.
    held = asyncio.ensure_future(writer.run(lambda conn: gate.wait(10)))
    await until(lambda: writer._calls.qsize() == 0)
    writing = asyncio.ensure_future(store.enqueue([spec("a")], NOW))
    await until(lambda: writer._calls.qsize() == 1)
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    gate.set()
    await held
    assert await store.get("a") is None
    assert await store.count_pending() == 0


async def test_an_enqueue_cancelled_inside_its_transaction_waits_for_the_commit_and_the_job_exists(
    store: SQLiteStore,
) -> None:
    writer = store._writer
    assert writer is not None
    other = raw(store.path)
    other.execute("BEGIN IMMEDIATE")  # the enqueue's transaction starts and waits for this lock
    before = writer.last_call
    try:
        writing = asyncio.ensure_future(store.enqueue([spec("a")], NOW))
        await until(lambda: writer.last_call is not before and writer.last_call.state == _TAKEN)
        writing.cancel()
        for _ in range(5):
            await asyncio.sleep(0)
        assert not writing.done()  # still waiting for its transaction to end
    finally:
        other.execute("COMMIT")
        other.close()
    with pytest.raises(asyncio.CancelledError):
        await writing
    record = await store.get("a")
    assert record is not None and record.status is JobStatus.QUEUED


# --- wait_done across processes -----------------------------------------------------------------


async def test_wait_done_sees_a_job_finished_by_another_process(tmp_path: Path) -> None:
    async with (
        open_sqlite_store(tmp_path, poll_interval=0.01) as store,
        open_sqlite_store(tmp_path, poll_interval=0.01) as other,
    ):
        await store.enqueue([spec("a")], NOW)
        waiting = asyncio.ensure_future(store.wait_done("a"))
        (claimed,) = await other.claim(claim_request())
        await other.settle([Outcome("a", claimed.token, OutcomeKind.SUCCEEDED, NOW + 1, result=[1, 2])], "w2")
        record = await asyncio.wait_for(waiting, 10)
        assert record.status is JobStatus.SUCCEEDED and record.result == [1, 2]


async def test_a_running_runner_finds_jobs_another_process_enqueued(tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path, poll_interval=0.01) as store, open_sqlite_store(tmp_path) as other:
        runner = Runner(store=store)
        gate = Gate()

        @runner.job
        async def hello(name: str) -> str:
            await gate.wait()
            return f"hi {name}"

        async with runner:
            # Not this process's enqueue: no notification, only the poll finds it.
            await other.enqueue([spec("x", "hello", "ada")], NOW)
            await until(lambda: gate.entered == 1)
            gate.open()
            assert await runner.result("x", timeout=10) == "hi ada"


async def test_writes_queued_together_share_one_commit_and_fail_alone(store: SQLiteStore) -> None:
    await store.enqueue([spec("a")], NOW)
    writer = store._writer
    assert writer is not None
    statements: list[str] = []
    await writer.run(lambda conn: conn.set_trace_callback(statements.append))
    gate = threading.Event()
    # Hold the writer thread so that the next writes queue up behind it.
    held = asyncio.ensure_future(writer.run(lambda conn: gate.wait(10)))
    b = asyncio.ensure_future(store.enqueue([spec("b")], NOW))
    bad = asyncio.ensure_future(store.requeue("a", NOW))  # "a" is queued: not allowed
    c = asyncio.ensure_future(store.enqueue([spec("c")], NOW))
    await until(lambda: writer.last is not None and writer.last is not held and writer._calls.qsize() == 3)
    gate.set()
    await held
    assert [tuple(e) for e in await b] == [("b", True)]
    with pytest.raises(InvalidJobState):
        await bad
    assert [tuple(e) for e in await c] == [("c", True)]
    await writer.run(lambda conn: conn.set_trace_callback(None))
    assert statements.count("BEGIN IMMEDIATE") == 1 and statements.count("COMMIT") == 1
    assert statements.count("ROLLBACK TO call") == 1  # the failed requeue, undone alone
    assert sorted(r.id for r in await store.list_jobs()) == ["a", "b", "c"]
    record = await store.get("a")
    assert record is not None and record.status is JobStatus.QUEUED
