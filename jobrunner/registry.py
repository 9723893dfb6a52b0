"""The runner's job registry, job options, and the typed ``Job`` objects that
``@runner.job`` returns."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

from jobrunner import defaults
from jobrunner.handle import JobHandle
from jobrunner.models import ParentFailure
from jobrunner.resources import Resource, WithResources
from jobrunner.retry import Backoff, BackoffLike, ExponentialBackoff, as_backoff

__all__ = [
    "BoundJob",
    "Call",
    "EnqueueOptions",
    "Job",
    "JobDefinition",
    "JobOptions",
    "Registry",
]

P = ParamSpec("P")
R = TypeVar("R")


def check_timeout(value: float | None, where: str) -> float | None:
    """Validate a timeout in seconds (None: no timeout)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{where}: timeout={value!r} must be a positive number of seconds or None")
    if math.isinf(value):
        return None
    return float(value)


def check_retries(value: int, where: str) -> int:
    """Validate a retry count."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}: retries={value!r} must be an integer >= 0")
    return value


def check_priority(value: int, where: str) -> int:
    """Validate a priority (any integer; lower runs first)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: priority={value!r} must be an integer (lower runs first)")
    return value


def check_queue(value: str, where: str) -> str:
    """Validate a queue name."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: queue={value!r} must be a non-empty string")
    return value


def check_ttl(value: float | None, where: str) -> float | None:
    """Validate a time to live in seconds (None: none)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 or math.isinf(value):
        raise ValueError(f"{where}: ttl={value!r} must be a positive, finite number of seconds or None")
    return float(value)


def check_concurrency(value: int | None, where: str) -> int | None:
    """Validate a store-wide concurrency limit (None: none)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: concurrency={value!r} must be an integer >= 1 or None")
    return value


_DEFAULT_BACKOFF = ExponentialBackoff()


@dataclass(frozen=True, slots=True)
class JobOptions:
    """Per-job defaults set at registration."""

    queue: str = defaults.QUEUE
    priority: int = defaults.PRIORITY
    timeout: float | None = defaults.TIMEOUT
    retries: int = defaults.RETRIES
    backoff: Backoff = _DEFAULT_BACKOFF
    ttl: float | None = None
    """Seconds after it is due (enqueued, or its delay over) by which a job must
    have started, else it expires."""
    concurrency: int | None = None
    """Most jobs of this name running at once across every runner on the store."""
    batch: int | None = None
    """A batch handler: up to this many calls per invocation (``@runner.job(batch=N)``)."""


_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class EnqueueOptions:
    """Per-call overrides given through ``job.options(...)``."""

    priority: int | None = None
    delay: float | None = None
    run_at: datetime | float | None = None
    key: str | None = None
    workspace_id: str | None = None
    block: bool = True
    queue: str | None = None
    timeout: float | None = _UNSET
    retries: int | None = None
    connection: Any = None
    """A store-specific connection to enqueue within (PostgreSQL transactional enqueue)."""
    expires: datetime | float | None = None
    """Deadline to start by (aware datetime or epoch seconds)."""
    ttl: float | None = None
    """Seconds to start by, counted from when the job is due (its ``run_at``: the
    enqueue, unless delayed)."""
    after: tuple[str, ...] = ()
    """Ids of the jobs this one waits for (``after=``), without repeats."""
    on_parent_failure: ParentFailure = ParentFailure.CANCEL

    def __post_init__(self) -> None:
        where = "options()"
        if self.after and self.key is not None:
            raise ValueError(
                f"{where}: key= cannot be combined with after= (a job waiting for its parents holds no "
                f"key); deduplicate the parents instead"
            )
        if not isinstance(self.on_parent_failure, ParentFailure):
            raise ValueError(
                f"{where}: on_parent_failure={self.on_parent_failure!r} must be one of "
                f"{', '.join(repr(p.value) for p in ParentFailure)}"
            )
        if self.priority is not None:
            check_priority(self.priority, where)
        if self.delay is not None:
            if isinstance(self.delay, bool) or not isinstance(self.delay, int | float):
                raise ValueError(f"{where}: delay={self.delay!r} must be seconds")
            if self.delay < 0 or math.isnan(self.delay):
                raise ValueError(f"{where}: delay={self.delay!r} must be >= 0 seconds")
        if self.delay is not None and self.run_at is not None:
            raise ValueError(f"{where}: give delay= or run_at=, not both")
        if self.run_at is not None and not isinstance(self.run_at, datetime | int | float):
            raise ValueError(f"{where}: run_at={self.run_at!r} must be a datetime or epoch seconds")
        if isinstance(self.run_at, datetime) and self.run_at.tzinfo is None:
            raise ValueError(
                f"{where}: run_at={self.run_at!r} is a naive datetime; give it a timezone "
                f"(e.g. datetime.now(timezone.utc) + timedelta(...))"
            )
        if self.key is not None and (not isinstance(self.key, str) or not self.key):
            raise ValueError(f"{where}: key={self.key!r} must be a non-empty string")
        if self.queue is not None:
            check_queue(self.queue, where)
        if self.timeout is not _UNSET:
            check_timeout(self.timeout, where)
        if self.retries is not None:
            check_retries(self.retries, where)
        if self.expires is not None and self.ttl is not None:
            raise ValueError(f"{where}: give expires= or ttl=, not both")
        check_ttl(self.ttl, where)
        if self.expires is not None:
            if isinstance(self.expires, bool) or not isinstance(self.expires, datetime | int | float):
                raise ValueError(f"{where}: expires={self.expires!r} must be a datetime or epoch seconds")
            if isinstance(self.expires, datetime) and self.expires.tzinfo is None:
                raise ValueError(
                    f"{where}: expires={self.expires!r} is a naive datetime; give it a timezone "
                    f"(e.g. datetime.now(timezone.utc) + timedelta(...))"
                )

    def expires_epoch(self, run_at: float, default_ttl: float | None) -> float | None:
        """The deadline to start by, in epoch seconds: ``expires``, else ``run_at``
        plus the ttl (this call's, else ``default_ttl``, the job's)."""
        if isinstance(self.expires, datetime):
            return self.expires.timestamp()
        if self.expires is not None:
            return float(self.expires)
        ttl = default_ttl if self.ttl is None else self.ttl
        return None if ttl is None else run_at + ttl

    def run_at_epoch(self, now: float) -> float:
        """When the job becomes ready, in epoch seconds."""
        if self.delay is not None:
            return now + self.delay
        if isinstance(self.run_at, datetime):
            return self.run_at.timestamp()
        if self.run_at is not None:
            return float(self.run_at)
        return now

    @property
    def has_timeout(self) -> bool:
        """True if ``timeout`` was given (None included)."""
        return self.timeout is not _UNSET


DEFAULT_ENQUEUE = EnqueueOptions()


class _ArgCheck:
    """Checks enqueue arguments against the handler's signature, fast.

    ``inspect.Signature.bind`` costs a few microseconds; the usual shapes
    (positionals within range, known keywords that clash with none of them, every
    required parameter given) are accepted here in a fraction of that. Anything
    else goes to ``bind``, which either accepts it or raises Python's own message.
    """

    __slots__ = ("_index", "_kw_ok", "_max_pos", "_name", "_required", "_sig", "empty_ok")

    def __init__(self, name: str, sig: inspect.Signature) -> None:
        self._name = name
        self._sig = sig
        kinds = inspect.Parameter
        params = list(sig.parameters.values())
        positional = [p for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
        self._index = {p.name: i for i, p in enumerate(positional)}
        self._max_pos = math.inf if any(p.kind is kinds.VAR_POSITIONAL for p in params) else len(positional)
        self._kw_ok = frozenset(
            p.name for p in params if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)
        )
        self._required = tuple(
            (p.name, self._index.get(p.name, math.inf))
            for p in params
            if p.default is p.empty and p.kind not in (kinds.VAR_POSITIONAL, kinds.VAR_KEYWORD)
        )
        self.empty_ok = not self._required
        """True if a call with no arguments fits (callers may skip the check then)."""

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        n = len(args)
        if n <= self._max_pos and self._fits(n, kwargs):
            return
        try:
            self._sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"job {self._name!r}: {exc}") from None

    def _fits(self, n: int, kwargs: dict[str, Any]) -> bool:
        for key in kwargs:
            if key not in self._kw_ok or self._index.get(key, n) < n:
                return False
        return all(position < n or name in kwargs for name, position in self._required)


class JobDefinition:
    """A registered handler and everything the runner precomputed about it."""

    __slots__ = ("batch", "check_args", "direct", "fn", "injected", "is_async", "name", "options", "plain")

    def __init__(
        self, name: str, fn: Callable[..., Any] | WithResources[Any, Any], options: JobOptions
    ) -> None:
        resources: tuple[Resource[Any], ...] = ()
        if isinstance(fn, WithResources):
            resources = fn.resources
            fn = fn.fn
        if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
            raise ValueError(f"job {name!r}: a generator function cannot be a job handler")
        if not callable(fn):
            raise ValueError(f"job {name!r}: {fn!r} is not callable")
        self.name = name
        self.fn = fn
        self.options = options
        # (queue, priority, max_attempts, timeout, ttl) of a call without options.
        self.plain = (options.queue, options.priority, options.retries + 1, options.timeout, options.ttl)
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
        )
        self.injected = resources
        """Resources passed as the handler's leading arguments (``@uses``), in order."""
        self.direct = self.is_async and not resources
        """The handler's coroutine can run as it is (no resources to open around it)."""
        sig = inspect.signature(fn)
        # The enqueued arguments are what follows the resources (``@uses`` checked
        # that the leading parameters exist).
        public = sig.replace(parameters=list(sig.parameters.values())[len(resources) :])
        self.batch = options.batch or 0
        """Most calls per invocation of a batch handler; 0 for a plain handler."""
        if self.batch:
            _check_batch_handler(name, public, self.is_async)
            # Each call enqueues one item; the handler takes the list of them.
            public = inspect.Signature([inspect.Parameter("item", inspect.Parameter.POSITIONAL_ONLY)])
        self.check_args = _ArgCheck(name, public)


def _check_batch_handler(name: str, sig: inspect.Signature, is_async: bool) -> None:
    kinds = inspect.Parameter
    required = [
        p
        for p in sig.parameters.values()
        if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if not is_async or len(required) != 1:
        raise ValueError(
            f"job {name!r}: a batch handler is an async def taking one argument, the list of the "
            f"items enqueued (async def {name}(items: list[T]) -> list[R] | None)"
        )


class Registry:
    """Job definitions by name; each ``Runner`` has its own."""

    def __init__(self) -> None:
        self._defs: dict[str, JobDefinition] = {}
        self._names: frozenset[str] = frozenset()
        self._batches: dict[str, int] = {}

    def add(self, definition: JobDefinition) -> None:
        """Register; ValueError if the name is taken by another function."""
        existing = self._defs.get(definition.name)
        if existing is not None and existing.fn is not definition.fn:
            raise ValueError(
                f"a job named {definition.name!r} is already registered "
                f"({getattr(existing.fn, '__module__', '?')}.{getattr(existing.fn, '__qualname__', '?')}); "
                f"give one of them another name with @runner.job(name=...)"
            )
        self._defs[definition.name] = definition
        self._names = frozenset(self._defs)
        if definition.batch:
            self._batches[definition.name] = definition.batch
        else:
            self._batches.pop(definition.name, None)

    def get(self, name: str) -> JobDefinition | None:
        """The definition, or None."""
        return self._defs.get(name)

    @property
    def definitions(self) -> Mapping[str, JobDefinition]:
        """Definitions by name: a live read-only view (the executor looks up every job here)."""
        return self._defs

    @property
    def batches(self) -> Mapping[str, int]:
        """Batch handlers' names and sizes: a live view, empty unless ``batch=`` is used
        (the worker loop checks only whether it is empty for every other job)."""
        return self._batches

    @property
    def names(self) -> frozenset[str]:
        """Registered names (the same object until a job is added)."""
        return self._names

    def __iter__(self) -> Any:
        return iter(self._defs.values())

    def __len__(self) -> int:
        return len(self._defs)


class JobHost(Protocol):
    """What a ``Job`` needs of its runner."""

    def enqueue_one(
        self,
        definition: JobDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: EnqueueOptions,
    ) -> Coroutine[Any, Any, JobHandle[Any]]: ...

    async def submit(
        self,
        definition: JobDefinition,
        calls: Sequence[tuple[tuple[Any, ...], dict[str, Any]]],
        options: EnqueueOptions,
    ) -> list[JobHandle[Any]]: ...


class Call(Generic[P]):
    """One call of a job: ``resize.call(42, width=400)``, for ``enqueue_many``, and
    for ``runner.chain`` and ``runner.group``, which read the job it calls."""

    __slots__ = ("args", "job", "kwargs")

    def __init__(self, *args: P.args, **kwargs: P.kwargs) -> None:
        self.args: tuple[Any, ...] = args
        self.kwargs: dict[str, Any] = kwargs
        self.job: BoundJob[Any, Any] | None = None
        """The job (with its options) that made this call; None for a bare ``Call(...)``."""


def _after_ids(after: Iterable[JobHandle[Any] | str] | JobHandle[Any] | str) -> tuple[str, ...]:
    """Parent ids from handles or ids, in order, without repeats."""
    if isinstance(after, str | JobHandle):
        after = (after,)
    ids: dict[str, None] = {}
    for parent in after:
        if isinstance(parent, JobHandle):
            ids[parent.id] = None
        elif isinstance(parent, str) and parent:
            ids[parent] = None
        else:
            raise TypeError(f"after=: {parent!r} is neither a JobHandle nor a job id")
    return tuple(ids)


def _normalise_calls(
    calls: Iterable[Call[Any] | tuple[Any, ...]],
) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    out: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    for call in calls:
        if isinstance(call, Call):
            out.append((call.args, call.kwargs))
        elif isinstance(call, tuple):
            out.append((call, {}))
        else:
            raise TypeError(
                f"enqueue_many: each item must be job.call(...) or a tuple of "
                f"positional arguments, not {type(call).__name__}"
            )
    return out


class BoundJob(Generic[P, R]):
    """A job with per-call options: ``resize.options(priority=-5).enqueue(42)``."""

    __slots__ = ("_definition", "_host", "_options")

    def __init__(self, host: JobHost, definition: JobDefinition, options: EnqueueOptions) -> None:
        self._host = host
        self._definition = definition
        self._options = options

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, JobHandle[R]]:
        """Enqueue one call: ``handle = await job.enqueue(...)``.

        A plain function returning the runner's coroutine, so a call costs one
        coroutine rather than two.
        """
        return self._host.enqueue_one(self._definition, args, kwargs, self._options)

    async def enqueue_many(self, calls: Iterable[Call[P] | tuple[Any, ...]]) -> list[JobHandle[R]]:
        """Enqueue many calls in one store round trip; handles in the same order."""
        return await self._host.submit(self._definition, _normalise_calls(calls), self._options)

    def call(self, *args: P.args, **kwargs: P.kwargs) -> Call[P]:
        """A typed call, with this job and its options, for ``enqueue_many``,
        ``runner.chain`` and ``runner.group``."""
        made: Call[P] = Call(*args, **kwargs)
        made.job = self
        return made

    @property
    def definition(self) -> JobDefinition:
        """The registered definition."""
        return self._definition

    @property
    def enqueue_options(self) -> EnqueueOptions:
        """The per-call options this job enqueues with."""
        return self._options


class Job(BoundJob[P, R]):
    """What ``@runner.job`` returns: the handler, plus ways to enqueue it."""

    __slots__ = ("__wrapped__",)

    def __init__(self, host: JobHost, definition: JobDefinition) -> None:
        super().__init__(host, definition, DEFAULT_ENQUEUE)
        self.__wrapped__ = definition.fn

    @property
    def name(self) -> str:
        """The registered name."""
        return self._definition.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Call the handler directly, bypassing the runner (handy in unit tests).

        TypeError for a job that uses resources, as nothing here would supply them:
        call ``job.__wrapped__(resources..., *args)``, or run it through the runner
        with ``jobrunner.testing.override`` for the resources.
        """
        definition = self._definition
        if definition.injected:
            names = ", ".join(r.name for r in definition.injected)
            raise TypeError(
                f"job {definition.name!r} uses resources ({names}) that a direct call cannot "
                f"supply; call {definition.name}.__wrapped__ with them first, or enqueue it "
                f"and substitute them with jobrunner.testing.override"
            )
        return definition.fn(*args, **kwargs)

    def options(
        self,
        *,
        priority: int | None = None,
        delay: float | None = None,
        run_at: datetime | float | None = None,
        key: str | None = None,
        workspace_id: str | None = None,
        block: bool = True,
        queue: str | None = None,
        timeout: float | None = _UNSET,
        retries: int | None = None,
        connection: Any = None,
        expires: datetime | float | None = None,
        ttl: float | None = None,
        after: Iterable[JobHandle[Any] | str] | JobHandle[Any] | str = (),
        on_parent_failure: ParentFailure | str = ParentFailure.CANCEL,
    ) -> BoundJob[P, R]:
        """Per-call options; ValueError for invalid ones.

        ``delay`` (seconds) or ``run_at`` (aware datetime or epoch seconds) defer the
        job; ``key`` makes the enqueue idempotent while a job with that key is active;
        ``block=False`` raises QueueFull instead of waiting for room. ``expires``
        (aware datetime or epoch seconds) or ``ttl`` (seconds from when it is due:
        the enqueue, or the end of its delay): a job not started by then is
        discarded unrun (CANCELLED, error ``JobExpired``); retries do not extend it.

        ``after``: handles (or ids) of jobs this one waits for; it runs once all
        of them succeeded, and reads their results with
        ``current_job().parent_results()``. ``on_parent_failure``: what a parent
        ending dead or cancelled does to it: ``"cancel"`` (default) cancels it,
        ``"dead"`` dead-letters it, ``"run"`` runs it anyway once every parent
        ended; the first two carry on to its own dependents.
        """
        return BoundJob(
            self._host,
            self._definition,
            EnqueueOptions(
                priority=priority,
                delay=delay,
                run_at=run_at,
                key=key,
                workspace_id=workspace_id,
                block=block,
                queue=queue,
                timeout=timeout,
                retries=retries,
                connection=connection,
                expires=expires,
                ttl=ttl,
                after=_after_ids(after),
                on_parent_failure=_policy(on_parent_failure),
            ),
        )

    def __repr__(self) -> str:
        return f"<Job {self.name}>"


def _policy(value: ParentFailure | str) -> ParentFailure:
    try:
        return ParentFailure(value)
    except ValueError:
        raise ValueError(
            f"options(): on_parent_failure={value!r} must be one of "
            f"{', '.join(repr(p.value) for p in ParentFailure)}"
        ) from None


def make_options(
    *,
    queue: str,
    priority: int,
    timeout: float | None,
    retries: int,
    backoff: BackoffLike | None,
    default_backoff: Backoff,
    where: str,
    ttl: float | None = None,
    concurrency: int | None = None,
    batch: int | None = None,
) -> JobOptions:
    """Validated ``JobOptions`` from decorator arguments."""
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ValueError(f"{where}: batch={batch!r} must be an integer >= 1 (calls per invocation)")
    return JobOptions(
        queue=check_queue(queue, where),
        priority=check_priority(priority, where),
        timeout=check_timeout(timeout, where),
        retries=check_retries(retries, where),
        backoff=default_backoff if backoff is None else as_backoff(backoff),
        ttl=check_ttl(ttl, where),
        concurrency=check_concurrency(concurrency, where),
        batch=batch,
    )
