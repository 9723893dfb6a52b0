"""Flow control as pure rules: cluster-wide concurrency limits and expiry.

Every store applies these in its claim, so the rules live once: the memory
store calls them directly, SQLite calls them inside its claim transaction, and
PostgreSQL calls them between the two statements of a limited claim (see each
store). Pausing needs no rule beyond "a paused queue's jobs are not claimed".

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
expiry                 a waiting job whose ``expires_at`` is at or before the
                       claim's ``now`` never starts: the claim ends it CANCELLED
                       with the error ``JobExpired`` (``transitions.lapsed``). The
                       deadline is fixed at enqueue; retries do not extend it.
=====================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = ["EXPIRED_ERROR", "Limits", "choose", "room"]

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

    def __post_init__(self) -> None:
        object.__setattr__(self, "queues", _check("queue", self.queues))
        object.__setattr__(self, "names", _check("job", self.names))

    def __bool__(self) -> bool:
        return bool(self.queues or self.names)

    def lock_keys(self) -> list[str]:
        """One stable key per limited queue and name, sorted: the order in which a
        store that locks per key takes its locks (so two claims never deadlock)."""
        return sorted([f"queue:{q}" for q in self.queues] + [f"name:{n}" for n in self.names])


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
