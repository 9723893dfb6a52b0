"""The records that move between the runner and its store. No I/O here."""

from __future__ import annotations

import os
import traceback as _tb
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from jobrunner.flow import Limits

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

__all__ = [
    "ACTIVE_STATUSES",
    "FINAL_STATUSES",
    "WAITING_STATUSES",
    "ClaimRequest",
    "ClaimedJob",
    "Dependency",
    "Enqueued",
    "ErrorInfo",
    "ExpiredJob",
    "HistoryEntry",
    "JobRecord",
    "JobSpec",
    "JobStatus",
    "LeaderInfo",
    "LeaseReport",
    "LeaseTerms",
    "Outcome",
    "OutcomeKind",
    "ParentFailure",
    "ParentOutcome",
    "Progress",
    "ProgressReport",
    "RescuedJob",
    "StoreStats",
    "Trigger",
    "WorkerInfo",
    "storable",
]


class JobStatus(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    """Ready to run now."""
    SCHEDULED = "scheduled"
    """Waiting for its ``run_at`` time."""
    RUNNING = "running"
    """Claimed by a worker; an attempt is under way."""
    RETRYING = "retrying"
    """An attempt failed; waiting out the backoff before the next one."""
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    """Attempts exhausted or aborted; kept in the dead letters until requeued or purged."""
    CANCELLED = "cancelled"
    BLOCKED = "blocked"
    """Enqueued with ``after=``: waiting for its parents to end; no claim takes it."""

    @property
    def is_final(self) -> bool:
        """True for SUCCEEDED, DEAD and CANCELLED."""
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED})
WAITING_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.RETRYING})
ACTIVE_STATUSES = WAITING_STATUSES | {JobStatus.RUNNING}


class Trigger(StrEnum):
    """Why this attempt runs."""

    ENQUEUE = "enqueue"
    CRON = "cron"
    RETRY = "retry"
    REQUEUE = "requeue"


class ParentFailure(StrEnum):
    """What happens to a job enqueued ``after=`` parents when one of them ends
    without succeeding (DEAD or CANCELLED)."""

    CANCEL = "cancel"
    """The job is cancelled at once, and so are its own dependents (the default)."""
    DEAD = "dead"
    """The job goes to the dead letters at once (requeue it to run it anyway)."""
    RUN = "run"
    """The job runs anyway once every parent ended (a group's callback)."""


class OutcomeKind(StrEnum):
    """How an attempt ended, as the store records it."""

    SUCCEEDED = "succeeded"
    RETRY = "retry"
    """Failed; run again at ``retry_at``."""
    DEAD = "dead"
    CANCELLED = "cancelled"
    RELEASED = "released"
    """Interrupted by shutdown: back to the queue, the attempt not counted."""


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An exception as stored: its type name, message and formatted traceback."""

    type: str
    message: str
    traceback: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        """Capture ``exc`` with its traceback, starting at the first frame outside jobrunner.

        The runner's own frames above the handler say nothing about the failure.
        """
        tb = exc.__traceback__
        while (
            tb is not None
            and tb.tb_next is not None
            and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR)
        ):
            tb = tb.tb_next
        try:
            message = str(exc)
        except Exception as str_failed:  # a broken __str__ must not lose the outcome
            message = f"<str() of the exception failed: {type(str_failed).__qualname__}>"
        return cls(
            type=storable(type(exc).__qualname__),
            message=storable(message),
            traceback=storable("".join(_tb.format_exception(type(exc), exc, tb))),
        )


def storable(text: str) -> str:
    """``text`` as every store can hold it: lone surrogates and NUL escaped.

    An exception message is arbitrary text; one that SQLite cannot encode or
    PostgreSQL refuses would make the outcome impossible to record.
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class JobSpec(NamedTuple):
    """What was enqueued: fixed for the job's whole life.

    The per-job records (``JobSpec``, ``ClaimedJob``, ``Outcome``) are named tuples:
    immutable, and several times cheaper to build than frozen dataclasses, which
    matters at hundreds of thousands of jobs a second.
    """

    id: str
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    queue: str
    priority: int
    max_attempts: int
    timeout: float | None
    key: str | None
    workspace_id: str | None
    enqueued_at: float
    run_at: float
    trigger: str
    """A ``Trigger`` value, kept as a plain str: a tuple of plain values is one the
    garbage collector stops tracking, which matters with a million jobs queued."""
    headers: Mapping[str, str] | None = None
    """Propagated context (W3C trace context) injected at enqueue."""
    meta: Mapping[str, Any] | None = None
    """Extra facts, e.g. ``scheduled_for`` of a cron tick."""
    expires_at: float | None = None
    """Deadline to start by (``expires=``/``ttl=``): a job still waiting then is
    discarded by the next claim (CANCELLED, error ``JobExpired``); None: never."""


class Dependency(NamedTuple):
    """The parents a job waits for (``after=``), and what a failed parent does to it."""

    parents: tuple[str, ...]
    """Job ids, in the order given; the job runs once all of them ended (see ``on_failure``)."""
    on_failure: str = ParentFailure.CANCEL.value
    """A ``ParentFailure`` value."""


@dataclass(frozen=True, slots=True)
class ParentOutcome:
    """How one parent of a job ended, as recorded when it ended."""

    id: str
    name: str
    status: JobStatus | None
    """SUCCEEDED, DEAD or CANCELLED; None while the parent has not ended."""
    result: Any = None
    """The parent's return value if it succeeded."""
    error: ErrorInfo | None = None
    """The parent's last error if it ended dead or cancelled (without traceback)."""


class Enqueued(NamedTuple):
    """The store's answer for one enqueued job."""

    id: str
    created: bool
    """False when a job with the same ``key`` was already active; ``id`` is that job's."""


@dataclass(frozen=True, slots=True)
class LeaseTerms:
    """How long a claim holds a job before the rescuer may take it back."""

    fixed: float | None
    """Every lease lasts this long; None: the job's timeout plus ``margin``."""
    margin: float
    without_timeout: float
    """Lease length (before ``margin``) for jobs that have no timeout."""

    def seconds_for(self, timeout: float | None) -> float:
        """Lease length for a job with this timeout."""
        if self.fixed is not None:
            return self.fixed
        return (self.without_timeout if timeout is None else timeout) + self.margin


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """One batched claim: at most ``limit`` ready jobs, best first."""

    worker: str
    limit: int
    now: float
    names: frozenset[str] | None
    """Only jobs with these names (the runner's registry); None: any."""
    queue_room: Mapping[str, int]
    """Queues with a concurrency limit and how many more jobs each may take now."""
    lease: LeaseTerms
    queues: frozenset[str] | None = None
    """Only jobs on these queues (a worker dedicated to some queues); None: any."""
    limits: Limits | None = None
    """Concurrency limits that hold across every runner on the store (``jobrunner.flow``)."""
    on_expired: Callable[[Sequence[ExpiredJob]], None] | None = None
    """Told (on the event loop, after the claim) of waiting jobs the claim found
    past their ``expires_at`` and ended CANCELLED instead of starting."""


class ClaimedJob(NamedTuple):
    """One attempt handed to a worker. ``token`` fences every write about it."""

    spec: JobSpec
    attempt: int
    """1-based number of this attempt."""
    token: int
    """Changes on every claim; settles and heartbeats must present it."""
    trigger: str
    """A ``Trigger`` value."""
    ready_at: float
    """When this attempt became runnable (for queue wait time)."""
    decode_error: str | None = None
    """Set when the stored payload could not be decoded; the job goes dead."""


class Outcome(NamedTuple):
    """How one attempt ended, for ``Store.settle``."""

    job_id: str
    token: int
    kind: OutcomeKind
    at: float
    result: Any = None
    error: ErrorInfo | None = None
    retry_at: float | None = None


@dataclass(frozen=True, slots=True)
class LeaseReport:
    """What a heartbeat learned: leases that were lost, cancellations asked for."""

    lost: tuple[str, ...] = ()
    cancel_requested: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RescuedJob:
    """A job whose lease expired and that the rescuer took back."""

    id: str
    name: str
    attempt: int
    status: JobStatus
    """RETRYING (another attempt follows), DEAD or CANCELLED."""


class ExpiredJob(NamedTuple):
    """A job a claim discarded because it was not started by its ``expires_at``."""

    id: str
    name: str
    queue: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One transition in a job's life, kept for audit."""

    at: float
    status: JobStatus
    attempt: int
    worker: str | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Progress:
    """How far an attempt got, as its handler said with ``current_job().progress()``."""

    fraction: float
    """From 0.0 to 1.0."""
    message: str
    attempt: int
    """The attempt that reported it: an earlier attempt's progress stays until the next report."""
    at: float
    """When it was reported (epoch seconds)."""


class ProgressReport(NamedTuple):
    """One progress write for ``Store.set_progress``, fenced like a settle."""

    job_id: str
    token: int
    progress: Progress


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A runner that claimed or heartbeated recently, as the store saw it."""

    worker: str
    names: tuple[str, ...]
    """The job names it registered."""
    seen_at: float


@dataclass(frozen=True, slots=True)
class LeaderInfo:
    """Who holds a leadership role, until when."""

    role: str
    holder: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job as the store knows it (a copy; it does not change under you)."""

    id: str
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    queue: str
    priority: int
    status: JobStatus
    attempts: int
    """Attempts started so far."""
    max_attempts: int
    timeout: float | None
    key: str | None
    workspace_id: str | None
    trigger: Trigger
    enqueued_at: float
    run_at: float
    started_at: float | None
    finished_at: float | None
    result: Any
    error: ErrorInfo | None
    worker: str | None
    cancel_requested: bool = False
    headers: Mapping[str, str] | None = None
    meta: Mapping[str, Any] | None = None
    history: tuple[HistoryEntry, ...] = ()
    result_error: str | None = None
    """Why the result could not be stored, on records written by releases before
    results were checked by the executor (a result JSON cannot hold now fails
    the attempt instead); None otherwise."""
    progress: Progress | None = None
    """The last progress an attempt reported, if any did."""
    expires_at: float | None = None
    """The deadline to start by, if the job has one (``JobSpec.expires_at``)."""


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Counts and ages as the store sees them."""

    counts: Mapping[JobStatus, int]
    queues: Mapping[str, Mapping[JobStatus, int]]
    oldest_waiting_age: float | None
    """Seconds the oldest ready job has waited; None when none waits."""
    unknown_names: Mapping[str, float] = field(default_factory=dict)
    """Waiting jobs that no live runner has registered: name -> oldest job's age."""
