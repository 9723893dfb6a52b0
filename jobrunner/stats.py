"""Runner statistics and health: the store's counts plus what only this process knows."""

from __future__ import annotations

import asyncio
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from jobrunner import defaults
from jobrunner.clock import Clock
from jobrunner.errors import StoreError
from jobrunner.logs import get_logger
from jobrunner.models import JobStatus, StoreStats

__all__ = ["Health", "LoopMonitor", "RunnerStats", "StoreHealth", "Throughput"]

_log = get_logger("jobrunner.health")
_store_log = get_logger("jobrunner.store")
_duty_log = get_logger("jobrunner.maintenance")

_BLOCKING_JOB = (
    "the job's handler runs blocking code on the event loop; await it, or make the handler a plain def"
)
_BLOCKING_OTHER = "no job is on the loop's stack: the app or the runner itself is blocking the loop"

_WINDOW = 60


class Throughput:
    """Attempts finished per second over the last minute, in per-second buckets.

    Fed once per settled batch, not per job.
    """

    __slots__ = ("_buckets", "_clock")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._buckets: deque[list[int]] = deque()

    def record(self, count: int) -> None:
        """``count`` attempts finished now."""
        second = int(self._clock.monotonic())
        buckets = self._buckets
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += count
        else:
            buckets.append([second, count])
            while buckets and buckets[0][0] <= second - _WINDOW:
                buckets.popleft()

    def per_second(self) -> float:
        """Mean rate over the last 60 s."""
        now = int(self._clock.monotonic())
        total = sum(n for second, n in self._buckets if second > now - _WINDOW)
        return total / _WINDOW


@dataclass(frozen=True, slots=True)
class RunnerStats:
    """A snapshot for dashboards and ``jobrunner stats``."""

    counts: Mapping[JobStatus, int]
    """Jobs in the store by status (all queues)."""
    queues: Mapping[str, Mapping[JobStatus, int]]
    """Jobs by queue and status."""
    running: int
    """Attempts running in this runner now."""
    workers: int
    """Worker tasks alive in this runner now."""
    oldest_waiting_age: float | None
    """Seconds the oldest ready job has waited."""
    throughput: float
    """Attempts this runner finished per second, over the last minute."""
    unknown_names: Mapping[str, float]
    """Waiting jobs no live runner has registered: name -> oldest job's age."""

    @classmethod
    def build(cls, store: StoreStats, *, running: int, workers: int, throughput: Throughput) -> RunnerStats:
        """Combine the store's view with this runner's."""
        return cls(
            counts=store.counts,
            queues=store.queues,
            running=running,
            workers=workers,
            oldest_waiting_age=store.oldest_waiting_age,
            throughput=throughput.per_second(),
            unknown_names=store.unknown_names,
        )


@dataclass(frozen=True, slots=True)
class Health:
    """Is this runner alive? ``runner.health()``, safe to call from any thread."""

    running: bool
    """The runner is started (inside ``async with`` or ``serve()``)."""
    workers: int
    """Worker tasks alive; while the runner runs there is at least the fetcher."""
    loop_lag: float
    """Seconds the event loop was late for the monitor's last tick, or has been
    blocked so far if that is longer."""
    loop_block_threshold: float
    """Lag above this counts as unresponsive."""
    blocking_job: str | None
    """Id of the job blocking the event loop right now, if the watchdog caught one."""
    store_ok: bool = True
    """No call this runner makes on its own (claim, settle, heartbeat, leader
    election, the leader's store duties) is failing now."""
    store_error: str | None = None
    """While the store fails: the latest error, ``"<call>: <type>: <message>"``."""
    store_failing_since: float | None = None
    """While the store fails: since when without a break (wall clock, epoch seconds)."""

    @property
    def workers_alive(self) -> bool:
        """The runner runs and has worker tasks."""
        return self.running and self.workers > 0

    @property
    def loop_responsive(self) -> bool:
        """The event loop's lag is under the threshold."""
        return self.loop_lag < self.loop_block_threshold

    @property
    def ok(self) -> bool:
        """Workers alive, the event loop responsive and the store answering."""
        return self.workers_alive and self.loop_responsive and self.store_ok


@dataclass(slots=True)
class _Spell:
    """One kind of call failing, from its first failure to its next success."""

    failures: int
    since: float
    """Monotonic time of the first failure."""
    counts: bool
    """Whether it makes the store count as failing (a user's duty failing with
    its own error does not)."""


class StoreHealth:
    """The store as the runner's own calls find it: failing spells, their backoff, giving up.

    Every call the runner makes by itself (claims, settles, heartbeats, leader
    election, the leader's duties) reports here. ``failed()`` returns how long
    to wait before the next try: ``STORE_RETRY_BASE`` seconds doubling up to
    ``STORE_RETRY_MAX``, so a broken store is not hammered. ``succeeded()`` ends
    the spell. Each kind of call has a spell of its own, because a partly
    damaged database fails some calls and not others: a working heartbeat must
    not hide claims that keep failing, nor restart their backoff.

    Logs, per spell: the first failure with its traceback, each later one as a
    single line (how many, for how long, next try), the recovery as one line.

    The store counts as failing while any spell lasts; once it has failed
    without a break for ``give_up_after`` seconds it is ``expired()``, and
    ``wait_give_up()`` returns. All of it runs on the runner's clock, so a
    ``FakeClock`` drives backoff and giving up like every other delay. Created
    per run, on the runner's event loop.
    """

    def __init__(
        self,
        clock: Clock,
        store: object,
        *,
        give_up_after: float | None = None,
        base: float = defaults.STORE_RETRY_BASE,
        cap: float = defaults.STORE_RETRY_MAX,
    ) -> None:
        self._clock = clock
        # Its repr names the file or database (SQLiteStore('var/jobs.db')); a
        # store without one is named by its class.
        self._store = repr(store) if type(store).__repr__ is not object.__repr__ else type(store).__name__
        self._give_up_after = give_up_after
        self._base = base
        self._cap = cap
        self._spells: dict[str, _Spell] = {}
        self._since: float | None = None
        # (failing since, wall clock; latest error): one tuple, swapped whole, so
        # health() on another thread never sees half an update.
        self._state: tuple[float | None, str | None] = (None, None)
        self._last: BaseException | None = None
        self._changed = asyncio.Event()

    # reporting ---------------------------------------------------------------------
    def failed(self, call: str, exc: BaseException, *, counts: bool = True, **fields: Any) -> float:
        """``call`` raised ``exc``: log it, and return the seconds to wait before trying again."""
        clock = self._clock
        spell = self._spells.get(call)
        if spell is None:
            spell = self._spells[call] = _Spell(0, clock.monotonic(), counts)
        spell.failures += 1
        delay = min(self._cap, self._base * 2.0 ** min(spell.failures - 1, 60))
        error = f"{type(exc).__name__}: {exc}"
        what = "store call" if counts else "maintenance duty"
        if spell.failures == 1:
            (_store_log.error if counts else _duty_log.error)(
                f"{what} failed; retrying with backoff",
                call=call,
                store=self._store,
                retry_in=delay,
                error=error,
                **fields,
                exc_info=exc,
            )
        else:
            (_store_log.warning if counts else _duty_log.warning)(
                f"{what} still failing",
                call=call,
                failures=spell.failures,
                failing_for=round(clock.monotonic() - spell.since, 1),
                retry_in=delay,
                error=error,
                **fields,
            )
        if counts:
            if self._since is None:
                self._since = spell.since
                self._state = (clock.now(), None)
                self._changed.set()
            self._state = (self._state[0], f"{call}: {error}")
            self._last = exc
        return delay

    def succeeded(self, call: str) -> None:
        """``call`` worked: end its spell, if it had one, with one line."""
        spell = self._spells.pop(call, None)
        if spell is None:
            return
        (_store_log if spell.counts else _duty_log).info(
            "store call recovered" if spell.counts else "maintenance duty recovered",
            call=call,
            failures=spell.failures,
            failed_for=round(self._clock.monotonic() - spell.since, 1),
        )
        self._ended()

    def forget(self, call: str) -> None:
        """``call`` is no longer being tried (no leases left to renew, leadership
        gone): its spell ends without a verdict."""
        if self._spells.pop(call, None) is not None:
            self._ended()

    def _ended(self) -> None:
        if self._since is not None and not any(s.counts for s in self._spells.values()):
            self._since = None
            self._state = (None, None)
            self._last = None
            self._changed.set()

    # reading -----------------------------------------------------------------------
    @property
    def state(self) -> tuple[bool, str | None, float | None]:
        """``(ok, latest error, failing since)`` for ``Health``; safe from any thread."""
        since, error = self._state
        return since is None, error, since

    def expired(self) -> bool:
        """The store has failed without a break for ``give_up_after`` seconds."""
        return self.expires_in() <= 0

    def expires_in(self) -> float:
        """Seconds until ``expired()`` if the store keeps failing; inf if it is not failing."""
        since, after = self._since, self._give_up_after
        if since is None or after is None:
            return math.inf
        return since + after - self._clock.monotonic()

    async def wait_give_up(self) -> StoreError:
        """Return once ``expired()``: the StoreError to raise, naming the store, the
        error, for how long, and what to do. Never returns if ``give_up_after`` is None."""
        clock = self._clock
        after = self._give_up_after
        if after is None:
            await asyncio.Event().wait()  # until cancelled with the runner's tasks
        assert after is not None
        while True:
            self._changed.clear()
            since = self._since
            if since is None:
                await self._changed.wait()
                continue
            left = since + after - clock.monotonic()
            if left > 0:
                await clock.sleep(left, wake=self._changed)
                continue
            failing_for = clock.monotonic() - since
            since_wall, error = self._state
            started = datetime.fromtimestamp(since_wall or clock.now(), UTC).isoformat(timespec="seconds")
            gave_up = StoreError(
                f"{self._store} has failed for {failing_for:.0f} s without a break (since {started}); "
                f"the last error, from {error}. The runner stopped: running jobs were drained, and "
                f"outcomes it could not record stay with their leases, so those jobs run again once "
                f"the leases expire. Fix the store (the error says how) and start the worker again; "
                f"Runner(store_give_up=None) retries for ever instead."
            )
            gave_up.__cause__ = self._last
            return gave_up


class LoopMonitor:
    """Measures event-loop lag, and names the job when a handler blocks the loop.

    A task sleeps ``interval`` at a time and records how late it woke (the lag).
    A watchdog thread checks that the task keeps ticking; once it has been
    silent for longer than ``threshold`` the loop is blocked *now*, so the thread
    looks at the loop thread's stack for the running job that is on it and logs
    a warning naming it and the line it is stuck on. Nothing runs per job.
    """

    def __init__(self, threshold: float | None, running: Callable[[], Mapping[str, Any]]) -> None:
        self.threshold = defaults.LOOP_BLOCK_THRESHOLD if threshold is None else threshold
        self._watch = threshold is not None
        self._interval = min(0.5, self.threshold / 2)
        self._running = running
        self._lag = 0.0
        self._beat = time.monotonic()
        self._loop_thread: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.blocking_job: str | None = None

    def lag(self) -> float:
        """The last lag measured, or how long the loop has been silent if longer."""
        silent = time.monotonic() - self._beat - self._interval
        return max(0.0, self._lag, silent)

    def start(self) -> None:
        """Start the watchdog thread (call on the event loop's thread, then run ``run``)."""
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._lag = 0.0
        self._stop.clear()
        if self._watch and self._thread is None:
            self._thread = threading.Thread(target=self._watchdog, name="jobrunner.watchdog", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the watchdog thread."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=1.0)

    async def run(self) -> None:
        """Measure the lag until cancelled (a task of the runner's task group)."""
        while True:
            before = time.monotonic()
            # Real time on purpose: loop lag is about the real loop, not a test clock.
            await asyncio.sleep(self._interval)
            now = time.monotonic()
            self._lag = max(0.0, now - before - self._interval)
            self._beat = now

    def _watchdog(self) -> None:
        blocked = False
        while not self._stop.wait(self._interval):
            try:
                silent = time.monotonic() - self._beat - self._interval
                if silent > self.threshold and not blocked:
                    blocked = True
                    job, where = self._culprit()
                    self.blocking_job = job.id if job is not None else None
                    if job is not None:
                        fields = {"job_id": job.id, "job_name": job.name, "attempt": job.attempt}
                        fields |= {"queue": job.queue, "hint": _BLOCKING_JOB}
                    else:
                        fields = {"job_id": None, "hint": _BLOCKING_OTHER}
                    _log.warning(
                        "event loop blocked",
                        **fields,
                        blocked_for=round(silent, 3),
                        threshold=self.threshold,
                        where=where,
                    )
                elif blocked and silent <= self.threshold:
                    blocked = False
                    _log.info(
                        "event loop unblocked", job_id=self.blocking_job, blocked_for=round(self._lag, 3)
                    )
                    self.blocking_job = None
            except Exception:  # the watchdog must never die of a race with the loop
                _log.exception("loop watchdog failed")

    def _culprit(self) -> tuple[Any, str | None]:
        """The running job on the loop thread's stack now, and where it is."""
        frame: FrameType | None = sys._current_frames().get(self._loop_thread or -1)
        if frame is None:
            return None, None
        where = f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
        jobs = {id(job): job for job in list(self._running().values())}
        # The innermost frame holding one of the running jobs (the executor's
        # first step, or the step driving a resumed job) is the one on the stack.
        while frame is not None and jobs:
            for value in list(frame.f_locals.values()):
                job = jobs.get(id(value))
                if job is not None:
                    return job, where
            frame = frame.f_back
        return None, where
