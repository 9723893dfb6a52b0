"""The job context: who is running, visible to the job and everything it calls.

Each attempt runs in its own ``contextvars.Context``; ``current_job()`` reads
this module's ContextVar from it. Tasks the job spawns copy that context, so
they see the job too; nothing set inside leaks to the next job or the runner.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any

from jobrunner.clock import Clock
from jobrunner.models import ClaimedJob, Trigger
from jobrunner.progress import report_progress

__all__ = ["CancelReason", "JobContext", "current_job"]


class CancelReason:
    """Why the runner cancelled an attempt (internal; a plain int for speed)."""

    TIMEOUT = 1
    USER = 2
    SHUTDOWN = 3
    LEASE_LOST = 4


class JobContext:
    """The attempt being run: read its attributes, e.g. ``current_job().attempt``.

    One object per attempt, shared by the runner's bookkeeping (the underscored
    slots) so that starting a job allocates as little as possible.
    """

    __slots__ = (
        "_abandoned",
        "_blocked",
        "_cancel_reason",
        "_cancels",
        "_claimed",
        "_clock",
        "_deadline_mono",
        "_grace_mono",
        "_in_thread",
        "_started_mono",
        "_task",
    )

    def __init__(self, claimed: ClaimedJob, clock: Clock, started_mono: float, task: Any) -> None:
        self._claimed = claimed
        self._clock = clock
        self._started_mono = started_mono
        self._deadline_mono: float | None = None
        self._grace_mono = 0.0
        self._task: asyncio.Task[Any] | None = task
        self._cancel_reason = 0
        self._cancels = 0
        self._abandoned = False
        self._blocked = False
        self._in_thread = False

    @property
    def id(self) -> str:
        """The job's id (the same across its attempts)."""
        return self._claimed.spec.id

    @property
    def name(self) -> str:
        """The registered job name."""
        return self._claimed.spec.name

    @property
    def attempt(self) -> int:
        """This attempt's number, from 1."""
        return self._claimed.attempt

    @property
    def max_attempts(self) -> int:
        """Attempts allowed in all (``retries + 1``)."""
        return self._claimed.spec.max_attempts

    @property
    def queue(self) -> str:
        """The queue the job was enqueued on."""
        return self._claimed.spec.queue

    @property
    def priority(self) -> int:
        """Lower runs first."""
        return self._claimed.spec.priority

    @property
    def workspace_id(self) -> str | None:
        """The tenant or workspace the job was enqueued for, if any."""
        return self._claimed.spec.workspace_id

    @property
    def trigger(self) -> Trigger:
        """Why this attempt runs: enqueue, cron, retry or requeue."""
        return Trigger(self._claimed.trigger)

    @property
    def enqueued_at(self) -> float:
        """When the job was enqueued (epoch seconds)."""
        return self._claimed.spec.enqueued_at

    @property
    def deadline(self) -> float | None:
        """When this attempt times out (epoch seconds), or None without a timeout
        (or, for a sync handler, before a thread has taken it)."""
        # Kept in monotonic time, which the timeout is measured in; turned into
        # wall time only when asked (most jobs never ask).
        deadline = self._deadline_mono
        if deadline is None:
            return None
        clock = self._clock
        return clock.now() + (deadline - clock.monotonic())

    @property
    def scheduled_for(self) -> float | None:
        """For a cron job, the tick (epoch seconds) it runs for; else None."""
        meta = self._claimed.spec.meta
        value = meta.get("scheduled_for") if meta else None
        return float(value) if value is not None else None

    @property
    def key(self) -> str | None:
        """The job's uniqueness key, if it was enqueued with one."""
        return self._claimed.spec.key

    @property
    def claimed(self) -> ClaimedJob:
        """The full claimed record (args, headers, lease token)."""
        return self._claimed

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far this attempt got, e.g. ``progress(0.4, "resized 4 of 10")``.

        Stored with the job (``JobRecord.progress``), shown by ``jobrunner jobs
        show`` and the web dashboard. Cheap enough for a tight loop: the runner
        keeps only the latest report of each job and writes at most one batch
        every ``defaults.PROGRESS_INTERVAL`` seconds. Callable from sync
        handlers' threads too. ValueError unless ``0 <= fraction <= 1``.
        """
        report_progress(self._claimed, fraction, message)

    def __repr__(self) -> str:
        return f"<JobContext {self.name} id={self.id} attempt={self.attempt}/{self.max_attempts}>"


_current: ContextVar[JobContext] = ContextVar("jobrunner_job")


def current_job() -> JobContext:
    """The job running in this context. Raises LookupError outside a job."""
    try:
        return _current.get()
    except LookupError:
        raise LookupError(
            "current_job() was called outside a job; it works only in a job's "
            "handler, its resources, and tasks they spawn"
        ) from None
