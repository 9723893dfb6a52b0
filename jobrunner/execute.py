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

from jobrunner._incontext import Abandoned, InContext
from jobrunner._threads import ThreadPool
from jobrunner.clock import Clock
from jobrunner.context import CancelReason, JobContext, _current
from jobrunner.errors import JobTimeout
from jobrunner.hooks import JobHooks, Middleware
from jobrunner.logs import get_logger
from jobrunner.models import ClaimedJob, ErrorInfo, Outcome, OutcomeKind
from jobrunner.observability import Telemetry, bind_job_id
from jobrunner.payload import check_result
from jobrunner.registry import JobDefinition, Registry
from jobrunner.resources import JobScope, ProcessScope, ResourceRegistry
from jobrunner.retry import Decision, decide

__all__ = ["Executor", "Started"]

_log = get_logger("jobrunner.worker")

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
        threads: ThreadPool,
        max_payload: int | None,
        hooks: Sequence[JobHooks],
        middleware: Sequence[Middleware],
        base_context: Context,
        telemetry: Telemetry,
    ) -> None:
        self._definitions = registry.definitions
        self.batches = registry.batches
        """Batch handlers by name: their size (a live view; empty without ``batch=``)."""
        self._resources = resources
        self._process = process_scope
        self._clock = clock
        self._threads = threads
        self._max_payload = max_payload
        self.arm_deadline: Callable[[JobContext, float], None] = _arm_only
        """Set by the pool: give a job its deadline and wake the watcher (a sync
        handler's timeout starts when its thread does)."""
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
        quiet = not telemetry.observing and not self._hooks
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
        if not definition.is_async and job._deadline_mono is not None:
            # A sync handler's timeout starts when a thread takes it, not while
            # it waits for one (``_invoke`` arms it).
            job._deadline_mono = None
        if not quiet:
            if telemetry.observing:
                ctx.run(telemetry.started, claimed, job)
            if self._hooks:
                self._hook(ctx, "started", job)
        try:
            if definition.direct and not self._middleware:
                # The common case needs no wrapper coroutine around the handler.
                coro = definition.fn(*spec.args, **spec.kwargs)
            else:
                coro = self._attempt(definition, claimed, job)
            yielded = ctx.run(coro.send, None)
        except StopIteration as stop:
            result = stop.value
            if result is None and quiet:
                # The common case inlined: nothing to check or report but the deadline.
                deadline = job._deadline_mono
                if deadline is None or self._clock.monotonic() <= deadline:
                    return _new_tuple(
                        Outcome, (spec.id, claimed.token, _SUCCEEDED, self._clock.now(), None, None, None)
                    )
            return self._returned(definition, claimed, job, ctx, result)
        except BaseException as exc:  # anything a handler raises fails this attempt only
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
        except asyncio.CancelledError as exc:
            reason = job._cancel_reason
            task = job._task
            if not reason:
                if task is None or task.cancelling():
                    raise  # the worker itself is being cancelled: the runner is torn down
                # Nobody cancelled this task: the job raised CancelledError itself
                # (e.g. it awaited a future someone else cancelled). Its failure.
                return self._failed(definition, claimed, job, ctx, exc)
            if task is None or _uncancel(task, job) > 0:
                raise
            return self._interrupted(definition, claimed, job, ctx, reason, abandoned=False)
        except Abandoned:
            task = job._task
            if task is not None and _uncancel(task, job) > 0:
                raise asyncio.CancelledError() from None
            return self._interrupted(definition, claimed, job, ctx, job._cancel_reason, abandoned=True)
        except BaseException as exc:  # anything a handler raises fails this attempt only
            if job._cancel_reason and job._task is not None:
                # Cancelled, and the job turned the cancellation into another error.
                if _uncancel(job._task, job) > 0:
                    raise asyncio.CancelledError() from exc
                return self._interrupted(definition, claimed, job, ctx, job._cancel_reason, False)
            return self._failed(definition, claimed, job, ctx, exc)
        if job._cancels and job._task is not None:
            # The job swallowed the runner's cancellation and returned anyway.
            await _settle_cancel_count(job._task, job)
            reason = job._cancel_reason
            if reason == CancelReason.TIMEOUT:
                timeout = JobTimeout(
                    f"job {claimed.spec.name!r} attempt {claimed.attempt} timed out after "
                    f"{claimed.spec.timeout} s, ignored its cancellation and returned; its result is discarded"
                )
                return self._failed(definition, claimed, job, ctx, timeout)
            if reason == CancelReason.LEASE_LOST:
                ctx.run(self._telemetry.lease_lost, job)
                return None
        return self._returned(definition, claimed, job, ctx, result)

    def _returned(
        self, definition: JobDefinition, claimed: ClaimedJob, job: JobContext, ctx: Context, result: Any
    ) -> Outcome:
        """The handler returned: a success, unless it overran its deadline or its result cannot be kept."""
        deadline = job._deadline_mono
        if deadline is not None:
            overrun = self._clock.monotonic() - deadline
            if overrun > 0:
                # It blocked the event loop (or its thread ran) past the deadline, so
                # the watcher could not stop it in time: a timeout all the same.
                spec = claimed.spec
                timeout = JobTimeout(
                    f"job {spec.name!r} attempt {claimed.attempt} ran {overrun:.3f} s past its "
                    f"{spec.timeout} s timeout before returning (it blocked the event loop, so it "
                    f"could not be cancelled in time); its result is discarded"
                )
                return self._failed(definition, claimed, job, ctx, timeout)
        if result is not None:
            try:
                result = check_result(claimed.spec.name, result, self._max_payload)
            except TypeError as exc:
                return self._failed(definition, claimed, job, ctx, exc)
        return self._succeeded(claimed, job, ctx, result)

    def _succeeded(self, claimed: ClaimedJob, job: JobContext, ctx: Context, result: Any) -> Outcome:
        if self._telemetry.observing:
            ctx.run(self._telemetry.succeeded, job)
        if self._hooks:
            duration = self._clock.monotonic() - job._started_mono
            self._hook(ctx, "succeeded", job, result, duration)
        return _new_tuple(
            Outcome, (claimed.spec.id, claimed.token, _SUCCEEDED, self._clock.now(), result, None, None)
        )

    def _hook(self, ctx: Context, event: str, *args: Any) -> None:
        """Call every hook's ``event``; a hook that raises is logged, never fatal to the attempt."""
        for hook in self._hooks:
            try:
                ctx.run(getattr(hook, event), *args)
            except Exception:
                _log.exception("job hook failed", hook=type(hook).__qualname__, hook_event=event)

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
        job = _current.get()
        timeout = job._claimed.spec.timeout
        clock = self._clock
        loop = asyncio.get_running_loop()

        def on_start() -> None:  # in the worker thread, right before the handler
            job._in_thread = True
            if timeout is not None:
                # Set here, so the handler sees its deadline at once; the watcher
                # learns of it on the loop.
                job._deadline_mono = deadline = clock.monotonic() + timeout
                loop.call_soon_threadsafe(self.arm_deadline, job, deadline)

        # A thread cannot be stopped: on timeout or shutdown the attempt ends now
        # and the thread finishes on its own, keeping its place in the bound.
        ok, value = await self._threads.run(functools.partial(definition.fn, *args, **kwargs), on_start)
        job._in_thread = False
        if ok:
            return value
        raise value

    def _failed(
        self,
        definition: JobDefinition,
        claimed: ClaimedJob,
        job: JobContext,
        ctx: Context,
        exc: BaseException,
    ) -> Outcome:
        spec = claimed.spec
        try:
            decision = decide(claimed.attempt, spec.max_attempts, exc, definition.options.backoff)
        except Exception as policy_error:  # a user's backoff function must not lose the outcome
            decision = Decision(
                OutcomeKind.DEAD,
                reason=f"the retry policy raised {type(policy_error).__qualname__}: {policy_error}",
            )
        now = self._clock.now()
        ctx.run(self._telemetry.failed, job, exc, decision)
        if self._hooks:
            duration = self._clock.monotonic() - job._started_mono
            self._hook(ctx, "failed", job, exc, decision, duration)
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
            if self._hooks:
                self._hook(ctx, "abandoned", job, why)
        if reason == CancelReason.TIMEOUT:
            message = f"job {spec.name!r} attempt {claimed.attempt} timed out after {spec.timeout} s"
            if abandoned:
                message += " and ignored cancellation; it was abandoned"
            return self._failed(definition, claimed, job, ctx, JobTimeout(message))
        duration = self._clock.monotonic() - job._started_mono
        now = self._clock.now()
        if reason == CancelReason.USER:
            ctx.run(self._telemetry.cancelled, job)
            if self._hooks:
                self._hook(ctx, "cancelled", job, duration)
            error = ErrorInfo("JobCancelled", "cancelled while running")
            return Outcome(spec.id, claimed.token, OutcomeKind.CANCELLED, now, None, error)
        if reason == CancelReason.SHUTDOWN:
            if job._in_thread:
                # Its thread still runs the handler: releasing the job would let
                # another worker run it at the same time. It keeps its lease, and
                # is rescued (as a retry) once the lease expires after this stops.
                ctx.run(self._telemetry.left_running, job)
                return None
            ctx.run(self._telemetry.released, job)
            if self._hooks:
                self._hook(ctx, "released", job, duration)
            return Outcome(spec.id, claimed.token, OutcomeKind.RELEASED, now)
        ctx.run(self._telemetry.lease_lost, job)
        return None  # LEASE_LOST: another worker owns the job now

    # batch handlers ----------------------------------------------------------------
    async def run_batch(
        self, members: Sequence[ClaimedJob], jobs: Sequence[JobContext], on_block: Callable[[], None]
    ) -> list[Outcome | None]:
        """Run a batch handler once for ``members`` (claimed jobs of one batch job, each
        with its context in ``jobs``); one outcome per member, in order.

        The handler gets the members' items; ``current_job()`` is the first member.
        It returns None (every member succeeds) or one value per member (an
        exception instance fails that member); if it raises, every member fails
        with that error, each retried or dead-lettered by its own attempts. A
        member cancelled, timed out or whose lease is lost interrupts the
        invocation: that member ends as it would alone, the others go back to
        the queue uncounted (RELEASED).
        """
        first, job = members[0], jobs[0]
        definition = self._definitions.get(first.spec.name)
        if definition is None:
            return [self._undeliverable(claimed, None) for claimed in members]
        ctx = self._base.copy()
        ctx.run(_set_current, job)
        telemetry = self._telemetry
        for claimed, member in zip(members, jobs, strict=True):
            if telemetry.observing:
                ctx.run(telemetry.started, claimed, member)
            if self._hooks:
                self._hook(ctx, "started", member)
        items = [claimed.spec.args[0] if claimed.spec.args else None for claimed in members]
        task = job._task
        try:
            result = await InContext(
                self._batch_call(definition, items, job), ctx, _BatchWatch(jobs), on_block
            )
        except asyncio.CancelledError as exc:
            if not any(member._cancel_reason for member in jobs):
                if task is None or task.cancelling():
                    raise  # the worker itself is being cancelled: the runner is torn down
                return [self._failed(definition, c, m, ctx, exc) for c, m in zip(members, jobs, strict=True)]
            if task is None or _uncancel_all(task, jobs) > 0:
                raise
            return self._batch_interrupted(definition, members, jobs, ctx, abandoned=False)
        except Abandoned:
            if task is not None and _uncancel_all(task, jobs) > 0:
                raise asyncio.CancelledError() from None
            return self._batch_interrupted(definition, members, jobs, ctx, abandoned=True)
        except BaseException as exc:  # the handler's failure is every member's
            if task is not None and any(member._cancel_reason for member in jobs):
                if _uncancel_all(task, jobs) > 0:
                    raise asyncio.CancelledError() from exc
                return self._batch_interrupted(definition, members, jobs, ctx, abandoned=False)
            return [self._failed(definition, c, m, ctx, exc) for c, m in zip(members, jobs, strict=True)]
        if task is not None and any(member._cancels for member in jobs):
            # It swallowed the runner's cancellation and returned anyway.
            if _uncancel_all(task, jobs) > 0:
                raise asyncio.CancelledError()
            return self._batch_interrupted(definition, members, jobs, ctx, abandoned=False)
        return self._batch_returned(definition, members, jobs, ctx, result)

    async def _batch_call(self, definition: JobDefinition, items: list[Any], job: JobContext) -> Any:
        if not definition.injected:
            return await self._call(definition, (items,), {}, job)
        scope = JobScope(self._resources, self._process)
        try:
            injected = await scope.resolve(definition.injected)
            return await self._call(definition, (*injected, items), {}, job)
        finally:
            try:
                await scope.aclose()
            except Exception:
                _log.exception("job resource disposal failed", job_id=job.id, job_name=job.name)

    def _batch_returned(
        self,
        definition: JobDefinition,
        members: Sequence[ClaimedJob],
        jobs: Sequence[JobContext],
        ctx: Context,
        result: Any,
    ) -> list[Outcome | None]:
        pairs = list(zip(members, jobs, strict=True))
        if result is None:
            return [self._returned(definition, c, m, ctx, None) for c, m in pairs]
        if not isinstance(result, list | tuple) or len(result) != len(members):
            error = TypeError(
                f"batch handler {definition.name!r} returned {type(result).__name__}"
                f"{f' of {len(result)}' if isinstance(result, list | tuple) else ''} for {len(members)} "
                f"items; return None, or a list with one result (or exception) per item, in order"
            )
            return [self._failed(definition, c, m, ctx, error) for c, m in pairs]
        return [
            self._failed(definition, c, m, ctx, value)
            if isinstance(value, BaseException)
            else self._returned(definition, c, m, ctx, value)
            for (c, m), value in zip(pairs, result, strict=True)
        ]

    def _batch_interrupted(
        self,
        definition: JobDefinition,
        members: Sequence[ClaimedJob],
        jobs: Sequence[JobContext],
        ctx: Context,
        *,
        abandoned: bool,
    ) -> list[Outcome | None]:
        """The members the runner stopped end as they would alone; the rest go back."""
        now = self._clock.now()
        return [
            self._interrupted(definition, c, m, ctx, m._cancel_reason, abandoned)
            if m._cancel_reason
            else Outcome(c.spec.id, c.token, OutcomeKind.RELEASED, now)
            for c, m in zip(members, jobs, strict=True)
        ]

    def _undeliverable(self, claimed: ClaimedJob, definition: JobDefinition | None) -> Outcome:
        spec = claimed.spec
        if claimed.decode_error is not None:
            error = ErrorInfo("PayloadDecodeError", claimed.decode_error)
        else:
            error = ErrorInfo("UnknownJob", f"no handler named {spec.name!r} in this runner")
        self._telemetry.undeliverable(claimed, error)
        return Outcome(spec.id, claimed.token, OutcomeKind.DEAD, self._clock.now(), None, error)


class _BatchWatch:
    """What ``InContext`` watches for a batch: blocked is the first member's flag
    (the pool counts the batch's worker once), abandoned is any member's."""

    __slots__ = ("_jobs",)

    def __init__(self, jobs: Sequence[JobContext]) -> None:
        self._jobs = jobs

    @property
    def _abandoned(self) -> bool:
        return any(job._abandoned for job in self._jobs)

    @_abandoned.setter
    def _abandoned(self, value: bool) -> None:  # the protocol's; InContext only reads it
        for job in self._jobs:
            job._abandoned = value

    @property
    def _blocked(self) -> bool:
        return self._jobs[0]._blocked

    @_blocked.setter
    def _blocked(self, value: bool) -> None:
        self._jobs[0]._blocked = value


def _uncancel_all(task: asyncio.Task[Any], jobs: Sequence[JobContext]) -> int:
    """``_uncancel`` for the runner's cancellations of every member of a batch."""
    remaining = task.cancelling()
    for job in jobs:
        for _ in range(job._cancels):
            remaining = task.uncancel()
        job._cancels = 0
    return remaining


def _arm_only(job: JobContext, deadline: float) -> None:
    job._deadline_mono = deadline


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
