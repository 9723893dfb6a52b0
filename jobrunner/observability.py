"""Logs, traces and metrics: structlog context, OpenTelemetry spans and meters.

jobrunner never configures logging or OpenTelemetry; it uses what the app set up:

* **logs** (through ``jobrunner.logs``: structlog if the app configured it,
  else stdlib ``logging``): per-job lifecycle events go to the
  ``jobrunner.jobs`` logger (``job started``, ``job succeeded``, ``job attempt
  failed; retry scheduled``, ``job dead``...), each with ``job_id``,
  ``job_name``, ``attempt``, ``queue``, ``trigger`` (and ``workspace_id``).
  When the app's structlog merges contextvars, the same fields are bound while
  a job runs, so whatever the handler logs carries them; they live in the
  attempt's own ``contextvars.Context`` and never outlive it. Stdlib users get
  them with ``JobContextFilter``.
* **traces** (messaging semantic conventions): a PRODUCER ``send {queue}`` span
  around each enqueue, whose W3C trace context is stored in ``JobSpec.headers``;
  a CONSUMER ``process {queue}`` span around each attempt, the child of that
  context, so a job continues the trace of the request that enqueued it, in
  any process.
* **metrics**: counters of jobs enqueued, started, succeeded, failed, retried,
  dead and cancelled; histograms of attempt duration and queue wait; gauges of
  queue depth (reported by the maintenance leader) and running jobs.

Cost: what is not configured is not done. The runner looks at the setup when
it starts and once a second while it runs (``Telemetry.refresh``): with no
OpenTelemetry SDK (the global providers are still the API's proxies) there are
no spans and no meters; unless the app configured structlog with
``merge_contextvars`` (or a stdlib ``ProcessorFormatter`` with it) nothing is bound; per-job
info and debug events are skipped while those levels are off. Then a job costs
two attribute checks more than with ``instrument=False``; binding its context
costs a template check and one ContextVar set more (about 0.35 us, 4-5% of a
no-op job on the memory store: ``benchmarks/bench_observability.py``).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import Context, ContextVar
from dataclasses import dataclass
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.metrics import CallbackOptions, Counter, Histogram, MeterProvider, Observation
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
from structlog.contextvars import bind_contextvars, merge_contextvars

from jobrunner import defaults
from jobrunner.clock import Clock
from jobrunner.context import JobContext
from jobrunner.context import _current as _current_job
from jobrunner.errors import Abort, JobTimeout, Retry
from jobrunner.logs import get_logger
from jobrunner.models import (
    WAITING_STATUSES,
    ClaimedJob,
    Dependency,
    Enqueued,
    ErrorInfo,
    ExpiredJob,
    JobSpec,
    OutcomeKind,
)
from jobrunner.retry import Decision
from jobrunner.stores.base import Store

__all__ = [
    "JOB_FIELDS",
    "Instrumentation",
    "JobContextFilter",
    "LogTemplate",
    "Telemetry",
    "bind_job_id",
    "job_log",
]

job_log = get_logger("jobrunner.jobs")
"""Every per-job lifecycle event goes here, so one logger name controls them all."""

JOB_FIELDS = ("job_id", "job_name", "attempt", "queue", "workspace_id", "trigger")
"""The fields bound while a job runs, and carried by every ``jobrunner.jobs`` event."""

# structlog's own ContextVars for these keys (the ones ``bind_contextvars`` and
# ``merge_contextvars`` use), taken once from the tokens ``bind_contextvars``
# returns, so a job's fields are set with plain ``ContextVar.set`` calls.
_VARS = Context().run(bind_contextvars, **dict.fromkeys(JOB_FIELDS))
_JOB_ID, _JOB_NAME, _ATTEMPT, _QUEUE, _WORKSPACE, _TRIGGER = (_VARS[k].var for k in JOB_FIELDS)

_span: ContextVar[Span | None] = ContextVar("jobrunner_span", default=None)
"""The attempt's CONSUMER span, kept in the attempt's context to end it with the outcome."""

# OpenTelemetry semantic conventions (messaging, error), as plain strings: the
# semantic-conventions package is not a dependency.
SYSTEM = "messaging.system"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
DESTINATION = "messaging.destination.name"
MESSAGE_ID = "messaging.message.id"
BATCH_COUNT = "messaging.batch.message_count"
CLIENT_ID = "messaging.client.id"
ERROR_TYPE = "error.type"
JOB_NAME = "jobrunner.job.name"
JOB_ATTEMPT = "jobrunner.job.attempt"
JOB_PRIORITY = "jobrunner.job.priority"
JOB_TRIGGER = "jobrunner.job.trigger"
JOB_WORKSPACE = "jobrunner.job.workspace_id"
JOB_OUTCOME = "jobrunner.job.outcome"
JOB_STATUS = "jobrunner.job.status"

_TEMPLATES_MAX = 1024
_WAITING = sorted(WAITING_STATUSES)
_REFRESH_EVERY = 1.0

bind_job_id = _JOB_ID.set
"""Binds the job id, the one log field every attempt has its own of (call it in the attempt's context)."""


@dataclass(frozen=True, slots=True)
class LogTemplate:
    """A context with the log fields many attempts share bound, for them to copy.

    A slotted class rather than a NamedTuple: the executor reads four of its
    fields for every attempt, and slot reads are the ones the interpreter
    specializes.
    """

    queue: str
    workspace_id: str | None
    trigger: str
    attempt: int
    context: Context
    """Also holds the job name; the runner's base context is underneath."""


@dataclass(frozen=True, slots=True)
class Instrumentation:
    """How a runner reports itself: ``Runner(instrument=Instrumentation(...))``.

    ``Runner(instrument=True)`` (the default) is ``Instrumentation()``: the global
    OpenTelemetry providers, the default loop-block threshold.
    ``Runner(instrument=False)`` turns off every per-job addition (context
    binding, spans, metrics, ``job started`` / ``job succeeded`` logs); warnings
    and errors are still logged, and ``stats()`` and ``health()`` still work.
    """

    tracer_provider: TracerProvider | None = None
    """Spans go here; None: the global provider (nothing is traced until the app installs an SDK)."""
    meter_provider: MeterProvider | None = None
    """Metrics go here; None: the global provider."""
    loop_block_threshold: float | None = defaults.LOOP_BLOCK_THRESHOLD
    """Warn (naming the job) when the event loop is blocked longer than this; None: never."""


def _is_sdk(provider: object) -> bool:
    """False for the API's proxy and no-op providers: the app installed no SDK."""
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider | metrics.NoOpMeterProvider):
        return False
    # The metrics proxy class is private to the API package.
    return type(provider).__name__ != "_ProxyMeterProvider"


def _merges_contextvars() -> bool:
    """True if the app's logs would pick up structlog's contextvars (directly or via stdlib).

    structlog left unconfigured counts as not merging: jobrunner's own events
    then go to stdlib logging with their fields, and an app that does not set
    up structlog does not read its default console output in production.
    """
    if structlog.is_configured() and merge_contextvars in structlog.get_config().get("processors", ()):
        return True
    for handler in logging.getLogger().handlers:
        formatter = handler.formatter
        if isinstance(formatter, structlog.stdlib.ProcessorFormatter):
            chain = [*(formatter.foreign_pre_chain or ()), *formatter.processors]
            if merge_contextvars in chain:
                return True
    return False


def _version() -> str | None:
    try:
        from importlib.metadata import version

        return version("jobrunner")
    except Exception:
        return None


def _fields(job: JobContext) -> dict[str, Any]:
    claimed = job._claimed
    spec = claimed.spec
    fields: dict[str, Any] = {
        "job_id": spec.id,
        "job_name": spec.name,
        "attempt": claimed.attempt,
        "queue": spec.queue,
        "trigger": claimed.trigger,
    }
    if spec.workspace_id is not None:
        fields["workspace_id"] = spec.workspace_id
    return fields


def _bind_static(name: str, queue: str, workspace_id: str | None, trigger: str, attempt: int) -> None:
    _JOB_NAME.set(name)
    _ATTEMPT.set(attempt)
    _QUEUE.set(queue)
    _TRIGGER.set(trigger)
    if workspace_id is not None:
        _WORKSPACE.set(workspace_id)
    elif _WORKSPACE.get() is not ...:
        # The app bound a workspace around the runner: a job without one shows
        # none (Ellipsis is structlog's "not bound"). Otherwise the variable is
        # left out, one entry fewer for every attempt's context to copy on write.
        _WORKSPACE.set(...)


def _error_text(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__qualname__}: {message}" if message else type(exc).__qualname__


class _Instruments:
    """The meters of one meter provider, shared by every runner that reports to it.

    An SDK keeps the first instrument registered under a name and ignores later
    ones, so the gauges' callbacks are registered once per provider and read
    every live runner registered here.
    """

    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter("jobrunner", _version())
        self.runners: weakref.WeakSet[Telemetry] = weakref.WeakSet()

        def counter(what: str, description: str) -> Counter:
            return meter.create_counter(f"jobrunner.jobs.{what}", unit="{job}", description=description)

        self.enqueued = counter("enqueued", "Jobs accepted by the store.")
        self.started = counter("started", "Attempts started.")
        self.succeeded = counter("succeeded", "Attempts that returned.")
        self.failed = counter("failed", "Attempts that raised or timed out.")
        self.retried = counter("retried", "Failed attempts followed by a retry.")
        self.dead = counter("dead", "Jobs sent to the dead letters.")
        self.cancelled = counter("cancelled", "Running attempts cancelled on request.")
        self.expired = counter("expired", "Jobs discarded unrun: not started by their deadline.")
        self.duration: Histogram = meter.create_histogram(
            "jobrunner.attempt.duration", unit="s", description="How long attempts ran."
        )
        self.wait: Histogram = meter.create_histogram(
            "jobrunner.queue.wait_time",
            unit="s",
            description="From when an attempt could run (enqueue, run_at, retry time) until it started.",
        )
        meter.create_observable_gauge(
            "jobrunner.queue.depth",
            callbacks=[self._observe_depth],
            unit="{job}",
            description="Waiting jobs by queue and status (reported by the maintenance leader only).",
        )
        meter.create_observable_gauge(
            "jobrunner.jobs.running",
            callbacks=[self._observe_running],
            unit="{job}",
            description="Attempts running in this process.",
        )

    # The SDK calls these, maybe from its own thread: they only read a dict that
    # is replaced whole, and take len() of the pool's running map.
    def _observe_depth(self, options: CallbackOptions) -> Iterable[Observation]:
        depth: dict[tuple[str, str], int] = {}
        for runner in list(self.runners):
            if runner._running is not None and runner._is_leader():
                for key, n in runner._depth.items():
                    depth[key] = depth.get(key, 0) + n
        return [
            Observation(n, {DESTINATION: queue, JOB_STATUS: status}) for (queue, status), n in depth.items()
        ]

    def _observe_running(self, options: CallbackOptions) -> Iterable[Observation]:
        running = [r._running for r in list(self.runners) if r._running is not None]
        return [Observation(sum(len(m) for m in running))] if running else []


_INSTRUMENTS: weakref.WeakKeyDictionary[Any, _Instruments] = weakref.WeakKeyDictionary()


def _instruments_for(provider: MeterProvider, runner: Telemetry) -> _Instruments:
    instruments = _INSTRUMENTS.get(provider)
    if instruments is None:
        instruments = _INSTRUMENTS[provider] = _Instruments(provider)
    instruments.runners.add(runner)
    return instruments


class Telemetry:
    """One runner's logs, spans and metrics, doing only what the app configured.

    The executor reads ``templates`` (None: no log fields to bind) and
    ``observing`` (False: nothing to report when an attempt starts or
    succeeds); the runner reads ``sending`` around enqueues. ``refresh``
    recomputes them.
    """

    def __init__(self, instrument: bool | Instrumentation, *, worker_id: str, clock: Clock) -> None:
        if isinstance(instrument, Instrumentation):
            config: Instrumentation | None = instrument
        elif instrument is True:
            config = Instrumentation()
        elif instrument is False:
            config = None
        else:
            raise TypeError(f"Runner(instrument={instrument!r}): pass True, False or an Instrumentation")
        self._config = config
        self.loop_block_threshold = (
            defaults.LOOP_BLOCK_THRESHOLD if config is None else config.loop_block_threshold
        )
        self._worker_id = worker_id
        self._clock = clock

        self.templates: dict[str, LogTemplate] | None = None
        """The last ``template()`` of each job name; None: log fields are not bound."""
        self.observing = False
        """True when started/succeeded need reporting (spans, metrics or info logs)."""
        self.sending = False
        """True when an enqueue needs reporting (a span, a counter or debug logs)."""

        self._bind = False
        self._info = False
        self._debug = False
        self._tracer: Tracer | None = None
        self._tracer_provider: object = None
        self._instruments: _Instruments | None = None
        self._meter_provider: object = None
        self._attrs: dict[tuple[str, str], dict[str, str]] = {}

        self._base = Context()
        self._templates: dict[tuple[str, str, str | None, str, int], LogTemplate] = {}
        self._recent: dict[str, LogTemplate] = {}
        self._running: Mapping[str, JobContext] | None = None
        self._is_leader: Callable[[], bool] = lambda: False
        self._depth: dict[tuple[str, str], int] = {}

    @property
    def enabled(self) -> bool:
        """False with ``Runner(instrument=False)``."""
        return self._config is not None

    # setup -----------------------------------------------------------------------
    def refresh(self) -> None:
        """Look at the logging and OpenTelemetry setup again and decide what to do."""
        config = self._config
        if config is None:
            return
        tracer_provider = config.tracer_provider or trace.get_tracer_provider()
        if tracer_provider is not self._tracer_provider:
            self._tracer_provider = tracer_provider
            self._tracer = (
                tracer_provider.get_tracer("jobrunner", _version()) if _is_sdk(tracer_provider) else None
            )
        meter_provider = config.meter_provider or metrics.get_meter_provider()
        if meter_provider is not self._meter_provider:
            self._meter_provider = meter_provider
            self._instruments = _instruments_for(meter_provider, self) if _is_sdk(meter_provider) else None
        self._bind = _merges_contextvars()
        self._info = job_log.is_enabled_for(logging.INFO)
        self._debug = job_log.is_enabled_for(logging.DEBUG)
        live = self._tracer is not None or self._instruments is not None
        self.observing = live or self._info
        self.sending = live or self._debug
        self.templates = self._recent if self._bind else None

    def start(self, base: Context, running: Mapping[str, JobContext], is_leader: Callable[[], bool]) -> None:
        """The runner started: attempts copy ``base``; gauges read ``running``."""
        self._base = base
        self._templates.clear()
        self._recent.clear()
        self._running = running
        self._is_leader = is_leader
        self.refresh()

    def stop(self) -> None:
        """The runner stopped: gauges report nothing until it starts again."""
        self._running = None
        self._depth = {}
        self._templates.clear()
        self._recent.clear()

    async def watch(self) -> None:
        """Re-read the setup every second (a task of the running runner)."""
        while True:
            await asyncio.sleep(_REFRESH_EVERY)
            self.refresh()

    def _attributes(self, name: str, queue: str) -> dict[str, str]:
        attrs = self._attrs.get((name, queue))
        if attrs is None:
            if len(self._attrs) >= _TEMPLATES_MAX:
                self._attrs.clear()
            attrs = self._attrs[name, queue] = {JOB_NAME: name, DESTINATION: queue}
        return attrs

    # producing -------------------------------------------------------------------
    async def enqueue(
        self,
        store: Store,
        specs: Sequence[JobSpec],
        now: float,
        connection: Any,
        max_pending: int | None,
        after: Sequence[Dependency] | None = None,
    ) -> list[Enqueued]:
        """``store.enqueue`` (``store.enqueue_after`` with ``after``) in a PRODUCER
        span whose context is stored with each job."""

        async def send(specs: Sequence[JobSpec]) -> list[Enqueued]:
            if after is None:
                return await store.enqueue(specs, now, connection=connection, max_pending=max_pending)
            return await store.enqueue_after(
                specs, after, now, connection=connection, max_pending=max_pending
            )

        tracer = self._tracer
        if tracer is None:
            results = await send(specs)
        else:
            first = specs[0]
            attributes: dict[str, str | int] = {
                SYSTEM: "jobrunner",
                OPERATION_TYPE: "send",
                OPERATION_NAME: "send",
                DESTINATION: first.queue,
                JOB_NAME: first.name,
                JOB_PRIORITY: first.priority,
            }
            if len(specs) > 1:
                attributes[BATCH_COUNT] = len(specs)
            with tracer.start_as_current_span(
                f"send {first.queue}", kind=SpanKind.PRODUCER, attributes=attributes
            ) as span:
                carrier: dict[str, str] = {}
                propagate.inject(carrier)
                specs = [
                    spec._replace(headers={**spec.headers, **carrier} if spec.headers else carrier)
                    for spec in specs
                ]
                results = await send(specs)
                if len(results) == 1:
                    span.set_attribute(MESSAGE_ID, results[0].id)
        instruments = self._instruments
        if instruments is not None:
            created = sum(1 for result in results if result.created)
            if created:
                instruments.enqueued.add(created, self._attributes(specs[0].name, specs[0].queue))
        if self._debug:
            for spec, (job_id, created_now) in zip(specs, results, strict=True):
                job_log.debug(
                    "job enqueued",
                    job_id=job_id,
                    job_name=spec.name,
                    queue=spec.queue,
                    priority=spec.priority,
                    run_at=spec.run_at,
                    created=created_now,
                    **({"workspace_id": spec.workspace_id} if spec.workspace_id is not None else {}),
                )
        return results

    # consuming -------------------------------------------------------------------
    def template(self, claimed: ClaimedJob) -> LogTemplate:
        """The context with this attempt's shared log fields bound, made once per combination.

        Every field but the job id is shared by many attempts: they are set once
        here, and each attempt copies the result (O(1)). The executor tries
        ``templates[name]`` first and calls this when it does not match.
        """
        spec = claimed.spec
        key = (spec.name, spec.queue, spec.workspace_id, claimed.trigger, claimed.attempt)
        entry = self._templates.get(key)
        if entry is None:
            if len(self._templates) >= _TEMPLATES_MAX:
                self._templates.clear()
            ctx = self._base.copy()
            ctx.run(_bind_static, *key)
            entry = self._templates[key] = LogTemplate(*key[1:], ctx)
        self._recent[spec.name] = entry
        return entry

    def started(self, claimed: ClaimedJob, job: JobContext) -> None:
        """The attempt starts (called in its context): its span, its counters, its log line."""
        spec = claimed.spec
        tracer = self._tracer
        if tracer is not None:
            # The enqueuer's context, or none: never whatever span was current
            # when the runner started.
            parent = propagate.extract(spec.headers) if spec.headers else otel_context.Context()
            creation = trace.get_current_span(parent).get_span_context()
            attributes: dict[str, str | int] = {
                SYSTEM: "jobrunner",
                OPERATION_TYPE: "process",
                OPERATION_NAME: "process",
                DESTINATION: spec.queue,
                MESSAGE_ID: spec.id,
                CLIENT_ID: self._worker_id,
                JOB_NAME: spec.name,
                JOB_ATTEMPT: claimed.attempt,
                JOB_PRIORITY: spec.priority,
                JOB_TRIGGER: claimed.trigger,
            }
            if spec.workspace_id is not None:
                attributes[JOB_WORKSPACE] = spec.workspace_id
            span = tracer.start_span(
                f"process {spec.queue}",
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes=attributes,
                links=[trace.Link(creation)] if creation.is_valid else None,
            )
            # Never detached: the attempt's context is dropped with the attempt.
            otel_context.attach(trace.set_span_in_context(span, parent))
            _span.set(span)
        wait = max(0.0, self._clock.now() - claimed.ready_at)
        instruments = self._instruments
        if instruments is not None:
            attrs = self._attributes(spec.name, spec.queue)
            instruments.started.add(1, attrs)
            instruments.wait.record(wait, attrs)
        if self._info:
            job_log.info("job started", **_fields(job), waited=round(wait, 6))

    def _finish(self, job: JobContext, outcome: str, exc: BaseException | None = None) -> float:
        """End the span and record the duration; returns the duration."""
        duration = self._clock.monotonic() - job._started_mono
        span = _span.get()
        if span is not None:
            _span.set(None)
            span.set_attribute(JOB_OUTCOME, outcome)
            if exc is not None:
                span.set_attribute(ERROR_TYPE, type(exc).__qualname__)
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, _error_text(exc)))
            span.end()
        instruments = self._instruments
        if instruments is not None:
            spec = job._claimed.spec
            attrs = {**self._attributes(spec.name, spec.queue), JOB_OUTCOME: outcome}
            instruments.duration.record(duration, attrs)
        return duration

    def succeeded(self, job: JobContext) -> None:
        """The attempt returned (called in the attempt's context)."""
        duration = self._finish(job, "succeeded")
        instruments = self._instruments
        if instruments is not None:
            spec = job._claimed.spec
            instruments.succeeded.add(1, self._attributes(spec.name, spec.queue))
        if self._info:
            job_log.info("job succeeded", **_fields(job), duration=round(duration, 6))

    def failed(self, job: JobContext, exc: BaseException, decision: Decision) -> None:
        """The attempt raised or timed out (called in its context, with or without telemetry)."""
        retry = decision.kind is OutcomeKind.RETRY
        duration = self._finish(job, "retry" if retry else "dead", exc)
        fields = _fields(job)
        spec = job._claimed.spec
        if retry:
            # One line per retried attempt; the traceback goes with the final failure.
            # A job's own ``raise Retry(...)`` is flow control, not a fault.
            log = job_log.info if isinstance(exc, Retry) else job_log.warning
            log(
                "job timed out; retry scheduled"
                if isinstance(exc, JobTimeout)
                else "job attempt failed; retry scheduled",
                **fields,
                error=_error_text(exc),
                delay=round(decision.delay, 6),
                next_attempt=job.attempt + 1,
                duration=round(duration, 6),
                **({"reason": decision.reason} if decision.reason else {}),
            )
        else:
            # Abort is the job's own decision and a timeout has no useful
            # traceback (it points at whatever the job was awaiting).
            with_traceback = not isinstance(exc, Abort | Retry | JobTimeout)
            job_log.error(
                "job dead",
                **fields,
                error=_error_text(exc),
                reason=decision.reason,
                duration=round(duration, 6),
                **({"timeout": spec.timeout} if isinstance(exc, JobTimeout) else {}),
                **({"exc_info": exc} if with_traceback else {}),
            )
        instruments = self._instruments
        if instruments is not None:
            attrs = self._attributes(spec.name, spec.queue)
            instruments.failed.add(1, {**attrs, ERROR_TYPE: type(exc).__qualname__})
            (instruments.retried if retry else instruments.dead).add(1, attrs)

    def cancelled(self, job: JobContext) -> None:
        """The running attempt was cancelled on request (called in its context)."""
        duration = self._finish(job, "cancelled")
        instruments = self._instruments
        if instruments is not None:
            spec = job._claimed.spec
            instruments.cancelled.add(1, self._attributes(spec.name, spec.queue))
        job_log.info("job cancelled", **_fields(job), duration=round(duration, 6))

    def released(self, job: JobContext) -> None:
        """Shutdown interrupted the attempt; the job goes back uncounted (called in its context)."""
        duration = self._finish(job, "released")
        job_log.info("job released", **_fields(job), duration=round(duration, 6))

    def left_running(self, job: JobContext) -> None:
        """Shutdown cancelled a sync attempt whose thread still runs: the job keeps its lease."""
        duration = self._finish(job, "left_running")
        job_log.warning(
            "job left running at shutdown",
            **_fields(job),
            duration=round(duration, 6),
            hint="its thread cannot be stopped; the job is not released to other workers while it may "
            "still run here, and is retried once its lease expires",
        )

    def lease_lost(self, job: JobContext) -> None:
        """Another worker owns the job now; this attempt's outcome is not recorded."""
        self._finish(job, "lease_lost")

    def abandoned(self, job: JobContext, why: str) -> None:
        """The attempt ignored cancellation and the runner stopped waiting for it."""
        job_log.error("job abandoned", **_fields(job), why=why, hint="it did not stop after being cancelled")

    def undeliverable(self, claimed: ClaimedJob, error: ErrorInfo) -> None:
        """A claimed job this runner cannot run (no handler, undecodable payload) goes dead."""
        spec = claimed.spec
        job_log.error(
            "job dead",
            job_id=spec.id,
            job_name=spec.name,
            attempt=claimed.attempt,
            queue=spec.queue,
            trigger=claimed.trigger,
            error=f"{error.type}: {error.message}",
            reason="this runner cannot run it",
        )
        instruments = self._instruments
        if instruments is not None:
            instruments.dead.add(1, self._attributes(spec.name, spec.queue))

    def expired(self, jobs: Sequence[ExpiredJob]) -> None:
        """A claim discarded waiting jobs past their deadline (expires=/ttl=): recorded
        CANCELLED in the store; logged at WARNING, since work the app asked for never ran."""
        instruments = self._instruments
        for job in jobs:
            job_log.warning(
                "job expired before it started",
                job_id=job.id,
                job_name=job.name,
                queue=job.queue,
                expires_at=job.expires_at,
                hint="it is recorded as cancelled with the error JobExpired; give it a later deadline, "
                "or more capacity to its queue",
            )
            if instruments is not None:
                instruments.expired.add(1, self._attributes(job.name, job.queue))

    # gauges ----------------------------------------------------------------------
    def duties(self, store: Store) -> list[_DepthDuty]:
        """Maintenance-leader duties: keeping the queue-depth gauge's numbers fresh."""
        return [_DepthDuty(self, store)] if self.enabled else []


class _DepthDuty:
    """Refresh queue depth from the store, on the leader only, while metrics are on."""

    name = "queue-depth"

    def __init__(self, telemetry: Telemetry, store: Store) -> None:
        self._telemetry = telemetry
        self._store = store

    async def run(self, now: float) -> float:
        """Read waiting counts by queue and status; come back in a few seconds."""
        telemetry = self._telemetry
        if telemetry._instruments is not None:
            stats = await self._store.stats(now)
            # Every waiting status of every queue, zeros included, whatever the
            # store leaves out: a drained queue reads 0 rather than vanishing.
            telemetry._depth = {
                (queue, status.value): by_status.get(status, 0)
                for queue, by_status in stats.queues.items()
                for status in _WAITING
            }
        return defaults.QUEUE_DEPTH_INTERVAL


class JobContextFilter(logging.Filter):
    """Adds the running job's fields to stdlib log records made inside a job.

    ``handler.addFilter(JobContextFilter())``: every record the handler sees
    gets ``job_id``, ``job_name``, ``attempt``, ``queue``, ``trigger`` and
    ``workspace_id`` attributes (None outside a job), for a format such as
    ``"%(levelname)s %(job_name)s %(job_id)s %(message)s"``. The stdlib
    counterpart of structlog's ``merge_contextvars``, and free until a record
    is made.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Attach the fields; never drops a record."""
        job = _current_job.get(None)
        if job is None:
            for name in JOB_FIELDS:
                if not hasattr(record, name):
                    setattr(record, name, None)
            return True
        record.job_id = job.id
        record.job_name = job.name
        record.attempt = job.attempt
        record.queue = job.queue
        record.trigger = job._claimed.trigger
        record.workspace_id = job.workspace_id
        return True
