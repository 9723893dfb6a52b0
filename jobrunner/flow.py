"""Flow control as pure rules: cluster-wide concurrency and rate limits, and expiry.

Every store applies these in its claim, so the rules live once: the memory
store calls them directly, SQLite calls them inside its claim transaction, and
PostgreSQL calls them between the statements of a limited claim's transaction
(see each store). Pausing needs no rule beyond "a paused queue's jobs are not claimed".

=====================  ==========================================================
rule                   meaning
=====================  ==========================================================
global limit           ``Limits.queues[q] = n``: at most ``n`` jobs of queue ``q``
                       RUNNING at once across every runner on the store (and
                       ``Limits.names`` likewise per job name). A claim counts
                       the RUNNING jobs in its own transaction, so the room it
                       sees is the store's, not this runner's. A job under both
                       a queue and a name limit needs room in both.
choice                 the best ready jobs by ``(priority, run_at, seq)``, skipping
                       any whose queue or name has no room left: a full key
                       never holds back the jobs behind it.
rate limit             ``RateLimit(limit, period, queue=, name=, per_workspace=)``:
                       at most ``limit`` starts per fixed window of ``period``
                       seconds (windows start at multiples of ``period`` in
                       epoch seconds, the same in every process) for the jobs
                       it matches (its queue and/or name; every job if neither),
                       counted per ``workspace_id`` with ``per_workspace`` (jobs
                       without one are not limited by it). The store keeps one
                       counter row per scope, updated in the claim's atomic
                       step. Jobs over the limit stay waiting; the claim
                       reports when the earliest blocking window ends
                       (``Plan.wake_at``) so runners sleep until then.
expiry                 a waiting job whose ``expires_at`` is at or before the
                       claim's ``now`` never starts: the claim ends it CANCELLED
                       with the error ``JobExpired`` (``transitions.lapsed``). The
                       deadline is fixed at enqueue; retries do not extend it.
=====================  ==========================================================
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

__all__ = [
    "EXPIRED_ERROR",
    "Exclusion",
    "Limits",
    "Plan",
    "RateBook",
    "RateLimit",
    "Window",
    "choose",
    "exclusions",
    "plan",
    "room",
    "spent_wake",
]

T = TypeVar("T")

EXPIRED_ERROR = "JobExpired"
"""``error.type`` of a job that expired before it started (status CANCELLED)."""


def _check(kind: str, limits: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, n in limits.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"global limits: {kind} {key!r} must be a non-empty string")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"global limits: {kind} {key!r}: {n!r} must be an integer >= 1")
        out[key] = n
    return out


def _part(value: str | None) -> str:
    """A queue or job name in a rate scope: ``*`` for any, and ``\\``, ``|`` and ``*``
    escaped, so that no two limits share a scope (a queue may be named ``a|b``)."""
    if value is None:
        return "*"
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` job starts per ``period`` seconds, across every runner on the store.

    ``queue`` and ``name`` choose the jobs it counts (both: jobs of that name on
    that queue; neither: every job); ``per_workspace`` counts each
    ``workspace_id`` (a tenant) on its own, and leaves jobs without one alone.
    """

    limit: int
    period: float
    queue: str | None = None
    name: str | None = None
    per_workspace: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ValueError(f"RateLimit(limit={self.limit!r}): must be an integer >= 1")
        if isinstance(self.period, bool) or not isinstance(self.period, int | float) or not self.period > 0:
            raise ValueError(f"RateLimit(period={self.period!r}): must be seconds > 0")
        object.__setattr__(self, "period", float(self.period))

    @property
    def prefix(self) -> str:
        """The scope of this limit (per workspace: the start of each one's), the
        same in every process that declares it."""
        return (
            f"{_part(self.queue)}|{_part(self.name)}|{self.period!r}|{'w' if self.per_workspace else 'all'}"
        )

    def scope(self, queue: str, name: str, workspace: str | None) -> str | None:
        """The counter a job of ``(queue, name, workspace)`` spends, or None if the limit skips it."""
        if (self.queue is not None and queue != self.queue) or (self.name is not None and name != self.name):
            return None
        if self.per_workspace:
            return None if workspace is None else f"{self.prefix}={workspace}"
        return self.prefix

    def workspace_of(self, scope: str) -> str | None:
        """The workspace a scope of this limit counts; None if the scope is not one of
        this limit's per-workspace counters."""
        if self.per_workspace and scope.startswith(self.prefix + "="):
            return scope[len(self.prefix) + 1 :]
        return None

    def counts(self, scope: str) -> bool:
        """Whether ``scope`` is one of this limit's counters."""
        return scope == self.prefix if not self.per_workspace else scope.startswith(self.prefix + "=")

    def window(self, now: float) -> float:
        """The start of the fixed window holding ``now``."""
        return math.floor(now / self.period) * self.period


Window = tuple[float, int]
"""A scope's counter as stored: ``(window_start, starts in that window)``."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Concurrency limits that hold across every runner sharing a store.

    Every runner that claims the limited jobs must declare the same limits: a
    runner that does not know of a limit does not keep it.
    """

    queues: Mapping[str, int] = field(default_factory=dict)
    """Queue name -> most jobs of that queue RUNNING at once, store-wide."""
    names: Mapping[str, int] = field(default_factory=dict)
    """Job name -> most jobs of that name RUNNING at once, store-wide."""
    rates: tuple[RateLimit, ...] = ()
    """Rate limits (starts per period), store-wide."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "queues", _check("queue", self.queues))
        object.__setattr__(self, "names", _check("job", self.names))
        object.__setattr__(self, "rates", tuple(self.rates))
        for rate in self.rates:
            if not isinstance(rate, RateLimit):
                raise TypeError(f"rate limits: {rate!r} is not a jobrunner.RateLimit")

    def __bool__(self) -> bool:
        return bool(self.queues or self.names or self.rates)

    def lock_keys(self) -> list[str]:
        """One stable key per limited queue, name and rate, sorted: the order in which
        a store that locks per key takes its locks (so two claims never deadlock)."""
        return sorted(
            [f"queue:{q}" for q in self.queues]
            + [f"name:{n}" for n in self.names]
            + [f"rate:{r.prefix}" for r in self.rates]
        )

    def rate_scopes(self, queue: str, name: str, workspace: str | None) -> list[tuple[RateLimit, str]]:
        """The rate limits a job spends, with the scope of each."""
        out = []
        for rate in self.rates:
            scope = rate.scope(queue, name, workspace)
            if scope is not None:
                out.append((rate, scope))
        return out


def room(
    limits: Limits, running_by_queue: Mapping[str, int], running_by_name: Mapping[str, int]
) -> tuple[dict[str, int], dict[str, int]]:
    """How many more jobs each limited queue and name may start: ``(queues, names)``."""
    return (
        {q: max(0, n - running_by_queue.get(q, 0)) for q, n in limits.queues.items()},
        {name: max(0, n - running_by_name.get(name, 0)) for name, n in limits.names.items()},
    )


def choose(
    candidates: Iterable[tuple[int, float, int, str, str, T]],
    limit: int,
    queue_room: Mapping[str, int],
    name_room: Mapping[str, int],
) -> list[T]:
    """The items a limited claim takes: ``candidates`` are ``(priority, run_at, seq,
    queue, name, item)`` of ready jobs; best first, at most ``limit``, at most
    ``queue_room[q]`` of each limited queue and ``name_room[n]`` of each limited name."""
    queues = dict(queue_room)
    names = dict(name_room)
    chosen: list[T] = []
    if limit <= 0:
        return chosen
    for _, _, _, queue, name, item in sorted(candidates, key=lambda c: (c[0], c[1], c[2])):
        if queues.get(queue, 1) <= 0 or names.get(name, 1) <= 0:
            continue
        if queue in queues:
            queues[queue] -= 1
        if name in names:
            names[name] -= 1
        chosen.append(item)
        if len(chosen) >= limit:
            break
    return chosen


# rates ------------------------------------------------------------------------------
class Exclusion(NamedTuple):
    """Jobs a claim need not even look at: those of a rate scope spent for its window.
    None matches any queue, name or workspace."""

    queue: str | None
    name: str | None
    workspace: str | None


def _left(rate: RateLimit, counter: Window | None, now: float) -> int:
    """Starts left in the current window, given the scope's stored counter."""
    if counter is None or counter[0] != rate.window(now):
        return rate.limit
    return max(0, rate.limit - counter[1])


def exclusions(limits: Limits, counters: Mapping[str, Window], now: float) -> list[Exclusion]:
    """The jobs of every scope already spent in the current window (``counters``:
    what the store holds for the scopes under ``RateLimit.prefix`` of each limit)."""
    out: list[Exclusion] = []
    for rate in limits.rates:
        for scope, counter in counters.items():
            if rate.counts(scope) and _left(rate, counter, now) <= 0:
                out.append(Exclusion(rate.queue, rate.name, rate.workspace_of(scope)))
    return out


class RateBook:
    """The rate scopes' starts left during one claim: ``admit`` a job or not, and
    the counters to write back. ``counters``: what the store holds (it may hold
    more scopes than the claim meets); it is not changed."""

    def __init__(self, limits: Limits, counters: Mapping[str, Window], now: float) -> None:
        self._limits = limits
        self._counters = counters
        self._now = now
        self._left: dict[str, int] = {}
        self._windows: dict[str, float] = {}
        self._taken: dict[str, int] = {}
        self.wake_at: float | None = None
        """When the earliest window that held a job back ends; None if none did."""

    def admit(self, queue: str, name: str, workspace: str | None) -> bool:
        """Whether the job may start now; if so its starts are spent."""
        scopes = self._limits.rate_scopes(queue, name, workspace)
        if not scopes:
            return True
        left = self._left
        blocked = False
        for rate, scope in scopes:
            if scope not in left:
                left[scope] = _left(rate, self._counters.get(scope), self._now)
                self._windows[scope] = rate.window(self._now)
            if left[scope] <= 0:
                end = self._windows[scope] + rate.period
                self.wake_at = end if self.wake_at is None else min(self.wake_at, end)
                blocked = True
        if blocked:
            return False
        for _, scope in scopes:
            left[scope] -= 1
            self._taken[scope] = self._taken.get(scope, 0) + 1
        return True

    def counters(self) -> dict[str, Window]:
        """The new counter of every scope that admitted jobs."""
        new: dict[str, Window] = {}
        for scope, n in self._taken.items():
            counter = self._counters.get(scope)
            start = self._windows[scope]
            new[scope] = (start, (counter[1] if counter is not None and counter[0] == start else 0) + n)
        return new


class Plan(NamedTuple):
    """What a claim under limits takes."""

    chosen: list[object]
    """The items taken, best first."""
    counters: dict[str, Window]
    """The new counter of every rate scope the chosen jobs spend."""
    wake_at: float | None
    """When the earliest window that held a job back ends; None if none did."""


def plan(
    candidates: Iterable[tuple[int, float, int, str, str, str | None, T]],
    limit: int,
    limits: Limits,
    queue_room: Mapping[str, int],
    name_room: Mapping[str, int],
    counters: Mapping[str, Window],
    now: float,
) -> Plan:
    """The items a claim takes under every limit: ``candidates`` are ``(priority,
    run_at, seq, queue, name, workspace, item)`` of ready jobs; best first, at most
    ``limit``, within the room of limited queues and names and the starts left in
    every rate scope (``counters``: the stored counters of the scopes it knows)."""
    queues = dict(queue_room)
    names = dict(name_room)
    book = RateBook(limits, counters, now)
    chosen: list[object] = []
    for _, _, _, queue, name, workspace, item in sorted(candidates, key=lambda c: (c[0], c[1], c[2])):
        if len(chosen) >= limit:
            break
        if queues.get(queue, 1) <= 0 or names.get(name, 1) <= 0:
            continue
        if not book.admit(queue, name, workspace):
            continue
        if queue in queues:
            queues[queue] -= 1
        if name in names:
            names[name] -= 1
        chosen.append(item)
    return Plan(chosen, book.counters(), book.wake_at)


def spent_wake(limits: Limits, counters: Mapping[str, Window], now: float) -> float | None:
    """When the earliest spent window among ``counters`` ends (jobs it excluded may start then)."""
    wake_at: float | None = None
    for rate in limits.rates:
        for scope, counter in counters.items():
            if rate.counts(scope) and _left(rate, counter, now) <= 0:
                end = rate.window(now) + rate.period
                wake_at = end if wake_at is None else min(wake_at, end)
    return wake_at
