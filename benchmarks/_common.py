"""Shared helpers for the benchmark scripts: timing, percentiles, memory, tables."""

from __future__ import annotations

import gc
import logging
import os
import statistics
import time
from collections.abc import Sequence

import structlog


def quiet_logs(*, merge_contextvars: bool = True) -> None:
    """Benchmarks measure the runner, not a console renderer: warnings only.

    structlog's default processors, which merge contextvars into every event;
    ``merge_contextvars=False`` leaves that processor out.
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


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class Timer:
    """``with Timer() as t: ...; t.seconds``."""

    def __enter__(self) -> Timer:
        gc.collect()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


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


def median_of(samples: Sequence[float]) -> float:
    """Median, for repeated runs."""
    return statistics.median(samples)
