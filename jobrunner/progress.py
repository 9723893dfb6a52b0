"""Progress reports: ``current_job().progress(0.4, "resized 4 of 10")``, written to the store.

A handler may report progress in a tight loop, from the event loop or from a
worker thread (sync handlers). Each report only replaces the job's latest one
in a dict; one task per runner (``ProgressWriter.run``, owned by the runner's
task group) writes what is pending in one ``Store.set_progress`` batch, then
waits ``interval`` before the next write. So the store sees at most one write
per interval whatever the handlers do, and nothing at all when no handler
reports progress. Writes are fenced by the attempt's lease token, as settles
are: a stale attempt's progress never lands on a newer one.

An attempt's pending report is written just before its outcome is settled
(``flush_for``), so a job's last report is kept. Progress is advice, not an
outcome: a write the store refuses is logged and dropped (the next report is
written as usual).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from contextvars import ContextVar

from jobrunner import defaults
from jobrunner.clock import Clock
from jobrunner.logs import get_logger
from jobrunner.models import ClaimedJob, Outcome, Progress, ProgressReport, storable
from jobrunner.stores.base import Store

__all__ = ["MAX_MESSAGE", "ProgressWriter", "report_progress"]

MAX_MESSAGE = 1000
"""Longest progress message kept, in characters; longer ones are cut."""

_log = get_logger("jobrunner.progress")

_writer: ContextVar[ProgressWriter] = ContextVar("jobrunner_progress_writer")


class ProgressWriter:
    """Coalesces the progress reports of one runner's jobs and writes them in batches."""

    def __init__(self, store: Store, clock: Clock, interval: float = defaults.PROGRESS_INTERVAL) -> None:
        """Made on the event loop that runs the jobs (the runner's start)."""
        self._store = store
        self._clock = clock
        self._interval = interval
        self._pending: dict[str, ProgressReport] = {}
        self._lock = threading.Lock()  # reports come from worker threads too
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()

    def install(self) -> None:
        """Make this the writer of every job run in the current context (the runner's base)."""
        _writer.set(self)

    def report(self, claimed: ClaimedJob, fraction: float, message: str) -> None:
        """Keep ``fraction`` and ``message`` as the attempt's latest progress and wake the writer."""
        report = ProgressReport(
            claimed.spec.id, claimed.token, Progress(fraction, message, claimed.attempt, self._clock.now())
        )
        with self._lock:
            first = not self._pending
            self._pending[report.job_id] = report
        if first:
            if threading.get_ident() == self._loop_thread:
                self._wake.set()
            else:
                try:
                    self._loop.call_soon_threadsafe(self._wake.set)
                except RuntimeError:  # the runner stopped and its loop closed: nobody writes any more
                    pass

    async def flush_for(self, outcomes: Sequence[Outcome]) -> None:
        """Write the pending reports of attempts about to be settled, now.

        The settle ends the attempt, and a report written after it is fenced out:
        without this, the last report of a job (often its "100%") would be lost
        whenever the job ended within ``interval`` of it. Called with each settle
        batch; costs nothing unless reports are pending.
        """
        if not self._pending:
            return
        with self._lock:
            batch = [self._pending.pop(o.job_id) for o in outcomes if o.job_id in self._pending]
        if batch:
            await self._write(batch)

    async def _write(self, batch: list[ProgressReport]) -> None:
        try:
            await self._store.set_progress(batch)
        except Exception as exc:  # advice only: the next report is written as usual
            _log.warning("progress not recorded", jobs=len(batch), error=f"{type(exc).__name__}: {exc}")

    async def run(self) -> None:
        """Write pending reports, at most one batch per ``interval``, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            with self._lock:
                batch, self._pending = list(self._pending.values()), {}
            if batch:  # flush_for may have taken them all
                await self._write(batch)
            await self._clock.sleep(self._interval)


def report_progress(claimed: ClaimedJob, fraction: float, message: str) -> None:
    """Report progress of the attempt ``claimed`` to its runner's writer (no-op without one).

    Raises ValueError unless ``0 <= fraction <= 1`` and TypeError unless ``message`` is a str.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"progress({fraction!r}): pass a fraction from 0.0 to 1.0, e.g. done / total")
    if not isinstance(message, str):
        raise TypeError(f"progress(..., message={message!r}): the message must be a str")
    writer = _writer.get(None)
    if writer is not None:
        # Any text a handler writes, made storable (NUL, lone surrogates) and kept short.
        writer.report(claimed, float(fraction), storable(message[:MAX_MESSAGE]))
