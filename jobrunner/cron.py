"""Cron math: croniter wrapped with timezones, DST rules, missed ticks and jitter. Pure.

A schedule's expression is read in its timezone's wall-clock time (``"UTC"``
unless given), and every tick is a real instant (epoch seconds). Expressions
have 5 fields (minute hour day-of-month month day-of-week) or 6, the sixth
being seconds (``"*/10 * * * * */30"``: at :00 and :30 of every tenth minute);
``@hourly``, ``@daily``/``@midnight``, ``@weekly``, ``@monthly`` and
``@yearly``/``@annually`` stand for their 5-field forms. croniter's random
(``R``) and hashed (``H``) fields are refused: every runner process must agree
on every tick.

Daylight saving time (and any other change of a zone's UTC offset):

* **Clocks go forward** (a spring-forward gap, e.g. 02:00 -> 03:00 in
  Europe/Berlin on the last Sunday of March): a tick whose wall time does not
  exist that day runs once, at the first instant after the gap (03:00 local).
  A daily ``30 2 * * *`` therefore runs at 03:00 that day, never zero times;
  several ticks inside one gap, and a tick at the end of the gap itself, are
  the same instant and run once.
* **Clocks go back** (a fall-back overlap, e.g. 03:00 -> 02:00 in Europe/Berlin
  on the last Sunday of October, so 02:00-02:59 happens twice): a schedule
  that is restricted to certain hours (``30 2 * * *``, ``0 9-17 * * *``) runs
  each wall time once, at its first occurrence (summer time). A schedule that
  runs in every hour of the day (hour field ``*``, e.g. ``*/15 * * * *`` or
  ``0 * * * *``) keeps its interval in real time: it runs in both passes of the
  repeated hour, so ``*/15 * * * *`` still runs every 15 minutes.
* A wall time that exists once runs once, at that instant.

Missed ticks. A tick is due once its time has passed. When the scheduler finds
more than one tick due at once (the process was down, leadership moved, the
wall clock was stepped forward), ``missed`` decides what runs:

* ``"latest"`` (default): only the most recent due tick runs, once.
* ``"skip"``: nothing is caught up; the most recent due tick runs only if it is
  at most ``SKIP_GRACE`` (60 s) late, a delay a leader takeover can cause.
* ``"all"``: every missed tick runs, oldest first, but at most the
  ``CATCH_UP_LIMIT`` (100) most recent ones; older ones are skipped and logged.
  A wall-clock step forward looks exactly like downtime, so it catches up too.

A wall-clock step back never re-runs a tick: a schedule resumes with the first
tick after the last one it ran. A schedule that has never run starts with the
first tick after the scheduler first saw it (the runner's start).

Jitter. ``jitter=s`` delays each run by an offset in ``[0, s)`` derived from a
hash of the schedule name and the tick, so all processes agree on it and
schedules that share a tick spread out. ``scheduled_for`` stays the tick.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal, NamedTuple, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

__all__ = [
    "CATCH_UP_LIMIT",
    "SKIP_GRACE",
    "CronExpression",
    "MissedPolicy",
    "Plan",
    "Schedule",
    "ScheduleInfo",
]

MissedPolicy = Literal["latest", "skip", "all"]

CATCH_UP_LIMIT = 100
"""Most ticks ``missed="all"`` runs after downtime (the most recent ones)."""

SKIP_GRACE = 60.0
"""Seconds late a tick may still run under ``missed="skip"``: longer than a
leader takeover (the leader lease is 10 s, renewed every 3.3 s)."""

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_ONE_SECOND = timedelta(seconds=1)

# How a wall-clock time maps onto real time in a zone.
_NORMAL, _GAP, _OVERLAP = 0, 1, 2


def _invalid(expression: object, reason: str) -> ValueError:
    return ValueError(f"cron expression {expression!r}: {reason}")


def _load_zone(expression: str, timezone: str | ZoneInfo) -> ZoneInfo:
    if isinstance(timezone, ZoneInfo):
        return timezone
    if not isinstance(timezone, str) or not timezone:
        raise _invalid(expression, f"timezone={timezone!r} must be an IANA name such as 'Europe/Berlin'")
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise _invalid(
            expression, f"unknown timezone {timezone!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from None


def _normalise(expression: object) -> str:
    if not isinstance(expression, str):
        raise _invalid(expression, "must be a string such as '*/5 * * * *'")
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text.lower() not in _ALIASES:
            raise _invalid(expression, f"unknown alias; use one of {', '.join(sorted(_ALIASES))}")
        return _ALIASES[text.lower()]
    fields = text.split(" ") if text else []
    if len(fields) not in (5, 6):
        raise _invalid(
            expression,
            f"has {len(fields)} fields; give 5 (minute hour day-of-month month day-of-week) "
            f"or 6 (the same, then seconds)",
        )
    for value in fields:
        for part in value.upper().split(","):
            if part[:1] in ("R", "H") and (len(part) == 1 or part[1] in "(/"):
                raise _invalid(
                    expression,
                    f"random or hashed field {value!r} is not supported: every runner "
                    f"process must compute the same ticks; write the value out",
                )
    return text


class CronExpression:
    """A validated cron expression in a timezone; answers "when is the next tick?".

    ``ValueError`` names the expression and the reason for an invalid expression,
    an unknown timezone, or an expression that can never fire (``0 0 30 2 *``).
    Ticks are whole epoch seconds; see the module docstring for the DST rules.
    """

    __slots__ = ("_every_hour", "_iter", "_tz", "expression", "has_seconds", "timezone")

    def __init__(self, expression: str, timezone: str | ZoneInfo = "UTC") -> None:
        text = _normalise(expression)
        self._tz = _load_zone(expression, timezone)
        self.expression: str = expression
        """As given (before alias expansion)."""
        self.timezone: str = self._tz.key
        """The IANA name of the zone the expression is read in."""
        self.has_seconds = len(text.split(" ")) == 6
        """True for a 6-field expression with a seconds field."""
        try:
            # A naive start makes croniter count plain wall-clock time; this module
            # maps wall times to instants itself (see _instants_of).
            self._iter = croniter(text, datetime(2000, 1, 1))
            hours: list[Any] = list(self._iter.expanded[1])
            self._iter.get_next(datetime)
        except CroniterError as exc:
            reason = str(exc) or type(exc).__name__
            if "failed to find" in reason:
                reason = "it never fires (no date matches every field)"
            raise _invalid(expression, reason) from None
        # Runs in every hour of the day: in a repeated hour it keeps its interval.
        self._every_hour = hours == ["*"] or set(hours) == set(range(24))

    def __repr__(self) -> str:
        return f"CronExpression({self.expression!r}, timezone={self.timezone!r})"

    @property
    def tz(self) -> tzinfo:
        """The zone as a ``tzinfo``."""
        return self._tz

    # ticks ---------------------------------------------------------------------
    def next_after(self, t: float) -> float:
        """The first tick strictly after ``t`` (epoch seconds)."""
        start = math.floor(t)
        local = datetime.fromtimestamp(start, self._tz)
        wall = local.replace(tzinfo=None, fold=0)
        m = self._next_wall(wall)
        if self._kind(wall) == _OVERLAP:
            first, end = self._overlap(wall)
            if local.fold == 0 and self._every_hour:
                # ``t`` is in the first pass of a repeated hour: its remaining
                # first-pass ticks come first, then the second pass.
                if m < end:
                    return self._at(m, 0)
                again = self._next_wall(first - _ONE_SECOND)
                if again < end:
                    return self._at(again, 1)
            elif local.fold == 1 and m < end:
                if self._every_hour:
                    return self._at(m, 1)
                # Hour-restricted schedules ran these wall times in the first pass.
                m = self._next_wall(end - _ONE_SECOND)
        kind = self._kind(m)
        if kind == _GAP:
            return self._gap_end(m)
        return self._at(m, 0)

    def ticks(self, after: float, until: float) -> Iterator[float]:
        """Ticks in ``(after, until]``, oldest first."""
        tick = self.next_after(after)
        while tick <= until:
            yield tick
            later = self.next_after(tick)
            if later <= tick:  # pragma: no cover - would loop forever; fail loudly instead
                raise RuntimeError(f"{self!r}: tick after {tick} went back to {later}")
            tick = later

    def latest(self, after: float, until: float, count: int = 1) -> list[float]:
        """The most recent ``count`` ticks in ``(after, until]``, oldest first.

        Searches back from ``until`` in growing windows, so a long downtime costs
        a few windows, not one step per missed tick.
        """
        window = 1.0
        while True:
            low = max(after, until - window)
            found = deque(self.ticks(low, until), maxlen=count)
            if len(found) >= count or low <= after:
                return list(found)
            window *= 4

    # wall time -> real time ----------------------------------------------------
    def _next_wall(self, wall: datetime) -> datetime:
        self._iter.set_current(wall, force=True)
        result: datetime = self._iter.get_next(datetime)
        return result

    def _kind(self, wall: datetime) -> int:
        before = wall.replace(tzinfo=self._tz, fold=0).utcoffset()
        after = wall.replace(tzinfo=self._tz, fold=1).utcoffset()
        if before == after:
            return _NORMAL
        assert before is not None and after is not None
        # PEP 495: fold=0 reads a wall time with the offset from before the change.
        return _GAP if before < after else _OVERLAP

    def _at(self, wall: datetime, fold: int) -> float:
        return wall.replace(tzinfo=self._tz, fold=fold).timestamp()

    def _transition(self, low: int, high: int) -> int:
        """The first second in ``(low, high]`` whose UTC offset differs from ``low``'s."""
        offset = datetime.fromtimestamp(low, self._tz).utcoffset()
        while high - low > 1:
            mid = (low + high) // 2
            if datetime.fromtimestamp(mid, self._tz).utcoffset() == offset:
                low = mid
            else:
                high = mid
        return high

    def _gap_end(self, wall: datetime) -> float:
        """The instant a gap that swallowed ``wall`` ends (clocks jumped past it)."""
        early, late = int(self._at(wall, 1)), int(self._at(wall, 0))
        return float(self._transition(early, late))

    def _overlap(self, wall: datetime) -> tuple[datetime, datetime]:
        """Wall-time bounds ``[first, end)`` of the repeated period containing ``wall``."""
        early, late = int(self._at(wall, 0)), int(self._at(wall, 1))
        change = self._transition(early, late)
        first = datetime.fromtimestamp(change, self._tz).replace(tzinfo=None, fold=0)
        return first, first + timedelta(seconds=late - early)

    def local(self, t: float) -> datetime:
        """``t`` as an aware datetime in this schedule's zone."""
        return datetime.fromtimestamp(t, self._tz)


class Plan(NamedTuple):
    """What a schedule should do now (see ``Schedule.plan``)."""

    fire: tuple[float, ...]
    """Ticks to enqueue now, oldest first."""
    through: float | None
    """The latest due tick, fired or skipped (None when nothing is due)."""
    skipped: tuple[float, float] | None
    """First and last tick of a range that is not run, if any."""
    next_at: float
    """The first tick after now: when to look again."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """A job enqueued on a cron schedule; ``runner.cron``/``runner.schedule`` build it."""

    name: str
    job: str
    cron: CronExpression
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    """None: the job's own queue."""
    priority: int | None = None
    """None: the job's own priority."""
    missed: MissedPolicy = "latest"
    jitter: float = 0.0

    def __post_init__(self) -> None:
        where = f"schedule {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"schedule name={self.name!r} must be a non-empty string")
        if self.missed not in get_args(MissedPolicy):
            raise ValueError(f"{where}: missed={self.missed!r} must be 'latest', 'skip' or 'all'")
        jitter = self.jitter
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter < math.inf:
            raise ValueError(f"{where}: jitter={jitter!r} must be a number of seconds >= 0")

    def plan(self, after: float, now: float) -> Plan:
        """Which ticks to fire at ``now`` when every tick up to ``after`` is handled."""
        first = self.cron.next_after(after)
        if first > now:
            return Plan((), None, None, first)
        next_at = self.cron.next_after(now)
        if self.missed == "all":
            fire = self.cron.latest(after, now, CATCH_UP_LIMIT)
            through = fire[-1]
        else:
            (through,) = self.cron.latest(after, now, 1)
            fire = [through] if self.missed == "latest" or now - through <= SKIP_GRACE else []
        skipped = None
        if not fire:
            skipped = (first, through)
        elif fire[0] != first:
            skipped = (first, self.cron.latest(after, fire[0] - 1, 1)[0])
        return Plan(tuple(fire), through, skipped, next_at)

    def jitter_for(self, tick: float) -> float:
        """This tick's delay in ``[0, jitter)``; the same in every process."""
        if not self.jitter:
            return 0.0
        digest = hashlib.blake2b(f"{self.name}\x00{tick!r}".encode(), digest_size=8).digest()
        return self.jitter * int.from_bytes(digest, "big") / 2**64

    def info(self, last: float | None, now: float) -> ScheduleInfo:
        """A description for ``runner.schedules()``."""
        upcoming = self.cron.next_after(max(now, last) if last is not None else now)
        return ScheduleInfo(
            name=self.name,
            job=self.job,
            expression=self.cron.expression,
            timezone=self.cron.timezone,
            next_run=self.cron.local(upcoming),
            last_run=self.cron.local(last) if last is not None else None,
            missed=self.missed,
            jitter=self.jitter,
        )


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """One schedule as ``runner.schedules()`` reports it; times are in its timezone."""

    name: str
    job: str
    expression: str
    timezone: str
    next_run: datetime
    """The next tick after now (before any jitter)."""
    last_run: datetime | None
    """The last tick enqueued (by any process sharing the store), or None."""
    missed: MissedPolicy
    jitter: float


def utc(t: float) -> datetime:
    """Epoch seconds as an aware UTC datetime (for messages and logs)."""
    return datetime.fromtimestamp(t, UTC)
