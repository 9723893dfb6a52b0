"""The elastic worker pool: claims no more than it can run, and runs it.

Shape (leader/follower): worker tasks take claimed jobs from ``_ready`` and run
them one after another. When ``_ready`` is empty, one worker becomes the
fetcher: it settles finished attempts, claims a batch no larger than the free
slots, and otherwise sleeps until a work notification, the next delayed job, or
a free slot. Other idle workers retire, so an idle runner holds one sleeping
task and nothing else.

A new worker is started only when a job really suspends (``on_block``) while
work is waiting and no worker is free: a burst of jobs that never suspend runs
on one task at the speed of a loop, and jobs that wait on I/O fan out up to
``concurrency`` tasks. Every task belongs to the runner's task group.

Timeouts are watched by one task for all jobs. It sleeps until the earliest
deadline it knows of, then scans the running jobs (at most ``concurrency``);
starting a job costs one comparison, and no timer is created per job.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextvars import Context
from typing import Any

import anyio
from anyio.abc import TaskGroup

from jobrunner.clock import Clock
from jobrunner.context import CancelReason, JobContext
from jobrunner.execute import Executor
from jobrunner.flow import Limits
from jobrunner.logs import get_logger
from jobrunner.models import (
    ClaimedJob,
    ClaimRequest,
    ExpiredJob,
    JobSpec,
    LeaseReport,
    LeaseTerms,
    Outcome,
    OutcomeKind,
)
from jobrunner.observability import job_log
from jobrunner.stats import StoreHealth, Throughput
from jobrunner.stores.base import Store

__all__ = ["WorkerPool", "spawn_in"]

_log = get_logger("jobrunner.pool")


def spawn_in(ctx: Context, tg: TaskGroup, fn: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
    """Start ``fn`` in ``tg`` as a task whose context is a copy of ``ctx``.

    A task copies the context current when it is created; creating it inside
    ``ctx.run`` makes that ``ctx`` rather than whatever the caller runs in (a job).
    """
    ctx.run(lambda: tg.start_soon(fn, name=name))


class WorkerPool:
    """Claims and runs jobs for one runner."""

    # Slots, not a __dict__: past 30 attributes CPython 3.11 gives an instance a
    # plain dict, and the worker loop reads several per job.
    __slots__ = (
        "_base", "_batch", "_before_settle", "_blocked", "_blocked_queues", "_cancel_grace", "_clock",
        "_concurrency", "_consume", "_executor", "_fetching", "_global_limits", "_health", "_held",
        "_held_by_queue", "_hurry", "_hurry_wake", "_idle", "_intake_open", "_lease", "_limits",
        "_names", "_on_claimed", "_on_expired", "_orphans", "_poked", "_ready", "_running",
        "_saturated", "_settle_buf", "_settle_done", "_settle_retry_at", "_settle_signalled",
        "_settle_wake", "_settling", "_store", "_tg", "_throughput", "_wake", "_watch_until",
        "_watch_wake", "_worker_id", "_workers", "_workers_gone",
    )  # fmt: skip

    def __init__(
        self,
        *,
        store: Store,
        executor: Executor,
        clock: Clock,
        concurrency: int,
        queue_limits: Mapping[str, int],
        consume: frozenset[str] | None,
        names: Callable[[], frozenset[str]],
        worker_id: str,
        lease: LeaseTerms,
        cancel_grace: float,
        base_context: Context,
        on_claimed: Callable[[], None],
        throughput: Throughput,
        store_health: StoreHealth | None = None,
        global_limits: Limits | None = None,
        on_expired: Callable[[Sequence[ExpiredJob]], None] | None = None,
        before_settle: Callable[[Sequence[Outcome]], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._before_settle = before_settle  # writes the attempts' last progress
        self._executor = executor
        self._clock = clock
        self._concurrency = concurrency
        self._limits = dict(queue_limits)
        self._consume = consume
        self._names = names
        self._worker_id = worker_id
        self._lease = lease
        self._cancel_grace = cancel_grace
        self._base = base_context
        self._on_claimed = on_claimed
        self._throughput = throughput
        self._health = store_health or StoreHealth(clock, store)
        self._batch = max(1, store.claim_batch)
        self._global_limits = global_limits or None
        self._on_expired = on_expired

        self._tg: TaskGroup | None = None
        self._ready: deque[ClaimedJob] = deque()
        self._running: dict[str, JobContext] = {}
        self._held = 0
        self._held_by_queue: dict[str, int] = dict.fromkeys(self._limits, 0)
        self._blocked_queues: set[str] = set()
        self._saturated = False
        self._workers = 0
        self._blocked = 0
        self._fetching = False
        self._intake_open = False
        self._hurry = False
        self._wake = asyncio.Event()
        # True from a work notification until the fetcher next clears ``_wake``:
        # further notifications (one per enqueue) have nothing to add.
        self._poked = False
        self._idle = asyncio.Event()
        self._workers_gone = asyncio.Event()

        self._settle_buf: list[Outcome] = []
        self._settling = 0
        self._settle_wake = asyncio.Event()
        self._settle_signalled = False  # mirrors _settle_wake for the hot path (no method call)
        self._settle_done = asyncio.Event()
        # After a failed settle, no store call before this (monotonic) time.
        self._settle_retry_at = -math.inf
        self._hurry_wake = asyncio.Event()

        self._watch_until = math.inf
        self._orphans: set[JobContext] = set()
        self._watch_wake = asyncio.Event()
        executor.arm_deadline = self.arm_deadline

    # lifecycle ---------------------------------------------------------------
    def start(self, tg: TaskGroup) -> None:
        """Start the fetcher, the settler and the deadline watcher in ``tg``."""
        self._tg = tg
        self._intake_open = True
        spawn_in(self._base, tg, self._settler, "jobrunner.settler")
        spawn_in(self._base, tg, self._watch_deadlines, "jobrunner.deadlines")
        self._spawn()

    def notify_work(self) -> None:
        """Work may be ready (a store notification): wake the fetcher."""
        if self._poked:
            return
        self._poked = True
        self._idle.clear()
        self._wake.set()

    @property
    def running(self) -> Mapping[str, JobContext]:
        """Attempts running now, by job id."""
        return self._running

    @property
    def workers(self) -> int:
        """Worker tasks alive now."""
        return self._workers

    async def wait_idle(self) -> None:
        """Until nothing this runner can run is ready, running or unsettled."""
        while True:
            await self._idle.wait()
            # Settling may have made a retry ready; let the fetcher look once more.
            if self._idle_now():
                return
            # Only if the fetcher is not looking already (it clears idle when it
            # starts); poking it mid-look would make it look again forever.
            if self._idle.is_set():
                self._idle.clear()
                self._wake.set()

    def _idle_now(self) -> bool:
        return (
            self._idle.is_set()
            and self._held == 0
            and not self._settle_buf
            and not self._settling
            and not self._wake.is_set()
        )

    async def drain(self, grace: float) -> None:
        """Stop claiming; release unstarted jobs; give running ones ``grace`` seconds,
        then cancel them (they go back to the queue uncounted); settle everything."""
        self._intake_open = False
        self._wake.set()
        now = self._clock.now()
        while self._ready:
            claimed = self._ready.popleft()
            self._release_slot(claimed.spec.queue)
            self._settle_buf.append(Outcome(claimed.spec.id, claimed.token, OutcomeKind.RELEASED, now))
        if self._running and not self._hurry:
            _log.info("shutdown: waiting for running jobs", running=len(self._running), grace=grace)
            self._workers_gone.clear()
            if self._workers:
                await self._clock.sleep(grace, wake=self._workers_gone)
        if self._running:
            _log.warning(
                "shutdown: cancelling jobs still running after the grace period",
                running=len(self._running),
            )
            for job in list(self._running.values()):
                self.request_cancel(job, CancelReason.SHUTDOWN)
        while self._workers:
            self._workers_gone.clear()
            await self._workers_gone.wait()
        # One try now whatever the backoff: the last chance to record outcomes.
        await self._flush(force=True)
        # The settler task may be inside store.settle() right now; the runner
        # cancels it as soon as drain returns, which would lose that batch.
        clock = self._clock
        while self._settling or self._settle_buf:
            if self._settling:
                self._settle_done.clear()
                await self._settle_done.wait()
                continue
            if self._health.expired() or self._hurry:
                self._leave_unsettled()
                break
            # The store is failing: the settler tries again after its backoff (as
            # may this loop, if it wakes first), until the store has failed for
            # store_give_up without a break, or the stop is hurried.
            self._hurry_wake.clear()
            wait = min(self._settle_retry_at - clock.monotonic(), self._health.expires_in())
            await clock.sleep(wait, wake=self._hurry_wake)
            await self.flush()

    def hurry(self) -> None:
        """Cut a drain's grace period short (and its retries of a failing store)."""
        self._hurry = True
        self._workers_gone.set()
        self._hurry_wake.set()

    # workers -------------------------------------------------------------------
    def _spawn(self) -> None:
        assert self._tg is not None
        self._workers += 1
        # In the runner's base context, not that of the job whose suspension
        # triggered the spawn.
        spawn_in(self._base, self._tg, self._worker, "jobrunner.worker")

    def _on_block(self) -> None:
        self._blocked += 1
        if self._workers - self._blocked > 0 or self._workers > self._concurrency:
            return
        if self._ready or (self._intake_open and not self._fetching and self._held < self._concurrency):
            self._spawn()

    async def _worker(self) -> None:
        task = asyncio.current_task()
        ready = self._ready
        try:
            while True:
                if ready:
                    await self._run_ready(task)
                    continue
                if not self._intake_open or self._fetching:
                    return
                self._fetching = True
                try:
                    got = await self._fetch()
                finally:
                    self._fetching = False
                if not got:
                    return
        finally:
            self._workers -= 1
            if not self._workers:
                self._workers_gone.set()

    async def _run_ready(self, task: Any) -> None:
        """Run jobs from ``_ready`` until it is empty (the hot loop)."""
        ready = self._ready
        running = self._running
        clock = self._clock
        begin = self._executor.begin
        on_block = self._on_block
        batches = self._executor.batches
        while ready:
            claimed = ready.popleft()
            spec = claimed.spec
            if batches and spec.name in batches and claimed.decode_error is None:
                await self._run_batch(task, claimed, batches[spec.name])
                continue
            job_id, timeout = spec.id, spec.timeout
            started = clock.monotonic()
            job = JobContext(claimed, clock, started, task)
            superseded = running.get(job_id)
            if superseded is not None:
                # The store handed this job out again while an older attempt still
                # runs here: that attempt's lease expired (a blocked loop, a
                # suspended machine) and it was rescued. Stop the stale attempt;
                # the fencing token already keeps its outcome out of the store.
                self._orphans.add(superseded)
                self.request_cancel(superseded, CancelReason.LEASE_LOST)
            running[job_id] = job
            if timeout is not None:
                deadline = started + timeout
                job._deadline_mono = deadline
                if deadline < self._watch_until:
                    # The watcher rescans every job when it wakes: until then,
                    # later deadlines need not wake it again.
                    self._watch_until = deadline
                    self._watch_wake.set()
            try:
                outcome = begin(claimed, job, on_block)
                if outcome is not None and not isinstance(outcome, Outcome):
                    outcome = await outcome
            except asyncio.CancelledError:
                # Cancelled from outside the runner's own requests: the runner is
                # being torn down. Put the job back before letting go.
                self._settle_buf.append(Outcome(job_id, claimed.token, OutcomeKind.RELEASED, clock.now()))
                with anyio.CancelScope(shield=True), anyio.move_on_after(self._cancel_grace):
                    await self.flush()
                raise
            finally:
                # self._ended(spec, job), inlined: this runs once per job.
                current = running.pop(job_id, None)
                if current is not job:
                    if current is not None:
                        running[job_id] = current
                    self._orphans.discard(job)
                if job._blocked:
                    self._blocked -= 1
                if self._limits or self._saturated:
                    self._release_slot(spec.queue)
                else:
                    self._held -= 1
            if outcome is not None:
                # Not cached in a local: flush() swaps the list while we await.
                self._settle_buf.append(outcome)
                if not self._settle_signalled:
                    self._settle_signalled = True
                    self._settle_wake.set()
            elif self._held == 0 and self._intake_open:
                # Nothing to settle (the lease was lost), so no flush will end
                # this busy spell: the fetcher must look again, or wait_idle hangs.
                self._wake.set()

    async def _run_batch(self, task: Any, first: ClaimedJob, size: int) -> None:
        """Run a batch handler for ``first`` and up to ``size - 1`` more ready jobs of
        its name, taken in the order the claim returned them (best first): what
        is ready now, with no waiting for the batch to fill. Each member keeps its
        own context, lease, deadline and outcome, as in ``_run_ready``."""
        ready = self._ready
        running = self._running
        clock = self._clock
        members = [first]
        if size > 1 and ready:
            others: list[ClaimedJob] = []
            while ready and len(members) < size:
                claimed = ready.popleft()
                if claimed.spec.name == first.spec.name and claimed.decode_error is None:
                    members.append(claimed)
                else:
                    others.append(claimed)
            ready.extendleft(reversed(others))
        started = clock.monotonic()
        jobs: list[JobContext] = []
        for claimed in members:
            spec = claimed.spec
            job = JobContext(claimed, clock, started, task)
            superseded = running.get(spec.id)
            if superseded is not None:
                self._orphans.add(superseded)
                self.request_cancel(superseded, CancelReason.LEASE_LOST)
            running[spec.id] = job
            if spec.timeout is not None:
                deadline = started + spec.timeout
                job._deadline_mono = deadline
                if deadline < self._watch_until:
                    self._watch_until = deadline
                    self._watch_wake.set()
            jobs.append(job)
        try:
            outcomes = await self._executor.run_batch(members, jobs, self._on_block)
        except asyncio.CancelledError:
            # The runner is being torn down: put the members back before letting go.
            now = clock.now()
            for claimed in members:
                self._settle_buf.append(Outcome(claimed.spec.id, claimed.token, OutcomeKind.RELEASED, now))
            with anyio.CancelScope(shield=True), anyio.move_on_after(self._cancel_grace):
                await self.flush()
            raise
        finally:
            for claimed, job in zip(members, jobs, strict=True):
                self._ended(claimed.spec, job)
        settled = [outcome for outcome in outcomes if outcome is not None]
        if settled:
            self._settle_buf.extend(settled)
            if not self._settle_signalled:
                self._settle_signalled = True
                self._settle_wake.set()
        elif self._held == 0 and self._intake_open:
            self._wake.set()

    async def _fetch(self) -> bool:
        """Claim a batch into ``_ready``; False once intake is closed."""
        clock = self._clock
        wake = self._wake
        # One yield per batch keeps a stream of jobs that never suspend from
        # starving the settler, the watcher and the app.
        await asyncio.sleep(0)
        while self._intake_open:
            free = self._concurrency - self._held
            delay: float | None = None
            if free > 0:
                wake.clear()
                self._poked = False
                # Looking again: "idle" from the last look no longer holds until this
                # look (which may await the store) finds nothing.
                self._idle.clear()
                try:
                    batch = await self._claim(min(free, self._batch))
                except Exception as exc:
                    # Backoff on the runner's clock, like every other delay (a test
                    # with a FakeClock advances it). A work notification does not
                    # cut it short; stopping does.
                    retry_at = clock.monotonic() + self._health.failed("claim", exc)
                    while self._intake_open and (left := retry_at - clock.monotonic()) > 0:
                        wake.clear()
                        await clock.sleep(left, wake=wake)
                    continue
                self._health.succeeded("claim")
                if not self._intake_open:
                    self._release_unstarted(batch)
                    return False
                if batch:
                    return True
                delay = await self._time_to_next_work(clock.now())
                # Idle only now, right before sleeping: while the store answered, the
                # clock may have moved, and a waiter must not see idle before then.
                if self._held == 0 and not self._settle_buf and not self._settling:
                    self._idle.set()
            if delay is None:
                await wake.wait()
            else:
                await clock.sleep(delay, wake=wake)
        return False

    async def _time_to_next_work(self, now: float) -> float | None:
        delay: float | None = None
        next_at = await self._store.next_run_at(now)
        if next_at is not None:
            # From the time after the store answered, not before it was asked.
            delay = max(0.0, next_at - self._clock.now())
        poll = self._store.poll_interval
        if poll is not None and (delay is None or poll < delay):
            delay = poll
        return delay

    async def _claim(self, limit: int) -> list[ClaimedJob]:
        if self._settle_buf:
            await self.flush()
        room: dict[str, int] = {}
        if self._limits:
            for queue, cap in self._limits.items():
                room[queue] = cap - self._held_by_queue[queue]
            self._blocked_queues = {q for q, r in room.items() if r <= 0}
        request = ClaimRequest(
            self._worker_id,
            limit,
            self._clock.now(),
            self._names(),
            room,
            self._lease,
            self._consume,
            self._global_limits,
            self._on_expired,
        )
        batch = await self._store.claim(request)
        n = len(batch)
        self._saturated = n >= limit
        if n:
            self._held += n
            self._idle.clear()
            if self._limits:
                for claimed in batch:
                    queue = claimed.spec.queue
                    if queue in self._held_by_queue:
                        self._held_by_queue[queue] += 1
            self._ready.extend(batch)
            self._on_claimed()
        return batch

    def _release_unstarted(self, batch: list[ClaimedJob]) -> None:
        now = self._clock.now()
        for claimed in batch:
            if claimed in self._ready:
                self._ready.remove(claimed)
                self._release_slot(claimed.spec.queue)
                self._settle_buf.append(Outcome(claimed.spec.id, claimed.token, OutcomeKind.RELEASED, now))

    def _release_slot(self, queue: str) -> None:
        self._held -= 1
        if queue in self._held_by_queue:
            self._held_by_queue[queue] -= 1
            if queue in self._blocked_queues:
                self._blocked_queues.discard(queue)
                self._wake.set()
        if self._saturated:
            self._saturated = False
            self._wake.set()

    # cancellation and timeouts ------------------------------------------------
    def cancel(self, job_id: str) -> bool:
        """Cancel a job this pool holds; False if it holds none with this id."""
        job = self._running.get(job_id)
        if job is not None:
            self.request_cancel(job, CancelReason.USER)
            return True
        for claimed in self._ready:
            if claimed.spec.id == job_id:
                self._ready.remove(claimed)
                self._release_slot(claimed.spec.queue)
                self._settle_buf.append(
                    Outcome(job_id, claimed.token, OutcomeKind.CANCELLED, self._clock.now())
                )
                self._settle_wake.set()
                return True
        return False

    def request_cancel(self, job: JobContext, reason: int) -> None:
        """Cancel a running attempt for ``reason``; abandon it after the cancel grace."""
        if job._cancel_reason or job._task is None:
            return
        job._cancel_reason = reason
        job._cancels += 1
        job._task.cancel()
        job._grace_mono = self._clock.monotonic() + self._cancel_grace
        if job._grace_mono < self._watch_until:
            self._watch_wake.set()

    def arm_deadline(self, job: JobContext, deadline: float) -> None:
        """Give a running job its deadline now (a sync handler's, when its thread starts)."""
        job._deadline_mono = deadline
        if deadline < self._watch_until:
            self._watch_wake.set()

    async def _watch_deadlines(self) -> None:
        clock = self._clock
        while True:
            now = clock.monotonic()
            soonest = math.inf
            for job in [*self._running.values(), *self._orphans]:
                if job._cancel_reason:
                    if job._abandoned:
                        continue
                    if job._grace_mono <= now:
                        self._abandon(job)
                    else:
                        soonest = min(soonest, job._grace_mono)
                elif job._deadline_mono is not None:
                    if job._deadline_mono <= now:
                        self.request_cancel(job, CancelReason.TIMEOUT)
                        soonest = min(soonest, job._grace_mono)
                    else:
                        soonest = min(soonest, job._deadline_mono)
            self._watch_until = soonest
            self._watch_wake.clear()
            if soonest == math.inf:
                await self._watch_wake.wait()
            else:
                await clock.sleep(soonest - now, wake=self._watch_wake)

    def _abandon(self, job: JobContext) -> None:
        if job._task is None:
            return
        job._abandoned = True
        job._cancels += 1
        job._task.cancel()

    # leases ----------------------------------------------------------------------
    def leases(self) -> list[tuple[str, int]]:
        """``(job_id, token)`` of every job this pool holds, for the heartbeat."""
        held = [(c.spec.id, c.token) for c in self._ready]
        held.extend((j.id, j._claimed.token) for j in self._running.values())
        return held

    def apply_lease_report(self, report: LeaseReport, sent: list[tuple[str, int]]) -> None:
        """Stop attempts whose lease was lost; cancel those whose cancel was requested.

        ``sent`` is what the heartbeat renewed: a lost lease names the attempt by
        its token, and a newer attempt of the same job may have started here
        while the heartbeat was in flight; that one keeps running.
        """
        tokens = dict(sent)
        for job_id in report.lost:
            job = self._running.get(job_id)
            if job is not None and job._claimed.token == tokens.get(job_id):
                job_log.warning(
                    "job lease lost",
                    job_id=job_id,
                    job_name=job.name,
                    attempt=job.attempt,
                    queue=job.queue,
                    hint="another worker took the job over; this attempt is being stopped",
                )
                self.request_cancel(job, CancelReason.LEASE_LOST)
        for job_id in report.cancel_requested:
            self.cancel(job_id)

    # settling ---------------------------------------------------------------------
    async def _settler(self) -> None:
        clock = self._clock
        while True:
            await self._settle_wake.wait()
            self._settle_wake.clear()
            self._settle_signalled = False
            left = self._settle_retry_at - clock.monotonic()
            if left > 0:
                # The last settle failed: wait out the backoff. Outcomes arriving
                # meanwhile join the next try instead of cutting the wait short.
                await clock.sleep(left)
            await self._flush(force=True)

    def _ended(self, spec: JobSpec, job: JobContext) -> None:
        """An attempt of ``spec`` left its slot: forget it and give the slot back."""
        running = self._running
        current = running.pop(spec.id, None)
        if current is not job:
            # A newer attempt of the same job took the slot meanwhile.
            if current is not None:
                running[spec.id] = current
            self._orphans.discard(job)
        if job._blocked:
            self._blocked -= 1
        if self._limits or self._saturated:
            self._release_slot(spec.queue)
        else:
            self._held -= 1

    async def flush(self) -> bool:
        """Write buffered outcomes in one store call; True once none is left.

        If the store fails the outcomes stay buffered and False is returned: the
        settler tries again after the store backoff, and until then ``flush()``
        returns False at once without calling the store.
        """
        return await self._flush(force=False)

    async def _flush(self, *, force: bool) -> bool:
        flushed = False
        while self._settle_buf:
            if not force and self._settle_retry_at > self._clock.monotonic():
                return False
            batch = self._settle_buf
            self._settle_buf = []
            self._settling += 1
            try:
                if self._before_settle is not None:
                    await self._before_settle(batch)
                lost = await self._store.settle(batch, self._worker_id)
            except Exception as exc:
                self._settle_buf[:0] = batch
                self._settle_retry_at = self._clock.monotonic() + self._health.failed(
                    "settle", exc, outcomes=len(batch)
                )
                self._settle_wake.set()  # the settler retries after the backoff
                return False
            finally:
                self._settling -= 1
                if not self._settling:
                    self._settle_done.set()
            if self._settle_retry_at != -math.inf:
                self._settle_retry_at = -math.inf
                self._health.succeeded("settle")
            flushed = True
            self._throughput.record(len(batch))
            if lost:
                _log.warning(
                    "outcomes not recorded: the lease had been lost (another attempt owns the job)",
                    job_ids=lost,
                )
        if flushed and self._held == 0 and self._intake_open:
            # Settling may have made a retry ready, and it ends a busy spell:
            # the fetcher looks again and decides whether the pool is idle.
            self._wake.set()
        return True

    def _leave_unsettled(self) -> None:
        """Stopping while the store cannot record outcomes: leave them unwritten.

        Their jobs stay running under this runner's leases in the store; once
        the leases expire the leader rescues them and they run again (at least
        once, as after a crash). None is lost.
        """
        ids = [outcome.job_id for outcome in self._settle_buf]
        self._settle_buf = []
        _log.error(
            "outcomes not recorded: the store is failing; these jobs run again once their leases expire",
            jobs=len(ids),
            job_ids=ids,
        )
