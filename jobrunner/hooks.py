"""Lifecycle hooks and middleware: how an app observes or wraps every job.

* A ``JobHooks`` subclass overrides the events it cares about; the runner calls
  them inside the job's context, so logs they write carry the job.
* A middleware wraps each attempt's handler call:
  ``async def timing(job, call_next): ...; return await call_next()``.

With no hooks and no middleware the runner skips this machinery entirely.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias

from jobrunner.context import JobContext
from jobrunner.models import JobSpec
from jobrunner.retry import Decision

__all__ = ["JobHooks", "Middleware"]

Middleware: TypeAlias = Callable[[JobContext, Callable[[], Awaitable[Any]]], Awaitable[Any]]
"""``async def mw(job, call_next) -> result``; must return what ``call_next()`` returns."""


class JobHooks:
    """Override any of these; each is called once per event, never concurrently for a job."""

    def enqueued(self, jobs: Sequence[JobSpec]) -> None:
        """Jobs were accepted by the store (called in the enqueuer's context)."""

    def headers(self) -> dict[str, str] | None:
        """Headers to store with jobs enqueued now (e.g. W3C trace context)."""
        return None

    def started(self, job: JobContext) -> None:
        """An attempt is starting."""

    def succeeded(self, job: JobContext, result: Any, duration: float) -> None:
        """An attempt returned."""

    def failed(self, job: JobContext, error: BaseException, decision: Decision, duration: float) -> None:
        """An attempt raised (or timed out); ``decision.kind`` says retry or dead."""

    def cancelled(self, job: JobContext, duration: float) -> None:
        """A running attempt was cancelled on request."""

    def released(self, job: JobContext, duration: float) -> None:
        """Shutdown interrupted the attempt; the job goes back to the queue uncounted."""

    def abandoned(self, job: JobContext, why: str) -> None:
        """The job ignored cancellation and the runner stopped waiting for it."""
