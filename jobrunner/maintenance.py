"""Background upkeep: lease heartbeats, and the leader's duties.

Every runner heartbeats the leases of the jobs it holds. One runner per store,
the leader (elected through the store, taken over when its lease lapses), runs
the duties that must not run twice: rescuing expired leases, pruning old
jobs, and (later) cron ticks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

import anyio

from jobrunner import defaults
from jobrunner.clock import Clock
from jobrunner.logs import get_logger
from jobrunner.models import LeaseReport, LeaseTerms
from jobrunner.observability import job_log
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


def heartbeat_interval(terms: LeaseTerms) -> float:
    """A third of the shortest lease, at most 10 s."""
    shortest = terms.fixed if terms.fixed is not None else terms.margin
    return max(0.01, min(10.0, shortest / 3))


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
    ) -> None:
        self._store = store
        self._clock = clock
        self._holder = holder
        self._lease = lease
        self._leases = leases
        self._on_report = on_report
        self._duties = list(duties)
        self._ttl = leader_ttl
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
        while not self._stopping:
            self._heartbeat_wake.clear()
            await self._clock.sleep(interval, wake=self._heartbeat_wake)
            if self._stopping:
                return
            leases = self._leases()
            if not leases:
                continue
            try:
                report = await self._store.extend_leases(leases, self._clock.now(), self._lease)
            except Exception:
                _log.exception("lease heartbeat failed; will retry", held=len(leases))
                continue
            if report.lost or report.cancel_requested:
                self._on_report(report, leases)

    async def lead(self) -> None:
        """Hold or contend for leadership; while leading, run due duties."""
        clock = self._clock
        renew_every = self._ttl / 3
        due = {duty.name: 0.0 for duty in self._duties}
        self._loop_started()
        try:
            while not self._stopping:
                now = clock.now()
                try:
                    leading = await self._store.try_lead(LEADER_ROLE, self._holder, self._ttl, now)
                except Exception:
                    _log.exception("leader election failed; will retry")
                    leading = False
                if leading != self.is_leader:
                    _log.info("leadership " + ("acquired" if leading else "lost"), holder=self._holder)
                    self.is_leader = leading
                sleep_for = renew_every
                if leading:
                    sleep_for = await self._run_due(due, renew_every)
                self._lead_wake.clear()
                if not self._stopping:
                    await clock.sleep(sleep_for, wake=self._lead_wake)
        finally:
            if self.is_leader:
                self.is_leader = False
                # Shielded: the runner cancels this task at shutdown, and a store that
                # really awaits would otherwise never resign (the role would lapse).
                with anyio.CancelScope(shield=True), anyio.move_on_after(5.0):
                    try:
                        await self._store.resign(LEADER_ROLE, self._holder)
                    except Exception:
                        _log.exception("could not resign leadership; it will lapse")
            self._loop_ended()

    async def _run_due(self, due: dict[str, float], cap: float) -> float:
        clock = self._clock
        for duty in self._duties:
            if self._stopping:
                break  # shutting down: no new duty
            started = clock.monotonic()
            if due[duty.name] <= started:
                try:
                    again = await duty.run(clock.now())
                except Exception:
                    _log.exception("maintenance duty failed; will retry", duty=duty.name)
                    again = 5.0
                due[duty.name] = started + again
        # Measured after the duties ran: the time they took is not slept again
        # (a cron tick due during a slow prune must not wait for a full interval).
        mono = clock.monotonic()
        sleep_for = cap
        for duty in self._duties:
            sleep_for = min(sleep_for, max(0.0, due[duty.name] - mono))
        return sleep_for
