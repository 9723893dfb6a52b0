"""Time, injectable: the runner never reads the system clock directly.

Two time lines: ``now()`` is wall-clock time (seconds since the epoch) used for
``run_at``, timestamps and cron; ``monotonic()`` is used for durations and
timeouts, so a wall-clock jump never fires or delays a timeout.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What the runner needs of time. ``jobrunner.testing.FakeClock`` is the test twin."""

    def now(self) -> float:
        """Wall-clock time, seconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """A clock that never goes back, for durations and timeouts."""
        ...

    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> None:
        """Sleep ``seconds`` (monotonic), or until ``wake`` is set, whichever is first.

        On timeout the clock may set ``wake`` itself (it saves a task per sleep):
        pass only an event that means "look again", never one that means "stop".
        """
        ...


class SystemClock:
    """The real clock."""

    __slots__ = ()

    # The C functions themselves: the runner reads the clock several times per
    # job, and a Python-level wrapper would double the cost of each read.
    now = staticmethod(time.time)
    monotonic = staticmethod(time.monotonic)

    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> None:
        """Sleep on the event loop's timer; no task is created."""
        if wake is None:
            await asyncio.sleep(max(seconds, 0.0))
            return
        if wake.is_set():
            return
        handle = asyncio.get_running_loop().call_later(max(seconds, 0.0), wake.set)
        try:
            await wake.wait()
        finally:
            handle.cancel()
