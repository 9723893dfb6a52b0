"""What only the PostgreSQL store does: transactional enqueue, LISTEN/NOTIFY
across stores and its reconnection, migrations, connection errors, JSON
payloads, unknown names, leadership takeover, SKIP LOCKED between stores.

The behaviour and contract suites (``store`` fixture) run on PostgreSQL too;
these are the rest. In-process: a second ``PostgresStore`` on the same schema
stands for another process (its own pool and LISTEN connection).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anyio
import asyncpg
import pytest

from jobrunner import Call, JobStatus, QueueFull, Runner, StoreError
from jobrunner.models import ClaimRequest, JobSpec, LeaseTerms, Outcome, OutcomeKind, Trigger
from jobrunner.stores.postgres import SCHEMA_VERSION, PostgresStore, install_schema, redact_dsn
from jobrunner.testing import FakeClock
from tests.helpers import until
from tests.pg_support import (
    drop_schema,
    open_postgres_store,
    require_postgres,
    temporary_schema,
    unique_schema,
)

pytestmark = pytest.mark.postgres

NOW = 1_750_000_000.0
TERMS = LeaseTerms(fixed=None, margin=30.0, without_timeout=60.0)


def spec(job_id: str, name: str = "job", **fields: Any) -> JobSpec:
    values: dict[str, Any] = {
        "id": job_id,
        "name": name,
        "args": (),
        "kwargs": {},
        "queue": "default",
        "priority": 0,
        "max_attempts": 3,
        "timeout": 10.0,
        "key": None,
        "workspace_id": None,
        "enqueued_at": NOW,
        "run_at": NOW,
        "trigger": Trigger.ENQUEUE.value,
    }
    values.update(fields)
    return JobSpec(**values)


def claim_request(worker: str = "w1", limit: int = 100, names: frozenset[str] | None = None) -> ClaimRequest:
    return ClaimRequest(worker, limit, NOW, names, {}, TERMS)


@pytest.fixture
async def pg_store() -> AsyncIterator[PostgresStore]:
    async with open_postgres_store() as store:
        yield store


async def twin(store: PostgresStore) -> PostgresStore:
    """Another open store on the same schema: another process, as far as the database can tell."""
    other = PostgresStore(store._dsn, schema=store.schema, max_connections=2)
    await other.open()
    return other


# transactional enqueue ---------------------------------------------------------------------
async def test_a_job_enqueued_in_a_rolled_back_transaction_does_not_exist(pg_store: PostgresStore) -> None:
    runner = Runner(store=pg_store, clock=FakeClock())

    @runner.job
    async def resize(image_id: int) -> None: ...

    conn = await asyncpg.connect(pg_store._dsn)
    try:
        await conn.execute(f'CREATE TABLE "{pg_store.schema}".images (id int PRIMARY KEY)')
        handle = None
        with pytest.raises(RuntimeError, match="changed my mind"):
            async with conn.transaction():
                await conn.execute(f'INSERT INTO "{pg_store.schema}".images VALUES (42)')
                handle = await resize.options(connection=conn).enqueue(42)
                raise RuntimeError("changed my mind")
        assert handle is not None
        assert await pg_store.get(handle.id) is None
        assert await pg_store.count_pending() == 0
        assert await conn.fetchval(f'SELECT count(*) FROM "{pg_store.schema}".images') == 0
    finally:
        await conn.close()


async def test_a_job_enqueued_in_a_transaction_exists_and_runs_once_it_commits(
    pg_store: PostgresStore,
) -> None:
    # A fake clock: the runner never polls, so only the NOTIFY sent at commit can wake it.
    runner = Runner(store=pg_store, clock=FakeClock())
    ran: list[int] = []

    @runner.job
    async def resize(image_id: int) -> str:
        ran.append(image_id)
        return f"resized {image_id}"

    conn = await asyncpg.connect(pg_store._dsn)
    try:
        await conn.execute(f'CREATE TABLE "{pg_store.schema}".images (id int PRIMARY KEY)')
        async with runner:
            await runner.run_until_idle()
            async with conn.transaction():
                await conn.execute(f'INSERT INTO "{pg_store.schema}".images VALUES (7)')
                handle = await resize.options(connection=conn).enqueue(7)
                # Not committed: invisible to the store's own connections, not run.
                assert await pg_store.get(handle.id) is None
                for _ in range(20):
                    await asyncio.sleep(0)
                assert ran == []
            assert await handle.result(timeout=10) == "resized 7"
        assert ran == [7]
    finally:
        await conn.close()


async def test_a_keyed_transactional_batch_rolls_back_as_a_whole(pg_store: PostgresStore) -> None:
    conn = await asyncpg.connect(pg_store._dsn)
    try:
        tx = conn.transaction()
        await tx.start()
        results = await pg_store.enqueue(
            [spec("a", key="k"), spec("b", key="k"), spec("c")], NOW, connection=conn
        )
        assert [tuple(r) for r in results] == [("a", True), ("a", False), ("c", True)]
        await tx.rollback()
        assert await pg_store.list_jobs() == []
    finally:
        await conn.close()


async def test_connection_must_be_an_asyncpg_connection(pg_store: PostgresStore) -> None:
    with pytest.raises(TypeError, match="asyncpg connection"):
        await pg_store.enqueue([spec("a")], NOW, connection=object())
    assert await pg_store.count_pending() == 0


# LISTEN / NOTIFY -----------------------------------------------------------------------------
async def test_an_enqueue_in_another_process_wakes_an_idle_runner(pg_store: PostgresStore) -> None:
    runner = Runner(store=pg_store, clock=FakeClock())  # never polls: only NOTIFY wakes it
    done = asyncio.Event()

    @runner.job
    async def ping() -> None:
        done.set()

    other = await twin(pg_store)
    try:
        async with runner:
            await runner.run_until_idle()
            await other.enqueue([spec("remote", "ping")], runner.clock.now())
            with anyio.fail_after(10):
                await done.wait()
    finally:
        await other.close()


async def test_a_dropped_listen_connection_is_reconnected_and_missed_work_picked_up(
    pg_store: PostgresStore,
) -> None:
    runner = Runner(store=pg_store, clock=FakeClock())  # never polls
    ran: list[str] = []

    @runner.job
    async def ping(tag: str) -> None:
        ran.append(tag)

    other = await twin(pg_store)
    admin = await asyncpg.connect(pg_store._dsn)
    try:
        async with runner:
            await runner.run_until_idle()
            listener = f"jobrunner {pg_store.schema} listen"
            pids = [
                row[0]
                for row in await admin.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = $1", listener
                )
            ]
            assert len(pids) == 2  # this store's and the twin's
            mine = pg_store._listen_conn.get_server_pid()
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", mine)
            # Enqueued elsewhere while this store may be deaf: its NOTIFY can be lost.
            await other.enqueue([spec("while-down", "ping", args=("while down",))], runner.clock.now())
            await until(lambda: ran == ["while down"])
            await until(lambda: pg_store.listening and pg_store._listen_conn.get_server_pid() != mine)
            # Listening again: the next remote enqueue is heard.
            await other.enqueue([spec("after", "ping", args=("after",))], runner.clock.now())
            await until(lambda: ran == ["while down", "after"])
    finally:
        await admin.close()
        await other.close()


async def test_settles_that_make_work_ready_notify_other_processes(pg_store: PostgresStore) -> None:
    other = await twin(pg_store)
    heard = asyncio.Event()
    other.add_work_listener(heard.set)
    try:
        await pg_store.enqueue([spec("a")], NOW)
        (claimed,) = await pg_store.claim(claim_request())
        heard.clear()
        await pg_store.settle([Outcome("a", claimed.token, OutcomeKind.RELEASED, NOW)], "w1")
        with anyio.fail_after(10):
            await heard.wait()
    finally:
        await other.close()


# claims between processes ---------------------------------------------------------------------
async def test_concurrent_claims_from_two_stores_never_share_a_job(pg_store: PostgresStore) -> None:
    other = await twin(pg_store)
    try:
        await pg_store.enqueue([spec(f"j{i:03d}") for i in range(300)], NOW)
        batches = await asyncio.gather(
            *(store.claim(claim_request(f"w{n}", 10)) for n in range(10) for store in (pg_store, other))
        )
        ids = [c.spec.id for batch in batches for c in batch]
        assert len(ids) == len(set(ids)) == 200
    finally:
        await other.close()


async def test_a_claim_skips_rows_another_transaction_holds(pg_store: PostgresStore) -> None:
    await pg_store.enqueue([spec("locked"), spec("free")], NOW)
    conn = await asyncpg.connect(pg_store._dsn)
    try:
        async with conn.transaction():
            await conn.execute(f"SELECT 1 FROM \"{pg_store.schema}\".jobs WHERE id = 'locked' FOR UPDATE")
            with anyio.fail_after(5):  # SKIP LOCKED: no waiting on the held row
                claimed = await pg_store.claim(claim_request())
        assert [c.spec.id for c in claimed] == ["free"]
    finally:
        await conn.close()


# payloads ---------------------------------------------------------------------------------------
async def test_arguments_that_are_not_json_raise_typeerror_naming_job_and_argument(
    pg_store: PostgresStore,
) -> None:
    runner = Runner(store=pg_store, clock=FakeClock())

    @runner.job
    async def send(to: str, attachment: object = None) -> None: ...

    with pytest.raises(
        TypeError, match=r"job 'send': argument 'attachment' cannot be stored as JSON: object is not JSON"
    ):
        await send.enqueue("ada@example.com", attachment=object())
    with pytest.raises(TypeError, match=r"positional argument 0 cannot be stored as JSON: set is not JSON"):
        await send.enqueue({"a set"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"nan is not a JSON number"):
        await send.enqueue("x", attachment=float("nan"))
    # One bad call in a batch: nothing of the batch is written.
    with pytest.raises(TypeError, match="argument 'attachment'"):
        await send.enqueue_many([Call("ok"), Call("bad", attachment=b"bytes")])
    assert await pg_store.list_jobs() == []


async def test_a_result_error_written_by_an_older_release_is_still_read(pg_store: PostgresStore) -> None:
    await pg_store.enqueue([spec("a")], NOW)
    conn = await asyncpg.connect(pg_store._dsn)
    try:
        await conn.execute(
            f"UPDATE \"{pg_store.schema}\".jobs SET status = 'succeeded', finished_at = $1, result_error = $2 "
            f"WHERE id = 'a'",
            NOW,
            "the job succeeded but its result (object) cannot be stored as JSON",
        )
    finally:
        await conn.close()
    record = await pg_store.get("a")
    assert record is not None and record.status is JobStatus.SUCCEEDED
    assert record.result is None and record.result_error is not None


async def test_a_payload_that_cannot_be_decoded_goes_dead_and_the_runner_goes_on(
    pg_store: PostgresStore,
) -> None:
    runner = Runner(store=pg_store, clock=FakeClock())
    ran: list[int] = []

    @runner.job
    async def work(n: int) -> None:
        ran.append(n)

    bad = await work.enqueue(1)
    conn = await asyncpg.connect(pg_store._dsn)
    try:
        await conn.execute(
            f'UPDATE "{pg_store.schema}".jobs SET args = \'{{"not": "a list"}}\' WHERE id = $1', bad.id
        )
    finally:
        await conn.close()
    good = await work.enqueue(2)
    await runner.run_until_idle()
    record = await bad.record()
    assert record.status is JobStatus.DEAD
    assert record.attempts == 1
    assert record.error is not None and record.error.type == "PayloadDecodeError"
    assert "not an array" in record.error.message
    assert await good.status() is JobStatus.SUCCEEDED
    assert ran == [2]


async def test_payloads_round_trip_as_json(pg_store: PostgresStore) -> None:
    payload = {"text": "zoë ✓", "n": 2**53, "f": 0.1, "nested": [1, [2, {"x": None}]], "t": True}
    await pg_store.enqueue([spec("a", args=(1, "two", [3]), kwargs=payload, meta={"m": 1})], NOW)
    (claimed,) = await pg_store.claim(claim_request())
    assert claimed.decode_error is None
    assert claimed.spec.args == (1, "two", [3])
    assert claimed.spec.kwargs == payload
    assert claimed.spec.meta == {"m": 1}
    await pg_store.settle([Outcome("a", claimed.token, OutcomeKind.SUCCEEDED, NOW, payload)], "w1")
    record = await pg_store.get("a")
    assert record is not None and record.result == payload


# unknown names ---------------------------------------------------------------------------------
async def test_unknown_names_are_those_no_live_runner_registered(pg_store: PostgresStore) -> None:
    other = await twin(pg_store)
    try:
        await pg_store.enqueue([spec("x1", "x"), spec("y1", "y"), spec("y2", "y"), spec("z1", "z")], NOW)
        await pg_store.claim(claim_request("w1", 1, frozenset({"x"})))
        stats = await pg_store.stats(NOW + 2)
        assert set(stats.unknown_names) == {"y", "z"}
        assert stats.unknown_names["y"] == 2.0
        # Another process's runner registers "y": no longer unknown anywhere.
        await other.claim(claim_request("w2", 1, frozenset({"y"})))
        assert set((await pg_store.stats(NOW + 2)).unknown_names) == {"z"}
        # Runners that stopped claiming five minutes ago no longer count.
        assert set((await pg_store.stats(NOW + 301)).unknown_names) == {"y", "z"}
    finally:
        await other.close()


# leadership ------------------------------------------------------------------------------------
async def test_leadership_passes_at_once_when_the_leaders_process_is_gone(pg_store: PostgresStore) -> None:
    other = await twin(pg_store)
    try:
        assert await other.try_lead("maintenance", "a", 30.0, NOW)
        assert not await pg_store.try_lead("maintenance", "b", 30.0, NOW + 1)
        # The leader's process dies without resigning: its sessions close.
        await other.close()
        assert await pg_store.try_lead("maintenance", "b", 30.0, NOW + 2)  # long before the lease lapses
    finally:
        await other.close()


async def test_a_live_leader_keeps_its_role_until_its_lease_lapses(pg_store: PostgresStore) -> None:
    other = await twin(pg_store)
    try:
        assert await other.try_lead("maintenance", "a", 30.0, NOW)
        for t in (1, 10, 29):
            assert not await pg_store.try_lead("maintenance", "b", 30.0, NOW + t)
        # Alive but no longer renewing (a stalled loop): the lease decides.
        assert await pg_store.try_lead("maintenance", "b", 30.0, NOW + 31)
    finally:
        await other.close()


# cron -------------------------------------------------------------------------------------------
async def test_a_tick_whose_job_cannot_be_inserted_is_not_recorded(pg_store: PostgresStore) -> None:
    await pg_store.enqueue([spec("taken")], NOW)
    with pytest.raises(asyncpg.UniqueViolationError):
        await pg_store.fire_tick("nightly", NOW + 60, spec("taken", "report"), NOW)
    assert await pg_store.cron_state() == {}
    assert await pg_store.fire_tick("nightly", NOW + 60, spec("fresh", "report"), NOW)
    assert await pg_store.cron_state() == {"nightly": NOW + 60}


async def test_racing_leaders_fire_a_tick_once(pg_store: PostgresStore) -> None:
    other = await twin(pg_store)
    try:
        fired = await asyncio.gather(
            *(
                store.fire_tick("every", NOW + 60, spec(f"tick-{n}", "report"), NOW)
                for n, store in enumerate([pg_store, other] * 5)
            )
        )
        assert sorted(fired) == [False] * 9 + [True]
        assert await pg_store.count_pending() == 1
    finally:
        await other.close()


# retention and durability ---------------------------------------------------------------------
async def test_prune_deletes_in_bounded_batches_and_keeps_dead_jobs(pg_store: PostgresStore) -> None:
    await pg_store.enqueue([spec(f"j{i:02d}") for i in range(25)] + [spec("dead")], NOW)
    claimed = await pg_store.claim(claim_request())
    outcomes = [
        Outcome(c.spec.id, c.token, OutcomeKind.DEAD if c.spec.id == "dead" else OutcomeKind.SUCCEEDED, NOW)
        for c in claimed
    ]
    assert await pg_store.settle(outcomes, "w1") == []
    assert [await pg_store.prune(NOW + 1, 10) for _ in range(4)] == [10, 10, 5, 0]
    (dead,) = await pg_store.list_jobs()
    assert dead.id == "dead" and dead.status is JobStatus.DEAD


async def test_jobs_and_their_history_survive_reopening(pg_store: PostgresStore) -> None:
    await pg_store.enqueue([spec("a")], NOW)
    (claimed,) = await pg_store.claim(claim_request())
    await pg_store.settle([Outcome("a", claimed.token, OutcomeKind.RETRY, NOW + 1, retry_at=NOW + 5)], "w1")
    await pg_store.close()
    reopened = PostgresStore(pg_store._dsn, schema=pg_store.schema)
    await reopened.open()
    try:
        record = await reopened.get("a")
        assert record is not None and record.status is JobStatus.RETRYING
        assert [(h.status, h.attempt, h.worker) for h in record.history] == [
            (JobStatus.QUEUED, 0, None),
            (JobStatus.RUNNING, 1, "w1"),
            (JobStatus.RETRYING, 1, "w1"),
        ]
    finally:
        await reopened.close()


# schema and migrations -------------------------------------------------------------------------
async def versions(dsn: str, schema: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(f'SELECT version FROM "{schema}".schema_migrations ORDER BY version')
        return [row[0] for row in rows]
    finally:
        await conn.close()


async def test_a_fresh_schema_is_installed_at_the_latest_version() -> None:
    async with temporary_schema() as (dsn, schema):
        store = PostgresStore(dsn, schema=schema)
        await store.open()
        await store.close()
        await store.open()  # idempotent: nothing applied twice
        await store.close()
        assert await versions(dsn, schema) == list(range(1, SCHEMA_VERSION + 1))
        assert SCHEMA_VERSION >= 2


async def test_a_schema_with_only_the_first_migration_is_upgraded_and_its_jobs_kept() -> None:
    async with temporary_schema() as (dsn, schema):
        conn = await asyncpg.connect(dsn)
        try:
            assert await install_schema(conn, schema, target=1) == 1
            # A job and a leader written by the first release.
            await conn.execute(
                f'INSERT INTO "{schema}".jobs (id, name, queue, priority, status, max_attempts, trigger, '
                f"enqueued_at, run_at, args, kwargs) VALUES ('old', 'work', 'default', 0, 'queued', 1, "
                f"'enqueue', 0, 0, '[5]', '{{}}')"
            )
            await conn.execute(f"INSERT INTO \"{schema}\".leaders VALUES ('maintenance', 'old-runner', 1e12)")
        finally:
            await conn.close()
        assert await versions(dsn, schema) == [1]
        store = PostgresStore(dsn, schema=schema)
        await store.open()
        try:
            assert await versions(dsn, schema) == list(range(1, SCHEMA_VERSION + 1))
            runner = Runner(store=store, clock=FakeClock())

            @runner.job
            async def work(n: int) -> int:
                return n * 2

            await runner.run_until_idle()
            record = await store.get("old")
            assert record is not None and record.status is JobStatus.SUCCEEDED and record.result == 10
            # The old leader row has no session: only its lease (far in the future) counts.
            assert not await store.try_lead("maintenance", "new-runner", 10.0, NOW)
        finally:
            await store.close()


async def test_installing_from_many_processes_at_once_is_safe() -> None:
    async with temporary_schema() as (dsn, schema):
        stores = [PostgresStore(dsn, schema=schema, max_connections=1) for _ in range(6)]
        try:
            await asyncio.gather(*(store.open() for store in stores))
            assert await versions(dsn, schema) == list(range(1, SCHEMA_VERSION + 1))
            await stores[0].enqueue([spec("a")], NOW)
            assert await stores[-1].count_pending() == 1
        finally:
            for store in stores:
                await store.close()


async def test_a_schema_newer_than_this_release_is_refused() -> None:
    async with temporary_schema() as (dsn, schema):
        store = PostgresStore(dsn, schema=schema)
        await store.open()
        await store.close()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                f"INSERT INTO \"{schema}\".schema_migrations (version, description) VALUES (99, 'future')"
            )
        finally:
            await conn.close()
        with pytest.raises(
            StoreError,
            match=rf"version 99, newer than this jobrunner understands \(up to {SCHEMA_VERSION}\); upgrade",
        ):
            await store.open()
        assert store._pool is None


def test_schema_names_are_checked() -> None:
    with pytest.raises(ValueError, match="lower-case letters"):
        PostgresStore("postgresql://x@localhost/db", schema='bad"name')


async def test_sessions_carry_the_application_name_given_and_the_listener_says_so() -> None:
    async with open_postgres_store(application_name="jobrunner billing-7") as store:
        admin = await asyncpg.connect(store._dsn)
        try:
            rows = await admin.fetch(
                "SELECT application_name, count(*) FROM pg_stat_activity "
                "WHERE application_name LIKE 'jobrunner billing-7%' GROUP BY 1"
            )
        finally:
            await admin.close()
    assert dict(rows) == {"jobrunner billing-7": 1, "jobrunner billing-7 listen": 1}  # min_connections=1


def test_application_names_postgresql_would_truncate_are_refused() -> None:
    with pytest.raises(ValueError, match="1 to 56 characters"):
        PostgresStore("postgresql://x@localhost/db", application_name="w" * 57)
    with pytest.raises(ValueError, match="1 to 56 characters"):
        PostgresStore("postgresql://x@localhost/db", application_name="")
    assert (
        PostgresStore("postgresql://x@localhost/db", schema="s" * 48).application_name
        == "jobrunner " + "s" * 46
    )


# connection errors -------------------------------------------------------------------------------
async def test_an_unreachable_server_is_a_store_error_naming_the_dsn_without_password() -> None:
    await require_postgres()  # the policy applies here too, though this server is never reached
    store = PostgresStore("postgresql://app:s3cret@127.0.0.1:1/jobs", connect_timeout=5)
    with pytest.raises(StoreError) as error:
        await store.open()
    message = str(error.value)
    assert "cannot reach PostgreSQL at postgresql://app:***@127.0.0.1:1/jobs" in message
    assert "s3cret" not in message
    assert "server is running" in message


async def test_bad_credentials_and_a_missing_database_are_store_errors() -> None:
    dsn = await require_postgres()
    host = dsn.split("@", 1)[1].split("/", 1)[0]
    with pytest.raises(StoreError, match="refused the credentials") as error:
        await PostgresStore(f"postgresql://no_such_role:pw@{host}/test").open()
    assert "pw@" not in str(error.value)
    with pytest.raises(StoreError, match="create the database"):
        await PostgresStore(dsn.rsplit("/", 1)[0] + "/no_such_database_here").open()


def test_redact_dsn_hides_passwords_in_the_url_and_the_query() -> None:
    assert redact_dsn("postgresql://u:p@h:5/db") == "postgresql://u:***@h:5/db"
    assert redact_dsn("postgresql://u@h/db?password=p&sslmode=require") == (
        "postgresql://u@h/db?password=***&sslmode=require"
    )
    assert redact_dsn("postgresql://h/db") == "postgresql://h/db"


async def test_using_a_store_that_is_not_open_says_how_to_open_it() -> None:
    store = PostgresStore("postgresql://u:secret@h/db")
    with pytest.raises(StoreError, match=r"is not open; .*await store.open\(\)") as error:
        await store.count_pending()
    assert "secret" not in str(error.value)


# backpressure -----------------------------------------------------------------------------------
async def test_a_transactional_enqueue_checks_max_pending_without_holding_a_lock(
    pg_store: PostgresStore,
) -> None:
    conn = await asyncpg.connect(pg_store._dsn)
    try:
        tx = conn.transaction()
        await tx.start()
        await pg_store.enqueue([spec("a"), spec("b")], NOW, connection=conn, max_pending=2)
        # No lock is held until the caller commits: other producers go on, and do
        # not see the uncommitted jobs.
        with anyio.fail_after(5):
            await pg_store.enqueue([spec("c")], NOW, max_pending=2)
        # The caller's own jobs count for it; a refusal leaves its transaction usable.
        with pytest.raises(QueueFull):
            await pg_store.enqueue([spec("d")], NOW, connection=conn, max_pending=2)
        assert await conn.fetchval("SELECT 1") == 1
        await tx.commit()
    finally:
        await conn.close()
    # What the docstring says: exceeded by at most the jobs of transactions open meanwhile.
    assert await pg_store.count_pending() == 3


async def test_many_producers_in_other_processes_never_exceed_max_pending(pg_store: PostgresStore) -> None:
    others = [await twin(pg_store) for _ in range(3)]
    try:
        producers = [pg_store, *others]

        async def produce(store: PostgresStore, n: int) -> int:
            batch = [spec(f"p{n}-{i}") for i in range(1 + n % 3)]
            try:
                await store.enqueue(batch, NOW, max_pending=25)
            except QueueFull:
                return 0
            return len(batch)

        admitted = await asyncio.gather(*(produce(producers[n % 4], n) for n in range(160)))
    finally:
        for other in others:
            await other.close()
    assert await pg_store.count_pending() == sum(admitted) <= 25
    assert sum(admitted) >= 23  # refused only once a batch no longer fit


# event loops ------------------------------------------------------------------------------------
def test_a_store_left_open_reopens_on_a_new_event_loop_and_its_old_sessions_end() -> None:
    dsn = asyncio.run(require_postgres())
    schema = unique_schema()
    name = f"jobrunner reopen {schema}"
    store = PostgresStore(dsn, schema=schema, application_name=name)

    async def sessions() -> int:
        admin = await asyncpg.connect(dsn)
        try:
            return int(
                await admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1", f"{name}%"
                )
            )
        finally:
            await admin.close()

    async def first() -> None:
        await store.open()
        await store.enqueue([spec("a")], NOW)  # and the loop ends with the store open

    async def second() -> None:
        await store.open()
        record = await store.get("a")
        assert record is not None and record.status is JobStatus.QUEUED
        with anyio.fail_after(10):
            while await sessions() != 2:  # this loop's pool (1) and LISTEN connection (1)
                await asyncio.sleep(0.01)
        await store.close()
        await store.close()  # idempotent

    try:
        asyncio.run(first())
        asyncio.run(second())
        asyncio.run(store.open())  # and once more, then only closed from yet another loop
        asyncio.run(store.close())
        assert store._pool is None and asyncio.run(sessions()) == 0
    finally:
        asyncio.run(drop_schema(dsn, schema))


def test_a_runner_on_a_postgres_url_serves_in_one_event_loop_after_another() -> None:
    # The issue: a second ``async with runner`` in a new loop (a second
    # asyncio.run) failed with "Event loop is closed", the pool still bound to
    # the first loop. The runner made the store from its URL, so it closes it.
    dsn = asyncio.run(require_postgres())
    schema = unique_schema()
    runner = Runner(store=f"{dsn}?schema={schema}")

    @runner.job
    async def double(n: int) -> int:
        return 2 * n

    async def run_once(n: int) -> int:
        async with runner:
            handle = await double.enqueue(n)
            result: int = await handle.result(timeout=10)
            return result

    try:
        assert asyncio.run(run_once(1)) == 2
        assert asyncio.run(run_once(2)) == 4
        assert isinstance(runner.store, PostgresStore) and runner.store._pool is None  # closed on exit
    finally:
        asyncio.run(drop_schema(dsn, schema))


def test_a_postgres_url_carries_the_stores_own_options_and_passes_the_rest_on() -> None:
    store = PostgresStore.from_url(
        "postgresql://app:secret@db.example/jobs?schema=billing&max_connections=20&sslmode=require"
    )
    assert store.schema == "billing" and store._max == 20
    assert store._dsn == "postgresql://app:secret@db.example/jobs?sslmode=require"
    with pytest.raises(ValueError, match=r"max_connections='many' is not a valid int") as refused:
        PostgresStore.from_url("postgresql://app:secret@db.example/jobs?max_connections=many")
    assert "secret" not in str(refused.value)


async def test_the_leader_refreshes_planner_statistics_after_a_burst(pg_store: PostgresStore) -> None:
    # Without statistics on the fresh table the planner thinks few jobs wait,
    # and every claim sorts all of them; the leader's rescue round analyzes.
    await pg_store.enqueue([spec(f"burst-{n}") for n in range(3_000)], NOW)
    conn = await asyncpg.connect(pg_store._dsn)
    try:
        query = (
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables "
            f"WHERE relid = '\"{pg_store.schema}\".jobs'::regclass"
        )
        with anyio.fail_after(15):
            # The server publishes a backend's change counts within a second or so.
            while not await conn.fetchval(query):
                await pg_store.rescue_expired(NOW)
                await asyncio.sleep(0.1)
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                f"EXPLAIN SELECT id FROM \"{pg_store.schema}\".jobs WHERE status IN ('queued', 'scheduled', "
                f"'retrying') AND run_at <= {NOW} ORDER BY priority, run_at, seq LIMIT 100"
            )
        )
    finally:
        await conn.close()
    assert "jobs_ready" in plan, plan
