"""Runs one claimed attempt: context, resources, middleware, the call, the outcome.

The pool owns scheduling (slots, deadlines, cancellation requests); this module
turns one ``ClaimedJob`` into one ``Outcome``. Everything the job's own code
runs (resources, middleware, the handler, hooks) runs inside the attempt's own
``contextvars.Context``.

``begin`` runs the attempt's first step synchronously. A job that finishes
without suspending (a great many do) costs no awaitable at all; one that
suspends comes back as a coroutine the worker awaits.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextvars import Context
from typing import Any, TypeAlias

import anyio
import anyio.to_thread
import structlog

from jobrunner._incontext import Abandoned, InContext
from jobrunner.clock import Clock
from jobrunner.context import CancelReason, JobContext, _current
from jobrunner.errors import JobTimeout
from jobrunner.hooks import JobHooks, Middleware
from jobrunner.models import ClaimedJob, ErrorInfo, Outcome, OutcomeKind
from jobrunner.observability import Telemetry, bind_job_id
from jobrunner.registry import JobDefinition, Registry
from jobrunner.resources import JobScope, ProcessScope, ResourceRegistry
from jobrunner.retry import decide

__all__ = ["Executor", "Started"]

_log = structlog.get_logger("jobrunner.worker")

_SUCCEEDED = OutcomeKind.SUCCEEDED
_new_tuple = tuple.__new__
_set_current = _current.set  # bound once: every attempt calls it

Started: TypeAlias = Outcome | Coroutine[Any, Any, Outcome | None] | None
"""What ``begin`` returns: the outcome (None: lease lost), or a coroutine to await for it."""


class Executor:
    """Turns claimed attempts into outcomes for one runner."""

    def __init__(
        self,
        *,
        registry: Registry,
        resources: ResourceRegistry,
        process_scope: ProcessScope,
        clock: Clock,
        thread_limiter: anyio.CapacityLimiter,
        hooks: Sequence[JobHooks],
        middleware: Sequence[Middleware],
        base_context: Context,
        telemetry: Telemetry,
    ) -> None:
        self._definitions = registry.definitions
        self._resources = resources
        self._process = process_scope
        self._clock = clock
        self._limiter = thread_limiter
        self._hooks = tuple(hooks)
        self._middleware = tuple(middleware)
        self._base = base_context
        self._telemetry = telemetry

    def begin(self, claimed: ClaimedJob, job: JobContext, on_block: Callable[[], None]) -> Started:
        """Start the attempt and run it up to its first suspension.

        Returns the outcome if it finished, else a coroutine that finishes it. A
        cancellation the runner did not ask for propagates out of that coroutine;
        the caller records the job as released.
        """
        spec = claimed.spec
        name = spec.name
        definition = self._definitions.get(name)
        if definition is None or claimed.decode_error is not None:
            return self._undeliverable(claimed, definition)
        telemetry = self._telemetry
        templates = telemetry.templates
        if templates is None:
            ctx = self._base.copy()
            ctx.run(_set_current, job)
        else:
            # The log fields: all but the job id come with a template context
            # made once per combination; this job name's last one usually fits,
            # and comparing four fields is cheaper than hashing a key per attempt.
            last = templates.get(name)
            if (
                last is None
                or last.queue != spec.queue
                or last.workspace_id != spec.workspace_id
                or last.trigger != claimed.trigger
                or last.attempt != claimed.attempt
            ):
                last = telemetry.template(claimed)
            ctx = last.context.copy()
            ctx.run(_set_current, job)
            ctx.run(bind_job_id, spec.id)
        if telemetry.observing:
            ctx.run(telemetry.started, claimed, job)
        hooks = self._hooks
        if hooks:
            for hook in hooks:
                ctx.run(hook.started, job)
        try:
            if definition.is_async and not definition.injected and not self._middleware:
                # The common case needs no wrapper coroutine around the handler.
                coro = definition.fn(*spec.args, **spec.kwargs)
            else:
                coro = self._attempt(definition, claimed, job)
            yielded = ctx.run(coro.send, None)
        except StopIteration as stop:
            return self._succeeded(claimed, job, ctx, stop.value)
        except BaseException as exc:  # SystemExit from a job must not kill the pool
            return self._failed(definition, claimed, job, ctx, exc)
        job._blocked = True
        on_block()
        return self._resume(InContext(coro, ctx, job, None, yielded), definition, claimed, job, ctx)

    async def _resume(
        self,
        rest: InContext[Any],
        definition: JobDefinition,
        claimed: ClaimedJob,
        job: JobContext,
        ctx: Context,
    ) -> Outcome | None:
        try:
            result = await rest
        except asyncio.CancelledError:
            reason = job._cancel_reason
            task = job._task
            if not reason or task is None or _uncancel(task, job) > 0:
                raise
            return self._interrupted(definition, claimed, job, ctx, reason, abandoned=False)
        except Abandoned:
            task = job._task
            if task is not None and _uncancel(task, job) > 0:
                raise asyncio.CancelledError() from None
            return self._interrupted(definition, claimed, job, ctx, job._cancel_reason, abandoned=True)
        except BaseException as exc:  # SystemExit from a job must not kill the pool
            if job._cancel_reason and job._task is not None:
                # Cancelled, and the job turned the cancellation into another error.
                if _uncancel(job._task, job) > 0:
                    raise asyncio.CancelledError() from exc
                return self._interrupted(definition, claimed, job, ctx, job._cancel_reason, False)
            return self._failed(definition, claimed, job, ctx, exc)
        if job._cancels and job._task is not None:
            # The job swallowed the runner's cancellation and returned anyway.
            await _settle_cancel_count(job._task, job)
        return self._succeeded(claimed, job, ctx, result)

    def _succeeded(self, claimed: ClaimedJob, job: JobContext, ctx: Context, result: Any) -> Outcome:
        if self._telemetry.observing:
            ctx.run(self._telemetry.succeeded, job)
        if self._hooks:
            duration = self._clock.monotonic() - job._started_mono
            for hook in self._hooks:
                ctx.run(hook.succeeded, job, result, duration)
        return _new_tuple(
            Outcome, (claimed.spec.id, claimed.token, _SUCCEEDED, self._clock.now(), result, None, None)
        )

    async def _attempt(self, definition: JobDefinition, claimed: ClaimedJob, job: JobContext) -> Any:
        spec = claimed.spec
        if not definition.injected:
            return await self._call(definition, spec.args, spec.kwargs, job)
        scope = JobScope(self._resources, self._process)
        try:
            # Resolved here, on the loop, also for a sync handler: its thread gets values.
            injected = await scope.resolve(definition.injected)
            return await self._call(definition, (*injected, *spec.args), spec.kwargs, job)
        finally:
            try:
                await scope.aclose()
            except Exception:
                _log.exception("job resource disposal failed", job_id=spec.id, job_name=spec.name)

    async def _call(
        self, definition: JobDefinition, args: tuple[Any, ...], kwargs: dict[str, Any], job: JobContext
    ) -> Any:
        if not self._middleware:
            return await self._invoke(definition, args, kwargs)
        call: Callable[[], Awaitable[Any]] = functools.partial(self._invoke, definition, args, kwargs)
        for middleware in reversed(self._middleware):
            call = functools.partial(middleware, job, call)
        return await call()

    async def _invoke(self, definition: JobDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if definition.is_async:
            return await definition.fn(*args, **kwargs)
        # abandon_on_cancel: a thread cannot be stopped; on timeout or shutdown the
        # attempt ends now and the thread is left to finish on its own.
        return await anyio.to_thread.run_sync(
            functools.partial(definition.fn, *args, **kwargs),
            abandon_on_cancel=True,
            limiter=self._limiter,
        )

    def _failed(
        self,
        definition: JobDefinition,
        claimed: ClaimedJob,
        job: JobContext,
        ctx: Context,
        exc: BaseException,
    ) -> Outcome:
        spec = claimed.spec
        decision = decide(claimed.attempt, spec.max_attempts, exc, definition.options.backoff)
        now = self._clock.now()
        ctx.run(self._telemetry.failed, job, exc, decision)
        if self._hooks:
            duration = self._clock.monotonic() - job._started_mono
            for hook in self._hooks:
                ctx.run(hook.failed, job, exc, decision, duration)
        error = ErrorInfo.from_exception(exc)
        if decision.kind is OutcomeKind.RETRY:
            return Outcome(spec.id, claimed.token, OutcomeKind.RETRY, now, None, error, now + decision.delay)
        return Outcome(spec.id, claimed.token, OutcomeKind.DEAD, now, None, error)

    def _interrupted(
        self,
        definition: JobDefinition,
        claimed: ClaimedJob,
        job: JobContext,
        ctx: Context,
        reason: int,
        abandoned: bool,
    ) -> Outcome | None:
        spec = claimed.spec
        if abandoned:
            why = _ABANDON_WHY.get(reason, "cancelled")
            ctx.run(self._telemetry.abandoned, job, why)
            for hook in self._hooks:
                ctx.run(hook.abandoned, job, why)
        if reason == CancelReason.TIMEOUT:
            message = f"job {spec.name!r} attempt {claimed.attempt} timed out after {spec.timeout} s"
            if abandoned:
                message += " and ignored cancellation; it was abandoned"
            return self._failed(definition, claimed, job, ctx, JobTimeout(message))
        duration = self._clock.monotonic() - job._started_mono
        now = self._clock.now()
        if reason == CancelReason.USER:
            ctx.run(self._telemetry.cancelled, job)
            for hook in self._hooks:
                ctx.run(hook.cancelled, job, duration)
            error = ErrorInfo("JobCancelled", "cancelled while running")
            return Outcome(spec.id, claimed.token, OutcomeKind.CANCELLED, now, None, error)
        if reason == CancelReason.SHUTDOWN:
            ctx.run(self._telemetry.released, job)
            for hook in self._hooks:
                ctx.run(hook.released, job, duration)
            return Outcome(spec.id, claimed.token, OutcomeKind.RELEASED, now)
        ctx.run(self._telemetry.lease_lost, job)
        return None  # LEASE_LOST: another worker owns the job now

    def _undeliverable(self, claimed: ClaimedJob, definition: JobDefinition | None) -> Outcome:
        spec = claimed.spec
        if claimed.decode_error is not None:
            error = ErrorInfo("PayloadDecodeError", claimed.decode_error)
        else:
            error = ErrorInfo("UnknownJob", f"no handler named {spec.name!r} in this runner")
        self._telemetry.undeliverable(claimed, error)
        return Outcome(spec.id, claimed.token, OutcomeKind.DEAD, self._clock.now(), None, error)


_ABANDON_WHY = {
    CancelReason.TIMEOUT: "timed out",
    CancelReason.USER: "cancelled on request",
    CancelReason.SHUTDOWN: "shutdown",
    CancelReason.LEASE_LOST: "lease lost",
}


def _uncancel(task: asyncio.Task[Any], job: JobContext) -> int:
    """Undo the runner's own ``task.cancel()`` calls; >0 means someone else cancelled too."""
    remaining = task.cancelling()
    for _ in range(job._cancels):
        remaining = task.uncancel()
    job._cancels = 0
    return remaining


async def _settle_cancel_count(task: asyncio.Task[Any], job: JobContext) -> None:
    """Take back a cancellation the job ignored, so it cannot hit the next job.

    A ``cancel()`` issued while the task itself was running is delivered at the
    task's next suspension, which would be outside this job; one yield here
    receives and drops it. Any cancellation from elsewhere still propagates.
    """
    if _uncancel(task, job) > 0:
        raise asyncio.CancelledError()
    try:
        await asyncio.sleep(0)
    except asyncio.CancelledError:
        if task.cancelling() > 0:
            raise
