"""The SQLite file itself: schema versions and migrations, and files that cannot
be opened or written (a clear StoreError naming the file and the cause; no
accepted job lost)."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from jobrunner import JobStatus, Runner, StoreError, current_job
from jobrunner.models import JobSpec, Trigger
from jobrunner.stores import sqlite as sqlite_module
from jobrunner.stores.sqlite import MIGRATIONS, SQLiteStore
from jobrunner.testing import FakeClock, drain
from tests.helpers import serving, until
from tests.sqlite_support import damage_the_ready_index, open_sqlite_store

NOW = 1_750_000_000.0
PROCS = Path(__file__).resolve().parent / "procs"

# The first released schema, frozen here as it shipped: later releases must
# open files that have only this. (A copy, not MIGRATIONS[0], so an edit to a
# released step cannot go unnoticed: see the schema comparison below.)
SCHEMA_V1 = [
    """
    CREATE TABLE jobrunner_jobs (
        seq INTEGER PRIMARY KEY,      -- insertion order, the last tie-break of claims
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        queue TEXT NOT NULL,
        priority INTEGER NOT NULL,
        status TEXT NOT NULL,
        due INTEGER,                  -- waiting: 1 ready, 0 not yet; else NULL
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        timeout REAL,
        key TEXT,
        workspace_id TEXT,
        trigger TEXT NOT NULL,
        enqueued_at REAL NOT NULL,
        run_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        worker TEXT,
        token INTEGER NOT NULL DEFAULT 0,
        lease_until REAL,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        payload TEXT,                 -- JSON [args, kwargs]; NULL for no arguments
        headers TEXT,
        meta TEXT,
        result TEXT,                  -- JSON; NULL for None
        error_type TEXT,
        error_message TEXT,
        error_traceback TEXT,
        history TEXT                  -- JSON lines: [at, status, attempt, worker, note]
    )
    """,
    "CREATE INDEX jobrunner_jobs_ready ON jobrunner_jobs (name, queue, priority, run_at, seq) WHERE due = 1",
    "CREATE INDEX jobrunner_jobs_delayed ON jobrunner_jobs (run_at) WHERE due = 0",
    "CREATE INDEX jobrunner_jobs_leases ON jobrunner_jobs (lease_until) WHERE status = 'running'",
    "CREATE UNIQUE INDEX jobrunner_jobs_active_key ON jobrunner_jobs (key) "
    "WHERE key IS NOT NULL AND status IN ('queued', 'scheduled', 'running', 'retrying')",
    "CREATE INDEX jobrunner_jobs_finished ON jobrunner_jobs (status, finished_at) WHERE finished_at IS NOT NULL",
    "CREATE TABLE jobrunner_leaders (role TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at REAL NOT NULL)",
    "CREATE TABLE jobrunner_cron (schedule TEXT PRIMARY KEY, last_fire_at REAL NOT NULL)",
    "CREATE TABLE jobrunner_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)",
    "INSERT INTO jobrunner_migrations VALUES (1, 'jobs, leaders and cron ticks')",
]


def write_v1_file(path: Path) -> None:
    """A file as the first release left it, with a job waiting and one finished."""
    with sqlite3.connect(path) as conn:
        for statement in SCHEMA_V1:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO jobrunner_jobs (id, name, queue, priority, status, due, max_attempts, trigger, "
            "enqueued_at, run_at, payload) VALUES ('old-1', 'add', 'default', 0, 'queued', 1, 1, 'enqueue', ?, ?, ?)",
            (NOW - 10, NOW - 10, "[[2, 3], {}]"),
        )
        conn.execute(
            "INSERT INTO jobrunner_jobs (id, name, queue, priority, status, attempts, max_attempts, trigger, "
            "enqueued_at, run_at, started_at, finished_at, worker, result) "
            "VALUES ('old-2', 'add', 'default', 0, 'succeeded', 1, 1, 'enqueue', ?, ?, ?, ?, 'w0', '9')",
            (NOW - 20, NOW - 20, NOW - 19, NOW - 18),
        )
        conn.execute("INSERT INTO jobrunner_cron VALUES ('nightly', ?)", (NOW - 3600,))
    conn.close()


def schema_of(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE name LIKE 'jobrunner%' AND sql IS NOT NULL ORDER BY name"
        ).fetchall()
    conn.close()
    # Compare statements, not their layout.
    return [(name, re.sub(r"\s*([(),])\s*", r"\1", " ".join(sql.split()))) for name, sql in rows]


def spec(job_id: str) -> JobSpec:
    return JobSpec(
        job_id, "job", (job_id * 50,), {}, "default", 0, 1, None, None, None, NOW, NOW, Trigger.ENQUEUE.value
    )


# --- schema versions -----------------------------------------------------------------------------------


async def test_a_new_file_gets_every_migration_recorded(tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path) as store:
        pass
    with sqlite3.connect(store.path) as conn:
        versions = conn.execute("SELECT version, name FROM jobrunner_migrations ORDER BY version").fetchall()
    conn.close()
    assert versions == [(n, name) for n, (name, _) in enumerate(MIGRATIONS, start=1)]
    assert len(MIGRATIONS) >= 2


async def test_a_file_from_the_first_schema_is_migrated_and_its_jobs_run(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    write_v1_file(old)
    clock = FakeClock(NOW)
    store = SQLiteStore(old)
    runner = Runner(store=store, clock=clock)

    @runner.job
    async def add(a: int, b: int) -> int:
        return a + b

    try:
        assert await runner.result("old-2") == 9  # a finished job's result survives
        await drain(runner, clock)
        assert await runner.result("old-1") == 5
        assert await store.cron_state() == {"nightly": NOW - 3600}
        # Migration 2's additions work on the old file: live names, result errors.
        assert (await store.stats(clock.now())).unknown_names == {}
    finally:
        await store.close()
    # The migrated file has exactly the schema a new file gets.
    fresh_dir = tmp_path / "fresh"
    fresh_dir.mkdir()
    async with open_sqlite_store(fresh_dir) as fresh:
        pass
    assert schema_of(old) == schema_of(Path(fresh.path))


async def test_deadlines_of_a_file_from_before_their_table_still_hold(tmp_path: Path) -> None:
    # A file as step 6 left it: deadlines only in the jobs' column, behind an index.
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as conn:
        conn.execute("CREATE TABLE jobrunner_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        for version, (name, statements) in enumerate(MIGRATIONS[:6], start=1):
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO jobrunner_migrations VALUES (?, ?)", (version, name))
        columns = (
            "id, name, queue, priority, status, due, max_attempts, trigger, enqueued_at, run_at, expires_at"
        )
        conn.execute(
            f"INSERT INTO jobrunner_jobs ({columns}) VALUES ('late', 'add', 'default', 0, 'queued', 1, 1, "
            "'enqueue', ?, ?, ?)",
            (NOW - 100, NOW - 100, NOW - 40),
        )
        conn.execute(
            f"INSERT INTO jobrunner_jobs ({columns}) VALUES ('later', 'add', 'default', 0, 'queued', 1, 1, "
            "'enqueue', ?, ?, ?)",
            (NOW - 100, NOW - 100, NOW + 40),
        )
    conn.close()
    clock = FakeClock(NOW)
    store = SQLiteStore(old)
    runner = Runner(store=store, clock=clock)
    ran: list[str] = []

    @runner.job
    async def add() -> None:
        ran.append(current_job().id)

    try:
        await drain(runner, clock)
        assert ran == ["later"]  # the one past its deadline expired instead
        assert await runner.status("late") is JobStatus.CANCELLED
    finally:
        await store.close()
    with sqlite3.connect(old) as conn:
        assert conn.execute("SELECT count(*) FROM jobrunner_deadlines").fetchone() == (1,)  # "later"'s
    conn.close()


async def test_a_file_from_a_newer_release_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path) as store:
        pass
    with sqlite3.connect(store.path) as conn:
        conn.execute("INSERT INTO jobrunner_migrations VALUES (?, 'from the future')", (len(MIGRATIONS) + 1,))
    conn.close()
    with pytest.raises(
        StoreError, match=rf"schema version {len(MIGRATIONS) + 1}, written by a newer jobrunner"
    ):
        async with open_sqlite_store(tmp_path):
            pass


async def test_open_is_idempotent_and_a_closed_store_reopens(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "jobs.db")
    await store.open()
    await store.open()
    await store.enqueue([spec("a")], NOW)
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.get("a")
    await store.open()
    try:
        assert await store.get("a") is not None
    finally:
        await store.close()


# --- files that cannot be used ------------------------------------------------------------------------


async def test_a_file_that_is_not_a_database_fails_at_start_up(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    runner = Runner(store=f"sqlite:///{path}")
    with pytest.raises(StoreError) as caught:
        async with runner:
            pass
    message = str(caught.value)
    assert str(path) in message and "file is not a database" in message and "point the store at" in message
    assert path.read_bytes().startswith(b"these are my notes")  # left as it was


async def test_a_missing_directory_fails_at_open_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    with pytest.raises(StoreError, match=rf"the directory {missing} does not exist; create it"):
        await SQLiteStore(missing / "jobs.db").open()


async def test_a_missing_directory_fails_at_enqueue_for_a_producer(tmp_path: Path) -> None:
    runner = Runner(store=f"sqlite:///{tmp_path}/missing/jobs.db")

    @runner.job
    async def job() -> None:
        pass

    with pytest.raises(StoreError, match="does not exist"):
        await job.enqueue()


async def test_a_full_disk_fails_the_enqueue_and_loses_no_accepted_job(tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path) as store:
        await store.enqueue([spec("kept")], NOW)
        writer = store._writer
        assert writer is not None
        # The file may not grow: what a full disk looks like to SQLite.
        await writer.run(lambda conn: conn.execute("PRAGMA max_page_count = 1").fetchone())
        with pytest.raises(StoreError) as caught:
            await store.enqueue([spec(f"big-{n}") for n in range(200)], NOW)
        assert store.path in str(caught.value) and "full" in str(caught.value)
        assert [r.id for r in await store.list_jobs()] == ["kept"]  # all or nothing
        await writer.run(lambda conn: conn.execute("PRAGMA max_page_count = 1073741823").fetchone())
        await store.enqueue([spec("after")], NOW)  # room again: the store carries on
        assert await store.count_pending() == 2


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user may enter (pytest's tmp_path is private to this user)."""
    path = Path(tempfile.mkdtemp(prefix="jobrunner-ro-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        path.chmod(0o755)
        shutil.rmtree(path)


def open_elsewhere(db: Path, *, read_only: str) -> subprocess.CompletedProcess[str]:
    """Make the file or its directory read-only, open the store and enqueue in another
    process (as an unprivileged user if we are root), then make it writable again."""
    directory = db.parent
    if read_only == "file":
        db.chmod(0o444)
    else:
        if os.geteuid() == 0:
            os.chown(db, 65534, 65534)  # the file is the user's own, but its directory is not writable
        directory.chmod(0o555)
    command = [sys.executable, str(PROCS / "open_store.py"), str(db)]
    if os.geteuid() == 0:
        command += ["--as-user", "65534"]  # nobody: root may write any file whatever its mode
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    finally:
        directory.chmod(0o755)
        db.chmod(0o644)


@pytest.mark.parametrize("read_only", ["file", "directory"])
async def test_a_read_only_database_fails_at_start_up_naming_the_file(
    shared_dir: Path, read_only: str
) -> None:
    db = shared_dir / "jobs.db"
    async with open_sqlite_store(shared_dir) as store:
        await store.enqueue([spec("kept")], NOW)
    result = open_elsewhere(db, read_only=read_only)
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stdout.startswith(f"StoreError: SQLite store {db}")
    assert "read-only" in result.stdout
    async with open_sqlite_store(shared_dir) as store:
        assert [r.id for r in await store.list_jobs()] == ["kept"]
        assert (await store.get("kept")) is not None
        assert (await store.stats(NOW)).counts[JobStatus.QUEUED] == 1


# --- indexes ---------------------------------------------------------------------------------------------

HOT_QUERIES = {
    "promote due jobs": (sqlite_module._PROMOTE, (NOW,), "jobrunner_jobs_delayed"),
    "first queue of a name": (sqlite_module._FIRST_QUEUE, ("job",), "jobrunner_jobs_ready"),
    "next queue of a name": (sqlite_module._NEXT_QUEUE, ("job", "a"), "jobrunner_jobs_ready"),
    "claim candidates": (sqlite_module._CANDIDATES, ("job", "default", NOW, 100), "jobrunner_jobs_ready"),
    "claim": (
        sqlite_module._CLAIM,
        {"now": NOW, "worker": "w", "fixed": None, "without": 60.0, "margin": 30.0, "seqs": "[1, 2]"},
        "INTEGER PRIMARY KEY",
    ),
    "fence outcomes": (sqlite_module._RUNNING_OF, ('["a", "b"]',), "jobrunner_jobs"),
    "heartbeat": (sqlite_module._EXTEND, (NOW, None, 60.0, 30.0, "a", 1), "jobrunner_jobs"),
    "expired leases": (sqlite_module._EXPIRED, (NOW,), "jobrunner_jobs_leases"),
    "active key": (sqlite_module._ACTIVE_KEY, ("k",), "jobrunner_jobs_active_key"),
    "dead jobs, newest first": (
        f"SELECT {sqlite_module._RECORD_COLUMNS_OF_J} FROM jobrunner_unsuccessful u "
        "JOIN jobrunner_jobs j ON j.seq = u.seq WHERE u.status = ? ORDER BY u.seq DESC LIMIT ?",
        ("dead", 50),
        "PRIMARY KEY",
    ),
    "lapsed deadlines": (sqlite_module._LAPSED, (NOW,), "jobrunner_deadlines_by_time"),
    "next delayed job": (
        "SELECT min(run_at) FROM jobrunner_jobs WHERE due = 0",
        (),
        "jobrunner_jobs_delayed",
    ),
}


@pytest.mark.parametrize("what", sorted(HOT_QUERIES))
async def test_hot_queries_seek_an_index_and_never_scan_or_sort(tmp_path: Path, what: str) -> None:
    async with open_sqlite_store(tmp_path) as store:
        pass
    sql, params, index = HOT_QUERIES[what]
    with sqlite3.connect(store.path) as conn:
        plan = [row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    conn.close()
    assert not [step for step in plan if step.startswith("SCAN jobrunner_jobs")], plan
    assert not [step for step in plan if "TEMP B-TREE" in step], plan  # no sort of what matched
    assert any(index in step for step in plan), plan


# --- a damaged file ------------------------------------------------------------------------------------


async def damaged_file(tmp_path: Path, jobs: int = 2_000) -> Path:
    async with open_sqlite_store(tmp_path) as store:
        await store.enqueue([spec(f"job-{n}") for n in range(jobs)], NOW)
    damage_the_ready_index(store_path := Path(store.path))
    return store_path


async def test_a_worker_on_a_damaged_file_backs_off_reports_it_and_gives_up(tmp_path: Path) -> None:
    db = await damaged_file(tmp_path)
    clock = FakeClock(NOW)
    runner = Runner(store=SQLiteStore(db), clock=clock, store_give_up=60.0)

    @runner.job
    async def job(text: str) -> None:
        pass

    with capture_logs() as logs:
        async with serving(runner) as raised:
            await until(lambda: not runner.health().store_ok)
            health = runner.health()
            assert not health.ok and health.store_failing_since == NOW
            assert health.store_error is not None and "database disk image is malformed" in health.store_error
            for tries, delay in enumerate((1.0, 2.0, 4.0), start=2):  # one try per backoff
                clock.advance(delay)
                await until(lambda tries=tries: sum(e.get("call") == "claim" for e in logs) == tries)
            clock.advance(60.0)
            await until(lambda: not runner.is_running)
    (error,) = raised
    assert isinstance(error, StoreError)
    message = str(error)
    assert f"SQLiteStore({str(db)!r}) has failed for 67 s without a break" in message
    assert "claim failed: database disk image is malformed" in message
    assert "the database file is damaged" in message and f"sqlite3 {db} .recover" in message
    claims = [e for e in logs if e.get("call") == "claim"]
    assert sum("exc_info" in e for e in claims) == 1  # one traceback for the whole spell
    assert [e["retry_in"] for e in claims] == [1.0, 2.0, 4.0, 8.0, 16.0]


CLI_APP = """
from jobrunner import Runner

runner = Runner(store_give_up=3.0)


@runner.job
async def job(text: str) -> None:
    pass
"""


@pytest.mark.slow
def test_the_worker_command_on_a_damaged_file_exits_1_soon_with_a_traceback_per_failing_call(
    tmp_path: Path,
) -> None:
    import asyncio
    import time

    db = asyncio.run(damaged_file(tmp_path))
    (tmp_path / "app.py").write_text(CLI_APP)
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "jobrunner", "worker", "app:runner", "--store", f"sqlite:///{db}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    took = time.monotonic() - began
    print(f"exit {done.returncode} after {took:.1f} s; stderr:\n{done.stderr}")
    assert done.returncode == 1, done.stderr
    assert took < 30
    lines = done.stderr.splitlines()
    assert lines[-1].startswith("jobrunner: error: SQLiteStore(") and "has failed for 3 s" in lines[-1]
    # One traceback per kind of call that failed (claims; and leader elections that
    # happened to share the claim's transaction), each with the sqlite3 error it wraps.
    spells = done.stderr.count("store call failed; retrying with backoff")
    assert 1 <= spells <= 2
    assert done.stderr.count("Traceback (most recent call last)") == 2 * spells
    records = [line for line in lines if re.match(r"\d{4}-\d\d-\d\dT", line)]
    assert len(records) <= 12, records  # the rest are the tracebacks' lines and the exit message
