"""Every change a store makes to a job, as pure functions: the rules in one place.

The memory store applies these functions (with inlined copies of the hot ones:
enqueue, claim and a successful settle); the SQLite and PostgreSQL stores say
the same in SQL. ``tests/test_store_model.py`` runs random sequences of store
operations on every store and on a model made of these functions, and compares
the records after every step, so a store that drifts from a rule fails there.

=====================  ==========================================================
change                 rule
=====================  ==========================================================
enqueue                SCHEDULED if ``run_at > now``, else QUEUED; attempts 0.
                       A key held by an active (waiting or running) job, or by an
                       earlier job of the same batch, answers with that job's id
                       and creates nothing.
admission              with ``max_pending``: admitted if the batch creates no job,
                       the queue has no waiting job, or waiting + created <=
                       ``max_pending``; otherwise nothing is written (QueueFull).
claim                  ready = waiting (QUEUED, SCHEDULED, RETRYING) and ``run_at
                       <= now``; best first by ``(priority, run_at, seq)`` where
                       ``seq`` is the enqueue order, fixed for the job's life; at
                       most ``limit``, at most ``queue_room[q]`` of a limited
                       queue. RUNNING, attempts + 1, token + 1, a new lease, the
                       cancel flag cleared.
fencing                a settle or heartbeat applies only while the job is RUNNING
                       with the token it presents; otherwise it is reported (lost)
                       and changes nothing. Outcomes of one batch apply in order,
                       so a second outcome for the same attempt is lost.
extend lease           lease = now + the lease length; the cancel flag reported.
settle SUCCEEDED       SUCCEEDED with the result, whatever the cancel flag (the
                       work is done); the last error is kept for audit.
settle RETRY           RETRYING at ``retry_at`` (``at`` if none), trigger retry.
settle DEAD            DEAD.
settle CANCELLED       CANCELLED.
settle RELEASED        back to where it waited (RETRYING if its trigger is retry,
                       else QUEUED), attempts - 1 (the attempt does not count).
cancel wins            a RETRY, DEAD or RELEASED of a job whose cancel was asked
                       for ends it CANCELLED instead: the user said stop, so it
                       must not run again (nor sit in the dead letters).
errors                 RETRY, DEAD and CANCELLED record the outcome's error (none
                       clears it); SUCCEEDED and RELEASED keep the last one.
rescue                 a RUNNING job whose lease ended before ``now`` becomes
                       CANCELLED if a cancel was asked for, DEAD if it used its
                       attempts, else RETRYING at ``min(run_at, now)``. That is
                       its own ``run_at`` (a lease ends after the claim, which was
                       at or after ``run_at``): ready at once for every process,
                       whatever its clock skew (the rescuer's ``now`` may be
                       ahead of theirs), and it keeps its place among equal
                       priorities. Error ``LeaseExpired``.
expiry                 a waiting job with ``expires_at <= now`` at a claim becomes
                       CANCELLED at ``now`` with the error ``JobExpired`` and
                       never starts (``lapsed``; see ``jobrunner.flow``).
cancel                 waiting: CANCELLED now; RUNNING: the cancel flag (its runner
                       hears it at the next heartbeat); final: unchanged.
requeue                DEAD or CANCELLED only: QUEUED at ``now``, attempts 0,
                       trigger requeue, flag cleared; InvalidJobState otherwise,
                       or while another active job holds its key.
scheduled vs queued    a SCHEDULED job whose ``run_at`` has come is ready like a
                       QUEUED one; stores relabel it QUEUED lazily (a claim or
                       stats), so a record may show either until it runs.
enqueue after          a job enqueued ``after=`` parents (``after`` below): BLOCKED
                       while a parent has not ended; when none is left to wait
                       for, as a plain enqueue. A parent that already ended counts
                       as it ended (no lost wake-up). Keys are refused with
                       ``after=`` (a blocked job holds no key).
parent ended           when a parent ends, a BLOCKED child counts it: SUCCEEDED
                       (or any end, for policy RUN) is one less to wait for, and
                       the last one makes the child QUEUED (SCHEDULED before its
                       ``run_at``); DEAD or CANCELLED with policy CANCEL or DEAD
                       ends the child CANCELLED or DEAD at once, error
                       ``ParentFailed``, and its own children count that end in
                       turn (transitively). A child no longer BLOCKED is left as
                       it is (a requeued parent revives nobody).
cancel blocked         a BLOCKED job cancels like a waiting one.
prune, purge           delete up to ``limit`` final jobs of the statuses asked for
                       (prune: SUCCEEDED, CANCELLED) finished before the time;
                       which ones, when more qualify, is the store's choice.
=====================  ==========================================================

History: a claim and a success are not logged as they happen (they are implied
by ``started_at`` and ``finished_at``, which keeps the hot path cheap); every
other end of an attempt logs its start and its end; a cancel while waiting and
a requeue log one line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

from jobrunner.errors import InvalidJobState
from jobrunner.flow import EXPIRED_ERROR
from jobrunner.models import ErrorInfo, JobSpec, JobStatus, Outcome, OutcomeKind, ParentFailure, Trigger

__all__ = [
    "ACTIVE",
    "FINAL",
    "WAITING",
    "Change",
    "JobState",
    "LogLine",
    "admits",
    "after",
    "cancelled",
    "choose",
    "claimed",
    "enqueued",
    "expired",
    "expiry_error",
    "extended",
    "holds",
    "lapsed",
    "lease_expired",
    "parent_ended",
    "prunable",
    "ready",
    "requeued",
    "rescued",
    "settled",
]

T = TypeVar("T")

# Plain str values: the memory store keeps states as plain tuples of plain values.
QUEUED = JobStatus.QUEUED.value
SCHEDULED = JobStatus.SCHEDULED.value
RUNNING = JobStatus.RUNNING.value
RETRYING = JobStatus.RETRYING.value
BLOCKED = JobStatus.BLOCKED.value
SUCCEEDED = JobStatus.SUCCEEDED.value
DEAD = JobStatus.DEAD.value
CANCELLED = JobStatus.CANCELLED.value
WAITING = frozenset({QUEUED, SCHEDULED, RETRYING})
ACTIVE = WAITING | {RUNNING}
FINAL = frozenset({SUCCEEDED, DEAD, CANCELLED})

RETRY_TRIGGER = Trigger.RETRY.value
REQUEUE_TRIGGER = Trigger.REQUEUE.value

# History notes.
RELEASED_NOTE = "released at shutdown"
LEASE_EXPIRED_NOTE = "lease expired"
CANCELLED_WAITING_NOTE = "cancelled while waiting"
REQUEUED_NOTE = "requeued"
CANCEL_WINS_NOTE = "cancel requested"
EXPIRED_NOTE = "expired before it started"
BLOCKED_NOTE = "waiting for its parents"
UNBLOCKED_NOTE = "parents ended"
PARENT_FAILED = "ParentFailed"
RUN_ON_FAILURE = ParentFailure.RUN.value
DEAD_ON_FAILURE = ParentFailure.DEAD.value


class JobState(NamedTuple):
    """The part of a job that changes (``JobSpec`` holds the rest)."""

    status: str
    """A ``JobStatus`` value."""
    attempts: int
    """Attempts started and counted."""
    token: int
    """Bumped by every claim; fences writes about the attempt."""
    trigger: str
    """A ``Trigger`` value: why the next (or current) attempt runs."""
    run_at: float
    started_at: float | None
    finished_at: float | None
    worker: str | None
    lease_until: float | None
    """Set while RUNNING only."""
    cancel_requested: bool
    result: Any
    error: ErrorInfo | None


LogLine = tuple[float, str, int, str | None, str]
"""One history line as every store keeps it: ``(at, status, attempt, worker, note)``."""


class Change(NamedTuple):
    """A new state and the history lines it appends."""

    state: JobState
    log: tuple[LogLine, ...] = ()


# producing ---------------------------------------------------------------------------
def enqueued(spec: JobSpec, now: float) -> JobState:
    """The state of a job just enqueued."""
    status = SCHEDULED if spec.run_at > now else QUEUED
    return JobState(status, 0, 0, spec.trigger, spec.run_at, None, None, None, None, False, None, None)


def admits(pending: int, created: int, max_pending: int | None) -> bool:
    """Whether a batch creating ``created`` jobs may go in while ``pending`` wait.

    A batch larger than the limit still goes into an empty queue: otherwise it
    could never go in at all.
    """
    return max_pending is None or created == 0 or pending == 0 or pending + created <= max_pending


# dependencies ------------------------------------------------------------------------
def parent_failed(parent_id: str, parent_status: str) -> ErrorInfo:
    """The error of a job ended by a parent that did not succeed."""
    return ErrorInfo(
        PARENT_FAILED,
        f"parent job {parent_id} ended {parent_status}; requeue it, and once it succeeded requeue this job",
        "",
    )


def check_dependencies(specs: Sequence[JobSpec], parents: Sequence[Sequence[str]]) -> None:
    """Refuse, before anything is written, what dependencies cannot hold.

    ``parents[i]``: the ids ``specs[i]`` waits for. A keyed job cannot wait (its
    key's holder would answer for it), and a deadline to start by (``expires=``/
    ``ttl=``) cannot sit on either side of a dependency: a child would expire while
    blocked unnoticed, and a parent that expired would leave its children blocked.
    A parent stored earlier with a deadline is refused by ``deadline_parent``.
    """
    deadlines: dict[str, float | None] = {}
    for spec, waits_for in zip(specs, parents, strict=True):
        if waits_for:
            if spec.key is not None:
                raise ValueError(f"job {spec.name!r}: key= cannot be combined with parents (after=)")
            if spec.expires_at is not None:
                raise ValueError(
                    f"job {spec.name!r}: a deadline to start by (expires=/ttl=) cannot be combined "
                    f"with parents (after=); enqueue it without one"
                )
            for parent_id in waits_for:
                if deadlines.get(parent_id) is not None:
                    raise deadline_parent(parent_id)
        deadlines[spec.id] = spec.expires_at


def deadline_parent(parent_id: str) -> ValueError:
    """The error for a parent that has a deadline to start by (see ``check_dependencies``)."""
    return ValueError(
        f"job {parent_id} has a deadline to start by (expires=/ttl=), so no job can wait for it "
        f"(after=); enqueue the parent without one"
    )


def after(
    spec: JobSpec, now: float, ended: Iterable[tuple[str, str]], waiting: int, on_failure: str
) -> Change:
    """The state of a job just enqueued after parents.

    ``ended``: ``(parent id, final status)`` of the parents that already ended;
    ``waiting``: how many parents have not ended yet.
    """
    state = enqueued(spec, now)
    if on_failure != RUN_ON_FAILURE:
        for parent_id, status in ended:
            if status != SUCCEEDED:
                return _failed_by_parent(state, now, parent_id, status, on_failure)
    if waiting:
        return Change(state._replace(status=BLOCKED), ((now, BLOCKED, 0, None, BLOCKED_NOTE),))
    return Change(state)


def parent_ended(
    state: JobState, now: float, parent_id: str, parent_status: str, waiting: int, on_failure: str
) -> Change | None:
    """A BLOCKED child after its parent ``parent_id`` ended ``parent_status``;
    ``waiting``: its parents still not ended, this one no longer counted.
    None if the child is not BLOCKED (left as it is)."""
    if state.status != BLOCKED:
        return None
    if parent_status != SUCCEEDED and on_failure != RUN_ON_FAILURE:
        return _failed_by_parent(state, now, parent_id, parent_status, on_failure)
    if waiting:
        return Change(state)
    status = SCHEDULED if state.run_at > now else QUEUED
    return Change(state._replace(status=status), ((now, status, 0, None, UNBLOCKED_NOTE),))


def _failed_by_parent(
    state: JobState, now: float, parent_id: str, parent_status: str, on_failure: str
) -> Change:
    status = DEAD if on_failure == DEAD_ON_FAILURE else CANCELLED
    new = state._replace(status=status, finished_at=now, error=parent_failed(parent_id, parent_status))
    return Change(new, ((now, status, state.attempts, None, f"parent {parent_id} {parent_status}"),))


# consuming ---------------------------------------------------------------------------
def ready(state: JobState, now: float) -> bool:
    """Whether a claim at ``now`` may take the job."""
    return state.status in WAITING and state.run_at <= now


def choose(
    candidates: Iterable[tuple[int, float, int, str, T]], limit: int, room: Mapping[str, int]
) -> list[T]:
    """The items a claim takes: ``candidates`` are ``(priority, run_at, seq, queue, item)``
    of ready jobs of the names and queues asked for; best first, at most ``limit``,
    at most ``room[q]`` of each limited queue ``q``."""
    left = dict(room)
    chosen: list[T] = []
    if limit <= 0:
        return chosen
    for _, _, _, queue, item in sorted(candidates, key=lambda c: (c[0], c[1], c[2])):
        if queue in left:
            if left[queue] <= 0:
                continue
            left[queue] -= 1
        chosen.append(item)
        if len(chosen) >= limit:
            break
    return chosen


def claimed(state: JobState, now: float, worker: str, lease_until: float) -> JobState:
    """The state of a job a claim took."""
    return state._replace(
        status=RUNNING,
        attempts=state.attempts + 1,
        token=state.token + 1,
        started_at=now,
        finished_at=None,
        worker=worker,
        lease_until=lease_until,
        cancel_requested=False,
        result=None,
    )


def holds(state: JobState, token: int) -> bool:
    """Fencing: whether a write presenting ``token`` is about the job's current attempt."""
    return state.status == RUNNING and state.token == token


def extended(state: JobState, token: int, lease_until: float) -> JobState | None:
    """The state with its lease renewed, or None if the lease was lost (fenced out)."""
    if not holds(state, token):
        return None
    return state._replace(lease_until=lease_until)


def _attempt_log(state: JobState, at: float, status: str, note: str) -> tuple[LogLine, LogLine]:
    """An attempt's start (claims are not logged as they happen) and its end."""
    started = state.started_at if state.started_at is not None else at
    return (
        (started, RUNNING, state.attempts, state.worker, ""),
        (at, status, state.attempts, state.worker, note),
    )


def settled(state: JobState, outcome: Outcome) -> Change | None:
    """The job after ``outcome``, or None if it is fenced out (lost)."""
    if not holds(state, outcome.token):
        return None
    kind, at = outcome.kind, outcome.at
    if kind is OutcomeKind.SUCCEEDED:
        return Change(
            state._replace(status=SUCCEEDED, finished_at=at, lease_until=None, result=outcome.result)
        )
    error = outcome.error
    if kind is OutcomeKind.RELEASED:
        note, error = RELEASED_NOTE, state.error
    else:
        note = outcome.error.type if outcome.error is not None else ""
    if state.cancel_requested and kind is not OutcomeKind.CANCELLED:
        note = f"{CANCEL_WINS_NOTE}; {note}" if note else CANCEL_WINS_NOTE
        new = state._replace(status=CANCELLED, finished_at=at, lease_until=None, error=error)
    elif kind is OutcomeKind.RETRY:
        run_at = at if outcome.retry_at is None else outcome.retry_at
        new = state._replace(
            status=RETRYING, run_at=run_at, trigger=RETRY_TRIGGER, lease_until=None, error=error
        )
    elif kind is OutcomeKind.RELEASED:
        status = RETRYING if state.trigger == RETRY_TRIGGER else QUEUED
        new = state._replace(status=status, attempts=state.attempts - 1, lease_until=None)
    else:  # DEAD, CANCELLED
        status = DEAD if kind is OutcomeKind.DEAD else CANCELLED
        new = state._replace(status=status, finished_at=at, lease_until=None, error=error)
    return Change(new, _attempt_log(state, at, new.status, note))


def expiry_error() -> ErrorInfo:
    """The error a job that expired while waiting records (its deadline is its ``expires_at``)."""
    return ErrorInfo(
        EXPIRED_ERROR,
        "the job was not started by its deadline (its expires_at), so it was discarded unrun; "
        "enqueue it again with a later expires= or ttl= to run it",
        "",
    )


def lapsed(state: JobState, now: float) -> Change:
    """The job after a claim found it waiting past its ``expires_at``."""
    new = state._replace(status=CANCELLED, finished_at=now, lease_until=None, error=expiry_error())
    return Change(new, ((now, CANCELLED, state.attempts, None, EXPIRED_NOTE),))


# maintenance -------------------------------------------------------------------------
def expired(state: JobState, now: float) -> bool:
    """Whether the rescuer takes the job back at ``now``."""
    return state.status == RUNNING and state.lease_until is not None and state.lease_until < now


def lease_expired(worker: str | None, attempt: int) -> ErrorInfo:
    """The error a rescued attempt records."""
    return ErrorInfo(
        "LeaseExpired",
        f"worker {worker} stopped renewing its lease on attempt {attempt}; the worker probably died",
        "",
    )


def rescued(state: JobState, now: float, max_attempts: int) -> Change:
    """The job after the rescuer took back its expired lease."""
    error = lease_expired(state.worker, state.attempts)
    if state.cancel_requested or state.attempts >= max_attempts:
        status = CANCELLED if state.cancel_requested else DEAD
        new = state._replace(status=status, finished_at=now, lease_until=None, error=error)
    else:
        new = state._replace(
            status=RETRYING,
            run_at=min(state.run_at, now),
            trigger=RETRY_TRIGGER,
            lease_until=None,
            error=error,
        )
    return Change(new, _attempt_log(state, now, new.status, LEASE_EXPIRED_NOTE))


def prunable(state: JobState, statuses: frozenset[str], finished_before: float) -> bool:
    """Whether prune or purge (of ``statuses``) may delete the job."""
    return state.status in statuses and state.finished_at is not None and state.finished_at < finished_before


# inspection and repair -----------------------------------------------------------------
def cancelled(state: JobState, now: float) -> Change:
    """The job after ``cancel``: the status is what ``Store.cancel`` returns."""
    if state.status in WAITING or state.status == BLOCKED:
        new = state._replace(status=CANCELLED, finished_at=now)
        return Change(new, ((now, CANCELLED, state.attempts, None, CANCELLED_WAITING_NOTE),))
    if state.status == RUNNING:
        return Change(state._replace(cancel_requested=True))
    return Change(state)


def requeued(job_id: str, state: JobState, now: float, key: str | None, key_holder: str | None) -> Change:
    """The job after ``requeue``; ``key_holder``: the active job holding its key, if any.

    Raises InvalidJobState unless the job is DEAD or CANCELLED and its key is free.
    """
    if state.status not in (DEAD, CANCELLED):
        raise InvalidJobState(job_id, state.status, "only dead or cancelled jobs can be requeued")
    if key_holder is not None:
        raise InvalidJobState(job_id, state.status, f"job {key_holder} with the same key {key!r} is active")
    new = state._replace(
        status=QUEUED,
        attempts=0,
        trigger=REQUEUE_TRIGGER,
        run_at=now,
        started_at=None,
        finished_at=None,
        lease_until=None,
        cancel_requested=False,
    )
    return Change(new, ((now, QUEUED, 0, None, REQUEUED_NOTE),))
