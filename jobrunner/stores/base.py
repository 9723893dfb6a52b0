"""The store protocol, in the words of job state changes.

Every store (memory, SQLite, PostgreSQL) implements this and passes the same
behaviour suites (``tests/test_store_contract.py``, and ``tests/test_store_model.py``,
which holds every store to the rules of ``jobrunner.transitions``); the runner
core only ever talks to a ``Store``.

State machine (``attempts`` counts attempts started)::

    enqueue ──> QUEUED / SCHEDULED ──claim──> RUNNING ──settle──> SUCCEEDED
                      ^                         │ │ │
                      │ RELEASED (attempts-1)   │ │ └─> RETRYING ──claim──> RUNNING
                      └─────────────────────────┘ ├──> DEAD ──requeue──> QUEUED
                                                  └──> CANCELLED

    enqueue_after ──> BLOCKED ──last parent ended──> QUEUED / SCHEDULED
                         └──a parent failed, or cancel──> CANCELLED / DEAD

Rules every store keeps:

* ``claim`` hands out ready jobs (``run_at <= now``; QUEUED, SCHEDULED or
  RETRYING) ordered by ``(priority, run_at, insertion order)``, increments
  ``attempts``, sets a new lease ``token`` and lease expiry, never more than
  ``limit`` jobs, never more than ``queue_room[q]`` of a limited queue, only
  jobs whose name is in ``names`` and (if given) whose queue is in ``queues``.
* Flow control (``jobrunner.flow``): ``claim`` never takes a job of a queue
  paused with ``pause_queue`` (in any process: the pause is stored); keeps
  ``request.limits`` (concurrency: by counting the RUNNING jobs; rates: by
  reading and writing the stored counters of ``flow.RateLimit`` scopes) in
  its own atomic step, and when a rate window held jobs back, ``next_run_at``
  answers no later than that window's end; and it ends every waiting job past
  its ``expires_at`` CANCELLED (``transitions.lapsed``), telling
  ``request.on_expired``. With limits, a settle wakes the listeners (a job
  ending frees room).
* Every write about a claimed job (``settle``, ``extend_leases``) is fenced by
  ``(job_id, token)`` and status RUNNING: a stale worker cannot overwrite a newer
  attempt. Fenced-out writes are reported, never applied.
* ``key``: while a job with the same key is active (waiting or running),
  ``enqueue`` returns that job instead of creating another.
* Work notifications: a store calls every listener registered with
  ``add_work_listener`` when work may have become available (a job enqueued, a
  retry or release scheduled, a requeue) in any process it can hear from.
* The state changes themselves (what a settle, a rescue, a cancel or a requeue
  does to a job, and the cases where a cancel wins) are ``jobrunner.transitions``.
* Payloads: ``JobSpec.args``/``kwargs`` and ``Outcome.result`` arrive already
  normalized to JSON values by ``jobrunner.payload`` (the runner checks every
  call and result), as fresh copies the store may keep. Durable stores write
  them with ``payload.dumps`` and read them with ``payload.loads``, so every
  store gives back exactly what JSON holds (tuples as lists, ``-0.0`` and
  ``1e300`` as floats, NUL characters included).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from jobrunner.models import (
    ClaimedJob,
    ClaimRequest,
    Dependency,
    Enqueued,
    ErrorInfo,
    JobRecord,
    JobSpec,
    JobStatus,
    LeaderInfo,
    LeaseReport,
    LeaseTerms,
    Outcome,
    ParentOutcome,
    ProgressReport,
    RescuedJob,
    StoreStats,
    WorkerInfo,
)
from jobrunner.payload import check_call, loads

__all__ = ["Store", "parent_outcome", "unstorable"]


@runtime_checkable
class Store(Protocol):
    """Where jobs live. All times are wall-clock epoch seconds from the runner's clock."""

    durable: bool
    """True if accepted jobs survive a crash of this process."""
    serializes_payloads: bool
    """True if args, kwargs and results are written out as JSON text (durable
    stores). Every store holds only JSON values either way (see Payloads above)."""
    poll_interval: float | None
    """How often an idle runner re-checks for work it may not be told about
    (other processes' enqueues); None when every enqueue is notified."""
    claim_batch: int
    """Largest batch worth claiming at once."""

    # lifecycle -------------------------------------------------------------
    async def open(self) -> None:
        """Connect and create or migrate the schema. Idempotent. Raises StoreError."""
        ...

    async def close(self) -> None:
        """Release connections. Idempotent."""
        ...

    def add_work_listener(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (on the event loop) when work may be ready; returns an unsubscriber."""
        ...

    # producing -------------------------------------------------------------
    async def enqueue(
        self,
        jobs: Sequence[JobSpec],
        now: float,
        *,
        connection: Any = None,
        max_pending: int | None = None,
    ) -> list[Enqueued]:
        """Insert jobs atomically (all or none); one answer per job, in order.

        ``connection``: a store-specific connection whose transaction the insert
        joins (PostgreSQL); stores without that notion raise ValueError if given.

        ``max_pending``: admit the batch only if the jobs waiting plus the jobs it
        creates (keyed jobs answered by an active one create none) are at most
        this, or no job is waiting (a batch larger than the limit goes into an
        empty queue); otherwise write nothing and raise ``QueueFull(pending,
        max_pending)``. The check and the insert are one atomic step, so
        producers in any number of processes together never exceed the bound
        (PostgreSQL with ``connection=``: see its docstring). ``pending`` may be
        reported capped at ``max_pending + 1``.
        """
        ...

    async def count_pending(self) -> int:
        """Jobs waiting (QUEUED, SCHEDULED, RETRYING); may be briefly stale on shared stores."""
        ...

    # consuming -------------------------------------------------------------
    async def claim(self, request: ClaimRequest) -> list[ClaimedJob]:
        """Claim up to ``request.limit`` ready jobs with a lease (see module rules)."""
        ...

    async def extend_leases(
        self, leases: Sequence[tuple[str, int]], now: float, terms: LeaseTerms
    ) -> LeaseReport:
        """Renew the leases ``(job_id, token)``; report lost ones and cancel requests."""
        ...

    async def settle(self, outcomes: Sequence[Outcome], worker: str) -> list[str]:
        """Record how attempts ended, in one transaction; return ids fenced out."""
        ...

    async def next_run_at(self, now: float) -> float | None:
        """Earliest ``run_at`` after ``now`` among waiting jobs, to sleep until; None if none.

        A store may answer earlier than that (never later): it only wakes a runner early.
        """
        ...

    # maintenance (run by the leader) ----------------------------------------
    async def rescue_expired(self, now: float) -> list[RescuedJob]:
        """Take back RUNNING jobs whose lease expired: retry, dead-letter or cancel them."""
        ...

    async def prune(self, finished_before: float, limit: int) -> int:
        """Delete up to ``limit`` SUCCEEDED or CANCELLED jobs finished before the time."""
        ...

    async def purge(self, status: JobStatus, finished_before: float, limit: int) -> int:
        """Delete up to ``limit`` jobs of a final ``status`` finished before the time."""
        ...

    async def try_lead(self, role: str, holder: str, ttl: float, now: float) -> bool:
        """Acquire or renew leadership of ``role`` for ``ttl`` seconds; True if ``holder`` leads."""
        ...

    async def resign(self, role: str, holder: str) -> None:
        """Give up leadership of ``role`` if ``holder`` has it."""
        ...

    # cron -------------------------------------------------------------------------
    async def fire_tick(self, schedule: str, fire_at: float, job: JobSpec, now: float) -> bool:
        """Enqueue one cron tick, at most once ever per ``(schedule, fire_at)``.

        Atomically: if the last tick recorded for ``schedule`` is earlier than
        ``fire_at``, insert ``job`` and record ``fire_at`` as the last tick; return
        True. Otherwise change nothing and return False. Two leaders racing
        (a takeover) therefore cannot both fire a tick, nor fire an older one.
        """
        ...

    async def cron_state(self) -> dict[str, float]:
        """The last tick fired of every schedule that ever fired: name -> epoch seconds."""
        ...

    # dependencies (after=) ------------------------------------------------------
    # Only jobs enqueued with enqueue_after, and the jobs they wait for, touch
    # what these need; a store keeps plain enqueues, claims and settles free of it.
    async def enqueue_after(
        self,
        jobs: Sequence[JobSpec],
        after: Sequence[Dependency],
        now: float,
        *,
        connection: Any = None,
        max_pending: int | None = None,
    ) -> list[Enqueued]:
        """``enqueue``, each job waiting for the parents of its ``Dependency`` (same order).

        All or none, in one transaction. A parent may be an earlier job of the
        same batch (a chain); one answered by the holder of its key makes its
        children wait on that holder. Per ``transitions.after``: a job with a parent
        not yet ended is BLOCKED, which no claim takes; a parent that already
        ended counts as it ended. From then on, whenever a parent ends (any
        settle, rescue or cancel that makes it final), the same transaction
        applies ``transitions.parent_ended`` to its blocked children and,
        transitively, to theirs. A job with no parents enqueues as ``enqueue``
        does. ``max_pending`` counts every job created, blocked ones included.
        Raises JobNotFound for an unknown parent (nothing written), ValueError
        for a job with a ``key`` and parents.
        """
        ...

    async def parent_outcomes(self, job_id: str) -> list[ParentOutcome]:
        """How the parents of a job enqueued after them ended, in the order given
        (empty for a job without parents); kept while the job is, even once the
        parents are pruned. Raises JobNotFound."""
        ...

    # inspection and repair ---------------------------------------------------
    async def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None."""
        ...

    async def wait_done(self, job_id: str) -> JobRecord:
        """Wait until the job is final and return its record; JobNotFound if unknown."""
        ...

    async def cancel(self, job_id: str, now: float) -> JobStatus:
        """Cancel a waiting job now, or flag a running one (returns RUNNING).

        Returns the status after the call; a final job is left as it is.
        Raises JobNotFound.
        """
        ...

    async def requeue(self, job_id: str, now: float) -> JobRecord:
        """Put a DEAD or CANCELLED job back in the queue with attempts reset.

        Raises JobNotFound, or InvalidJobState for any other status.
        """
        ...

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        queue: str | None = None,
        name: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[JobRecord]:
        """Jobs matching every given filter, newest first (by enqueue order).

        ``before``: a job id; only jobs enqueued before that job are listed
        (keyset paging: pass the last id of one page to get the next). Raises
        JobNotFound if that job no longer exists (it was purged meanwhile).
        """
        ...

    async def stats(self, now: float) -> StoreStats:
        """Counts by status and queue, oldest waiting age, unknown job names."""
        ...

    # progress and the cluster view (the web dashboard) --------------------------------
    async def set_progress(self, reports: Sequence[ProgressReport]) -> list[str]:
        """Store each attempt's latest progress, fenced like ``settle`` by
        ``(job_id, token)`` and status RUNNING; return the ids fenced out.

        Called only when handlers report progress, at most a few times a second
        per runner (``jobrunner.progress`` throttles and batches the reports).
        """
        ...

    async def workers(self, now: float) -> list[WorkerInfo]:
        """Runners seen (claiming or heartbeating) in the last few minutes, newest first."""
        ...

    async def leaders(self, now: float) -> list[LeaderInfo]:
        """Every leadership role with its holder, including lapsed ones (``expires_at`` < now)."""

    # flow control (jobrunner.flow) ---------------------------------------------
    async def pause_queue(self, queue: str, now: float) -> bool:
        """Stop claims of ``queue``'s jobs in every process, durably (until
        ``resume_queue``). Enqueues still go in; running jobs finish. True if it
        was not paused already."""
        ...

    async def resume_queue(self, queue: str) -> bool:
        """Let claims take ``queue``'s jobs again and wake the runners; True if it was paused."""
        ...

    async def paused_queues(self) -> dict[str, float]:
        """Paused queues and when each was paused (epoch seconds)."""
        ...


def unstorable(spec: JobSpec) -> TypeError:
    """The error for a spec whose payload JSON cannot hold, naming the job and the argument.

    The runner normalizes every call before a store sees it, so a store meets
    this only when called directly with raw values.
    """
    try:
        check_call(spec.name, spec.args, spec.kwargs, None)
    except TypeError as exc:
        return exc
    return TypeError(
        f"job {spec.name!r} ({spec.id}): its headers or meta cannot be stored as JSON; "
        f"headers map str to str, meta holds str, int, float, bool, None, lists and dicts"
    )


def parent_outcome(row: Sequence[Any]) -> ParentOutcome:
    """A durable store's edge row ``(parent, name, status, result JSON, error type,
    error message)`` as a ``ParentOutcome``."""
    parent, name, status, result, error_type, error_message = row
    return ParentOutcome(
        parent,
        name,
        None if status is None else JobStatus(status),
        None if result is None else loads(result),
        None if error_type is None else ErrorInfo(error_type, error_message or "", ""),
    )
