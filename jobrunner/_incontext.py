"""Run a coroutine inside a given ``contextvars.Context`` without a new task.

asyncio gives each task one context; a long-lived worker task running many
jobs would share it between them. Creating a task per job isolates them but
costs ~5 us per job, more than the rest of the hot path together. Instead the
worker drives the job's coroutine itself, entering the job's context around
each step (``Context.run(coro.send, value)``) and passing whatever the job
awaits up to the event loop unchanged. Tasks the job creates copy the job's
context, because it is the current one while the job's code runs.

Two hooks make the pool cheap and safe:

* ``on_block`` is called the first time the job really suspends, which is when
  the pool may need another worker (a job that never suspends needs none);
* ``abandoned`` is checked whenever the worker task is cancelled: once the
  runner has given up on a job that ignores cancellation, the worker stops
  driving it and the coroutine is closed, so the job cannot hold the runner.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Generator
from contextvars import Context
from typing import Any, Generic, Protocol, TypeVar

_T = TypeVar("_T")

__all__ = ["Abandoned", "InContext"]


class Abandoned(Exception):
    """The runner gave up on the job; its coroutine was closed where it stood."""


class _Watched(Protocol):
    _abandoned: bool
    _blocked: bool


_NOT_STARTED: Any = object()


class InContext(Generic[_T]):
    """``await InContext(coro, ctx)`` runs ``coro`` inside ``ctx``.

    ``first``: the value the coroutine yielded on a first step the caller already
    ran itself (the executor runs it synchronously: most jobs finish in that one
    step and then need no awaitable at all).
    """

    __slots__ = ("_coro", "_ctx", "_first", "_on_block", "_watched")

    def __init__(
        self,
        coro: Coroutine[Any, Any, _T],
        ctx: Context,
        watched: _Watched | None = None,
        on_block: Callable[[], None] | None = None,
        first: Any = _NOT_STARTED,
    ) -> None:
        self._coro = coro
        self._ctx = ctx
        self._watched = watched
        self._on_block = on_block
        self._first = first

    def __await__(self) -> Generator[Any, Any, _T]:
        coro = self._coro
        run = self._ctx.run
        send = coro.send
        watched = self._watched
        yielded = self._first
        if yielded is _NOT_STARTED:
            try:
                yielded = run(send, None)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            if watched is not None:
                watched._blocked = True
            if self._on_block is not None:
                self._on_block()
        while True:
            try:
                value = yield yielded
            except GeneratorExit:
                run(coro.close)
                raise
            except BaseException as exc:
                if watched is not None and watched._abandoned:
                    _close_quietly(coro, run)
                    raise Abandoned() from exc
                try:
                    yielded = run(coro.throw, exc)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                continue
            try:
                yielded = run(send, value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]


def _close_quietly(coro: Coroutine[Any, Any, Any], run: Callable[..., Any]) -> None:
    try:
        run(coro.close)
    except RuntimeError:
        # "coroutine ignored GeneratorExit": the job would not even stop for
        # close(); it is dropped all the same and the caller logs the abandon.
        pass
