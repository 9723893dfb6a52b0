"""The in-memory store: the fastest, complete, and lost with the process.

Everything happens on the event loop without awaiting, so every method is
atomic.

Each job's state is one tuple, replaced (never mutated) at every transition,
holding the job's ``JobSpec`` as the runner made it. Containers index states by
job id, and an entry anywhere (a lane, a heap) is live only while it *is* the
job's current state: stale entries are skipped lazily, never searched for.
(An earlier layout kept the spec as a plain tuple with its dicts turned into
item tuples, so the garbage collector could stop tracking queued jobs; the
conversions cost about a tenth of a no-op job's whole cycle, more than the
collector's full passes over a deep queue cost.)

Ready jobs wait in lanes, one per (queue, priority): a FIFO for the usual case
(jobs arrive in ``(run_at, seq)`` order, so append and pop are O(1) whatever the
length) plus a heap for jobs that arrive out of order (a delayed job, a retry
that became due, a released job, which keeps its enqueue ``seq``). Delayed jobs
wait in a heap by ``run_at`` until due.

The rules are ``jobrunner.transitions``: the rarer changes (retry, release,
dead, cancel, rescue, requeue) apply its functions; enqueue, claim and a
successful settle are inlined copies of them, which the model test
(``tests/test_store_model.py``) holds to the same rules.

Payloads: the runner hands over arguments and results already normalized to
JSON values (``jobrunner.payload``), fresh copies that nobody else holds, and
the store keeps them. What it hands out (claimed arguments, records, results)
has every list and dict copied, so neither a job nor a caller that changes
what it got can change what the store holds; strings and numbers are
immutable and shared.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from jobrunner import flow
from jobrunner import transitions as rules
from jobrunner.errors import JobNotFound, QueueFull
from jobrunner.models import (
    ClaimedJob,
    ClaimRequest,
    Dependency,
    Enqueued,
    ErrorInfo,
    ExpiredJob,
    HistoryEntry,
    JobRecord,
    JobSpec,
    JobStatus,
    LeaderInfo,
    LeaseReport,
    LeaseTerms,
    Outcome,
    OutcomeKind,
    ParentOutcome,
    Progress,
    ProgressReport,
    RescuedJob,
    StoreStats,
    Trigger,
    WorkerInfo,
)

__all__ = ["MemoryStore"]

_new_tuple = tuple.__new__

# Fields of a JobSpec, read by index in the hot paths.
_ID, _NAME, _ARGS, _QUEUE, _PRIORITY, _MAX_ATTEMPTS, _TIMEOUT, _KEY, _WORKSPACE, _EXPIRES = (
    JobSpec._fields.index(f)
    for f in (
        "id",
        "name",
        "args",
        "queue",
        "priority",
        "max_attempts",
        "timeout",
        "key",
        "workspace_id",
        "expires_at",
    )
)

# Fields of a state tuple. STATUS..ERROR are ``transitions.JobState``'s fields, in
# its order (the error as a plain tuple).
(
    SPEC,  # the JobSpec as enqueued (the runner's normalized copy)
    STATUS,  # a JobStatus value (plain str)
    ATTEMPTS,
    TOKEN,
    TRIGGER,  # a Trigger value (plain str)
    RUN_AT,
    STARTED,
    FINISHED,
    WORKER,
    LEASE,  # lease expiry while running, else None
    CANCEL,  # cancel requested while running
    RESULT,
    ERROR,  # (type, message, traceback) or None
    HISTORY,  # tuple of transitions.LogLine
    SEQ,  # enqueue order: the last tie-break of claims, fixed for the job's life
) = range(15)

_State = tuple[Any, ...]
_KWARGS, _HEADERS, _META = (JobSpec._fields.index(f) for f in ("kwargs", "headers", "meta"))
_CONTAINERS = (list, dict)


def _copy(value: Any) -> Any:
    """A JSON value with every list and dict copied (scalars are immutable: shared)."""
    kind = type(value)
    if kind is list:
        return [_copy(v) if type(v) in _CONTAINERS else v for v in value]
    if kind is dict:
        return {k: _copy(v) if type(v) in _CONTAINERS else v for k, v in value.items()}
    return value


def _handed_out(spec: JobSpec) -> JobSpec:
    """The spec to hand out: as it is when it holds nothing mutable but the
    (empty) kwargs dict, else with copies of every list and dict in it."""
    if not spec.kwargs and spec.meta is None:
        for arg in spec.args:
            if type(arg) in _CONTAINERS:
                break
        else:
            return spec
    return spec._replace(
        args=tuple([_copy(arg) for arg in spec.args]),
        kwargs={k: _copy(v) for k, v in spec.kwargs.items()},
        headers=None if spec.headers is None else dict(spec.headers),
        meta=None if spec.meta is None else _copy(dict(spec.meta)),
    )


_QUEUED = rules.QUEUED
_SCHEDULED = rules.SCHEDULED
_RUNNING = rules.RUNNING
_SUCCEEDED = rules.SUCCEEDED
_DEAD = rules.DEAD
_WAITING = rules.WAITING
_FINAL = rules.FINAL
_SUCCEEDED_KIND = OutcomeKind.SUCCEEDED

# A runner that has not claimed for this long no longer counts as knowing its names.
_KNOWN_NAMES_TTL = 300.0


def _view(state: _State) -> rules.JobState:
    """The state as ``transitions`` sees it."""
    error = state[ERROR]
    return _new_tuple(rules.JobState, (*state[STATUS:ERROR], None if error is None else ErrorInfo(*error)))


def _applied(state: _State, change: rules.Change) -> _State:
    """``state`` after ``change``: its fields replaced, its history extended."""
    new = change.state
    error = new.error
    return (
        state[SPEC],
        *new[:-1],
        None if error is None else (error.type, error.message, error.traceback),
        state[HISTORY] + change.log if change.log else state[HISTORY],
        state[SEQ],
    )


class _Lane:
    """Ready jobs of one queue and priority, in ``(run_at, seq)`` order."""

    __slots__ = ("fifo", "jobs", "last_run_at", "last_seq", "late", "priority", "queue", "tickets")

    def __init__(self, queue: str, priority: int, jobs: dict[str, _State], tickets: Iterator[int]) -> None:
        self.queue = queue
        self.priority = priority
        self.jobs = jobs
        self.tickets = tickets
        self.fifo: deque[_State] = deque()
        # (run_at, seq, ticket, state): the ticket keeps a job's stale and live
        # entries (same run_at and seq) from ever comparing their states.
        self.late: list[tuple[float, int, int, _State]] = []
        self.last_run_at = -math.inf
        self.last_seq = 0

    def push(self, state: _State) -> None:
        run_at = state[RUN_AT]
        last_run_at = self.last_run_at
        if run_at > last_run_at or (run_at == last_run_at and state[SEQ] > self.last_seq):
            self.fifo.append(state)
            self.last_run_at = run_at
            self.last_seq = state[SEQ]
        else:
            heapq.heappush(self.late, (run_at, state[SEQ], next(self.tickets), state))

    def _clean(self) -> None:
        jobs = self.jobs
        fifo = self.fifo
        while fifo and jobs.get(fifo[0][SPEC][_ID]) is not fifo[0]:
            fifo.popleft()
        late = self.late
        while late and jobs.get(late[0][3][SPEC][_ID]) is not late[0][3]:
            heapq.heappop(late)

    def head(self) -> tuple[float, int] | None:
        """``(run_at, seq)`` of the first live entry."""
        self._clean()
        fifo, late = self.fifo, self.late
        if fifo and (not late or (fifo[0][RUN_AT], fifo[0][SEQ]) < late[0][:2]):
            return fifo[0][RUN_AT], fifo[0][SEQ]
        if late:
            return late[0][0], late[0][1]
        return None

    def pop(self) -> _State | None:
        """The first live entry, or None."""
        if not self.late:
            # The common case: everything arrived in order.
            jobs = self.jobs
            fifo = self.fifo
            while fifo:
                state = fifo.popleft()
                if jobs.get(state[SPEC][_ID]) is state:
                    return state
            return None
        self._clean()
        fifo, late = self.fifo, self.late
        if fifo and (not late or (fifo[0][RUN_AT], fifo[0][SEQ]) < late[0][:2]):
            return fifo.popleft()
        if late:
            return heapq.heappop(late)[3]
        return None

    def states(self) -> Iterator[_State]:
        yield from self.fifo
        yield from (entry[3] for entry in self.late)


class _Waits:
    """What a job enqueued after parents knows of them (kept while the job is)."""

    __slots__ = ("ended", "names", "on_failure", "waiting")

    def __init__(self, names: dict[str, str], on_failure: str) -> None:
        self.names = names
        """Parent id -> job name, in the order given."""
        self.on_failure = on_failure
        self.waiting = 0
        """Parents not ended yet."""
        self.ended: dict[str, ParentOutcome] = {}


def _outcome(state: _State) -> ParentOutcome:
    """How a final parent ended, as its children keep it."""
    spec, status, error = state[SPEC], state[STATUS], state[ERROR]
    return ParentOutcome(
        spec[_ID],
        spec[_NAME],
        JobStatus(status),
        _copy(state[RESULT]) if status == _SUCCEEDED else None,
        None if error is None or status == _SUCCEEDED else ErrorInfo(error[0], error[1], ""),
    )


class MemoryStore:
    """Jobs in this process's memory. ``Runner()`` uses it by default.

    ``max_finished`` bounds the finished jobs kept for their results: beyond it the
    oldest are dropped early, so memory stays bounded however long the process runs.
    """

    durable = False
    serializes_payloads = False
    poll_interval: float | None = None
    claim_batch = 256

    # Slots, not a __dict__: past 30 attributes CPython 3.11 gives an instance a
    # plain dict, and every ``self._x`` read on the hot paths gets slower.
    __slots__ = (
        "_counts", "_delayed", "_dependents", "_deps", "_ended", "_expiry", "_finished", "_jobs",
        "_keys", "_known_names", "_lane_order", "_lanes", "_last_lane", "_last_names", "_leaders",
        "_limited", "_listeners", "_max_finished", "_parked", "_paused", "_pending", "_progress",
        "_rate_wake", "_rates", "_running", "_seq", "_tickets", "_ticks", "_told", "_waiters",
        "_workers_seen",
    )  # fmt: skip

    def __init__(self, *, max_finished: int = 100_000) -> None:
        if max_finished < 0:
            raise ValueError(f"max_finished={max_finished}: must be >= 0")
        self._max_finished = max_finished
        self._jobs: dict[str, _State] = {}
        self._lanes: dict[tuple[str, int], _Lane] = {}
        self._lane_order: list[_Lane] = []
        self._last_lane: _Lane | None = None
        # (run_at, seq, ticket, state), as a lane's late heap.
        self._delayed: list[tuple[float, int, int, _State]] = []
        self._tickets = itertools.count()
        self._parked: dict[str, list[_State]] = {}
        self._running: dict[str, None] = {}
        self._keys: dict[str, str] = {}
        self._finished: deque[_State] = deque()
        self._counts: dict[str, dict[str, int]] = {}
        self._pending = 0  # waiting jobs (QUEUED, SCHEDULED, RETRYING), for admission in O(1)
        self._waiters: dict[str, list[asyncio.Future[_State]]] = {}
        self._leaders: dict[str, tuple[str, float]] = {}
        self._ticks: dict[str, float] = {}
        self._known_names: dict[str, float] = {}
        self._workers_seen: dict[str, tuple[frozenset[str] | None, float]] = {}
        self._progress: dict[str, Progress] = {}
        self._last_names: frozenset[str] | None = None
        self._listeners: list[Callable[[], None]] = []
        self._seq = itertools.count(1)
        self._told = False  # listeners notified of an enqueue since the last claim
        # Flow control (jobrunner.flow): paused queues, the deadlines of jobs
        # enqueued with one ((expires_at, ticket, job id), a heap), and whether
        # a claim with global limits was seen (its settles then wake runners).
        self._paused: dict[str, float] = {}
        self._expiry: list[tuple[float, int, str]] = []
        self._limited = False
        self._rates: dict[str, flow.Window] = {}  # rate scope -> (window start, starts)
        self._rate_wake: float | None = None  # when the last claim's spent window ends
        # Dependencies (enqueue_after): a job's parents, and each parent's
        # children (kept while the parent is). Both empty unless after= is used,
        # and the hot paths look only at whether _dependents is empty.
        self._deps: dict[str, _Waits] = {}
        self._dependents: dict[str, list[str]] = {}
        self._ended: list[_State] = []  # parents ended, children not yet told

    # lifecycle -------------------------------------------------------------
    async def open(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to close; the jobs stay for a runner that reuses this store."""

    def add_work_listener(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` whenever a job may have become ready."""
        self._listeners.append(callback)

        def remove() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return remove

    def _notify(self) -> None:
        for callback in self._listeners:
            callback()

    # bookkeeping -------------------------------------------------------------
    def _counts_of(self, queue: str) -> dict[str, int]:
        counts = self._counts.get(queue)
        if counts is None:
            counts = self._counts[queue] = {status.value: 0 for status in JobStatus}
        return counts

    def _set(self, old: _State, new: _State) -> None:
        """Install ``new`` as the job's state and keep the counts right."""
        counts = self._counts_of(new[SPEC][_QUEUE])
        before, after = old[STATUS], new[STATUS]
        counts[before] -= 1
        counts[after] += 1
        self._pending += (after in _WAITING) - (before in _WAITING)
        self._jobs[new[SPEC][_ID]] = new

    def _change(self, old: _State, change: rules.Change, now: float) -> _State:
        """Apply a ``transitions`` change: install it and file, finish or flag the job."""
        new = _applied(old, change)
        status = new[STATUS]
        if status in _FINAL:
            self._finished_state(old, new)
        else:
            self._set(old, new)
            if status in _WAITING:
                self._file(new, now)
                expires_at = new[SPEC][_EXPIRES]
                if expires_at is not None and old[STATUS] not in _WAITING:
                    # Back to waiting (a retry, a release): the deadline still holds.
                    heapq.heappush(self._expiry, (expires_at, next(self._tickets), new[SPEC][_ID]))
        return new

    def _lane(self, queue: str, priority: int) -> _Lane:
        last = self._last_lane
        if last is not None and last.priority == priority and last.queue == queue:
            return last
        lane = self._lanes.get((queue, priority))
        if lane is None:
            lane = self._lanes[queue, priority] = _Lane(queue, priority, self._jobs, self._tickets)
            keys = [(ln.priority, ln.queue) for ln in self._lane_order]
            self._lane_order.insert(bisect.bisect(keys, (priority, queue)), lane)
        self._last_lane = lane
        return lane

    def _file(self, state: _State, now: float) -> None:
        """Put a waiting state where claims will find it."""
        if state[RUN_AT] > now:
            heapq.heappush(self._delayed, (state[RUN_AT], state[SEQ], next(self._tickets), state))
        else:
            spec = state[SPEC]
            self._lane(spec[_QUEUE], spec[_PRIORITY]).push(state)

    def _promote(self, now: float) -> None:
        delayed = self._delayed
        jobs = self._jobs
        while delayed and delayed[0][0] <= now:
            state = heapq.heappop(delayed)[3]
            if jobs.get(state[SPEC][_ID]) is not state:
                continue
            if state[STATUS] == _SCHEDULED:
                # Due: relabelled QUEUED (transitions: "scheduled vs queued").
                queued = (*state[:STATUS], _QUEUED, *state[STATUS + 1 :])
                self._set(state, queued)
                state = queued
            spec = state[SPEC]
            self._lane(spec[_QUEUE], spec[_PRIORITY]).push(state)

    def _finished_state(self, old: _State, new: _State) -> None:
        """Install a final state: free its key, keep it for results, wake waiters."""
        self._set(old, new)
        spec = new[SPEC]
        key = spec[_KEY]
        if key is not None and self._keys.get(key) == spec[_ID]:
            del self._keys[key]
        if new[STATUS] != _DEAD:
            finished = self._finished
            finished.append(new)
            if len(finished) > self._max_finished:
                self._forget(finished.popleft())
        if self._waiters:
            waiters = self._waiters.pop(spec[_ID], None)
            if waiters:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(new)
        if self._dependents and spec[_ID] in self._dependents:
            self._ended.append(new)
            if len(self._ended) == 1:  # not already telling children (iterative, not recursive)
                self._tell_children()

    def _tell_children(self) -> None:
        """Apply ``transitions.parent_ended`` to the children of every parent that
        ended, including children that end in turn."""
        ended = self._ended
        ready = False
        while ended:
            parent = ended[0]
            parent_id, status, now = parent[SPEC][_ID], parent[STATUS], parent[FINISHED]
            outcome = _outcome(parent)
            for child_id in self._dependents.get(parent_id, ()):
                waits = self._deps.get(child_id)
                child = self._jobs.get(child_id)
                if waits is None or child is None:
                    continue
                first = parent_id not in waits.ended
                waits.ended[parent_id] = outcome  # the latest end (a requeued parent ends again)
                if not first:
                    continue
                waits.waiting -= 1
                change = rules.parent_ended(
                    _view(child), now, parent_id, status, waits.waiting, waits.on_failure
                )
                if change is not None and change.state.status != child[STATUS]:
                    # May end the child, which appends it to ``ended``.
                    ready |= self._change(child, change, now)[STATUS] in _WAITING
            ended.pop(0)
        if ready:
            self._notify()

    def _forget(self, state: _State) -> bool:
        spec = state[SPEC]
        if self._jobs.get(spec[_ID]) is not state:
            return False  # requeued since: a stale entry
        del self._jobs[spec[_ID]]
        self._counts[spec[_QUEUE]][state[STATUS]] -= 1
        if self._progress:
            self._progress.pop(spec[_ID], None)
        if self._deps:
            self._deps.pop(spec[_ID], None)
        if self._dependents:
            self._dependents.pop(spec[_ID], None)
        return True

    # producing -------------------------------------------------------------
    async def enqueue(
        self,
        jobs: Sequence[JobSpec],
        now: float,
        *,
        connection: Any = None,
        max_pending: int | None = None,
    ) -> list[Enqueued]:
        """Add jobs; a job whose key is active returns the active job instead.

        The specs' payloads are kept as they are (see the module docstring).
        """
        if connection is not None:
            raise ValueError("the memory store has no connections; enqueue without connection=")
        pending = self._pending
        if max_pending is not None and pending + len(jobs) > max_pending and pending:
            created = self._would_create(jobs)
            if not rules.admits(pending, created, max_pending):
                raise QueueFull(pending, max_pending)
        out: list[Enqueued] = []
        keys = self._keys
        all_jobs = self._jobs
        seq = self._seq
        lane = self._last_lane
        answered = 0  # jobs answered by an active one with their key
        for spec in jobs:
            job_id, key, queue = spec.id, spec.key, spec.queue
            if key is not None:
                existing = keys.get(key)
                if existing is not None:
                    out.append(_new_tuple(Enqueued, (existing, False)))
                    answered += 1
                    continue
                keys[key] = job_id
            run_at = spec.run_at
            # transitions.enqueued, inlined.
            status = _SCHEDULED if run_at > now else _QUEUED
            state: _State = (
                spec, status, 0, 0, spec.trigger, run_at, None, None, None, None, False, None, None, (), next(seq),
            )  # fmt: skip
            if run_at > now:
                heapq.heappush(self._delayed, (run_at, state[SEQ], next(self._tickets), state))
            else:
                if lane is None or lane.queue != queue or lane.priority != spec.priority:
                    lane = self._lane(queue, spec.priority)
                lane.push(state)
            all_jobs[job_id] = state
            if spec.expires_at is not None:
                heapq.heappush(self._expiry, (spec.expires_at, next(self._tickets), job_id))
            counts = self._counts.get(queue) or self._counts_of(queue)
            counts[status] += 1
            out.append(_new_tuple(Enqueued, (job_id, True)))
        self._pending += len(out) - answered
        if not self._told:
            # Listeners told of work since the last claim have nothing to learn
            # from another enqueue: one notification per claim is enough.
            self._told = True
            self._notify()
        return out

    def _would_create(self, jobs: Sequence[JobSpec]) -> int:
        """How many of ``jobs`` an enqueue would create (the others' keys are held)."""
        keys = self._keys
        seen: set[str] = set()
        created = 0
        for spec in jobs:
            key = spec.key
            if key is None:
                created += 1
            elif key not in keys and key not in seen:
                seen.add(key)
                created += 1
        return created

    async def count_pending(self) -> int:
        """Exact count of waiting jobs."""
        return self._pending

    # consuming -------------------------------------------------------------
    async def claim(self, request: ClaimRequest) -> list[ClaimedJob]:
        """Take up to ``limit`` best ready jobs across queues with room."""
        self._told = False
        now = request.now
        if self._expiry and self._expiry[0][0] <= now:
            self._expire(now, request)
        if self._delayed and self._delayed[0][0] <= now:
            self._promote(now)
        names = request.names
        self._workers_seen[request.worker] = (names, now)  # one per claim batch, for workers()
        if names is not None and names is not self._last_names:
            self._last_names = names
            for name in names:
                self._known_names[name] = now
        if self._parked:
            self._unpark(names)
        room = dict(request.queue_room)
        name_room: dict[str, int] | None = None
        book: flow.RateBook | None = None
        if request.limits:
            name_room = self._global_room(request.limits, room)
            if request.limits.rates:
                book = flow.RateBook(request.limits, self._rates, now)
        only = request.queues
        paused = self._paused
        lanes = [
            ln
            for ln in self._lane_order
            if room.get(ln.queue, 1) > 0
            and (only is None or ln.queue in only)
            and (not paused or ln.queue not in paused)
        ]
        out: list[ClaimedJob] = []
        limit = request.limit
        terms = request.lease
        fixed, margin, no_timeout = terms.fixed, terms.margin, terms.without_timeout
        worker = request.worker
        running = self._running
        jobs = self._jobs
        counts: dict[str, int] = {}
        counts_queue = None  # the queue of ``counts`` (none yet)
        while lanes and len(out) < limit:
            lane = lanes[0] if len(lanes) == 1 else self._best(lanes)
            if lane is None:
                break
            state = lane.pop()
            if state is None:
                lanes.remove(lane)
                continue
            plain = state[SPEC]
            job_id = plain[_ID]
            if names is not None and plain[_NAME] not in names:
                self._parked.setdefault(plain[_NAME], []).append(state)
                continue
            if name_room is not None:
                name = plain[_NAME]
                if name_room.get(name, 1) <= 0 or (
                    book is not None and not book.admit(plain[_QUEUE], name, plain[_WORKSPACE])
                ):
                    # At its name's global limit or out of starts: set aside until the next claim.
                    self._parked.setdefault(name, []).append(state)
                    continue
                if name in name_room:  # taken below: nothing after this sets a job aside
                    name_room[name] -= 1
            queue = plain[_QUEUE]
            if queue is not counts_queue:
                counts, counts_queue = self._counts[queue], queue
            counts[state[STATUS]] -= 1
            counts[_RUNNING] += 1
            attempt = state[ATTEMPTS] + 1
            token = state[TOKEN] + 1
            if fixed is not None:
                lease = now + fixed
            else:
                timeout = plain[_TIMEOUT]
                lease = now + (no_timeout if timeout is None else timeout) + margin
            trigger = state[TRIGGER]
            # transitions.claimed, inlined.
            jobs[job_id] = (
                plain, _RUNNING, attempt, token, trigger, state[RUN_AT], now, None, worker,
                lease, False, None, state[ERROR], state[HISTORY], state[SEQ],
            )  # fmt: skip
            running[job_id] = None
            out.append(
                _new_tuple(ClaimedJob, (_handed_out(plain), attempt, token, trigger, state[RUN_AT], None))
            )
            if queue in room:
                room[queue] -= 1
                if room[queue] <= 0:
                    lanes = [ln for ln in lanes if ln.queue != queue]
        self._pending -= len(out)
        if book is not None:
            self._rates.update(book.counters())
            self._rate_wake = book.wake_at
        return out

    def _global_room(self, limits: flow.Limits, room: dict[str, int]) -> dict[str, int]:
        """Fold the store-wide room of limited queues into ``room``; return that of limited names."""
        self._limited = True
        by_queue = {q: self._counts[q][_RUNNING] for q in limits.queues if q in self._counts}
        by_name: dict[str, int] = {}
        if limits.names:
            jobs = self._jobs
            for job_id in self._running:
                name = jobs[job_id][SPEC][_NAME]
                by_name[name] = by_name.get(name, 0) + 1
        queue_room, name_room = flow.room(limits, by_queue, by_name)
        for queue, n in queue_room.items():
            room[queue] = min(room.get(queue, n), n)
        return name_room

    def _expire(self, now: float, request: ClaimRequest) -> None:
        """End every waiting job whose deadline has come (transitions.lapsed)."""
        heap = self._expiry
        jobs = self._jobs
        gone: list[ExpiredJob] = []
        while heap and heap[0][0] <= now:
            expires_at, _, job_id = heapq.heappop(heap)
            state = jobs.get(job_id)
            if state is None or state[STATUS] not in _WAITING:
                continue  # started (its deadline no longer matters), finished or forgotten
            self._change(state, rules.lapsed(_view(state), now), now)
            spec = state[SPEC]
            gone.append(ExpiredJob(job_id, spec[_NAME], spec[_QUEUE], expires_at))
        if gone and request.on_expired is not None:
            request.on_expired(gone)

    @staticmethod
    def _best(lanes: list[_Lane]) -> _Lane | None:
        """The lane whose head comes first by (priority, run_at, seq)."""
        best: _Lane | None = None
        best_key: tuple[int, float, int] | None = None
        for lane in lanes:
            if best_key is not None and lane.priority > best_key[0]:
                break  # lanes are sorted by priority
            head = lane.head()
            if head is not None:
                key = (lane.priority, head[0], head[1])
                if best_key is None or key < best_key:
                    best, best_key = lane, key
        return best

    def _unpark(self, names: frozenset[str] | None) -> None:
        for name in list(self._parked):
            if names is None or name in names:
                for state in self._parked.pop(name):
                    if self._jobs.get(state[SPEC][_ID]) is state:
                        self._lane(state[SPEC][_QUEUE], state[SPEC][_PRIORITY]).push(state)

    async def extend_leases(
        self, leases: Sequence[tuple[str, int]], now: float, terms: LeaseTerms
    ) -> LeaseReport:
        """Push back the expiry of held leases."""
        lost: list[str] = []
        cancel: list[str] = []
        for job_id, token in leases:
            state = self._jobs.get(job_id)
            if state is None or state[STATUS] != _RUNNING or state[TOKEN] != token:
                lost.append(job_id)
                continue
            lease = now + terms.seconds_for(state[SPEC][_TIMEOUT])
            self._jobs[job_id] = (*state[:LEASE], lease, *state[LEASE + 1 :])
            if state[CANCEL]:
                cancel.append(job_id)
        return LeaseReport(tuple(lost), tuple(cancel))

    async def settle(self, outcomes: Sequence[Outcome], worker: str) -> list[str]:
        """Apply outcomes whose lease is still held, in order; return the ids of the others."""
        lost: list[str] = []
        jobs = self._jobs
        running = self._running
        finished = self._finished
        max_finished = self._max_finished
        notify = False
        # Nothing below adds a waiter or a dependent (no await), so this holds for the batch.
        watched = bool(self._waiters or self._dependents)
        for outcome in outcomes:
            job_id = outcome.job_id
            state = jobs.get(job_id)
            # transitions.holds, inlined: a second outcome for the same attempt
            # finds the job no longer running.
            if state is None or state[STATUS] != _RUNNING or state[TOKEN] != outcome.token:
                lost.append(job_id)
                continue
            del running[job_id]
            if outcome.kind is _SUCCEEDED_KIND:
                # transitions.settled for a success, inlined.
                plain = state[SPEC]
                new = (
                    plain, _SUCCEEDED, state[ATTEMPTS], state[TOKEN], state[TRIGGER], state[RUN_AT],
                    state[STARTED], outcome.at, state[WORKER], None, state[CANCEL], outcome.result,
                    state[ERROR], state[HISTORY], state[SEQ],
                )  # fmt: skip
                if plain[_KEY] is not None or watched:
                    self._finished_state(state, new)
                    continue
                # The common case, inlined: no key to free, nobody waiting.
                jobs[job_id] = new
                counts = self._counts[plain[_QUEUE]]
                counts[_RUNNING] -= 1
                counts[_SUCCEEDED] += 1
                finished.append(new)
                if len(finished) > max_finished:
                    self._forget(finished.popleft())
                continue
            change = rules.settled(_view(state), outcome)
            assert change is not None  # held: checked above
            if self._change(state, change, outcome.at)[STATUS] in _WAITING:
                notify = True
        if notify or self._limited:
            # With global limits, a job ending frees room for other runners too.
            self._notify()
        return lost

    async def next_run_at(self, now: float) -> float | None:
        """Head of the delayed heap, once the due jobs left it and stale entries are skipped."""
        if self._delayed and self._delayed[0][0] <= now:
            self._promote(now)
        delayed = self._delayed
        rate_wake = self._rate_wake
        if rate_wake is not None and rate_wake <= now:
            rate_wake = None
        while delayed:
            run_at, _, _, state = delayed[0]
            if self._jobs.get(state[SPEC][_ID]) is state:
                return run_at if rate_wake is None else min(run_at, rate_wake)
            heapq.heappop(delayed)
        return rate_wake

    # maintenance -------------------------------------------------------------
    async def rescue_expired(self, now: float) -> list[RescuedJob]:
        """Retry, dead-letter or cancel running jobs whose lease ran out."""
        rescued: list[RescuedJob] = []
        jobs = self._jobs
        # In lease order (then enqueue order), as every store rescues.
        expired = sorted(
            (jobs[i] for i in self._running if jobs[i][LEASE] < now), key=lambda s: (s[LEASE], s[SEQ])
        )
        for state in expired:
            spec = state[SPEC]
            del self._running[spec[_ID]]
            new = self._change(state, rules.rescued(_view(state), now, spec[_MAX_ATTEMPTS]), now)
            rescued.append(RescuedJob(spec[_ID], spec[_NAME], state[ATTEMPTS], JobStatus(new[STATUS])))
        if rescued:
            self._notify()
        return rescued

    async def prune(self, finished_before: float, limit: int) -> int:
        """Forget the oldest finished jobs."""
        finished = self._finished
        pruned = 0
        while finished and pruned < limit:
            state = finished[0]
            if self._jobs.get(state[SPEC][_ID]) is state and state[FINISHED] >= finished_before:
                break
            finished.popleft()
            if self._forget(state):
                pruned += 1
        return pruned

    async def purge(self, status: JobStatus, finished_before: float, limit: int) -> int:
        """Forget jobs of a final status finished before the time."""
        if status.value not in _FINAL:
            raise ValueError(f"purge(status={status}): only final statuses can be purged")
        victims = [
            state
            for state in self._jobs.values()
            if state[STATUS] == status.value
            and state[FINISHED] is not None
            and state[FINISHED] < finished_before
        ][:limit]
        for state in victims:
            self._forget(state)
        return len(victims)

    async def try_lead(self, role: str, holder: str, ttl: float, now: float) -> bool:
        """Leadership as a lease in a dict: runners sharing this store elect one."""
        current = self._leaders.get(role)
        if current is None or current[0] == holder or current[1] < now:
            self._leaders[role] = (holder, now + ttl)
            return True
        return False

    async def resign(self, role: str, holder: str) -> None:
        """Drop leadership held by ``holder``."""
        current = self._leaders.get(role)
        if current is not None and current[0] == holder:
            del self._leaders[role]

    # cron -------------------------------------------------------------------------
    async def fire_tick(self, schedule: str, fire_at: float, job: JobSpec, now: float) -> bool:
        """Enqueue the tick unless this schedule already fired it or a later one."""
        last = self._ticks.get(schedule)
        if last is not None and last >= fire_at:
            return False
        self._ticks[schedule] = fire_at
        await self.enqueue((job,), now)
        return True

    async def cron_state(self) -> dict[str, float]:
        """Last tick per schedule."""
        return dict(self._ticks)

    # dependencies (after=) ---------------------------------------------------------
    async def enqueue_after(
        self,
        jobs: Sequence[JobSpec],
        after: Sequence[Dependency],
        now: float,
        *,
        connection: Any = None,
        max_pending: int | None = None,
    ) -> list[Enqueued]:
        """Add jobs that wait for their parents (see ``Store.enqueue_after``)."""
        if connection is not None:
            raise ValueError("the memory store has no connections; enqueue without connection=")
        if len(after) != len(jobs):
            raise ValueError(f"enqueue_after: {len(jobs)} jobs but {len(after)} dependencies")
        rules.check_dependencies(jobs, [dependency.parents for dependency in after])
        batch: dict[str, str] = {}
        for spec, dependency in zip(jobs, after, strict=True):
            for parent_id in dependency.parents:
                if parent_id in batch:
                    continue
                parent = self._jobs.get(parent_id)
                if parent is None:
                    raise JobNotFound(parent_id)
                if parent[SPEC][_EXPIRES] is not None and parent[STATUS] not in _FINAL:
                    raise rules.deadline_parent(parent_id)
            batch[spec.id] = spec.name
        pending = self._pending
        if max_pending is not None and pending:
            created = self._would_create(jobs)
            if not rules.admits(pending, created, max_pending):
                raise QueueFull(pending, max_pending)
        out: list[Enqueued] = []
        alias: dict[str, str] = {}  # a job of the batch answered by its key's holder -> the holder
        for spec, dependency in zip(jobs, after, strict=True):
            key = spec.key
            if key is not None:
                existing = self._keys.get(key)
                if existing is not None:
                    out.append(Enqueued(existing, False))
                    alias[spec.id] = existing
                    continue
                self._keys[key] = spec.id
            parents = tuple(dict.fromkeys(alias.get(p, p) for p in dependency.parents))
            if not parents:
                self._add(spec, rules.Change(rules.enqueued(spec, now)), now)
                out.append(Enqueued(spec.id, True))
                continue
            waits = _Waits({p: self._jobs[p][SPEC][_NAME] for p in parents}, dependency.on_failure)
            ended: list[tuple[str, str]] = []
            for parent_id in parents:
                parent = self._jobs[parent_id]
                if parent[STATUS] in _FINAL:
                    waits.ended[parent_id] = _outcome(parent)
                    ended.append((parent_id, parent[STATUS]))
                else:
                    waits.waiting += 1
            change = rules.after(spec, now, ended, waits.waiting, dependency.on_failure)
            self._deps[spec.id] = waits
            for parent_id in parents:
                self._dependents.setdefault(parent_id, []).append(spec.id)
            self._add(spec, change, now)
            out.append(Enqueued(spec.id, True))
        self._notify()
        return out

    def _add(self, spec: JobSpec, change: rules.Change, now: float) -> None:
        """Install a new job in the state ``change`` gives it."""
        new = change.state
        error = new.error
        state: _State = (
            spec, *new[:-1], None if error is None else (error.type, error.message, error.traceback),
            change.log, next(self._seq),
        )  # fmt: skip
        self._jobs[spec.id] = state
        self._counts_of(spec.queue)[new.status] += 1
        if new.status in _WAITING:
            self._pending += 1
            self._file(state, now)
        elif new.status in _FINAL and new.status != _DEAD:
            self._finished.append(state)

    async def parent_outcomes(self, job_id: str) -> list[ParentOutcome]:
        """As recorded when each parent ended."""
        if job_id not in self._jobs:
            raise JobNotFound(job_id)
        waits = self._deps.get(job_id)
        if waits is None:
            return []
        return [
            ParentOutcome(outcome.id, outcome.name, outcome.status, _copy(outcome.result), outcome.error)
            if (outcome := waits.ended.get(parent_id)) is not None
            else ParentOutcome(parent_id, name, None)
            for parent_id, name in waits.names.items()
        ]

    # inspection and repair -----------------------------------------------------
    def _record(self, state: _State) -> JobRecord:
        spec = _handed_out(state[SPEC])
        status = JobStatus(state[STATUS])
        history = [HistoryEntry(spec.enqueued_at, JobStatus.QUEUED, 0, None, "enqueued")]
        history.extend(
            HistoryEntry(at, JobStatus(st), attempt, worker, note)
            for at, st, attempt, worker, note in state[HISTORY]
        )
        # Claims and successes are not logged as they happen: add the current ones.
        if status is JobStatus.RUNNING or status is JobStatus.SUCCEEDED:
            history.append(HistoryEntry(state[STARTED], JobStatus.RUNNING, state[ATTEMPTS], state[WORKER]))
        if status is JobStatus.SUCCEEDED:
            history.append(HistoryEntry(state[FINISHED], status, state[ATTEMPTS], state[WORKER]))
        error = state[ERROR]
        return JobRecord(
            id=spec.id,
            name=spec.name,
            args=spec.args,
            kwargs=spec.kwargs,
            queue=spec.queue,
            priority=spec.priority,
            status=status,
            attempts=state[ATTEMPTS],
            max_attempts=spec.max_attempts,
            timeout=spec.timeout,
            key=spec.key,
            workspace_id=spec.workspace_id,
            trigger=Trigger(state[TRIGGER]),
            enqueued_at=spec.enqueued_at,
            run_at=state[RUN_AT],
            started_at=state[STARTED],
            finished_at=state[FINISHED],
            result=_copy(state[RESULT]),
            error=None if error is None else ErrorInfo(*error),
            worker=state[WORKER],
            cancel_requested=state[CANCEL],
            headers=spec.headers,
            meta=spec.meta,
            history=tuple(history),
            progress=self._progress.get(spec.id) if self._progress else None,
            expires_at=spec.expires_at,
        )

    async def get(self, job_id: str) -> JobRecord | None:
        """A snapshot of the job."""
        state = self._jobs.get(job_id)
        return None if state is None else self._record(state)

    async def wait_done(self, job_id: str) -> JobRecord:
        """Wait on a future that a final transition resolves."""
        state = self._jobs.get(job_id)
        if state is None:
            raise JobNotFound(job_id)
        while state[STATUS] not in _FINAL:
            waiter: asyncio.Future[_State] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(job_id, []).append(waiter)
            try:
                # Resolved with the final state itself: with max_finished=0 the
                # job may be forgotten by the time this task runs.
                state = await waiter
            finally:
                waiters = self._waiters.get(job_id)
                if waiters is not None and waiter in waiters:
                    waiters.remove(waiter)
                    if not waiters:
                        del self._waiters[job_id]
        return self._record(state)

    async def cancel(self, job_id: str, now: float) -> JobStatus:
        """Cancel a waiting job, or flag a running one."""
        state = self._jobs.get(job_id)
        if state is None:
            raise JobNotFound(job_id)
        if state[STATUS] not in _FINAL:  # a final job is left as it is
            state = self._change(state, rules.cancelled(_view(state), now), now)
        return JobStatus(state[STATUS])

    async def requeue(self, job_id: str, now: float) -> JobRecord:
        """DEAD or CANCELLED back to QUEUED, attempts reset."""
        state = self._jobs.get(job_id)
        if state is None:
            raise JobNotFound(job_id)
        key = state[SPEC][_KEY]
        holder = None if key is None else self._keys.get(key)
        change = rules.requeued(job_id, _view(state), now, key, holder)
        if key is not None:
            self._keys[key] = job_id
        new = self._change(state, change, now)
        self._notify()
        return self._record(new)

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        queue: str | None = None,
        name: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[JobRecord]:
        """Newest first (the dict keeps enqueue order); ``before``: older than that job."""
        out: list[JobRecord] = []
        wanted = None if status is None else status.value
        states: Iterator[_State] = reversed(self._jobs.values())
        if before is not None:
            if before not in self._jobs:
                raise JobNotFound(before)
            # A scan to the cursor: the memory store holds what one process can keep anyway.
            states = itertools.dropwhile(lambda state: state[SPEC][_ID] != before, states)
            next(states)
        for state in states:
            if len(out) >= limit:
                break
            spec = state[SPEC]
            if wanted is not None and state[STATUS] != wanted:
                continue
            if queue is not None and spec[_QUEUE] != queue:
                continue
            if name is not None and spec[_NAME] != name:
                continue
            out.append(self._record(state))
        return out

    async def stats(self, now: float) -> StoreStats:
        """Counts kept as jobs move; ages found by a scan of the waiting jobs."""
        self._promote(now)
        counts = dict.fromkeys(JobStatus, 0)
        queues: dict[str, dict[JobStatus, int]] = {}
        for queue, by_status in self._counts.items():
            if any(by_status.values()):
                queues[queue] = {JobStatus(s): n for s, n in by_status.items()}
                for s, n in by_status.items():
                    counts[JobStatus(s)] += n
        known = {n for n, seen in self._known_names.items() if now - seen < _KNOWN_NAMES_TTL}
        oldest: float | None = None
        unknown: dict[str, float] = {}
        jobs = self._jobs
        waiting = itertools.chain(
            (s for lane in self._lane_order for s in lane.states()),
            (s for parked in self._parked.values() for s in parked),
            (entry[3] for entry in self._delayed),
        )
        for state in waiting:
            if jobs.get(state[SPEC][_ID]) is not state:
                continue
            age = now - state[RUN_AT]
            if age >= 0 and (oldest is None or age > oldest):
                oldest = age
            name = state[SPEC][_NAME]
            if name not in known:
                unknown[name] = max(unknown.get(name, 0.0), age)
        return StoreStats(counts, queues, oldest, unknown)

    # progress and the cluster view ---------------------------------------------------
    async def set_progress(self, reports: Sequence[ProgressReport]) -> list[str]:
        """Keep each running attempt's latest progress; fenced by token."""
        lost: list[str] = []
        for job_id, token, progress in reports:
            state = self._jobs.get(job_id)
            if state is None or state[STATUS] != _RUNNING or state[TOKEN] != token:
                lost.append(job_id)
            else:
                self._progress[job_id] = progress
        return lost

    async def workers(self, now: float) -> list[WorkerInfo]:
        """Runners that claimed in the last few minutes."""
        for worker, (_, seen) in list(self._workers_seen.items()):
            if now - seen >= _KNOWN_NAMES_TTL:
                del self._workers_seen[worker]
        return [
            WorkerInfo(worker, tuple(sorted(names or ())), seen)
            for worker, (names, seen) in sorted(self._workers_seen.items(), key=lambda item: -item[1][1])
        ]

    async def leaders(self, now: float) -> list[LeaderInfo]:
        """Every role and its holder."""
        return [LeaderInfo(role, holder, until) for role, (holder, until) in sorted(self._leaders.items())]

    # flow control ------------------------------------------------------------------
    async def pause_queue(self, queue: str, now: float) -> bool:
        """Claims skip the queue's lanes until it is resumed."""
        if queue in self._paused:
            return False
        self._paused[queue] = now
        return True

    async def resume_queue(self, queue: str) -> bool:
        """Claims take the queue's jobs again; runners are woken."""
        if self._paused.pop(queue, None) is None:
            return False
        self._notify()
        return True

    async def paused_queues(self) -> dict[str, float]:
        """Paused queues and when each was paused."""
        return dict(self._paused)
