"""Several real processes on one PostgreSQL schema, and ``kill -9``.

* Four worker processes share 20,000 jobs; one is SIGKILLed mid-run. Every job
  ends, none is lost, and the only jobs that ran twice are ones the killed
  process held at the moment it died.
* Two cron nodes; the leader is SIGKILLed. The other takes over (at once: the
  dead leader's session, and with it its advisory lock, is gone) and catches
  up; every tick is enqueued exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from jobrunner.models import JobSpec
from jobrunner.stores.postgres import PostgresStore
from tests.pg_support import temporary_schema
from tests.processes import Proc, stop_all, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    stop_all(started)


async def kill(proc: Proc, db: asyncpg.Connection) -> None:
    """SIGKILL ``proc`` and wait until the server has ended its sessions.

    A statement the process sent just before it died (a claim, a settle) still
    runs to its end on the server, and commits: only once every session of the
    process is gone is what it held final.
    """
    names = [f"jobrunner {proc.id}", f"jobrunner {proc.id} listen"]

    async def sessions() -> int:
        n: int = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = ANY($1)", names
        )
        return n

    assert await sessions() >= 2, "the process's sessions do not carry its name: nothing to wait for"
    proc.process.send_signal(signal.SIGKILL)
    proc.process.wait(10)

    async def sessions_gone() -> bool:
        return await sessions() == 0

    await wait_for(sessions_gone, f"the server to end {proc.id}'s sessions", [], within=30)


def log_lines(log: Path, kind: str) -> list[list[str]]:
    if not log.exists():
        return []
    return [line.split() for line in log.read_text().splitlines() if line.startswith(kind + " ")]


def ready(log: Path) -> set[str]:
    return {line[1] for line in log_lines(log, "ready")}


# workers sharing a queue -----------------------------------------------------------------------
JOBS = 20_000
CONCURRENCY = 50


def work_spec(n: int, now: float) -> JobSpec:
    return JobSpec(
        f"pg-work-{n:05d}", "pg_work", (n,), {}, "default", 0, 6, 60.0, None, None, now, now, "enqueue"
    )


async def test_four_processes_share_20000_jobs_and_a_kill_loses_none(
    tmp_path: Path, procs: list[Proc]
) -> None:
    log = tmp_path / "runs.log"
    async with temporary_schema() as (dsn, schema):
        store = PostgresStore(dsn, schema=schema)
        await store.open()  # installs the schema before the workers race to
        db = await asyncpg.connect(dsn)
        try:
            names = [f"w{n}" for n in range(4)]
            options = ["--lease", "3", "--concurrency", str(CONCURRENCY), "--job-seconds", "0.005"]
            options += ["--slow-every", "25", "--slow-seconds", "0.25"]  # so a worker always holds some
            for name in names:
                procs.append(Proc("pg_worker.py", dsn, schema, str(log), *options, worker_id=name))
            await wait_for(lambda: ready(log) == set(names), "the workers to start", procs)
            # Straight into the store, in batches (a producer process would do the same).
            now = time.time()
            for start in range(0, JOBS, 2_000):
                await store.enqueue([work_spec(n, now) for n in range(start, start + 2_000)], now)

            await wait_for(lambda: len(log_lines(log, "start")) >= JOBS // 4, "a quarter to start", procs)
            # Kill a worker that does not lead (the leader's death is the cron test's).
            leader = await db.fetchval(f'SELECT holder FROM "{schema}".leaders')
            victim = next(p for p in procs if p.id != leader)

            async def victim_busy() -> bool:
                held = await db.fetchval(
                    f"SELECT count(*) FROM \"{schema}\".jobs WHERE status = 'running' AND worker = $1",
                    victim.id,
                )
                return bool(held >= 5)

            await wait_for(victim_busy, "the victim to hold jobs", procs)  # mid-run, not between batches
            await kill(victim, db)
            # What the victim held when it died: claimed, maybe started, never settled.
            in_flight = {
                row[0]
                for row in await db.fetch(
                    f"SELECT id FROM \"{schema}\".jobs WHERE status = 'running' AND worker = $1", victim.id
                )
            }
            assert in_flight, "the victim held no job at the kill: kill it earlier"

            async def all_final() -> bool:
                n = await db.fetchval(
                    f"SELECT count(*) FROM \"{schema}\".jobs WHERE status IN ('succeeded', 'dead', 'cancelled')"
                )
                return bool(n == JOBS)

            await wait_for(all_final, "every job to end", procs, within=120)
            statuses = dict(await db.fetch(f'SELECT status, count(*) FROM "{schema}".jobs GROUP BY 1'))
            assert statuses == {"succeeded": JOBS}
            survivors = [p for p in procs if p is not victim]
            for proc in survivors:
                proc.process.send_signal(signal.SIGTERM)
            for proc in survivors:
                assert proc.process.wait(30) == 0, proc.output()

            starts = Counter(line[1] for line in log_lines(log, "start"))
            ids = {row[0] for row in await db.fetch(f'SELECT id FROM "{schema}".jobs')}
            assert set(starts) == ids  # every job ran: none lost
            twice = {job_id for job_id, n in starts.items() if n > 1}
            assert twice <= in_flight  # only what the victim held ran again
            assert len(twice) <= len(in_flight) <= CONCURRENCY  # a runner holds at most its concurrency
            rescued = await db.fetch(
                f'SELECT id, attempts, trigger FROM "{schema}".jobs WHERE id = ANY($1::text[])',
                list(in_flight),
            )
            odd = [tuple(row) for row in rescued if (row[1], row[2]) != (2, "retry")]
            assert not odd, f"rescued jobs not on their second attempt: {odd}"
        finally:
            await db.close()
            await store.close()


# cron across a leader's death ------------------------------------------------------------------
NOON = datetime(2025, 1, 1, 12, 0, tzinfo=UTC).timestamp()


def set_time(path: Path, t: float) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(repr(t))
    os.replace(tmp, path)


async def test_a_killed_cron_leader_is_replaced_without_a_duplicate_or_missing_tick(
    tmp_path: Path, procs: list[Proc]
) -> None:
    clock, log = tmp_path / "clock", tmp_path / "runs.log"
    now = NOON
    set_time(clock, now)

    def advance() -> float:
        nonlocal now
        now += 1
        set_time(clock, now)
        return now

    async with temporary_schema() as (dsn, schema):
        store = PostgresStore(dsn, schema=schema)
        await store.open()
        await store.close()
        db = await asyncpg.connect(dsn)

        async def fired() -> list[float]:
            rows = await db.fetch(f"SELECT meta::text FROM \"{schema}\".jobs WHERE name = 'tick'")
            return sorted(float(json.loads(row[0])["scheduled_for"]) for row in rows)

        def tick_fired(at: float) -> Callable[[], object]:
            async def check() -> bool:
                return (await fired())[-1:] == [at]

            return check

        async def leader() -> str | None:
            holder: str | None = await db.fetchval(f'SELECT holder FROM "{schema}".leaders')
            return holder

        async def b_leads() -> bool:
            return await leader() == "node-b"

        async def unfinished() -> int:
            n: int = await db.fetchval(
                f"SELECT count(*) FROM \"{schema}\".jobs WHERE name = 'tick' AND status <> 'succeeded'"
            )
            return n

        try:
            node = ["pg_cron_node.py", dsn, schema, str(clock), str(log)]
            a = Proc(*node, worker_id="node-a")
            procs.append(a)
            await wait_for(lambda: ready(log) == {"node-a"}, "a to start", procs)
            await wait_for(tick_fired(advance()), "a's first tick (a is alone: it leads)", procs)
            b = Proc(*node, worker_id="node-b")
            procs.append(b)
            await wait_for(lambda: ready(log) == {"node-a", "node-b"}, "b to start", procs)
            for _ in range(20):  # both alive, a leads: one job per second
                await wait_for(tick_fired(advance()), "the next tick", procs)
            assert await leader() == "node-a"

            await kill(a, db)
            killed_at = now
            in_flight = {
                float(json.loads(row[0])["scheduled_for"])
                for row in await db.fetch(
                    f"SELECT meta::text FROM \"{schema}\".jobs WHERE name = 'tick' AND status = 'running'"
                )
            }
            # b tries to lead every 3.3 s (a third of the 10 s leader lease); a's
            # session is gone, so its first try after the kill succeeds, long before
            # a's lease would have lapsed. Time moves a second at a time meanwhile.
            for _ in range(6):
                advance()
                try:
                    await wait_for(b_leads, "b to lead", procs, within=1.0)
                    break
                except AssertionError:
                    continue
            assert await leader() == "node-b"
            assert now - killed_at <= 5, "b took over only after a's lease lapsed"
            await wait_for(tick_fired(now), "b to catch up every missed tick", procs)
            for _ in range(10):
                await wait_for(tick_fired(advance()), "the next tick", procs)

            async def rescued() -> bool:
                left = await unfinished()
                if left:
                    advance()  # a's unfinished ticks come back once their 3 s lease lapses
                return left == 0

            await wait_for(rescued, "a's unfinished ticks to be rescued and run", procs)
            await wait_for(tick_fired(now), "the last tick", procs)
            await wait_for(lambda: unfinished_is_zero(unfinished), "the last tick to run", procs)
            expected = [NOON + n for n in range(1, int(now - NOON) + 1)]
            assert await fired() == expected  # every second exactly once: none twice, none missing
            b.process.send_signal(signal.SIGTERM)
            assert b.process.wait(30) == 0, b.output()
        finally:
            await db.close()

    runs = log_lines(log, "run")
    ran = Counter(float(line[1]) for line in runs)
    assert set(ran) == set(expected)
    assert {tick for tick, n in ran.items() if n > 1} <= in_flight
    assert {line[4] for line in runs if float(line[1]) > killed_at} == {"node-b"}


async def unfinished_is_zero(unfinished: Callable[[], Awaitable[int]]) -> bool:
    return await unfinished() == 0
