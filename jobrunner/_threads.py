"""Threads for sync (``def``) handlers: a bound that holds, and a clean exit.

A thread cannot be stopped. When an attempt times out or is cancelled, its
caller stops waiting at once, but the thread runs on until the function
returns. Three rules follow, which a general-purpose pool (anyio's, or
``concurrent.futures``) does not keep:

* a thread stays counted until its function really returns, so ``size``
  bounds the threads running job code, abandoned ones included (anyio gives
  the slot back at cancellation, so ``threads=2`` could run 8);
* a call that is cancelled before a thread took it never starts, and the
  caller learns when one does (``on_start``, run in the thread first), so a
  timeout can start then rather than while the job waits for a thread;
* the threads are daemons: an abandoned function that never returns cannot
  keep the process alive after the runner stopped (``concurrent.futures``
  joins its threads at exit).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["ThreadPool"]

_PENDING, _RUNNING, _CANCELLED = 0, 1, 2
_IDLE_EXIT = 30.0  # seconds an idle thread waits for work before it ends


class _Call:
    __slots__ = ("context", "fn", "future", "loop", "on_start", "state")

    def __init__(
        self,
        fn: Callable[[], Any],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[tuple[bool, Any]],
        on_start: Callable[[], None] | None,
    ) -> None:
        self.fn = fn
        self.loop = loop
        self.future = future
        self.on_start = on_start
        self.context = contextvars.copy_context()
        self.state = _PENDING


class ThreadPool:
    """Runs sync functions on at most ``size`` daemon threads, started as needed."""

    def __init__(self, size: int, name: str = "jobrunner-thread") -> None:
        if size < 1:
            raise ValueError(f"ThreadPool(size={size}): must be >= 1")
        self.size = size
        self._name = name
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._calls: deque[_Call] = deque()
        self._threads = 0
        self._idle = 0
        self._busy = 0
        self._closed = False
        self._serial = 0

    @property
    def busy(self) -> int:
        """Threads running a function now (abandoned ones included)."""
        return self._busy

    @property
    def waiting(self) -> int:
        """Calls waiting for a thread."""
        return len(self._calls)

    async def run(
        self, fn: Callable[[], Any], on_start: Callable[[], None] | None = None
    ) -> tuple[bool, Any]:
        """Run ``fn()`` on a thread, in a copy of the current context.

        Returns ``(True, value)`` or ``(False, exception)``: the exception is
        handed back rather than raised through a future, because a handler may
        raise anything (``GeneratorExit``, ``SystemExit``) and the caller must
        treat it as the handler's failure. ``on_start`` runs in the thread,
        in the call's context, just before ``fn``: keep it tiny and thread-safe. Cancelled before then, the call never
        runs; cancelled after, the caller returns at once and the thread keeps
        its place in the bound until ``fn`` returns.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[bool, Any]] = loop.create_future()
        call = _Call(fn, loop, future, on_start)
        with self._lock:
            if self._closed:
                raise RuntimeError("the thread pool is closed")
            self._calls.append(call)
            if self._idle:
                self._ready.notify()
            elif self._threads < self.size:
                self._start_thread()
        try:
            return await future
        except asyncio.CancelledError:
            with self._lock:
                if call.state == _PENDING:
                    call.state = _CANCELLED
                    self._calls.remove(call)
            raise

    def close(self) -> None:
        """Let idle threads end; calls already running finish on their own (threads are daemons)."""
        with self._lock:
            self._closed = True
            self._ready.notify_all()

    def _start_thread(self) -> None:
        self._threads += 1
        self._serial += 1
        thread = threading.Thread(target=self._work, name=f"{self._name}-{self._serial}", daemon=True)
        thread.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._calls:
                    if self._closed:
                        self._threads -= 1
                        return
                    self._idle += 1
                    woken = self._ready.wait(_IDLE_EXIT)
                    self._idle -= 1
                    if not woken and not self._calls:
                        self._threads -= 1
                        return
                call = self._calls.popleft()
                call.state = _RUNNING
                self._busy += 1
            try:
                try:
                    if call.on_start is not None:
                        call.context.run(call.on_start)
                    outcome: tuple[bool, Any] = (True, call.context.run(call.fn))
                except BaseException as exc:  # the handler's, whatever it is: the caller decides
                    outcome = (False, exc)
                _call_soon(call.loop, _deliver, call.future, outcome)
            finally:
                with self._lock:
                    self._busy -= 1
                del call


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass  # the loop is closed: nobody waits for this call any more


def _deliver(future: asyncio.Future[tuple[bool, Any]], outcome: tuple[bool, Any]) -> None:
    if not future.done():
        future.set_result(outcome)
