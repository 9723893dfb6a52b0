"""Shared helpers for the benchmark scripts: fresh-process measurements, the
optional extras a user may turn on, timing, percentiles, memory and tables.

Every figure is measured in a fresh interpreter (``measure``), for three reasons:

* a user's process configures logging and OpenTelemetry once, globally, so a
  row with structlog or an SDK turned on cannot share a process with the rows
  that measure the defaults (structlog caches loggers, OpenTelemetry refuses to
  replace a global provider);
* each row gets its own peak RSS (``ru_maxrss`` of the process that ran it);
* no row inherits another's heap, threads or warmed-up caches.

The child writes its figures to a file rather than to stdout: stdout belongs to
whatever jobrunner prints there by default, which the default rows must leave
alone (it is part of what a user gets).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import resource
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

CHILD = "--child"
"""The first argument of a script started by ``measure`` to take one measurement."""


# --- the optional extras a user may turn on ------------------------------------------
def structlog_info_json() -> None:
    """structlog's production recipe at INFO (so per-job lines are made), rendered to /dev/null.

    The rendering is done; only the write is free. Contextvars are merged, so
    jobrunner binds each job's fields.
    """
    sink = open(os.devnull, "w")  # noqa: SIM115 - open for the life of the process
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.WriteLoggerFactory(file=sink),
        cache_logger_on_first_use=True,
    )


def otel_sdk() -> None:
    """An OpenTelemetry SDK installed globally, as an app does; spans and metrics go nowhere.

    ``Runner()`` picks up the global providers by itself. Spans are batched by
    the SDK's ``BatchSpanProcessor`` (its export thread runs, as in production)
    into an exporter that drops them; metrics are aggregated and kept in memory.
    """
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Discard()))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))


def quiet_logs(*, merge_contextvars: bool = True) -> None:
    """structlog's default processors, filtered at WARNING: per-job lines are skipped.

    For ``bench_observability.py`` only, whose labelled rows isolate the cost of
    binding each job's log fields from the cost of printing them.
    ``merge_contextvars=False`` leaves that processor out (nothing to bind).
    """
    structlog.reset_defaults()
    processors = structlog.get_config()["processors"]
    if not merge_contextvars:
        processors = [p for p in processors if p is not structlog.contextvars.merge_contextvars]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        cache_logger_on_first_use=True,
    )


EXTRAS: dict[str, Callable[[], None]] = {
    "structlog": structlog_info_json,
    "otel": otel_sdk,
    "quiet": quiet_logs,
    "quiet-nomerge": lambda: quiet_logs(merge_contextvars=False),
}
"""What ``measure(extra=...)`` turns on in the child before the measurement."""

STRUCTLOG_LABEL = "+ structlog configured (INFO, merge_contextvars, JSON to /dev/null)"
OTEL_LABEL = "+ OpenTelemetry SDK (global tracer + meter provider, no-op exporters)"


# --- one measurement in a fresh interpreter ------------------------------------------
def measure(script: str, fn: str, *, extra: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run ``await fn(**kwargs)`` of ``script`` in a fresh interpreter and return its figures.

    ``extra`` (a key of ``EXTRAS``) is turned on first; otherwise the child
    configures nothing. Its stdout and stderr are this process's. The figures
    are what ``fn`` returned, plus ``peak_rss`` (bytes).
    """
    fd, out = tempfile.mkstemp(prefix="jobrunner-bench-", suffix=".json")
    os.close(fd)
    try:
        order = {"fn": fn, "kwargs": kwargs, "extra": extra, "out": out}
        sys.stdout.flush()  # keep our own lines in order with the child's
        subprocess.run([sys.executable, script, CHILD, json.dumps(order)], check=True)
        with open(out) as f:
            figures: dict[str, Any] = json.load(f)
        return figures
    finally:
        os.unlink(out)


def serve_child(namespace: Mapping[str, Any]) -> bool:
    """If this process was started by ``measure``, take that measurement and return True."""
    if len(sys.argv) != 3 or sys.argv[1] != CHILD:
        return False
    order = json.loads(sys.argv[2])
    if order["extra"]:
        EXTRAS[order["extra"]]()
    figures = asyncio.run(namespace[order["fn"]](**order["kwargs"]))
    figures["peak_rss"] = peak_rss_bytes()
    with open(order["out"], "w") as f:
        json.dump(figures, f)
    return True


def stdout_is() -> str:
    """Where this process's stdout goes, for the header of each report."""
    if os.isatty(1):
        return "a terminal"
    mode = os.fstat(1).st_mode
    if stat.S_ISCHR(mode) and os.path.samestat(os.fstat(1), os.stat(os.devnull)):
        return "/dev/null"
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    return "a stream"


def defaults_note() -> str:
    """The one sentence every report prints about logging in the default rows."""
    return (
        "Logging is left as a user gets it (this script configures none for the default rows):\n"
        f"whatever jobrunner prints by default goes to stdout, here {stdout_is()}, and is part of the cost."
    )


# --- figures -------------------------------------------------------------------------
def rss_bytes() -> int:
    """Resident set size of this process now, from /proc (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """The most this process has held resident so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class Timer:
    """``with Timer() as t: ...``: wall seconds in ``t.seconds``, CPU seconds (all threads) in ``t.cpu``."""

    def __enter__(self) -> Timer:
        gc.collect()
        self.stopped = False
        self.start = time.perf_counter()
        self.start_cpu = time.process_time()
        return self

    def stop(self) -> None:
        """Stop the clock before the block ends (what follows, say a shutdown, is not timed)."""
        if not self.stopped:
            self.seconds = time.perf_counter() - self.start
            self.cpu = time.process_time() - self.start_cpu
            self.stopped = True

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def figures(self, jobs: int) -> dict[str, Any]:
        """What a throughput measurement reports back to the parent."""
        return {"jobs": jobs, "seconds": self.seconds, "cpu": self.cpu}


@dataclass
class Samples:
    """The figures of one contender over several rounds."""

    runs: list[dict[str, Any]]

    @property
    def rate(self) -> float:
        """Median jobs per second."""
        return float(statistics.median(r["jobs"] / r["seconds"] for r in self.runs))

    @property
    def cpu_us(self) -> float:
        """Median CPU microseconds per job."""
        return float(statistics.median(r["cpu"] / r["jobs"] * 1e6 for r in self.runs))

    @property
    def peak_mb(self) -> float:
        """Largest peak RSS of its processes, in MiB."""
        return float(max(r["peak_rss"] for r in self.runs)) / 2**20

    def median(self, key: str) -> float:
        """Median of one of the figures the runs reported."""
        return float(statistics.median(r[key] for r in self.runs))


@dataclass(frozen=True)
class Contender:
    """One row: ``await fn(**kwargs)`` of the script, with ``extra`` turned on first."""

    label: str
    """What the row shows; it states the configuration."""
    fn: str
    extra: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def run_rounds(script: str, contenders: Sequence[Contender], rounds: int, **common: Any) -> list[Samples]:
    """Every contender once a round, each in a fresh process, in an order that rotates
    (so none always goes first on a machine whose load drifts); their samples, in order."""
    samples = [Samples([]) for _ in contenders]
    order = list(range(len(contenders)))
    for r in range(rounds):
        shift = r % len(order)
        for i in order[shift:] + order[:shift]:
            c = contenders[i]
            samples[i].runs.append(measure(script, c.fn, extra=c.extra, **common, **c.kwargs))
    return samples


def verdict(ratio: float, target: float) -> str:
    """``0.421 (target >= 0.30: met)``; three digits, so a miss never prints as the target."""
    return f"{ratio:.3f} (target >= {target:.2f}: {'met' if ratio >= target else 'NOT met'})"


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    """A plain aligned text table."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
