"""What the web app reads and changes: a runner (its store, its jobs, its
schedules) or a bare store (read and repair only).

Built from a store alone, the app needs none of the app's job code: every
page and every repair (retry, cancel, purge) works on the store. Only
``POST /jobs/{name}`` (the handler's signature) and the schedules' next runs
need the runner.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from jobrunner.clock import Clock, SystemClock
from jobrunner.cron import ScheduleInfo
from jobrunner.errors import JobNotFound
from jobrunner.handle import JobHandle
from jobrunner.models import (
    FINAL_STATUSES,
    WAITING_STATUSES,
    JobRecord,
    JobStatus,
    LeaderInfo,
    StoreStats,
    WorkerInfo,
)
from jobrunner.runner import Runner
from jobrunner.stats import Health
from jobrunner.stores import store_from_url
from jobrunner.stores.base import Store

__all__ = ["JobSource", "QueueView", "StatsView"]

STATS_BUDGET = 10.0
"""Stats are read again at most every this many times the last read took (and
at most every ``stats_ttl``)."""

THROUGHPUT_WINDOW = 60.0
"""Seconds over which a queue's throughput (jobs finished per second) is measured."""


@dataclass(frozen=True, slots=True)
class QueueView:
    """One queue on the dashboard."""

    name: str
    counts: Mapping[JobStatus, int]
    waiting: int
    """Depth: queued, scheduled and retrying jobs."""
    running: int
    throughput: float | None
    """Jobs finished per second over the last minute the app watched; None until it has two samples."""


@dataclass(frozen=True, slots=True)
class StatsView:
    """The store's stats as the app shows them, with per-queue throughput."""

    at: float
    counts: Mapping[JobStatus, int]
    queues: tuple[QueueView, ...]
    oldest_waiting_age: float | None
    """Latency: seconds the oldest ready job has waited."""
    unknown_names: Mapping[str, float] = field(default_factory=dict)


class JobSource:
    """The runner or store behind the app, opened on first use.

    ``stats_ttl``: stats are read from the store at most once per this many
    seconds, whatever the number of clients (each dashboard tab polls them);
    requests in between, and those arriving while a read is under way, share
    it, and a request finding them older answers with them and reads them
    again after its response (see ``stats``). A store slow to count (a million
    jobs) is asked at most every ``STATS_BUDGET`` times its last answer's time.
    """

    def __init__(self, target: Runner | Store | str, *, clock: Clock | None = None, stats_ttl: float = 1.0):
        # A store made here from a URL is the source's to close; a Store passed
        # in stays open for its owner (as with Runner).
        self._owns_store = isinstance(target, str)
        if isinstance(target, str):
            target = store_from_url(target)
        self.runner: Runner | None = target if isinstance(target, Runner) else None
        self._store: Store | None = None if isinstance(target, Runner) else target
        self.clock: Clock = target.clock if isinstance(target, Runner) else (clock or SystemClock())
        self._stats_ttl = stats_ttl
        self._fresh_for = stats_ttl
        self._open_lock: asyncio.Lock | None = None
        self._opened: Store | None = None
        self._stats_lock: asyncio.Lock | None = None
        self._stats: StatsView | None = None
        self._samples: deque[tuple[float, dict[str, int]]] = deque()

    @property
    def can_enqueue(self) -> bool:
        """True when built from a runner, whose registry checks ``POST /jobs/{name}``."""
        return self.runner is not None

    async def store(self) -> Store:
        """The store, opened once (a runner opens its own)."""
        if self.runner is not None:
            return await self.runner.opened_store()
        if self._opened is None:
            if self._open_lock is None:
                self._open_lock = asyncio.Lock()
            async with self._open_lock:
                if self._opened is None:
                    assert self._store is not None
                    await self._store.open()
                    self._opened = self._store
        return self._opened

    async def aclose(self) -> None:
        """Close the store if this source made it from a URL and opened it (never a runner's)."""
        if self._opened is not None and self._owns_store:
            opened, self._opened = self._opened, None
            await opened.close()

    # reading -------------------------------------------------------------------------------------
    async def get(self, job_id: str) -> JobRecord:
        """The job; JobNotFound if there is none."""
        record = await (await self.store()).get(job_id)
        if record is None:
            raise JobNotFound(job_id)
        return record

    async def list_jobs(
        self,
        *,
        status: JobStatus | None,
        queue: str | None,
        name: str | None,
        limit: int,
        before: str | None,
    ) -> list[JobRecord]:
        """A page of jobs, newest first."""
        store = await self.store()
        return await store.list_jobs(status=status, queue=queue, name=name, limit=limit, before=before)

    async def stats(self, *, wait: bool = True) -> tuple[StatsView, bool]:
        """The stats, and whether the caller should ``refresh_stats()`` after answering.

        Fresh ones (read less than ``stats_ttl`` ago) are returned as they are.
        Older ones: with ``wait``, read again first; without, returned at once
        with True (stale-while-revalidate: the endpoints answer, then refresh in
        the same request, so no client waits for the store to count a million jobs).
        """
        cached = self._stats
        if cached is not None and self.clock.now() - cached.at < self._fresh_for:
            return cached, False
        if cached is not None and not wait:
            return cached, True
        return await self.refresh_stats(), False

    async def refresh_stats(self) -> StatsView:
        """Read the stats from the store, unless they are fresh; concurrent callers share one read."""
        if self._stats_lock is None:
            self._stats_lock = asyncio.Lock()
        async with self._stats_lock:
            cached = self._stats
            now = self.clock.now()
            if cached is not None and now - cached.at < self._fresh_for:
                return cached  # another request read them while this one waited
            started = self.clock.monotonic()
            raw = await (await self.store()).stats(now)
            # A count that takes the store long (a million jobs in SQLite: over a
            # second) is repeated at most every ten times its duration, so the
            # dashboard never keeps the store busy more than a tenth of the time.
            self._fresh_for = max(self._stats_ttl, STATS_BUDGET * (self.clock.monotonic() - started))
            self._stats = view = self._view(raw, now)
            return view

    def _view(self, raw: StoreStats, now: float) -> StatsView:
        finished = {
            queue: sum(by_status.get(s, 0) for s in FINAL_STATUSES) for queue, by_status in raw.queues.items()
        }
        samples = self._samples
        samples.append((now, finished))
        while len(samples) > 2 and now - samples[1][0] >= THROUGHPUT_WINDOW:
            samples.popleft()
        first_at, first = samples[0]
        span = now - first_at
        queues = []
        for queue, by_status in sorted(raw.queues.items()):
            rate = None
            if span > 0:
                # Pruning lowers the finished counts: never report a negative rate.
                rate = max(0, finished[queue] - first.get(queue, 0)) / span
            queues.append(
                QueueView(
                    queue,
                    dict(by_status),
                    sum(by_status.get(s, 0) for s in WAITING_STATUSES),
                    by_status.get(JobStatus.RUNNING, 0),
                    rate,
                )
            )
        return StatsView(
            now, dict(raw.counts), tuple(queues), raw.oldest_waiting_age, dict(raw.unknown_names)
        )

    async def schedules(self) -> list[ScheduleInfo] | None:
        """The runner's schedules with next and last runs; None without a runner."""
        return None if self.runner is None else await self.runner.schedules()

    async def cron_state(self) -> dict[str, float]:
        """Last tick of every schedule that ever fired (what a bare store knows)."""
        return await (await self.store()).cron_state()

    async def cluster(self) -> tuple[list[WorkerInfo], list[LeaderInfo]]:
        """The workers seen lately and the leaders."""
        store = await self.store()
        now = self.clock.now()
        return await store.workers(now), await store.leaders(now)

    async def health(self, timeout: float) -> tuple[bool, dict[str, Any]]:
        """Whether the store answers within ``timeout`` (and a started runner is healthy)."""
        details: dict[str, Any] = {}
        try:
            with anyio.fail_after(timeout):
                store = await self.store()
                details["pending"] = await store.count_pending()
            details["store"] = "ok"
            ok = True
        except TimeoutError:
            details["store"] = f"no answer within {timeout:g} s"
            ok = False
        except Exception as exc:
            details["store"] = f"{type(exc).__name__}: {exc}"
            ok = False
        runner = self.runner
        if runner is not None and runner.is_running:
            health: Health = runner.health()
            details["runner"] = {
                "workers": health.workers,
                "loop_lag": health.loop_lag,
                "store_ok": health.store_ok,
                "store_error": health.store_error,
            }
            ok = ok and health.ok
        return ok, details

    # changing ------------------------------------------------------------------------------------
    async def retry(self, job_id: str) -> JobRecord:
        """Requeue a dead or cancelled job; JobNotFound, InvalidJobState."""
        return await (await self.store()).requeue(job_id, self.clock.now())

    async def cancel(self, job_id: str) -> JobStatus:
        """Cancel a job (through the runner when there is one: it stops a local attempt at once)."""
        if self.runner is not None:
            return await self.runner.cancel(job_id)
        return await (await self.store()).cancel(job_id, self.clock.now())

    async def paused_queues(self) -> dict[str, float]:
        """Paused queues and when each was paused (epoch seconds)."""
        return await (await self.store()).paused_queues()

    async def pause(self, queue: str) -> bool:
        """Stop every runner on the store from starting ``queue``'s jobs; True if it was not paused."""
        if self.runner is not None:
            return await self.runner.pause(queue)
        return await (await self.store()).pause_queue(queue, self.clock.now())

    async def resume(self, queue: str) -> bool:
        """Let runners start ``queue``'s jobs again; True if it was paused."""
        if self.runner is not None:
            return await self.runner.resume(queue)
        return await (await self.store()).resume_queue(queue)

    async def purge(self, status: JobStatus, older_than: float, limit: int) -> int:
        """Delete up to ``limit`` jobs of a final status finished more than ``older_than`` s ago."""
        return await (await self.store()).purge(status, self.clock.now() - older_than, limit)

    async def enqueue(
        self, name: str, args: list[Any], kwargs: dict[str, Any], options: dict[str, Any]
    ) -> JobHandle[Any]:
        """Enqueue through the runner's registry (the caller checked ``can_enqueue``).

        UnknownJob, TypeError (arguments the handler does not take, or JSON
        cannot hold), ValueError (a bad option), QueueFull (never waits).
        """
        assert self.runner is not None
        job = self.runner.job_named(name)
        return await job.options(block=False, **options).enqueue(*args, **kwargs)
