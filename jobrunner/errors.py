"""Every error jobrunner raises, under one base class.

Messages name the job or the file involved and say what to do about it.
"""

from __future__ import annotations

from collections.abc import Iterable
from difflib import get_close_matches
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jobrunner.models import ErrorInfo

__all__ = [
    "Abort",
    "InvalidJobState",
    "JobCancelled",
    "JobFailed",
    "JobNotFound",
    "JobTimeout",
    "JobrunnerError",
    "ParentFailed",
    "QueueFull",
    "ResourceError",
    "Retry",
    "StoreError",
    "UnknownJob",
]


class JobrunnerError(Exception):
    """Base class of every error raised by jobrunner."""


class UnknownJob(JobrunnerError, LookupError):
    """A job name that no ``@runner.job`` registered was enqueued."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        known = sorted(known)
        close = get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        listing = ", ".join(map(repr, known)) if known else "none"
        super().__init__(
            f"no job named {name!r} is registered with this runner.{hint} "
            f"Registered jobs: {listing}. To enqueue a job that another service's "
            f"runner handles, declare it first: runner.declare({name!r})."
        )


class JobNotFound(JobrunnerError, LookupError):
    """No job with this id exists in the store (never enqueued, or pruned)."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(
            f"no job with id {job_id!r} in the store; it was never enqueued here "
            f"or its record was pruned after its retention period"
        )


class InvalidJobState(JobrunnerError):
    """An operation does not apply to the job's current status."""

    def __init__(self, job_id: str, status: str, wanted: str) -> None:
        self.job_id = job_id
        self.status = status
        super().__init__(f"job {job_id!r} is {status}; {wanted}")


class JobFailed(JobrunnerError):
    """The job ended dead: its attempts were exhausted or it was aborted."""

    def __init__(self, job_id: str, name: str, error: ErrorInfo | None) -> None:
        self.job_id = job_id
        self.name = name
        self.error = error
        what = f"{error.type}: {error.message}" if error else "no error recorded"
        super().__init__(
            f"job {name!r} ({job_id}) ended dead after its last attempt failed with "
            f"{what}; see runner.dead_letters() and runner.requeue({job_id!r})"
        )


class JobCancelled(JobrunnerError):
    """The job was cancelled before it finished."""

    def __init__(self, job_id: str, name: str) -> None:
        self.job_id = job_id
        self.name = name
        super().__init__(f"job {name!r} ({job_id}) was cancelled")


class ParentFailed(JobrunnerError):
    """A parent of this job (``after=``) did not succeed, so it has no result to give."""

    def __init__(self, job_id: str, parent_id: str, parent_name: str, status: str) -> None:
        self.job_id = job_id
        self.parent_id = parent_id
        self.parent_name = parent_name
        self.status = status
        super().__init__(
            f"parent {parent_name!r} ({parent_id}) of job {job_id} ended {status}, so it has no result; "
            f"read current_job().parent_outcomes() to handle failed parents (a group's callback does)"
        )


class JobTimeout(JobrunnerError):
    """An attempt ran past its timeout and was cancelled (the attempt failed)."""


class QueueFull(JobrunnerError):
    """``max_pending`` jobs are already waiting and the enqueue asked not to block."""

    def __init__(self, pending: int, max_pending: int) -> None:
        self.pending = pending
        self.max_pending = max_pending
        super().__init__(
            f"{pending} jobs are waiting (max_pending={max_pending}); retry later, "
            f"enqueue with block=True to wait for room, or raise max_pending"
        )


class ResourceError(JobrunnerError):
    """A resource could not be created, or is declared wrongly."""


class StoreError(JobrunnerError):
    """The store cannot be opened or written; the message names it and the cause."""


class Retry(JobrunnerError):
    """Raise inside a job to ask for another attempt, after ``delay`` seconds.

    The attempt counts against the job's retries; once they are used up the job
    goes to the dead letters like any other failure.
    """

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        if delay is not None and delay < 0:
            raise ValueError(f"Retry(delay={delay!r}): delay must be >= 0 seconds")
        self.delay = delay
        self.reason = reason
        super().__init__(reason or f"retry requested (delay={delay})")


class Abort(JobrunnerError):
    """Raise inside a job to send it straight to the dead letters, without retries."""

    def __init__(self, reason: str = "aborted") -> None:
        self.reason = reason
        super().__init__(reason)
