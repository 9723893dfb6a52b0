"""The job context: who is running, visible to the job and everything it calls.

Each attempt runs in its own ``contextvars.Context``; ``current_job()`` reads
this module's ContextVar from it. Tasks the job spawns copy that context, so
they see the job too; nothing set inside leaks to the next job or the runner.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from jobrunner.clock import Clock
from jobrunner.errors import ParentFailed
from jobrunner.models import ClaimedJob, JobStatus, ParentOutcome, Trigger
from jobrunner.progress import report_progress

if TYPE_CHECKING:
    from jobrunner.stores.base import Store

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

    async def parent_outcomes(self) -> list[ParentOutcome]:
        """How each parent this job was enqueued ``after=`` ended, in the order
        given: status, result (if it succeeded), error (if not). Empty for a job
        without parents. Read from the store when asked (one query)."""
        return await _store.get().parent_outcomes(self.id)

    async def parent_results(self) -> list[Any]:
        """The results of the parents, in the order given to ``after=``.

        Raises ParentFailed if a parent did not succeed (a job whose policy is
        ``on_parent_failure="run"``, such as a group's callback, or one requeued
        by hand); use ``parent_outcomes()`` to handle those.
        """
        outcomes = await self.parent_outcomes()
        for outcome in outcomes:
            if outcome.status is not JobStatus.SUCCEEDED:
                status = "without ending" if outcome.status is None else outcome.status.value
                raise ParentFailed(self.id, outcome.id, outcome.name, status)
        return [outcome.result for outcome in outcomes]

    def __repr__(self) -> str:
        return f"<JobContext {self.name} id={self.id} attempt={self.attempt}/{self.max_attempts}>"


_current: ContextVar[JobContext] = ContextVar("jobrunner_job")
_store: ContextVar[Store] = ContextVar("jobrunner_store")
"""The runner's store, set once in the context every attempt copies (so reading
parents costs nothing per job until a job asks)."""


def current_job() -> JobContext:
    """The job running in this context. Raises LookupError outside a job."""
    try:
        return _current.get()
    except LookupError:
        raise LookupError(
            "current_job() was called outside a job; it works only in a job's "
            "handler, its resources, and tasks they spawn"
        ) from None
