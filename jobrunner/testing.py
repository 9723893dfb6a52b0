"""Helpers for testing code that uses jobrunner: a fake clock, running jobs to
completion deterministically, and fakes in place of resources.

    clock = FakeClock()
    runner = Runner(clock=clock)
    ...
    with override(http_client, FakeClient()):   # jobs get the fake, typed as the real one
        await drain(runner, clock)   # runs every job, jumping the clock over delays
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TypeVar

from jobrunner.resources import Resource, substitute
from jobrunner.runner import Runner

__all__ = ["FakeClock", "drain", "override"]

T = TypeVar("T")


class FakeClock:
    """A clock that moves only when told. Implements ``jobrunner.clock.Clock``.

    ``advance(s)`` moves wall and monotonic time together and wakes every sleeper
    whose time has come; ``jump(s)`` moves only the wall clock (an NTP step or a
    manual clock change), which must not fire timeouts.
    """

    def __init__(self, start: float | datetime = 1_750_000_000.0) -> None:
        self._wall = start.timestamp() if isinstance(start, datetime) else float(start)
        self._mono = 1_000.0
        self._sleepers: list[tuple[float, int, asyncio.Event]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        """Fake wall-clock time."""
        return self._wall

    def monotonic(self) -> float:
        """Fake monotonic time."""
        return self._mono

    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> None:
        """Return when the fake time has advanced by ``seconds`` or ``wake`` is set."""
        if wake is None:
            wake = asyncio.Event()
        if wake.is_set():
            return
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._seq), wake))
        await wake.wait()

    def advance(self, seconds: float) -> None:
        """Move time forward and wake the sleepers that are due."""
        if seconds < 0:
            raise ValueError("advance() moves forward; use jump() for a wall-clock step back")
        self._wall += seconds
        self._mono += seconds
        sleepers = self._sleepers
        while sleepers and sleepers[0][0] <= self._mono:
            heapq.heappop(sleepers)[2].set()

    def jump(self, seconds: float) -> None:
        """Step the wall clock only (forward or back), as a clock correction does."""
        self._wall += seconds
        # Sleepers measure monotonic time but re-read the wall clock when they
        # wake; wake them so that wall-clock schedules notice the step.
        for _, _, wake in self._sleepers:
            wake.set()
        self._sleepers.clear()

    @property
    def next_wakeup(self) -> float | None:
        """Monotonic time of the earliest pending sleeper, if any."""
        while self._sleepers and self._sleepers[0][2].is_set():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None


async def drain(runner: Runner, clock: FakeClock, *, max_seconds: float = 86_400.0) -> None:
    """Run every job, including delayed ones and retries after backoff.

    Runs until idle, then advances ``clock`` to the next delayed job and repeats,
    until no job waits or ``max_seconds`` of fake time have passed. Starts and
    stops the runner if it is not running.
    """
    if not runner.is_running:
        async with runner:
            await drain(runner, clock, max_seconds=max_seconds)
        return
    spent = 0.0
    while True:
        await runner.run_until_idle()
        next_at = await runner.store.next_run_at(clock.now())
        if next_at is None:
            return
        step = max(0.0, next_at - clock.now())
        if spent + step > max_seconds:
            return
        spent += step
        clock.advance(step)


@contextmanager
def override(resource: Resource[T], value: T) -> Iterator[T]:
    """Within the block, every job (and resource) that uses ``resource`` gets ``value``.

    ``value`` must be of the resource's type (mypy checks it); a fake that is not
    a subclass can implement a ``Protocol`` the resource is typed with. The real
    resource is not created, nor what only it uses; ``value`` is not disposed
    (the test owns it). Blocks nest; leaving one restores what was there.

    Enter it before the runner starts (around ``async with runner``, ``drain``
    or ``run_until_idle``): while the runner runs it raises ResourceError, since
    a process-scoped resource may already exist.
    """
    lift = substitute(resource, value)
    try:
        yield value
    finally:
        lift()
