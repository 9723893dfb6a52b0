"""The cron duty: the maintenance leader enqueues each due tick once, through the store.

Only the elected leader runs duties, and every tick goes through
``Store.fire_tick``, which inserts at most one job per ``(schedule, tick)`` and
never one older than the schedule's last: two leaders overlapping during a
takeover, or a leader restarted mid-tick, cannot enqueue a tick twice.

Between ticks the duty sleeps until the next one, but never longer than
``WALL_CLOCK_RECHECK`` seconds: sleeps run on the monotonic clock, and a wall
clock that was stepped (or a VM that was suspended) would otherwise be noticed
only at the end of a long sleep. A re-check with nothing due does no store I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from jobrunner.clock import Clock
from jobrunner.cron import Schedule, utc
from jobrunner.logs import get_logger
from jobrunner.models import JobSpec
from jobrunner.stores.base import Store

__all__ = ["WALL_CLOCK_RECHECK", "CronScheduler"]

_log = get_logger("jobrunner.cron")

WALL_CLOCK_RECHECK = 60.0
"""Longest sleep between looks at the wall clock."""
ERROR_RETRY = 5.0
"""Seconds before a schedule whose tick could not be enqueued is tried again."""

SpecBuilder = Callable[[Schedule, float, float], JobSpec]
"""``(schedule, tick, now) -> JobSpec``: the runner builds cron jobs like any other."""


class CronScheduler:
    """The ``Duty`` that fires due cron ticks; ``run(now)`` returns seconds until the next.

    Args:
        store: where ticks are recorded and jobs enqueued.
        clock: read once at construction: a schedule that never fired starts
            counting from then (see ``jobrunner.cron``).
        schedules: returns the current schedules (the runner's live registry).
        build_spec: builds the job for one tick.
        on_fired: told about each job enqueued (the runner's hooks).
    """

    name = "cron"

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        schedules: Callable[[], Collection[Schedule]],
        build_spec: SpecBuilder,
        on_fired: Callable[[JobSpec], None] | None = None,
    ) -> None:
        self._store = store
        self._schedules = schedules
        self._build = build_spec
        self._on_fired = on_fired
        start = clock.now()
        self._anchors = {schedule.name: start for schedule in schedules()}
        # The store's last tick per schedule as last read or written here. It may
        # lag the store (another leader fired since), never lead it, so "nothing
        # due" by it is true of the store too and needs no query.
        self._last: dict[str, float] | None = None
        # Ticks this process decided not to run (``missed="skip"``), through when.
        self._skipped: dict[str, float] = {}
        # Schedules whose last attempts failed: how many times in a row.
        self._failing: dict[str, int] = {}

    async def run(self, now: float) -> float:
        """Enqueue every due tick of every schedule; seconds until the next tick."""
        schedules = self._schedules()
        for schedule in schedules:
            self._anchors.setdefault(schedule.name, now)
        upcoming = [schedule.cron.next_after(self._handled_through(schedule)) for schedule in schedules]
        if self._last is not None and all(tick > now for tick in upcoming):
            return self._sleep_for(min(upcoming, default=now + WALL_CLOCK_RECHECK) - now)
        self._last = await self._store.cron_state()
        soonest = now + WALL_CLOCK_RECHECK
        for schedule in schedules:
            try:
                next_at = await self._fire_due(schedule, now)
            except Exception as exc:
                # The traceback once per failing spell, then a line per retry: a
                # schedule that keeps failing must not flood the log.
                failures = self._failing[schedule.name] = self._failing.get(schedule.name, 0) + 1
                fields = {"schedule": schedule.name, "failures": failures, "retry_in": ERROR_RETRY}
                if failures == 1:
                    _log.error("cron tick could not be enqueued; will retry", **fields, exc_info=exc)
                else:
                    _log.warning("cron tick still failing", **fields, error=f"{type(exc).__name__}: {exc}")
                next_at = now + ERROR_RETRY
            else:
                failures = self._failing.pop(schedule.name, 0)
                if failures:
                    _log.info("cron tick recovered", schedule=schedule.name, failures=failures)
            soonest = min(soonest, next_at)
        return self._sleep_for(soonest - now)

    @staticmethod
    def _sleep_for(seconds: float) -> float:
        return max(0.0, min(seconds, WALL_CLOCK_RECHECK))

    def _handled_through(self, schedule: Schedule) -> float:
        """Every tick up to this one was fired (by some process) or skipped here."""
        last = self._last.get(schedule.name) if self._last is not None else None
        through = self._anchors[schedule.name] if last is None else last
        skipped = self._skipped.get(schedule.name)
        return through if skipped is None else max(through, skipped)

    async def _fire_due(self, schedule: Schedule, now: float) -> float:
        assert self._last is not None
        plan = schedule.plan(self._handled_through(schedule), now)
        for tick in plan.fire:
            spec = self._build(schedule, tick, now)
            fired = await self._store.fire_tick(schedule.name, tick, spec, now)
            # Not fired: this tick or a later one is recorded already (an earlier
            # leader got there first); the store knows at least this much.
            self._last[schedule.name] = max(tick, self._last.get(schedule.name, tick))
            if fired:
                _log.info(
                    "cron tick enqueued",
                    schedule=schedule.name,
                    job_name=spec.name,
                    job_id=spec.id,
                    scheduled_for=utc(tick).isoformat(),
                )
                if self._on_fired is not None:
                    self._on_fired(spec)
        if plan.skipped is not None:
            first, last = plan.skipped
            _log.warning(
                "cron ticks missed and not run",
                schedule=schedule.name,
                missed=schedule.missed,
                first=utc(first).isoformat(),
                last=utc(last).isoformat(),
            )
        if plan.through is not None:
            self._skipped[schedule.name] = plan.through
        return plan.next_at
