"""SQLite leadership: the leader's process holds a lock file, so a follower takes
over at once when that process dies; the lease still decides for a hung
leader, and wherever no lock can be used.

Two ``SQLiteStore`` objects on one file stand for two processes: flock locks
belong to an open file, so they contend exactly as processes do, and closing a
store without resigning drops its lock as the kernel does when a process dies.
The real thing (``kill -9`` of a leader process) is in ``tests/test_cron_runner.py``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from jobrunner.maintenance import LEADER_ROLE
from jobrunner.stores import sqlite as sqlite_module
from jobrunner.stores.sqlite import SQLiteStore, leader_lock_path

NOW = 1_750_000_000.0
TTL = 10.0
PROCS = Path(__file__).resolve().parent / "procs"

pytestmark = pytest.mark.skipif(not sqlite_module._HAVE_FLOCK, reason="no flock on this platform")

Opener = Callable[[], AbstractAsyncContextManager[SQLiteStore]]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
def process(db: Path) -> Opener:
    """``async with process() as store``: a store on the file, as another process would open it."""

    @asynccontextmanager
    async def opened() -> AsyncIterator[SQLiteStore]:
        store = SQLiteStore(db)
        await store.open()
        try:
            yield store
        finally:
            await store.close()

    return opened


def file_mode(path: str) -> int | None:
    """The permission bits of ``path``, None if there is no such file."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None


def holder(db: Path) -> tuple[str, float] | None:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT holder, expires_at FROM jobrunner_leaders").fetchone()
    finally:
        conn.close()
    return None if row is None else (row[0], row[1])


async def test_a_follower_takes_over_at_once_when_the_leaders_process_is_gone(
    db: Path, process: Opener
) -> None:
    async with process() as a, process() as b:
        assert await a.try_lead(LEADER_ROLE, "a", TTL, NOW)
        assert not await b.try_lead(LEADER_ROLE, "b", TTL, NOW + 1)
        await a.close()  # dies without resigning: its row still runs to NOW + 10
        assert await b.try_lead(LEADER_ROLE, "b", TTL, NOW + 2)
        assert holder(db) == ("b", NOW + 2 + TTL)


async def test_a_live_leader_keeps_the_role_however_often_followers_try(db: Path, process: Opener) -> None:
    async with process() as a, process() as b:
        assert await a.try_lead(LEADER_ROLE, "a", TTL, NOW)
        for t in (0.5, 3.0, 6.0, 9.5):
            assert not await b.try_lead(LEADER_ROLE, "b", TTL, NOW + t)
        assert await a.try_lead(LEADER_ROLE, "a", TTL, NOW + 9.9)  # renewed just in time
        assert not await b.try_lead(LEADER_ROLE, "b", TTL, NOW + 15)
        assert holder(db) == ("a", NOW + 9.9 + TTL)


async def test_followers_that_cannot_take_the_lock_only_read(db: Path, process: Opener) -> None:
    async with process() as a, process() as b:
        assert await a.try_lead(LEADER_ROLE, "a", TTL, NOW)
        writer = b._writer
        assert writer is not None
        before = writer.last
        assert not await b.try_lead(LEADER_ROLE, "b", TTL, NOW + 1)
        assert writer.last is before  # no write transaction, no fsync, for a follower's look


async def test_a_hung_leader_loses_the_role_when_its_lease_lapses_and_hands_over_its_lock(
    db: Path, process: Opener
) -> None:
    async with process() as a, process() as b, process() as c:
        assert await a.try_lead(LEADER_ROLE, "a", TTL, NOW)
        # a stops renewing but its process lives (its lock is held): the lease decides.
        assert not await b.try_lead(LEADER_ROLE, "b", TTL, NOW + TTL)
        assert await b.try_lead(LEADER_ROLE, "b", TTL, NOW + TTL + 1)
        # a wakes up, finds the row taken, steps down and lets go of the lock...
        assert not await a.try_lead(LEADER_ROLE, "a", TTL, NOW + TTL + 2)
        # ...which the new leader picks up at its next renewal,
        assert await b.try_lead(LEADER_ROLE, "b", TTL, NOW + TTL + 3)
        assert not await c.try_lead(LEADER_ROLE, "c", TTL, NOW + TTL + 4)
        # so its own death is noticed at once again.
        await b.close()
        assert await c.try_lead(LEADER_ROLE, "c", TTL, NOW + TTL + 5)


async def test_runners_sharing_one_store_are_distinct_contenders(db: Path, process: Opener) -> None:
    async with process() as shared, process() as other:
        assert await shared.try_lead(LEADER_ROLE, "a", TTL, NOW)
        assert not await shared.try_lead(LEADER_ROLE, "b", TTL, NOW + 1)
        assert not await other.try_lead(LEADER_ROLE, "c", TTL, NOW + 1)
        await shared.resign(LEADER_ROLE, "a")  # resigning drops the lock too
        assert await shared.try_lead(LEADER_ROLE, "b", TTL, NOW + 2)
        assert not await other.try_lead(LEADER_ROLE, "c", TTL, NOW + 3)


async def test_a_leader_whose_election_fails_lets_go_of_the_lock(db: Path, process: Opener) -> None:
    async with process() as a, process() as b:
        assert await a.try_lead(LEADER_ROLE, "a", TTL, NOW)
        writer = a._writer
        assert writer is not None
        await writer.run(lambda conn: conn.execute("PRAGMA query_only = 1"))  # its writes now fail
        with pytest.raises(sqlite_module.StoreError, match="elect a leader failed"):
            await a.try_lead(LEADER_ROLE, "a", TTL, NOW + 1)
        # a cannot tell whether it leads, so it stops (the runner does) and lets b in.
        assert await b.try_lead(LEADER_ROLE, "b", TTL, NOW + 2)


async def test_without_flock_a_dead_leader_is_replaced_once_its_lease_lapses(
    db: Path, process: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "_HAVE_FLOCK", False)
    async with process() as a, process() as b:
        assert b.leader_poll_interval is None  # followers try at the lease's cadence
        assert await a.try_lead(LEADER_ROLE, "a", TTL, NOW)
        await a.close()
        assert not await b.try_lead(LEADER_ROLE, "b", TTL, NOW + TTL)
        assert await b.try_lead(LEADER_ROLE, "b", TTL, NOW + TTL + 1)
    assert file_mode(leader_lock_path(str(db), LEADER_ROLE)) is None


async def test_the_lock_file_sits_next_to_the_database_with_its_permissions(
    db: Path, process: Opener
) -> None:
    async with process() as a:
        os.chmod(db, 0o660)
        assert await a.try_lead(LEADER_ROLE, "a", TTL, NOW)
        assert await a.try_lead("reports: nightly/1", "a", TTL, NOW)  # any role name
    lock = leader_lock_path(str(db), LEADER_ROLE)
    assert lock == f"{db}-leader-maintenance"
    assert file_mode(lock) == 0o660  # whoever may write the database may lead; never deleted
    odd = leader_lock_path(str(db), "reports: nightly/1")
    assert os.path.dirname(odd) == str(db.parent) and file_mode(odd) == 0o660


async def test_an_unusable_lock_file_falls_back_to_the_lease_with_one_warning(
    db: Path, process: Opener
) -> None:
    # A link to nowhere: it cannot be created, nor opened.
    os.symlink(db.parent / "missing" / "lock", leader_lock_path(str(db), LEADER_ROLE))
    with capture_logs() as logs:
        async with process() as a, process() as b:
            assert await a.try_lead(LEADER_ROLE, "a", TTL, NOW)
            assert await a.try_lead(LEADER_ROLE, "a", TTL, NOW + 1)
            await a.close()
            assert not await b.try_lead(LEADER_ROLE, "b", TTL, NOW + 2)
            assert await b.try_lead(LEADER_ROLE, "b", TTL, NOW + 1 + TTL + 1)
    warnings = [e for e in logs if e["event"].startswith("leader lock file unusable")]
    assert len(warnings) == 2  # once per store
    assert warnings[0]["path"] == leader_lock_path(str(db), LEADER_ROLE)
    assert "FileNotFoundError" in warnings[0]["error"]


async def follower_leads(db: Path, now: float) -> bool:
    store = SQLiteStore(db)
    await store.open()
    try:
        return await store.try_lead(LEADER_ROLE, "b", TTL, now)
    finally:
        await store.close()


@pytest.mark.slow
def test_a_child_forked_by_the_leader_does_not_keep_its_lock_alive(db: Path) -> None:
    # A job's multiprocessing helper (fork) outlives the leader that forked it:
    # the kernel must still see the leader's lock go when the leader dies.
    proc = subprocess.Popen(
        [sys.executable, str(PROCS / "fork_leader.py"), str(db), str(NOW)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    child = 0
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the leader has forked (bounded: the child exits in 60 s)
        assert line.startswith("ready "), line + proc.stdout.read()
        child = int(line.split()[1])
        assert not asyncio.run(follower_leads(db, NOW + 1))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        os.kill(child, 0)  # the child lives on
        assert asyncio.run(follower_leads(db, NOW + 2))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if child:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.stdout is not None:
            proc.stdout.close()
