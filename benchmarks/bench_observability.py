"""What observability costs: the memory-store benchmark with instrumentation on and off.

Contenders (N no-op async jobs enqueued, then run; concurrency 100):

* ``instrument=False``: the baseline, no per-job telemetry at all (run twice:
  the second shows how far two identical runners differ on this machine);
* ``instrument=True`` with no OpenTelemetry SDK and a structlog setup without
  ``merge_contextvars``: nothing to bind, nothing to trace;
* ``instrument=True`` with no OpenTelemetry SDK and structlog's default
  processors, which include ``merge_contextvars``: every job's log context is
  bound (the issue's case, and most apps');
* the same with an OpenTelemetry SDK (a tracer and a meter provider, spans
  dropped by a no-op processor), in every fifth round only (it is slow).

Logs are filtered at WARNING, as in production. Each round runs every
contender back to back, in an order that rotates; the table shows the median
throughput, the best CPU time per job, and the paired figure: the median over
rounds of a contender's CPU time against the baseline's in the same round,
with a 90% bootstrap interval. The issue's bar: instrumented, no SDK, within 5%
of off.

Usage: python benchmarks/bench_observability.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import quiet_logs, table
from jobrunner import MemoryStore, Runner
from jobrunner.observability import Instrumentation

CONCURRENCY = 100


def _sdk() -> Instrumentation:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    # No span processor: spans are built and ended, then dropped.
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)
    # The enqueue loop never suspends (the memory store does not wait, and
    # there is no max_pending): with an SDK on, 20,000 enqueues hold the loop
    # for over a second, and the runner would rightly warn about it every run.
    return Instrumentation(
        tracer_provider=tracer_provider, meter_provider=meter_provider, loop_block_threshold=None
    )


async def run_jobs(n: int, contender: Contender, batched: bool) -> tuple[float, float]:
    """Jobs per second (wall clock) and CPU microseconds per job."""
    quiet_logs(merge_contextvars=contender.merge)
    runner = Runner(
        store=MemoryStore(max_finished=200_000),
        concurrency=CONCURRENCY,
        max_pending=None,
        instrument=contender.instrument,
    )

    @runner.job
    async def noop() -> None:
        pass

    async with runner:
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        if batched:
            await noop.enqueue_many([()] * n)
        else:
            for _ in range(n):
                await noop.enqueue()
        await runner.run_until_idle()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return n / wall, cpu / n * 1e6


@dataclass(frozen=True)
class Contender:
    label: str
    instrument: bool | Instrumentation
    merge: bool = True
    every: int = 1
    """Run in every ``every``-th round only."""


def paired_interval(ratios: list[float], seed: int = 1) -> tuple[float, float, float]:
    """Median of per-round ratios, with a 90% percentile-bootstrap interval."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
    return statistics.median(ratios), medians[100], medians[1899]


async def main(quick: bool) -> None:
    n = 20_000
    rounds = 10 if quick else 40
    contenders = [
        Contender("instrument=False (baseline)", False),
        Contender("instrument=False again (the noise)", False),
        Contender("instrument=True, nothing to bind", True, merge=False),
        Contender("instrument=True, no OpenTelemetry SDK", True),
        Contender("instrument=True, OpenTelemetry SDK on", _sdk(), every=5),
    ]
    baseline = contenders[0]
    print(f"memory store, N={n:,} no-op jobs per run, concurrency {CONCURRENCY}, {rounds} rounds")
    for batched in (False, True):
        samples: dict[str, dict[int, tuple[float, float]]] = {c.label: {} for c in contenders}
        await run_jobs(n // 10, baseline, batched)  # warm-up
        for r in range(rounds):
            order = [c for c in contenders if r % c.every == 0]
            shift = r % len(order)  # no contender always runs first
            for contender in order[shift:] + order[:shift]:
                samples[contender.label][r] = await run_jobs(n, contender, batched)
        base = samples[baseline.label]
        base_rate = statistics.median(rate for rate, _ in base.values())
        base_cpu = min(cpu for _, cpu in base.values())
        rows = []
        for contender in contenders:
            runs = samples[contender.label]
            rate = statistics.median(r for r, _ in runs.values())
            cpu = min(c for _, c in runs.values())
            median, low, high = paired_interval([c / base[r][1] for r, (_, c) in runs.items()])
            rows.append(
                [
                    contender.label,
                    f"{rate:,.0f}",
                    f"{(base_rate / rate - 1) * 100:+.1f}%",
                    f"{cpu:.2f}",
                    f"{(cpu / base_cpu - 1) * 100:+.1f}%",
                    f"{(median - 1) * 100:+.1f}% [{(low - 1) * 100:+.1f}, {(high - 1) * 100:+.1f}]",
                ]
            )
        print("\n" + ("enqueue_many(), then run" if batched else "enqueue() each, then run"))
        header = [
            "contender",
            "jobs/s (median)",
            "vs off",
            "CPU us/job (best)",
            "vs off",
            "CPU vs off, paired [90%]",
        ]
        print(table(rows, header))
    print(
        "\nCPU time per job is steadier than wall time on a shared machine. 'Paired': the"
        "\nmedian over rounds of each round's CPU time against the baseline's in that round."
        "\nThe issue's bar: instrument=True with no SDK within 5% of instrument=False."
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for smoke runs")
    asyncio.run(main(parser.parse_args().quick))
