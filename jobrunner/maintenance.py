"""Background upkeep: lease heartbeats, and the leader's duties.

Every runner heartbeats the leases of the jobs it holds. One runner per store,
the leader, runs the duties that must not run twice: rescuing expired leases,
pruning old jobs, and cron ticks. It is elected through the store
(``try_lead``), which hands the role over when the leader's lease lapses, or
sooner when the store can tell that the leader's process died (PostgreSQL: its
session's advisory lock; SQLite: its lock file). Followers try every third of
the lease, or every ``store.leader_poll_interval`` seconds if the store has
such a cheap check, so that they notice a dead leader within that.

A store call that fails (heartbeat, election, a duty) is retried after the
``StoreHealth`` backoff (heartbeats and elections never sooner than their own
cadence), and logged once with its traceback, then one line per retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

import anyio

from jobrunner import defaults
from jobrunner.clock import Clock
from jobrunner.errors import StoreError
from jobrunner.logs import get_logger
from jobrunner.models import LeaseReport, LeaseTerms
from jobrunner.observability import job_log
from jobrunner.stats import StoreHealth
from jobrunner.stores.base import Store

__all__ = ["Duty", "Maintenance", "PruneDuty", "RescueDuty", "heartbeat_interval"]

_log = get_logger("jobrunner.maintenance")

LEADER_ROLE = "maintenance"


class Duty(Protocol):
    """Work only the leader does."""

    name: str

    async def run(self, now: float) -> float:
        """Do what is due at wall time ``now``; return seconds until it is due again."""
        ...


class RescueDuty:
    """Take back jobs whose worker stopped heartbeating."""

    name = "rescue"

    def __init__(self, store: Store, interval: float) -> None:
        self._store = store
        self._interval = interval

    async def run(self, now: float) -> float:
        """Rescue expired leases."""
        for job in await self._store.rescue_expired(now):
            job_log.warning(
                "job lease recovered",
                job_id=job.id,
                job_name=job.name,
                attempt=job.attempt,
                status=job.status.value,
            )
        return self._interval


class PruneDuty:
    """Delete finished jobs past their retention, in bounded batches."""

    name = "prune"
    batch = 10_000

    def __init__(self, store: Store, result_ttl: float, interval: float) -> None:
        self._store = store
        self._ttl = result_ttl
        self._interval = interval

    async def run(self, now: float) -> float:
        """Prune one batch; come back soon if there was more."""
        pruned = await self._store.prune(now - self._ttl, self.batch)
        if pruned:
            _log.debug("pruned finished jobs", count=pruned)
        return 0.0 if pruned >= self.batch else self._interval


# The runner's own duties do nothing but store work: any error of theirs is the
# store's. Other duties (the app's, telemetry) count only when they raise StoreError.
_STORE_DUTIES = frozenset({"rescue", "prune", "cron"})


def heartbeat_interval(terms: LeaseTerms) -> float:
    """A third of the shortest lease, at most 10 s."""
    return max(0.01, min(10.0, _shortest_lease(terms) / 3))


def _shortest_lease(terms: LeaseTerms) -> float:
    return terms.fixed if terms.fixed is not None else terms.margin


class Maintenance:
    """Runs the heartbeat and the leader loop until ``stop()``."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        holder: str,
        lease: LeaseTerms,
        leases: Callable[[], list[tuple[str, int]]],
        on_report: Callable[[LeaseReport, list[tuple[str, int]]], None],
        duties: Sequence[Duty],
        leader_ttl: float = defaults.LEADER_TTL,
        store_health: StoreHealth | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._holder = holder
        self._lease = lease
        self._leases = leases
        self._on_report = on_report
        self._duties = list(duties)
        self._ttl = leader_ttl
        self._health = store_health or StoreHealth(clock, store)
        # Separate wake-ups per loop: a clock may set the event it sleeps on
        # when the time is up, so "stop" is a flag, not one of these events.
        self._stopping = False
        self._heartbeat_wake = asyncio.Event()
        self._lead_wake = asyncio.Event()
        self.is_leader = False
        self._loops = 0
        self._loops_done = asyncio.Event()
        self._loops_done.set()

    def add_duty(self, duty: Duty) -> None:
        """Give the leader another duty (before the runner starts)."""
        self._duties.append(duty)

    def stop(self) -> None:
        """Make both loops return."""
        self._stopping = True
        self._heartbeat_wake.set()
        self._lead_wake.set()

    async def stopped(self, timeout: float) -> None:
        """After ``stop()``: wait (at most ``timeout`` real seconds) for both loops to
        return, so that the cancellation that follows cuts no store call in half."""
        with anyio.move_on_after(timeout):
            await self._loops_done.wait()

    def _loop_started(self) -> None:
        self._loops += 1
        self._loops_done.clear()

    def _loop_ended(self) -> None:
        self._loops -= 1
        if not self._loops:
            self._loops_done.set()

    async def heartbeat(self) -> None:
        """Extend held leases every third of the shortest lease."""
        self._loop_started()
        try:
            await self._heartbeat()
        finally:
            self._loop_ended()

    async def _heartbeat(self) -> None:
        interval = heartbeat_interval(self._lease)
        # Backing off past half the shortest lease would let the leases lapse
        # even if the store came back: the jobs would run twice.
        longest_pause = max(interval, _shortest_lease(self._lease) / 2)
        health = self._health
        sleep_for = interval
        while not self._stopping:
            self._heartbeat_wake.clear()
            await self._clock.sleep(sleep_for, wake=self._heartbeat_wake)
            sleep_for = interval
            if self._stopping:
                return
            leases = self._leases()
            if not leases:
                health.forget("heartbeat")  # nothing to renew: not failing any more
                continue
            try:
                report = await self._store.extend_leases(leases, self._clock.now(), self._lease)
            except Exception as exc:
                delay = health.failed("heartbeat", exc, held=len(leases))
                sleep_for = min(max(interval, delay), longest_pause)
                continue
            health.succeeded("heartbeat")
            if report.lost or report.cancel_requested:
                self._on_report(report, leases)

    async def lead(self) -> None:
        """Hold or contend for leadership; while leading, run due duties."""
        clock = self._clock
        health = self._health
        renew_every = self._ttl / 3
        poll = getattr(self._store, "leader_poll_interval", None)
        contend_every = renew_every if poll is None else min(renew_every, poll)
        due = {duty.name: 0.0 for duty in self._duties}
        self._loop_started()
        try:
            while not self._stopping:
                now = clock.now()
                backoff = 0.0
                try:
                    leading = await self._store.try_lead(LEADER_ROLE, self._holder, self._ttl, now)
                except Exception as exc:
                    backoff = health.failed("leader election", exc)
                    leading = False
                else:
                    health.succeeded("leader election")
                if leading != self.is_leader:
                    _log.info("leadership " + ("acquired" if leading else "lost"), holder=self._holder)
                    self.is_leader = leading
                    if not leading:
                        self._forget_duties()
                sleep_for = contend_every
                if leading:
                    sleep_for = await self._run_due(due, renew_every)
                sleep_for = max(sleep_for, backoff)
                self._lead_wake.clear()
                if not self._stopping:
                    await clock.sleep(sleep_for, wake=self._lead_wake)
        finally:
            self._forget_duties()
            if self.is_leader:
                self.is_leader = False
                # Shielded: the runner cancels this task at shutdown, and a store that
                # really awaits would otherwise never resign (the role would lapse).
                with anyio.CancelScope(shield=True), anyio.move_on_after(5.0):
                    try:
                        await self._store.resign(LEADER_ROLE, self._holder)
                    except Exception as exc:
                        # With the store already known to fail, its traceback was logged.
                        _log.warning(
                            "could not resign leadership; it passes on when its lease lapses",
                            error=f"{type(exc).__name__}: {exc}",
                            exc_info=exc if health.state[0] else None,
                        )
            self._loop_ended()

    def _forget_duties(self) -> None:
        """Not leading: the duties' failing spells (if any) end without a verdict."""
        for duty in self._duties:
            self._health.forget(duty.name)

    async def _run_due(self, due: dict[str, float], cap: float) -> float:
        clock = self._clock
        health = self._health
        for duty in self._duties:
            if self._stopping:
                break  # shutting down: no new duty
            started = clock.monotonic()
            if due[duty.name] <= started:
                try:
                    again = await duty.run(clock.now())
                except Exception as exc:
                    counts = duty.name in _STORE_DUTIES or isinstance(exc, StoreError)
                    again = health.failed(duty.name, exc, counts=counts)
                else:
                    health.succeeded(duty.name)
                due[duty.name] = started + again
        # Measured after the duties ran: the time they took is not slept again
        # (a cron tick due during a slow prune must not wait for a full interval).
        mono = clock.monotonic()
        sleep_for = cap
        for duty in self._duties:
            sleep_for = min(sleep_for, max(0.0, due[duty.name] - mono))
        return sleep_for
