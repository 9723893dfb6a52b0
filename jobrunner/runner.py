# LEAD NOTE (delete this line when you first edit this file): read /work/wt-deps/LEAD_NOTES.md now: deadline 14:05 UTC, migration rules, what to report.
"""The composition root: ``Runner`` wires registry, store, pool and maintenance.

Lifecycle: ``async with runner`` starts the pool and maintenance in a task
group owned by the caller's task and, on exit, stops in two phases: intake
stops at once (no claims, no cron, no maintenance), running jobs get
``shutdown_grace`` seconds, then they are cancelled and go back to the queue
without counting an attempt. ``serve()`` is the same, until SIGINT/SIGTERM or
``stop()``.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import secrets
import signal
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, nullcontext
from typing import Any, ParamSpec, Protocol, TypeVar, overload
from zoneinfo import ZoneInfo

import anyio
from anyio.abc import TaskGroup

from jobrunner import defaults
from jobrunner._ids import id_factory
from jobrunner._threads import ThreadPool
from jobrunner.clock import Clock, SystemClock
from jobrunner.context import _store as _job_store
from jobrunner.cron import CronExpression, MissedPolicy, Schedule, ScheduleInfo
from jobrunner.errors import InvalidJobState, JobCancelled, JobFailed, JobNotFound, QueueFull, UnknownJob
from jobrunner.execute import Executor
from jobrunner.flow import Limits, RateLimit
from jobrunner.handle import Group, JobHandle
from jobrunner.hooks import JobHooks, Middleware
from jobrunner.logs import get_logger
from jobrunner.maintenance import Duty, Maintenance, PruneDuty, RescueDuty
from jobrunner.models import (
    Dependency,
    Enqueued,
    JobRecord,
    JobSpec,
    JobStatus,
    LeaseTerms,
    ParentFailure,
    ParentOutcome,
    Trigger,
)
from jobrunner.observability import Instrumentation, Telemetry
from jobrunner.payload import NO_KWARGS, check_call
from jobrunner.pool import WorkerPool, spawn_in
from jobrunner.progress import ProgressWriter
from jobrunner.registry import (
    _UNSET,
    DEFAULT_ENQUEUE,
    BoundJob,
    Call,
    EnqueueOptions,
    Job,
    JobDefinition,
    Registry,
    check_priority,
    check_queue,
    check_timeout,
    make_options,
)
from jobrunner.resources import ProcessScope, Resource, ResourceRegistry, Scope, WithResources
from jobrunner.retry import BackoffLike, ExponentialBackoff, as_backoff
from jobrunner.scheduler import CronScheduler
from jobrunner.stats import Health, LoopMonitor, RunnerStats, StoreHealth, Throughput
from jobrunner.stores import store_from_url
from jobrunner.stores.base import Store

try:  # anyio imports its asyncio backend on the first task group: ~15 ms that
    # would land on the first runner start (and the first jobs); pay it at import.
    import anyio._backends._asyncio
except ImportError:  # pragma: no cover - another anyio layout; it loads lazily then
    pass

__all__ = ["Runner"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_log = get_logger("jobrunner.runner")
_new_tuple = tuple.__new__
_ENQUEUE = Trigger.ENQUEUE.value


class _JobDecorator(Protocol):
    @overload
    def __call__(self, fn: WithResources[P, Coroutine[Any, Any, R]], /) -> Job[P, R]: ...

    @overload
    def __call__(self, fn: WithResources[P, R], /) -> Job[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Job[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Job[P, R]: ...


class _BatchDecorator(Protocol):
    def __call__(
        self, fn: Callable[[list[T]], Coroutine[Any, Any, Sequence[R] | None]], /
    ) -> Job[[T], R]: ...


class _CronDecorator(Protocol):
    @overload
    def __call__(self, fn: Job[P, R], /) -> Job[P, R]: ...

    @overload
    def __call__(self, fn: WithResources[P, Coroutine[Any, Any, R]], /) -> Job[P, R]: ...

    @overload
    def __call__(self, fn: WithResources[P, R], /) -> Job[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Job[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Job[P, R]: ...


class _ResourceDecorator(Protocol):
    @overload
    def __call__(self, fn: WithResources[[], AsyncIterator[T]], /) -> Resource[T]: ...

    @overload
    def __call__(self, fn: Callable[[], AsyncIterator[T]], /) -> Resource[T]: ...


def _default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _positive_int(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Runner({what}={value!r}): must be an integer >= 1")
    return value


def _non_negative(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"Runner({what}={value!r}): must be a number of seconds >= 0")
    return float(value)


def _give_up(value: float | None) -> float | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or not value > 0):
        raise ValueError(f"Runner(store_give_up={value!r}): must be seconds > 0, or None")
    return value


async def _shielded(fn: Callable[[], Awaitable[None]]) -> None:
    with anyio.CancelScope(shield=True):
        await fn()


class Runner:
    """Registers jobs and runs them.

    ``Runner()`` keeps jobs in memory; ``Runner(store="sqlite:///jobs.db")`` keeps
    them on disk. Every argument has a production default (see ``jobrunner.defaults``).

    Args:
        store: a ``Store`` or a URL (``memory://``, ``sqlite:///path``, ``postgresql://...``).
        concurrency: most jobs running at once in this runner.
        max_pending: waiting jobs at which ``enqueue`` waits for room (None: no limit).
        queues: per-queue concurrency limits of this runner, e.g. ``{"emails": 5}``;
            other queues share ``concurrency`` without a limit of their own.
        global_limits: per-queue concurrency limits across every runner on the
            store, e.g. ``{"emails": 1}`` (every runner consuming the queue must
            declare the same limit); per job name: ``@runner.job(concurrency=n)``.
        rate_limits: ``RateLimit``s (starts per period, per queue, job name or
            workspace) across every runner on the store; each runner that
            claims the jobs declares the same.
        consume: the queues this runner takes jobs from (a worker dedicated to
            some queues); default: all of them.
        shutdown_grace: seconds running jobs get to finish when the runner stops.
        cancel_grace: seconds a cancelled job gets to unwind before it is abandoned.
        timeout, retries, backoff: defaults for jobs that do not set their own.
        result_ttl: seconds finished jobs and their results are kept.
        lease: fixed lease length in seconds; default: each job's timeout plus 30 s.
        threads: threads for sync ``def`` handlers.
        max_payload: largest call arguments (and result) in bytes of JSON; None: no limit.
        clock: time source; ``jobrunner.testing.FakeClock`` in tests.
        worker_id: this runner's identity in job records (default host:pid:random).
        instrument: structlog context, OpenTelemetry spans and metrics (True: the
            global providers; an ``Instrumentation`` to choose; False: off).
        store_give_up: seconds the store may fail without a break (its calls are
            retried with backoff meanwhile) before ``serve()`` stops the runner
            and raises StoreError; None: retry for ever. ``async with`` never
            gives up by itself (the app reads ``health()`` and decides), but
            leaving it never waits longer than this for outcomes the store
            refuses: they stay with their leases, and the jobs run again.
    """

    # Slots, not a __dict__: a runner has more than the 30 attributes CPython 3.11
    # keeps in a compact per-instance layout, and enqueue reads several per job.
    __slots__ = (
        "_backoff", "_cancel_grace", "_concurrency", "_consume", "_declared", "_duties",
        "_global_queue_limits", "_hooks", "_hurry", "_ids", "_jobs", "_lease", "_loop", "_maintenance",
        "_max_payload", "_max_pending", "_middleware", "_monitor", "_open_lock", "_owns_store", "_pool",
        "_queue_limits", "_rate_limits", "_registry", "_resources", "_result_ttl", "_retries", "_room",
        "_schedules", "_shutdown_grace", "_stack", "_stop_requested", "_store_give_up", "_store_health",
        "_store_open", "_telemetry", "_tg", "_threads", "_throughput", "_timeout", "clock", "store",
        "worker_id",
    )  # fmt: skip

    def __init__(
        self,
        store: Store | str | None = None,
        *,
        concurrency: int = defaults.CONCURRENCY,
        max_pending: int | None = defaults.MAX_PENDING,
        queues: Mapping[str, int] | None = None,
        global_limits: Mapping[str, int] | None = None,
        rate_limits: Iterable[RateLimit] = (),
        consume: Iterable[str] | None = None,
        shutdown_grace: float = defaults.SHUTDOWN_GRACE,
        cancel_grace: float = defaults.CANCEL_GRACE,
        timeout: float | None = defaults.TIMEOUT,
        retries: int = defaults.RETRIES,
        backoff: BackoffLike | None = None,
        result_ttl: float = defaults.RESULT_TTL,
        lease: float | None = None,
        threads: int = defaults.THREADS,
        max_payload: int | None = defaults.MAX_PAYLOAD,
        clock: Clock | None = None,
        worker_id: str | None = None,
        instrument: bool | Instrumentation = True,
        store_give_up: float | None = defaults.STORE_GIVE_UP,
    ) -> None:
        # A store the runner made (from a URL, or the default) is the runner's to
        # close when it stops; a Store object passed in stays open for its owner.
        self._owns_store = store is None or isinstance(store, str)
        if store is None:
            from jobrunner.stores.memory import MemoryStore

            store = MemoryStore()
        elif isinstance(store, str):
            store = store_from_url(store)
        elif not isinstance(store, Store):
            raise TypeError(f"Runner(store={store!r}): pass a Store or a store URL")
        self.store: Store = store
        self._concurrency = _positive_int(concurrency, "concurrency")
        if max_pending is not None:
            _positive_int(max_pending, "max_pending")
        self._max_pending = max_pending
        self._queue_limits = {q: _positive_int(n, f"queues[{q!r}]") for q, n in (queues or {}).items()}
        self._global_queue_limits = Limits(queues=dict(global_limits or {})).queues
        self._rate_limits = Limits(rates=tuple(rate_limits)).rates
        if isinstance(consume, str):
            raise ValueError(f"Runner(consume={consume!r}): pass a list of queue names, e.g. [{consume!r}]")
        self._consume = None if consume is None else frozenset(consume)
        if self._consume is not None and (not self._consume or not all(self._consume)):
            raise ValueError(f"Runner(consume={consume!r}): name at least one non-empty queue")
        self._shutdown_grace = _non_negative(shutdown_grace, "shutdown_grace")
        self._cancel_grace = _non_negative(cancel_grace, "cancel_grace")
        self._timeout = check_timeout(timeout, "Runner()")
        self._retries = make_options(
            queue=defaults.QUEUE,
            priority=0,
            timeout=None,
            retries=retries,
            backoff=None,
            default_backoff=ExponentialBackoff(),
            where="Runner()",
        ).retries
        self._backoff = ExponentialBackoff() if backoff is None else as_backoff(backoff)
        self._result_ttl = _non_negative(result_ttl, "result_ttl")
        if lease is not None and (isinstance(lease, bool) or not lease > 0):
            raise ValueError(f"Runner(lease={lease!r}): must be seconds > 0 or None")
        self._lease = LeaseTerms(
            fixed=lease, margin=defaults.LEASE_MARGIN, without_timeout=defaults.LEASE_WITHOUT_TIMEOUT
        )
        self._threads = _positive_int(threads, "threads")
        if max_payload is not None:
            _positive_int(max_payload, "max_payload")
        self._max_payload = max_payload
        self._store_give_up = _give_up(store_give_up)
        self._store_health: StoreHealth | None = None
        self.clock: Clock = clock or SystemClock()
        self.worker_id = worker_id or _default_worker_id()

        self._registry = Registry()
        self._jobs: dict[str, Job[Any, Any]] = {}
        self._declared: dict[str, JobDefinition] = {}
        self._resources = ResourceRegistry()
        self._hooks: list[JobHooks] = []
        self._middleware: list[Middleware] = []
        self._duties: list[Duty] = []
        self._schedules: dict[str, Schedule] = {}
        self._ids = id_factory()
        self._throughput = Throughput(self.clock)
        self._telemetry = Telemetry(instrument, worker_id=self.worker_id, clock=self.clock)
        self._monitor: LoopMonitor | None = None

        self._loop: asyncio.AbstractEventLoop | None = None
        self._open_lock = asyncio.Lock()
        self._store_open = False
        self._room = asyncio.Event()
        self._stack: AsyncExitStack | None = None
        self._pool: WorkerPool | None = None
        self._maintenance: Maintenance | None = None
        self._tg: TaskGroup | None = None
        self._stop_requested = asyncio.Event()
        self._hurry = False

    def configure(
        self,
        *,
        store: Store | str | None = None,
        concurrency: int | None = None,
        consume: Iterable[str] | None = None,
        store_give_up: float | None = _UNSET,
    ) -> None:
        """Change deployment settings before the runner starts (what the CLI's flags do).

        None leaves a setting as it is, except ``store_give_up``, where None means
        never give up (as in ``Runner()``); left out, it stays as it is.
        """
        if self._stack is not None:
            raise RuntimeError("configure() the runner before it starts, not while it runs")
        if store is not None:
            self.store = store_from_url(store) if isinstance(store, str) else store
            self._owns_store = isinstance(store, str)
            self._store_open = False
        if concurrency is not None:
            self._concurrency = _positive_int(concurrency, "concurrency")
        if consume is not None:
            names = frozenset(consume)
            if not names or not all(names):
                raise ValueError(f"consume={list(consume)!r}: name at least one non-empty queue")
            self._consume = names
        if store_give_up is not _UNSET:
            self._store_give_up = _give_up(store_give_up)

    # registration ------------------------------------------------------------
    @overload
    def job(self, fn: WithResources[P, Coroutine[Any, Any, R]], /) -> Job[P, R]: ...

    @overload
    def job(self, fn: WithResources[P, R], /) -> Job[P, R]: ...

    @overload
    def job(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Job[P, R]: ...

    @overload
    def job(self, fn: Callable[P, R], /) -> Job[P, R]: ...

    @overload
    def job(
        self,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        timeout: float | None = _UNSET,
        retries: int | None = None,
        backoff: BackoffLike | None = None,
        ttl: float | None = None,
        concurrency: int | None = None,
        batch: None = None,
    ) -> _JobDecorator: ...

    @overload
    def job(
        self,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        timeout: float | None = _UNSET,
        retries: int | None = None,
        backoff: BackoffLike | None = None,
        ttl: float | None = None,
        concurrency: int | None = None,
        batch: int,
    ) -> _BatchDecorator: ...

    def job(
        self,
        fn: Callable[..., Any] | WithResources[Any, Any] | None = None,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        timeout: float | None = _UNSET,
        retries: int | None = None,
        backoff: BackoffLike | None = None,
        ttl: float | None = None,
        concurrency: int | None = None,
        batch: int | None = None,
    ) -> Any:
        """Register a job handler: ``@runner.job`` or ``@runner.job(queue=..., retries=...)``.

        ``async def`` handlers run on the event loop; plain ``def`` ones in a thread.
        Above ``@uses(...)``, the handler gets those resources as its first arguments
        and the job's arguments are the parameters after them.
        Options: ``name`` (default: the function's name), ``queue``, ``priority``
        (lower runs first), ``timeout`` (seconds, None for none), ``retries`` (extra
        attempts), ``backoff`` (seconds, a function of the attempt, or a policy),
        ``ttl`` (seconds after it is due by which a job must start, else it
        expires unrun), ``concurrency`` (most jobs of this name running at once across
        every runner on the store; each runner registering it declares the same).

        ``batch=N``: a batch handler, ``async def f(items: list[T]) -> list[R] | None``;
        each ``f.enqueue(item)`` is its own job, and one invocation gets the
        items of up to N of them claimed together (see the README's Batch handlers).
        """

        def register(fn: Callable[..., Any] | WithResources[Any, Any]) -> Job[Any, Any]:
            job_name = name or getattr(fn, "__name__", None)
            if not job_name:
                raise ValueError(f"@runner.job: {fn!r} has no __name__; pass name=")
            where = f"@runner.job for {job_name!r}"
            options = make_options(
                queue=defaults.QUEUE if queue is None else queue,
                priority=defaults.PRIORITY if priority is None else priority,
                timeout=self._timeout if timeout is _UNSET else timeout,
                retries=self._retries if retries is None else retries,
                backoff=backoff,
                default_backoff=self._backoff,
                where=where,
                ttl=ttl,
                concurrency=concurrency,
                batch=batch,
            )
            definition = JobDefinition(job_name, fn, options)
            self._resources.check(definition.injected, f"job {job_name!r}", shared=False)
            if job_name in self._declared:
                raise ValueError(f"{where}: {job_name!r} is already declared as a remote job")
            self._registry.add(definition)
            handle: Job[Any, Any] = Job(self, definition)
            self._jobs[job_name] = handle
            return handle

        if fn is not None:
            return register(fn)
        return register

    def declare(
        self,
        name: str,
        *,
        queue: str | None = None,
        priority: int | None = None,
        timeout: float | None = _UNSET,
        retries: int | None = None,
    ) -> Job[..., Any]:
        """A job that another service's runner handles, to enqueue by name.

        This runner never claims it; it waits in the shared store for a runner that
        registered ``name``. Arguments are not checked here (the handler is elsewhere).
        """
        if name in self._jobs:
            raise ValueError(f"declare({name!r}): a job with this name is registered here")

        def remote(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"job {name!r} is declared here but runs in another service")

        options = make_options(
            queue=defaults.QUEUE if queue is None else queue,
            priority=defaults.PRIORITY if priority is None else priority,
            timeout=self._timeout if timeout is _UNSET else timeout,
            retries=self._retries if retries is None else retries,
            backoff=None,
            default_backoff=self._backoff,
            where=f"declare({name!r})",
        )
        definition = JobDefinition(name, remote, options)
        self._declared[name] = definition
        return Job(self, definition)

    def job_named(self, name: str) -> Job[..., Any]:
        """The registered or declared job called ``name``; UnknownJob if it is neither."""
        job = self._jobs.get(name)
        if job is not None:
            return job
        definition = self._declared.get(name)
        if definition is None:
            raise UnknownJob(name, self._registry.names)
        return Job(self, definition)

    @property
    def jobs(self) -> Mapping[str, Job[Any, Any]]:
        """Registered jobs by name, e.g. ``runner.jobs["resize"].options(delay=5)``."""
        return self._jobs

    @overload
    def resource(self, fn: WithResources[[], AsyncIterator[T]], /) -> Resource[T]: ...

    @overload
    def resource(self, fn: Callable[[], AsyncIterator[T]], /) -> Resource[T]: ...

    @overload
    def resource(self, *, scope: Scope = "process") -> _ResourceDecorator: ...

    def resource(self, fn: Any = None, *, scope: Scope = "process") -> Any:
        """Register an async generator function as a resource; returns its ``Resource[T]``.

        Jobs and other resources receive it through ``@uses(resource)``.
        ``scope="process"`` (default): created once, on first use, disposed when
        the runner stops. ``scope="job"``: created per attempt on first use,
        disposed when the attempt ends, however it ends.
        """

        def register(fn: Callable[..., Any] | WithResources[Any, Any]) -> Resource[Any]:
            return self._resources.add(fn, scope)

        if fn is not None:
            return register(fn)
        return register

    def middleware(self, fn: Middleware) -> Middleware:
        """Register ``async def mw(job, call_next)`` to wrap every attempt (outermost first)."""
        self._middleware.append(fn)
        return fn

    def add_hooks(self, hooks: JobHooks) -> None:
        """Observe every job's lifecycle through a ``JobHooks`` subclass."""
        self._hooks.append(hooks)

    def add_duty(self, duty: Duty) -> None:
        """Give the maintenance leader another periodic duty."""
        self._duties.append(duty)

    # cron schedules ------------------------------------------------------------------
    def cron(
        self,
        expression: str,
        *,
        timezone: str | ZoneInfo = "UTC",
        name: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        queue: str | None = None,
        priority: int | None = None,
        missed: MissedPolicy = "latest",
        jitter: float = 0.0,
    ) -> _CronDecorator:
        """Run a job on a cron schedule: ``@runner.cron("*/5 * * * *")`` on its function.

        Registers the function as a job if it is not one yet (stack it on top of
        ``@runner.job(...)`` to give job options), then schedules it; the options
        are those of ``schedule()``. Returns the ``Job``, so it can be enqueued too.
        """

        def register(fn: Any) -> Job[Any, Any]:
            if isinstance(fn, Job):
                job = fn
            else:
                fn_name = getattr(fn, "__name__", None)
                known = self._jobs.get(fn_name) if isinstance(fn_name, str) else None
                job = known if known is not None and known.definition.fn is fn else self.job(fn)
            self.schedule(
                job,
                cron=expression,
                timezone=timezone,
                name=name,
                args=args,
                kwargs=kwargs,
                queue=queue,
                priority=priority,
                missed=missed,
                jitter=jitter,
            )
            return job

        return register

    def schedule(
        self,
        job: Job[Any, Any] | str,
        *,
        cron: str,
        timezone: str | ZoneInfo = "UTC",
        name: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        queue: str | None = None,
        priority: int | None = None,
        missed: MissedPolicy = "latest",
        jitter: float = 0.0,
    ) -> Schedule:
        """Enqueue a registered job (or its name) on a cron schedule.

        ``cron``: 5 fields, or 6 with seconds last (``"*/10 * * * * */30"``), read in
        ``timezone`` (an IANA name). ``name``: the schedule's name (default: the
        job's), its identity in the store. ``args``/``kwargs``: the call, checked
        against the job's signature now. ``queue``/``priority``: override the job's.
        ``missed``: after downtime run the ``"latest"`` missed tick once (default),
        ``"skip"`` them, or run ``"all"`` (at most the 100 most recent).
        ``jitter``: delay each run by up to this many seconds (the same delay in
        every process). Every runner sharing a store should register the same
        schedules: only the leader's are fired. DST rules: ``jobrunner.cron``.

        Raises ValueError for an invalid expression or timezone, an unknown job, or
        a taken name; TypeError if the arguments do not fit the job.
        """
        job_name = job if isinstance(job, str) else getattr(job, "name", None)
        definition = None
        if isinstance(job_name, str):
            definition = self._registry.get(job_name) or self._declared.get(job_name)
        if definition is None or (isinstance(job, Job) and job.definition is not definition):
            raise ValueError(
                f"schedule(cron={cron!r}): {job!r} is not a job registered with this runner; "
                f"register it with @runner.job first, or put @runner.cron on the function"
            )
        schedule_name = definition.name if name is None else name
        where = f"schedule {schedule_name!r}"
        existing = self._schedules.get(schedule_name)
        if existing is not None:
            raise ValueError(
                f"{where}: a schedule with this name already exists ({existing.job!r} at "
                f"{existing.cron.expression!r}); give this one another name with name="
            )
        call_args, call_kwargs = tuple(args), dict(kwargs or {})
        try:
            definition.check_args(call_args, call_kwargs)
            call_args, call_kwargs = check_call(definition.name, call_args, call_kwargs, self._max_payload)
        except TypeError as exc:
            raise TypeError(
                f"{where}: args={call_args!r}, kwargs={call_kwargs!r} do not fit: {exc}"
            ) from None
        schedule = Schedule(
            name=schedule_name,
            job=definition.name,
            cron=CronExpression(cron, timezone),
            args=call_args,
            kwargs=call_kwargs,
            queue=None if queue is None else check_queue(queue, where),
            priority=None if priority is None else check_priority(priority, where),
            missed=missed,
            jitter=jitter,
        )
        self._schedules[schedule_name] = schedule
        return schedule

    async def schedules(self) -> list[ScheduleInfo]:
        """Every schedule: name, job, expression, timezone, next run and last run."""
        await self._open_store()
        last = await self.store.cron_state()
        now = self.clock.now()
        return [schedule.info(last.get(schedule.name), now) for schedule in self._schedules.values()]

    def _cron_scheduler(self) -> CronScheduler:
        return CronScheduler(
            store=self.store,
            clock=self.clock,
            schedules=self._schedules.values,
            build_spec=self._cron_spec,
            on_fired=self._cron_fired,
        )

    def _cron_spec(self, schedule: Schedule, tick: float, now: float) -> JobSpec:
        definition = self._registry.get(schedule.job) or self._declared[schedule.job]
        options = EnqueueOptions(
            run_at=tick + schedule.jitter_for(tick), queue=schedule.queue, priority=schedule.priority
        )
        meta = {"schedule": schedule.name, "scheduled_for": tick}
        return self._spec(
            definition, schedule.args, dict(schedule.kwargs), options, now, Trigger.CRON.value, meta
        )

    def _cron_fired(self, spec: JobSpec) -> None:
        for hook in self._hooks:
            hook.enqueued((spec,))

    # enqueueing ----------------------------------------------------------------
    async def enqueue(self, name: str, /, *args: Any, **kwargs: Any) -> JobHandle[Any]:
        """Enqueue a registered or declared job by name; UnknownJob if it is neither."""
        definition = self._registry.get(name) or self._declared.get(name)
        if definition is None:
            raise UnknownJob(name, self._registry.names)
        return await self.enqueue_one(definition, args, kwargs, DEFAULT_ENQUEUE)

    async def submit(
        self,
        definition: JobDefinition,
        calls: Sequence[tuple[tuple[Any, ...], dict[str, Any]]],
        options: EnqueueOptions,
        *,
        trigger: Trigger = Trigger.ENQUEUE,
        meta: Mapping[str, Any] | None = None,
    ) -> list[JobHandle[Any]]:
        """Validate and store calls of one job in one store round trip."""
        if not calls:
            return []
        now = self.clock.now()
        spec, trigger_value = self._spec, trigger.value
        specs = [spec(definition, args, kwargs, options, now, trigger_value, meta) for args, kwargs in calls]
        return await self._store_specs(specs, options, now)

    async def enqueue_one(
        self,
        definition: JobDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: EnqueueOptions,
    ) -> JobHandle[Any]:
        """``submit`` for a single call, without the lists (the common case)."""
        now = self.clock.now()
        spec = self._spec(definition, args, kwargs, options, now, _ENQUEUE, None)
        if options.after:
            ((job_id, created),) = await self._store_after(
                (spec,), (Dependency(options.after, options.on_parent_failure.value),), options, now
            )
            return JobHandle(self, job_id, definition.name, created)
        if not self._store_open:
            await self._open_store()
        try:
            if self._telemetry.sending:
                ((job_id, created),) = await self._telemetry.enqueue(
                    self.store, (spec,), now, options.connection, self._max_pending
                )
            else:
                ((job_id, created),) = await self.store.enqueue(
                    (spec,), now, connection=options.connection, max_pending=self._max_pending
                )
        except QueueFull:
            ((job_id, created),) = await self._enqueue_when_room((spec,), now, options)
        if self._hooks:
            for hook in self._hooks:
                hook.enqueued((spec,))
        return JobHandle(self, job_id, definition.name, created)

    def _spec(
        self,
        definition: JobDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: EnqueueOptions,
        now: float,
        trigger: str,
        meta: Mapping[str, Any] | None,
    ) -> JobSpec:
        check = definition.check_args
        if args or kwargs or not check.empty_ok:
            check(args, kwargs)
            args, kwargs = check_call(definition.name, args, kwargs, self._max_payload)
        else:
            kwargs = NO_KWARGS
        if options is DEFAULT_ENQUEUE:
            # Precomputed fields of the plain ``job.enqueue(...)`` call.
            queue, priority, attempts, timeout, ttl = definition.plain
            run_at = now
            key = workspace_id = None
            expires_at = None if ttl is None else now + ttl
        else:
            job_options = definition.options
            queue = options.queue or job_options.queue
            priority = job_options.priority if options.priority is None else options.priority
            attempts = (job_options.retries if options.retries is None else options.retries) + 1
            timeout = options.timeout if options.has_timeout else job_options.timeout
            run_at = options.run_at_epoch(now)
            key, workspace_id = options.key, options.workspace_id
            expires_at = options.expires_epoch(run_at, job_options.ttl)
            if expires_at is not None and expires_at <= run_at:
                raise ValueError(
                    f"job {definition.name!r}: its deadline to start (expires_at={expires_at}) is not after "
                    f"its run_at={run_at}, so it could never run; give a later expires= or a longer ttl="
                )
        headers = self._headers() if self._hooks else None
        return _new_tuple(
            JobSpec,
            (
                self._ids(),
                definition.name,
                args,
                kwargs,
                queue,
                priority,
                attempts,
                timeout,
                key,
                workspace_id,
                now,
                run_at,
                trigger,
                headers,
                meta,
                expires_at,
            ),
        )

    async def _store_specs(
        self, specs: Sequence[JobSpec], options: EnqueueOptions, now: float
    ) -> list[JobHandle[Any]]:
        if options.after:
            dependency = Dependency(options.after, options.on_parent_failure.value)
            results = await self._store_after(specs, [dependency] * len(specs), options, now)
            return [JobHandle(self, job_id, specs[0].name, created) for job_id, created in results]
        if not self._store_open:
            await self._open_store()
        try:
            results = await self._send(specs, now, options)
        except QueueFull:
            results = await self._enqueue_when_room(specs, now, options)
        if self._hooks:
            for hook in self._hooks:
                hook.enqueued(specs)
        name = specs[0].name
        return [JobHandle(self, job_id, name, created) for job_id, created in results]

    def _headers(self) -> dict[str, str] | None:
        merged: dict[str, str] = {}
        for hook in self._hooks:
            extra = hook.headers()
            if extra:
                merged.update(extra)
        return merged or None

    async def _send(
        self,
        specs: Sequence[JobSpec],
        now: float,
        options: EnqueueOptions,
        after: Sequence[Dependency] | None = None,
    ) -> list[Enqueued]:
        """``store.enqueue`` (``store.enqueue_after`` with ``after``), traced when telemetry sends."""
        if self._telemetry.sending:
            return await self._telemetry.enqueue(
                self.store, specs, now, options.connection, self._max_pending, after
            )
        if after is None:
            return await self.store.enqueue(
                specs, now, connection=options.connection, max_pending=self._max_pending
            )
        return await self.store.enqueue_after(
            specs, after, now, connection=options.connection, max_pending=self._max_pending
        )

    async def _enqueue_when_room(
        self,
        specs: Sequence[JobSpec],
        now: float,
        options: EnqueueOptions,
        after: Sequence[Dependency] | None = None,
    ) -> list[Enqueued]:
        """Backpressure: the store refused the batch at ``max_pending`` waiting jobs.

        The store checks the bound and inserts in one step, so it holds across
        every producer on the store. ``block=False``: QueueFull to the caller.
        Otherwise wait for room and offer the batch again: claims in this
        process wake the wait at once; room made by other processes is seen by
        re-asking, at most every quarter second.
        """
        if not options.block:
            raise QueueFull(await self.store.count_pending(), self._max_pending or 0)
        self._bind_loop()  # _room belongs to one loop
        delay = 0.01
        while True:
            self._room.clear()
            with anyio.move_on_after(delay):
                await self._room.wait()
            delay = min(delay * 2, 0.25)
            try:
                return await self._send(specs, now, options, after)
            except QueueFull:
                continue

    # dependencies ------------------------------------------------------------------
    async def _store_after(
        self,
        specs: Sequence[JobSpec],
        after: Sequence[Dependency],
        options: EnqueueOptions,
        now: float,
    ) -> list[Enqueued]:
        """``Store.enqueue_after`` with the telemetry and the backpressure of a plain enqueue."""
        if not self._store_open:
            await self._open_store()
        try:
            results = await self._send(specs, now, options, after)
        except QueueFull:
            results = await self._enqueue_when_room(specs, now, options, after)
        if self._hooks:
            for hook in self._hooks:
                hook.enqueued(specs)
        return results

    def _step(self, call: Call[Any], now: float) -> tuple[JobSpec, EnqueueOptions]:
        job = call.job
        if not isinstance(job, BoundJob):
            raise TypeError(
                f"{call!r} names no job: make steps with job.call(...) (or job.options(...).call(...)), "
                f"not Call(...)"
            )
        definition, options = job.definition, job.enqueue_options
        if (
            self._registry.get(definition.name) is not definition
            and self._declared.get(definition.name) is not definition
        ):
            raise ValueError(f"job {definition.name!r} is not registered with this runner")
        return self._spec(definition, call.args, call.kwargs, options, now, _ENQUEUE, None), options

    async def chain(self, *steps: Call[Any]) -> list[JobHandle[Any]]:
        """Enqueue steps that run one after another, atomically: each step waits
        for the one before it (``after=``) and reads its result with
        ``current_job().parent_results()``.

        ``await runner.chain(fetch.call(url), parse.call(), store.call())``.
        A step that ends dead or cancelled ends the steps after it per their
        ``on_parent_failure`` (cancelled by default; give a step
        ``job.options(on_parent_failure="dead").call(...)`` to dead-letter it
        instead). A step's own ``after=`` adds to the step before it. Handles in
        step order.
        """
        if not steps:
            return []
        now = self.clock.now()
        specs: list[JobSpec] = []
        after: list[Dependency] = []
        for step in steps:
            spec, options = self._step(step, now)
            parents = options.after + ((specs[-1].id,) if specs else ())
            after.append(Dependency(parents, options.on_parent_failure.value))
            specs.append(spec)
        first = steps[0].job
        assert first is not None
        results = await self._store_after(specs, after, first.enqueue_options, now)
        return [
            JobHandle(self, job_id, spec.name, created)
            for spec, (job_id, created) in zip(specs, results, strict=True)
        ]

    async def group(self, members: Iterable[Call[Any]], *, then: Call[Any]) -> Group:
        """Fan out and in, atomically: enqueue ``members``, and ``then``, which runs
        once every member ended, succeeded or not.

        The callback reads how each member ended with
        ``current_job().parent_outcomes()`` (status, result, error, in member
        order); ``parent_results()`` gives the results when all succeeded and
        raises ParentFailed otherwise. Members run as any job does (a member's
        own ``after=`` is kept). Cancelling the callback leaves the members be.
        """
        now = self.clock.now()
        specs: list[JobSpec] = []
        after: list[Dependency] = []
        for member in members:
            spec, options = self._step(member, now)
            specs.append(spec)
            after.append(Dependency(options.after, options.on_parent_failure.value))
        if not specs:
            raise ValueError("group(): give at least one member")
        callback, options = self._step(then, now)
        parents = options.after + tuple(spec.id for spec in specs)
        after.append(Dependency(parents, ParentFailure.RUN.value))
        results = await self._store_after([*specs, callback], after, options, now)
        handles: list[JobHandle[Any]] = [
            JobHandle(self, job_id, spec.name, created)
            for spec, (job_id, created) in zip([*specs, callback], results, strict=True)
        ]
        return Group(tuple(handles[:-1]), handles[-1])

    def _on_claimed(self) -> None:
        # Claims make room: producers of this process waiting for it try again.
        self._room.set()

    # following jobs ---------------------------------------------------------------
    async def get_job(self, job_id: str) -> JobRecord:
        """The job's record; JobNotFound if there is none."""
        await self._open_store()
        record = await self.store.get(job_id)
        if record is None:
            raise JobNotFound(job_id)
        return record

    async def status(self, job_id: str) -> JobStatus:
        """The job's status; JobNotFound if there is no such job."""
        return (await self.get_job(job_id)).status

    async def result(self, job_id: str, timeout: float | None = None) -> Any:
        """Wait for the job to end; its return value, or JobFailed / JobCancelled."""
        await self._open_store()
        with anyio.fail_after(timeout) if timeout is not None else nullcontext():
            record = await self.store.wait_done(job_id)
        if record.status is JobStatus.SUCCEEDED:
            if record.result_error is not None:
                raise JobFailed(record.id, record.name, None) from TypeError(record.result_error)
            return record.result
        if record.status is JobStatus.CANCELLED:
            raise JobCancelled(record.id, record.name)
        raise JobFailed(record.id, record.name, record.error)

    async def cancel(self, job_id: str) -> JobStatus:
        """Cancel a job: a waiting one at once, a running one as soon as its runner hears."""
        await self._open_store()
        status = await self.store.cancel(job_id, self.clock.now())
        if status is JobStatus.RUNNING and self._pool is not None:
            self._pool.cancel(job_id)
        self._room.set()
        return status

    async def requeue(self, job_id: str) -> JobHandle[Any]:
        """Send a dead (or cancelled) job back to the queue with its attempts reset."""
        await self._open_store()
        record = await self.store.requeue(job_id, self.clock.now())
        return JobHandle(self, record.id, record.name, True)

    async def parent_outcomes(self, job_id: str) -> list[ParentOutcome]:
        """How each parent of a job enqueued ``after=`` ended, in the order given
        (empty for a job without parents); JobNotFound if there is no such job."""
        await self._open_store()
        return await self.store.parent_outcomes(job_id)

    async def dead_letters(self, *, name: str | None = None, limit: int = 100) -> list[JobRecord]:
        """Dead jobs, newest first, with their last error and traceback."""
        return await self.list_jobs(status=JobStatus.DEAD, name=name, limit=limit)

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        queue: str | None = None,
        name: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[JobRecord]:
        """Jobs matching every given filter, newest first; ``before`` (a job id) pages:
        only jobs enqueued before that one. JobNotFound if that job is gone."""
        await self._open_store()
        return await self.store.list_jobs(status=status, queue=queue, name=name, limit=limit, before=before)

    async def opened_store(self) -> Store:
        """The runner's store, opened if it was not yet: for tools that read it
        directly (``jobrunner.web``). The runner still owns it: do not close it."""
        await self._open_store()
        return self.store

    async def purge(self, status: JobStatus, *, older_than: float = 0.0, limit: int = 10_000) -> int:
        """Delete jobs of a final status that finished more than ``older_than`` seconds ago."""
        if status not in (JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED):
            raise InvalidJobState("*", status, "only succeeded, dead or cancelled jobs can be purged")
        await self._open_store()
        return await self.store.purge(status, self.clock.now() - older_than, limit)

    async def stats(self) -> RunnerStats:
        """Counts by status and queue, running jobs, oldest wait, recent throughput."""
        await self._open_store()
        store_stats = await self.store.stats(self.clock.now())
        pool = self._pool
        return RunnerStats.build(
            store_stats,
            running=len(pool.running) if pool else 0,
            workers=pool.workers if pool else 0,
            throughput=self._throughput,
        )

    def health(self) -> Health:
        """Whether the workers are alive, the event loop responsive and the store
        answering (callable from any thread). After a stop, the store's last state."""
        pool, monitor, store_health = self._pool, self._monitor, self._store_health
        store_ok, store_error, since = store_health.state if store_health else (True, None, None)
        if pool is None or monitor is None:
            threshold = self._telemetry.loop_block_threshold or defaults.LOOP_BLOCK_THRESHOLD
            return Health(False, 0, 0.0, threshold, None, store_ok, store_error, since)
        return Health(
            True,
            pool.workers,
            monitor.lag(),
            monitor.threshold,
            monitor.blocking_job,
            store_ok,
            store_error,
            since,
        )

    # flow control ------------------------------------------------------------------
    async def pause(self, queue: str) -> bool:
        """Stop every runner on the store from starting ``queue``'s jobs, until
        ``resume``; durable. Jobs still enqueue; running ones finish. True if it
        was not paused already."""
        check_queue(queue, "pause()")
        await self._open_store()
        paused = await self.store.pause_queue(queue, self.clock.now())
        if paused:
            _log.info("queue paused", queue=queue, worker_id=self.worker_id)
        return paused

    async def resume(self, queue: str) -> bool:
        """Let runners start ``queue``'s jobs again; True if it was paused."""
        check_queue(queue, "resume()")
        await self._open_store()
        resumed = await self.store.resume_queue(queue)
        if resumed:
            _log.info("queue resumed", queue=queue, worker_id=self.worker_id)
        return resumed

    async def paused_queues(self) -> dict[str, float]:
        """Paused queues and when each was paused (epoch seconds)."""
        await self._open_store()
        return await self.store.paused_queues()

    def _global_limits(self) -> Limits | None:
        """The store-wide limits this runner keeps: its queues' and its jobs' (``concurrency=``)."""
        names = {d.name: d.options.concurrency for d in self._registry if d.options.concurrency is not None}
        limits = Limits(queues=self._global_queue_limits, names=names, rates=self._rate_limits)
        return limits or None

    # lifecycle ---------------------------------------------------------------------
    def _bind_loop(self) -> None:
        """asyncio primitives belong to one loop; a runner defined at import time
        may serve several in turn (one per test, say), so they follow the loop."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._loop is not None:
                # Connections made on the previous loop cannot serve this one:
                # open() again (a store replaces what belonged to a dead loop).
                self._store_open = False
            self._loop = loop
            self._telemetry.refresh()
            self._open_lock = asyncio.Lock()
            self._room = asyncio.Event()
            stop_was_requested = self._stop_requested.is_set()
            self._stop_requested = asyncio.Event()
            if stop_was_requested:
                self._stop_requested.set()

    async def _open_store(self) -> None:
        self._bind_loop()
        if self._store_open:
            return
        async with self._open_lock:
            if not self._store_open:
                await self.store.open()
                self._store_open = True

    @property
    def is_running(self) -> bool:
        """True between start and stop."""
        return self._stack is not None

    async def __aenter__(self) -> Runner:
        if self._stack is not None:
            raise RuntimeError("this runner is already running; enter it once")
        await self._open_store()
        self._store_health = store_health = StoreHealth(
            self.clock, self.store, give_up_after=self._store_give_up
        )
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            base = contextvars.copy_context()
            # Jobs run in copies of ``base``: they find the writer of their progress there.
            progress = ProgressWriter(self.store, self.clock)
            base.run(progress.install)
            base.run(_job_store.set, self.store)  # for current_job().parent_outcomes()
            process_scope = ProcessScope(self._resources, base)
            stack.push_async_callback(_shielded, process_scope.aclose)
            tg = await stack.enter_async_context(anyio.create_task_group())
            threads = ThreadPool(self._threads)
            stack.callback(threads.close)
            executor = Executor(
                registry=self._registry,
                resources=self._resources,
                process_scope=process_scope,
                clock=self.clock,
                threads=threads,
                max_payload=self._max_payload,
                hooks=self._hooks,
                middleware=self._middleware,
                base_context=base,
                telemetry=self._telemetry,
            )
            pool = WorkerPool(
                store=self.store,
                executor=executor,
                clock=self.clock,
                concurrency=self._concurrency,
                queue_limits=self._queue_limits,
                consume=self._consume,
                names=lambda: self._registry.names,
                worker_id=self.worker_id,
                lease=self._lease,
                cancel_grace=self._cancel_grace,
                base_context=base,
                on_claimed=self._on_claimed,
                throughput=self._throughput,
                store_health=store_health,
                global_limits=self._global_limits(),
                before_settle=progress.flush_for,
                on_expired=self._telemetry.expired,
            )
            maintenance = Maintenance(
                store=self.store,
                clock=self.clock,
                holder=self.worker_id,
                lease=self._lease,
                leases=pool.leases,
                on_report=pool.apply_lease_report,
                duties=[
                    RescueDuty(self.store, defaults.RESCUE_INTERVAL),
                    PruneDuty(self.store, self._result_ttl, defaults.PRUNE_INTERVAL),
                    self._cron_scheduler(),
                    *self._duties,
                    *self._telemetry.duties(self.store),
                ],
                store_health=store_health,
            )
            stack.callback(self.store.add_work_listener(pool.notify_work))
            self._telemetry.start(base, pool.running, lambda: maintenance.is_leader)
            self._monitor = monitor = LoopMonitor(self._telemetry.loop_block_threshold, lambda: pool.running)
            monitor.start()
            stack.callback(monitor.stop)
            spawn_in(base, tg, monitor.run, "jobrunner.monitor")
            pool.start(tg)
            if self._telemetry.enabled:
                spawn_in(base, tg, self._telemetry.watch, "jobrunner.telemetry")
            spawn_in(base, tg, maintenance.heartbeat, "jobrunner.heartbeat")
            spawn_in(base, tg, progress.run, "jobrunner.progress")
            spawn_in(base, tg, maintenance.lead, "jobrunner.leader")
        except BaseException:
            await stack.aclose()
            raise
        self._stack, self._tg, self._pool, self._maintenance = stack, tg, pool, maintenance
        self._hurry = False
        _log.info(
            "runner started",
            worker_id=self.worker_id,
            store=type(self.store).__name__,
            jobs=sorted(self._registry.names),
            concurrency=self._concurrency,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack, tg, pool, maintenance = self._stack, self._tg, self._pool, self._maintenance
        assert stack is not None and tg is not None and pool is not None and maintenance is not None
        _log.info("shutdown begun", worker_id=self.worker_id, running=len(pool.running))
        try:
            # Shielded: an outer cancellation must not skip putting jobs back.
            with anyio.CancelScope(shield=True):
                maintenance.stop()
                await pool.drain(0.0 if self._hurry else self._shutdown_grace)
                # Let the maintenance loops finish the store call they may be in.
                await maintenance.stopped(5.0)
            tg.cancel_scope.cancel()
        finally:
            try:
                await stack.aclose()
            finally:
                self._stack = self._tg = self._pool = self._maintenance = None
                self._stop_requested.clear()
                self._telemetry.stop()
                if self._owns_store:
                    with anyio.CancelScope(shield=True):
                        await self.aclose()
        _log.info("shutdown finished", worker_id=self.worker_id)

    async def aclose(self) -> None:
        """Close the store's connections (they reopen on next use).

        ``async with runner`` and ``serve()`` do it on exit for a store the runner
        made from a URL (or the default); a ``Store`` object passed in is left
        open for whoever owns it. Producer-only code calls this when done.
        """
        if self._store_open and self._stack is None:
            self._store_open = False
            await self.store.close()

    def stop(self, *, now: bool = False) -> None:
        """Ask ``serve()`` to return after a graceful drain (``now``: skip the grace)."""
        if now:
            self._hurry = True
            if self._pool is not None:
                self._pool.hurry()
        self._stop_requested.set()

    async def serve(self) -> None:
        """Run until SIGINT/SIGTERM or ``stop()``, then drain and return.

        A second signal cuts the grace period short. If the store fails without
        a break for ``store_give_up`` seconds, the runner drains the same way
        and then raises StoreError (a worker process should exit non-zero).
        """
        gave_up: list[Exception] = []  # the StoreError to raise
        async with self:
            assert self._tg is not None and self._store_health is not None
            if threading.current_thread() is threading.main_thread():
                self._tg.start_soon(self._watch_signals, name="jobrunner.signals")
            if self._store_give_up is not None:
                self._tg.start_soon(self._watch_store, self._store_health, gave_up, name="jobrunner.store")
            await self._stop_requested.wait()
        if gave_up:
            raise gave_up[0]

    async def _watch_store(self, health: StoreHealth, gave_up: list[Exception]) -> None:
        error = await health.wait_give_up()
        _log.error(
            "store failing for too long; stopping the runner",
            worker_id=self.worker_id,
            store_give_up=self._store_give_up,
            error=health.state[1],
        )
        gave_up.append(error)
        self.stop()

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                first = not self._stop_requested.is_set()
                _log.warning(
                    "signal received; " + ("stopping gracefully" if first else "stopping now"),
                    signal=signal.Signals(signum).name,
                )
                self.stop(now=not first)

    async def run_until_idle(self) -> None:
        """Run until no job is ready or running (delayed ones may remain), then return.

        Starts and stops the runner around it if it is not running.
        """
        if self._pool is not None:
            await self._pool.wait_idle()
            return
        async with self:
            assert self._pool is not None
            await self._pool.wait_idle()
