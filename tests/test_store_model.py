"""Every store follows ``jobrunner.transitions``: random operations, store against model.

A hypothesis state machine applies random sequences of store operations
(enqueue with and without delay, key and ``max_pending``; claims with limits,
names, queues and queue room; settles of every kind with right, stale and
duplicate tokens; lease extensions; cancels; requeues; the clock passing
leases and rescues; prune and purge; jobs enqueued after others, with every
failure policy) to a real store and to a model made of the pure functions in
``jobrunner.transitions``. After every step each answer
(ids created, claims, ids reported lost, statuses...) and every record (status,
attempts, trigger, run_at, times, worker, cancel flag, error, result, history,
arguments), the waiting count, next_run_at and each job's parent outcomes
must be the model's.

Runs are derandomized and the example database is off, so a failure replays
the same (shrunk) sequence on every run.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from jobrunner import transitions as rules
from jobrunner.errors import InvalidJobState, JobNotFound, QueueFull
from jobrunner.models import (
    ClaimRequest,
    Dependency,
    ErrorInfo,
    JobRecord,
    JobSpec,
    JobStatus,
    LeaseTerms,
    Outcome,
    OutcomeKind,
    ParentFailure,
    Trigger,
)
from jobrunner.stores.base import Store
from tests.helpers import strictly_equal
from tests.stores import STORE_KINDS, open_test_store

T = TypeVar("T")
NOW = 1_750_000_000.0
SETTINGS = {
    # (examples, most steps each): about 4 s a store. A PostgreSQL step waits on the server.
    "memory": (100, 50),
    "sqlite": (50, 50),
    "postgres": (40, 50),
}
# JOBRUNNER_MODEL_SCALE=20 runs 20 times the examples, drawn afresh on every run
# (not derandomized): for a long search after changing a store, not for CI.
SCALE = float(os.environ.get("JOBRUNNER_MODEL_SCALE", "0") or 0)

names = st.sampled_from(["a", "b"])
queues = st.sampled_from(["q1", "q2"])
json_args = st.lists(
    st.one_of(
        st.integers(-3, 3), st.sampled_from(["x", "\x00", "𝄞"]), st.lists(st.integers(0, 2), max_size=2)
    ),
    max_size=2,
)
errors = st.one_of(
    st.none(),
    st.builds(
        ErrorInfo, st.sampled_from(["ValueError", "Boom"]), st.sampled_from(["bad", ""]), st.just("tb")
    ),
)
terms = st.builds(
    LeaseTerms, st.sampled_from([None, 3.0]), st.sampled_from([0.0, 2.0]), st.sampled_from([4.0, 10.0])
)


ParentEnd = tuple[str, Any, "ErrorInfo | None"]
"""(status, result, error without traceback) of a parent as its children keep it."""


@dataclass
class ModelDeps:
    """A job enqueued after parents: the parents, its policy, and their ends."""

    parents: list[str]
    names: list[str]
    on_failure: str
    waiting: int
    ended: dict[str, ParentEnd] = field(default_factory=dict)


@dataclass
class ModelJob:
    spec: JobSpec
    state: rules.JobState
    seq: int
    log: list[rules.LogLine] = field(default_factory=list)
    deps: ModelDeps | None = None


def _end(job: ModelJob) -> ParentEnd:
    state = job.state
    if state.status == rules.SUCCEEDED:
        return (state.status, state.result, None)
    error = None if state.error is None else ErrorInfo(state.error.type, state.error.message, "")
    return (state.status, None, error)


class Model:
    """The store, as ``transitions`` says it behaves."""

    def __init__(self) -> None:
        self.jobs: dict[str, ModelJob] = {}
        self.seq = itertools.count()

    def active_key(self, key: str | None) -> str | None:
        for job_id, job in self.jobs.items():
            if key is not None and job.spec.key == key and job.state.status in rules.ACTIVE:
                return job_id
        return None

    def pending(self) -> int:
        return sum(job.state.status in rules.WAITING for job in self.jobs.values())

    def enqueue(self, specs: list[JobSpec], now: float, max_pending: int | None) -> list[tuple[str, bool]]:
        answers: list[tuple[str, bool]] = []
        batch_keys: dict[str, str] = {}
        fresh: list[JobSpec] = []
        for spec in specs:
            holder = None if spec.key is None else batch_keys.get(spec.key) or self.active_key(spec.key)
            if holder is not None:
                answers.append((holder, False))
                continue
            if spec.key is not None:
                batch_keys[spec.key] = spec.id
            fresh.append(spec)
            answers.append((spec.id, True))
        if not rules.admits(self.pending(), len(fresh), max_pending):
            raise QueueFull(self.pending(), max_pending or 0)
        for spec in fresh:
            self.jobs[spec.id] = ModelJob(spec, rules.enqueued(spec, now), next(self.seq))
        return answers

    def claim(self, request: ClaimRequest) -> list[tuple[str, int, int, str, float]]:
        now = request.now
        candidates = [
            (job.spec.priority, job.state.run_at, job.seq, job.spec.queue, job)
            for job in self.jobs.values()
            if rules.ready(job.state, now)
            and (request.names is None or job.spec.name in request.names)
            and (request.queues is None or job.spec.queue in request.queues)
        ]
        out = []
        for job in rules.choose(candidates, request.limit, request.queue_room):
            lease = now + request.lease.seconds_for(job.spec.timeout)
            job.state = rules.claimed(job.state, now, request.worker, lease)
            out.append(
                (job.spec.id, job.state.attempts, job.state.token, job.state.trigger, job.state.run_at)
            )
        return out

    def apply(self, job: ModelJob, change: rules.Change) -> None:
        ended = change.state.status in rules.FINAL and job.state.status not in rules.FINAL
        job.state = change.state
        job.log.extend(change.log)
        if ended:
            self.tell_children(job)

    def tell_children(self, parent: ModelJob) -> None:
        """transitions.parent_ended: breadth first, children in enqueue order."""
        work = [parent]
        while work:
            ended = work.pop(0)
            parent_id = ended.spec.id
            children = sorted(
                (j for j in self.jobs.values() if j.deps is not None and parent_id in j.deps.parents),
                key=lambda j: j.seq,
            )
            for child in children:
                deps = child.deps
                assert deps is not None
                first = parent_id not in deps.ended
                deps.ended[parent_id] = _end(ended)
                if not first:
                    continue
                deps.waiting -= 1
                at = ended.state.finished_at
                assert at is not None
                change = rules.parent_ended(
                    child.state, at, parent_id, ended.state.status, deps.waiting, deps.on_failure
                )
                if change is None or change.state.status == child.state.status:
                    continue
                child.state = change.state
                child.log.extend(change.log)
                if child.state.status in rules.FINAL:
                    work.append(child)

    def enqueue_after(
        self, specs: list[JobSpec], after: list[Dependency], now: float
    ) -> list[tuple[str, bool]]:
        batch: set[str] = set()
        for spec, dependency in zip(specs, after, strict=True):
            for parent_id in dependency.parents:
                if parent_id not in self.jobs and parent_id not in batch:
                    raise JobNotFound(parent_id)
            batch.add(spec.id)
        answers: list[tuple[str, bool]] = []
        alias: dict[str, str] = {}  # answered by its key's holder: children wait on the holder
        for spec, dependency in zip(specs, after, strict=True):
            if not dependency.parents:
                ((job_id, created),) = self.enqueue([spec], now, None)
                if not created:
                    alias[spec.id] = job_id
                answers.append((job_id, created))
                continue
            parents = list(dict.fromkeys(alias.get(p, p) for p in dependency.parents))
            done = {p: _end(self.jobs[p]) for p in parents if self.jobs[p].state.status in rules.FINAL}
            waiting = len(parents) - len(done)
            change = rules.after(
                spec, now, [(p, e[0]) for p, e in done.items()], waiting, dependency.on_failure
            )
            names = [self.jobs[p].spec.name for p in parents]
            deps = ModelDeps(parents, names, dependency.on_failure, waiting, done)
            self.jobs[spec.id] = ModelJob(spec, change.state, next(self.seq), list(change.log), deps)
            answers.append((spec.id, True))
        return answers

    def parent_outcomes(self, job: ModelJob) -> list[tuple[str, str, str | None, Any, Any]]:
        deps = job.deps
        if deps is None:
            return []
        out = []
        for parent_id, name in zip(deps.parents, deps.names, strict=True):
            end = deps.ended.get(parent_id)
            status, result, error = (None, None, None) if end is None else end
            out.append((parent_id, name, status, Strict(result), error))
        return out

    def settle(self, outcomes: list[Outcome]) -> list[str]:
        lost = []
        for outcome in outcomes:
            job = self.jobs.get(outcome.job_id)
            change = None if job is None else rules.settled(job.state, outcome)
            if job is None or change is None:
                lost.append(outcome.job_id)
            else:
                self.apply(job, change)
        return lost

    def extend(self, leases: list[tuple[str, int]], now: float, lease: LeaseTerms) -> tuple[Any, Any]:
        lost, cancel = [], []
        for job_id, token in leases:
            job = self.jobs.get(job_id)
            new = (
                None
                if job is None
                else rules.extended(job.state, token, now + lease.seconds_for(job.spec.timeout))
            )
            if job is None or new is None:
                lost.append(job_id)
                continue
            job.state = new
            if new.cancel_requested:
                cancel.append(job_id)
        return tuple(lost), tuple(cancel)

    def rescue(self, now: float) -> list[tuple[str, str, int, str]]:
        rescued = []
        # In lease order (then enqueue order), as every store rescues.
        for job in sorted(self.jobs.values(), key=lambda j: (j.state.lease_until or 0.0, j.seq)):
            if rules.expired(job.state, now):
                attempt = job.state.attempts
                self.apply(job, rules.rescued(job.state, now, job.spec.max_attempts))
                rescued.append((job.spec.id, job.spec.name, attempt, job.state.status))
        return sorted(rescued)

    def cancel(self, job_id: str, now: float) -> str:
        job = self.jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        if job.state.status not in rules.FINAL:
            self.apply(job, rules.cancelled(job.state, now))
        return job.state.status

    def requeue(self, job_id: str, now: float) -> None:
        job = self.jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        holder = self.active_key(job.spec.key)
        self.apply(job, rules.requeued(job_id, job.state, now, job.spec.key, holder))

    def prunable(self, statuses: frozenset[str], before: float) -> set[str]:
        return {job_id for job_id, job in self.jobs.items() if rules.prunable(job.state, statuses, before)}

    def next_run_at(self, now: float) -> float | None:
        later = [
            j.state.run_at
            for j in self.jobs.values()
            if j.state.status in rules.WAITING and j.state.run_at > now
        ]
        return min(later, default=None)

    def record(self, job: ModelJob, now: float) -> dict[str, Any]:
        """What a store's record of the job must say."""
        state = job.state
        history = [(job.spec.enqueued_at, rules.QUEUED, 0, None, "enqueued"), *job.log]
        if state.status in (rules.RUNNING, rules.SUCCEEDED):
            history.append((state.started_at, rules.RUNNING, state.attempts, state.worker, ""))
        if state.status == rules.SUCCEEDED:
            history.append((state.finished_at, rules.SUCCEEDED, state.attempts, state.worker, ""))
        return {
            "status": _relabel(state.status, state.run_at, now),
            "attempts": state.attempts,
            "trigger": state.trigger,
            "run_at": state.run_at,
            "started_at": state.started_at,
            "finished_at": state.finished_at,
            "worker": state.worker,
            "cancel_requested": state.cancel_requested,
            "error": state.error,
            "result": Strict(state.result),
            "history": history,
            "args": Strict(list(job.spec.args)),
            "kwargs": Strict(job.spec.kwargs),
        }


def _relabel(status: str, run_at: float, now: float) -> str:
    """A due SCHEDULED job may show as either: stores relabel it lazily."""
    return rules.QUEUED if status == rules.SCHEDULED and run_at <= now else status


def _store_record(record: JobRecord, now: float) -> dict[str, Any]:
    return {
        "status": _relabel(record.status.value, record.run_at, now),
        "attempts": record.attempts,
        "trigger": record.trigger.value,
        "run_at": record.run_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "worker": record.worker,
        "cancel_requested": record.cancel_requested,
        "error": record.error,
        "result": Strict(record.result),
        "history": [(h.at, h.status.value, h.attempt, h.worker, h.note) for h in record.history],
        "args": Strict(list(record.args)),
        "kwargs": Strict(record.kwargs),
    }


class Strict:
    """A JSON value compared strictly: 1, 1.0 and True differ, and so do -0.0 and 0.0."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Strict) and strictly_equal(self.value, other.value)

    def __hash__(self) -> int:  # pragma: no cover - not hashed
        return 0

    def __repr__(self) -> str:
        return f"Strict({self.value!r})"


class Harness:
    """One store kind on one event loop, fresh for each example."""

    def __init__(self, kind: str, tmp_path: Path, loop: asyncio.Runner) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.loop = loop
        self.opened: AbstractAsyncContextManager[Store] | None = None
        self.store: Store | None = None
        self.examples = itertools.count()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run(coro)

    def fresh(self) -> Store:
        """An empty store: a new memory store or SQLite file; PostgreSQL's schema emptied."""
        if self.kind == "postgres" and self.store is not None:
            self.run(_empty_postgres(self.store))
            return self.store
        self.close()
        path = self.tmp_path / f"example-{next(self.examples)}"
        path.mkdir()
        self.opened = open_test_store(self.kind, path)
        self.store = self.run(self.opened.__aenter__())
        return self.store

    def close(self) -> None:
        if self.opened is not None:
            opened, self.opened, self.store = self.opened, None, None
            self.run(opened.__aexit__(None, None, None))


async def _empty_postgres(store: Any) -> None:
    s = f'"{store.schema}"'
    await store._pool.execute(f"TRUNCATE {s}.jobs, {s}.leaders, {s}.cron_ticks, {s}.runners, {s}.edges")
    store._next_run_at = None  # its cache of the last claim's answer describes the old rows


@contextmanager
def harness_for(kind: str, tmp_path: Path) -> Iterator[Harness]:
    with asyncio.Runner() as loop:
        harness = Harness(kind, tmp_path, loop)
        try:
            yield harness
        finally:
            harness.close()


specs = st.lists(
    st.tuples(
        names,
        queues,
        st.sampled_from([0, 1]),  # priority
        st.sampled_from([0.0, 0.0, 5.0, 10.0]),  # delay
        st.sampled_from([None, None, "k1", "k2"]),  # key
        st.integers(1, 3),  # max_attempts
        st.sampled_from([None, 5.0, 20.0]),  # timeout
        json_args,
    ),
    min_size=1,
    max_size=4,
)

# How often each operation is drawn: a step is one of these, so every run mixes
# all of them (rules of their own would each be left out of some runs).
OPERATIONS = (
    ["enqueue"] * 3
    + ["enqueue_after"] * 2
    + ["claim"] * 3
    + ["settle"] * 4
    + ["extend_leases", "rescue_expired", "requeue", "prune_or_purge"]
    + ["cancel", "time_passes"] * 2
)


def machine(harness: Harness) -> Callable[[], RuleBasedStateMachine]:
    class StoreAgainstModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.store = harness.fresh()
            self.model = Model()
            self.now = NOW
            self.ids = itertools.count()
            self.claims: list[tuple[str, int]] = []  # every (id, token) handed out, stale ones too

        def run(self, coro: Coroutine[Any, Any, T]) -> T:
            return harness.run(coro)

        def job_ids(self) -> list[str]:
            return sorted(self.model.jobs)

        def running(self) -> list[tuple[str, int]]:
            """The attempts under way, as (id, token)."""
            jobs = self.model.jobs.values()
            return sorted((j.spec.id, j.state.token) for j in jobs if j.state.status == rules.RUNNING)

        def attempts(self) -> list[tuple[str, int]]:
            """Attempts to write about: mostly current ones, some stale (and some twice)."""
            return self.running() * 3 + self.claims

        @initialize(batch=specs)
        def some_jobs(self, batch: list[tuple[Any, ...]]) -> None:
            self.enqueue_batch(batch, None)

        @rule(op=st.sampled_from(OPERATIONS), data=st.data())
        def step(self, op: str, data: st.DataObject) -> None:
            getattr(self, op)(data)

        # producing ---------------------------------------------------------------------
        def enqueue(self, data: st.DataObject) -> None:
            max_pending = data.draw(st.sampled_from([None, None, None, 2, 5]), label="max_pending")
            self.enqueue_batch(data.draw(specs, label="specs"), max_pending)

        def enqueue_batch(self, batch: list[tuple[Any, ...]], max_pending: int | None) -> None:
            jobs = [
                JobSpec(
                    f"j{next(self.ids):03d}", name, tuple(args), {"n": len(args)} if args else {}, queue,
                    priority, attempts, timeout, key, None, self.now, self.now + delay, Trigger.ENQUEUE.value,
                )
                for name, queue, priority, delay, key, attempts, timeout, args in batch
            ]  # fmt: skip
            try:
                expected: Any = self.model.enqueue(jobs, self.now, max_pending)
            except QueueFull:
                expected = QueueFull
            try:
                got: Any = [
                    tuple(e) for e in self.run(self.store.enqueue(jobs, self.now, max_pending=max_pending))
                ]
            except QueueFull:
                got = QueueFull
            assert got == expected

        def enqueue_after(self, data: st.DataObject) -> None:
            batch = data.draw(specs, label="specs")
            jobs: list[JobSpec] = []
            after: list[Dependency] = []
            for name, queue, priority, delay, key, attempts, timeout, args in batch:
                known = [*self.job_ids(), *(j.id for j in jobs)]
                parents = data.draw(
                    st.lists(st.sampled_from([*known, *known, "missing"]), max_size=3)
                    if known
                    else st.just([]),
                    label="parents",
                )
                policy = data.draw(
                    st.sampled_from([p.value for p in ParentFailure]), label="on_parent_failure"
                )
                jobs.append(
                    JobSpec(
                        f"j{next(self.ids):03d}", name, tuple(args), {}, queue, priority, attempts, timeout,
                        None if parents else key, None, self.now, self.now + delay, Trigger.ENQUEUE.value,
                    )
                )  # fmt: skip
                after.append(Dependency(tuple(parents), policy))
            try:
                expected: Any = self.model.enqueue_after(jobs, after, self.now)
            except JobNotFound:
                expected = JobNotFound
            try:
                got: Any = [tuple(e) for e in self.run(self.store.enqueue_after(jobs, after, self.now))]
            except JobNotFound:
                got = JobNotFound
            assert got == expected

        # consuming ---------------------------------------------------------------------
        def claim(self, data: st.DataObject) -> None:
            request = ClaimRequest(
                data.draw(st.sampled_from(["w1", "w2"]), label="worker"),
                data.draw(st.integers(1, 4), label="limit"),
                self.now,
                data.draw(st.sampled_from([None, frozenset({"a"}), frozenset({"a", "b"})]), label="names"),
                data.draw(st.sampled_from([{}, {}, {"q1": 0}, {"q2": 1}]), label="queue_room"),
                data.draw(terms, label="lease"),
                data.draw(st.sampled_from([None, None, frozenset({"q1"})]), label="queues"),
            )
            expected = self.model.claim(request)
            claimed = self.run(self.store.claim(request))
            assert [(c.spec.id, c.attempt, c.token, c.trigger, c.ready_at) for c in claimed] == expected
            for c in claimed:
                job = self.model.jobs[c.spec.id]
                assert strictly_equal(list(c.spec.args), list(job.spec.args)) and c.decode_error is None
                self.claims.append((c.spec.id, c.token))

        def settle(self, data: st.DataObject) -> None:
            if not self.claims:
                return
            picks = data.draw(
                st.lists(st.sampled_from(self.attempts()), min_size=1, max_size=4), label="attempts"
            )
            outcomes = []
            for job_id, token in picks:
                kind = data.draw(st.sampled_from(list(OutcomeKind)), label="kind")
                error = data.draw(errors, label="error")
                result = data.draw(
                    st.sampled_from([None, 0, 1.0, -0.0, "ok", [1, {"x": None}]]), label="result"
                )
                retry_at = data.draw(st.sampled_from([None, self.now, self.now + 3.0]), label="retry_at")
                outcomes.append(
                    Outcome(
                        job_id, token, kind, self.now,
                        result if kind is OutcomeKind.SUCCEEDED else None,
                        None if kind in (OutcomeKind.SUCCEEDED, OutcomeKind.RELEASED) else error,
                        retry_at if kind is OutcomeKind.RETRY else None,
                    )
                )  # fmt: skip
            if data.draw(st.booleans(), label="unknown id"):
                outcomes.append(Outcome("nope", 1, OutcomeKind.SUCCEEDED, self.now))
            expected = self.model.settle(outcomes)
            assert self.run(self.store.settle(outcomes, "w1")) == expected

        def extend_leases(self, data: st.DataObject) -> None:
            if not self.claims:
                return
            leases = data.draw(
                st.lists(st.sampled_from(self.attempts()), min_size=1, max_size=3, unique=True)
            )
            lease = data.draw(terms, label="lease")
            expected = self.model.extend(leases, self.now, lease)
            report = self.run(self.store.extend_leases(leases, self.now, lease))
            assert (report.lost, report.cancel_requested) == expected

        # time and maintenance ------------------------------------------------------------
        def time_passes(self, data: st.DataObject) -> None:
            self.now += data.draw(st.sampled_from([0.5, 3.0, 12.0, 40.0]), label="seconds")

        def rescue_expired(self, data: st.DataObject) -> None:
            expected = self.model.rescue(self.now)
            rescued = self.run(self.store.rescue_expired(self.now))
            assert sorted((r.id, r.name, r.attempt, r.status.value) for r in rescued) == expected

        def prune_or_purge(self, data: st.DataObject) -> None:
            status = data.draw(
                st.sampled_from([None, JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED])
            )
            before = self.now - data.draw(st.sampled_from([0.0, 10.0]), label="age")
            limit = data.draw(st.sampled_from([1, 100]), label="limit")
            if status is None:
                statuses = frozenset({rules.SUCCEEDED, rules.CANCELLED})
                deleted = self.run(self.store.prune(before, limit))
            else:
                statuses = frozenset({status.value})
                deleted = self.run(self.store.purge(status, before, limit))
            eligible = self.model.prunable(statuses, before)
            assert deleted == min(limit, len(eligible))
            # Which of them, when more qualify, is the store's choice: follow it.
            for job_id in eligible:
                if self.run(self.store.get(job_id)) is None:
                    del self.model.jobs[job_id]
            assert len(eligible) - len(self.model.prunable(statuses, before)) == deleted

        # inspection and repair -------------------------------------------------------------
        def cancel(self, data: st.DataObject) -> None:
            running = [job_id for job_id, _ in self.running()]
            job_id = data.draw(st.sampled_from([*running, *running, *self.job_ids(), "missing"]), label="job")
            try:
                expected: Any = self.model.cancel(job_id, self.now)
            except JobNotFound:
                expected = JobNotFound
            try:
                got: Any = self.run(self.store.cancel(job_id, self.now)).value
            except JobNotFound:
                got = JobNotFound
            assert got == expected

        def requeue(self, data: st.DataObject) -> None:
            final = sorted(i for i, job in self.model.jobs.items() if job.state.status in rules.FINAL)
            job_id = data.draw(st.sampled_from([*final, *self.job_ids(), "missing"]), label="job")
            try:
                self.model.requeue(job_id, self.now)
                expected: Any = None
            except (JobNotFound, InvalidJobState) as exc:
                expected = type(exc)
            try:
                record = self.run(self.store.requeue(job_id, self.now))
                got: Any = None
                assert _store_record(record, self.now) == self.model.record(self.model.jobs[job_id], self.now)
            except (JobNotFound, InvalidJobState) as exc:
                got = type(exc)
            assert got == expected

        # what must hold after every step ---------------------------------------------------
        @invariant()
        def records_are_the_models(self) -> None:
            records = {r.id: r for r in self.run(self.store.list_jobs(limit=10_000))}
            assert sorted(records) == self.job_ids()
            for job_id, job in self.model.jobs.items():
                assert _store_record(records[job_id], self.now) == self.model.record(job, self.now), job_id

        @invariant()
        def parent_outcomes_are_the_models(self) -> None:
            for job_id, job in self.model.jobs.items():
                if job.deps is None:
                    continue
                got = [
                    (o.id, o.name, None if o.status is None else o.status.value, Strict(o.result), o.error)
                    for o in self.run(self.store.parent_outcomes(job_id))
                ]
                assert got == self.model.parent_outcomes(job), job_id

        @invariant()
        def waiting_counts_and_next_run_at_are_the_models(self) -> None:
            assert self.run(self.store.count_pending()) == self.model.pending()
            if harness.kind == "postgres":
                # Right after a claim PostgreSQL answers from that claim's statement for up to a
                # second, which can only wake a runner early; the model checks the query itself.
                self.store._next_run_at = None  # type: ignore[attr-defined]
            assert self.run(self.store.next_run_at(self.now)) == self.model.next_run_at(self.now)

    return StoreAgainstModel


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_every_store_follows_the_transition_rules(kind: str, tmp_path: Path) -> None:
    examples, steps = SETTINGS[kind]
    with harness_for(kind, tmp_path) as harness:
        run_state_machine_as_test(
            machine(harness),
            settings=settings(
                max_examples=int(examples * SCALE) if SCALE else examples,
                stateful_step_count=steps,
                deadline=None,
                derandomize=not SCALE,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
