"""Small helpers for tests: wait on conditions (never on time), compare JSON values strictly."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from jobrunner import JobHandle, JobStatus, Runner


async def until(predicate: Callable[[], bool], *, within: float = 10.0) -> None:
    """Wait until ``predicate()`` holds; fail after ``within`` real seconds.

    It re-checks each time the loop turns (and a millisecond at most, for stores
    that answer from a thread), so it waits for a condition, not for a time.
    """
    with anyio.fail_after(within):
        while not predicate():
            await asyncio.sleep(0.001)


async def until_status(handle: JobHandle[object], status: JobStatus, *, within: float = 10.0) -> None:
    """Wait until the job has ``status``."""
    with anyio.fail_after(within):
        while await handle.status() is not status:
            await asyncio.sleep(0.001)


class Gate:
    """Jobs wait on it; the test opens it. Counts who is waiting."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self.waiting = 0
        self.entered = 0

    async def wait(self) -> None:
        self.entered += 1
        self.waiting += 1
        try:
            await self._open.wait()
        finally:
            self.waiting -= 1

    def open(self) -> None:
        self._open.set()


@asynccontextmanager
async def serving(runner: Runner) -> AsyncIterator[list[BaseException]]:
    """Run ``runner.serve()`` in a task for the block; yields the list its
    exception lands in, if it raises. Leaving the block stops the runner."""
    raised: list[BaseException] = []
    done = anyio.Event()

    async def serve() -> None:
        try:
            await runner.serve()
        except Exception as exc:
            raised.append(exc)
        finally:
            done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(serve)
        await until(lambda: runner.is_running or done.is_set())
        try:
            yield raised
        finally:
            runner.stop(now=True)
            with anyio.fail_after(10):
                await done.wait()


def strictly_equal(a: Any, b: Any) -> bool:
    """Equal in type and value all the way down: 1, 1.0 and True differ, and so do
    -0.0 and 0.0; dicts in the same key order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(strictly_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(strictly_equal(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)
