"""What observability costs: the memory-store benchmark with instrumentation on and off.

Contenders (N no-op async jobs enqueued one by one, then run; concurrency 100):

* ``instrument=False``: the baseline, no per-job telemetry at all (run twice:
  the second shows how far two identical runners differ on this machine);
* ``instrument=True`` with no OpenTelemetry SDK (the default for an app that has
  not installed one): structlog's default processors include
  ``merge_contextvars``, so every job's log context is bound;
* the same with an OpenTelemetry SDK (a tracer and a meter provider, spans
  dropped by a no-op processor): what tracing and metrics cost when they are on.

Logs are filtered at WARNING, as in production. Runs alternate between the
contenders, so drifts in machine speed hit all of them alike; the table shows
the median throughput and the best CPU time per job (the figure least disturbed
by other processes). The issue's bar: instrumented, no SDK, within 5% of off.

Usage: python benchmarks/bench_observability.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any

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
    return Instrumentation(tracer_provider=tracer_provider, meter_provider=meter_provider)


async def run_jobs(n: int, instrument: Any, batched: bool) -> tuple[float, float]:
    """Jobs per second (wall clock) and CPU microseconds per job."""
    runner = Runner(
        store=MemoryStore(max_finished=200_000),
        concurrency=CONCURRENCY,
        max_pending=None,
        instrument=instrument,
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


async def main(quick: bool) -> None:
    quiet_logs()
    n = 20_000
    rounds = 7 if quick else 25
    contenders: dict[str, Any] = {
        "instrument=False (baseline)": False,
        "instrument=False again (the noise)": False,
        "instrument=True, no OpenTelemetry SDK": True,
        "instrument=True, OpenTelemetry SDK on": _sdk(),
    }
    print(f"memory store, N={n:,} no-op jobs per run, concurrency {CONCURRENCY}, {rounds} rounds")
    for batched in (False, True):
        samples: dict[str, list[tuple[float, float]]] = {label: [] for label in contenders}
        await run_jobs(n // 10, False, batched)  # warm-up
        order = list(contenders)
        for _ in range(rounds):
            for label in order:
                samples[label].append(await run_jobs(n, contenders[label], batched))
            order = order[1:] + order[:1]  # no contender always runs first
        base_rate = statistics.median(rate for rate, _ in samples["instrument=False (baseline)"])
        base_cpu = min(cpu for _, cpu in samples["instrument=False (baseline)"])
        rows = []
        for label, runs in samples.items():
            rate = statistics.median(r for r, _ in runs)
            cpu = min(c for _, c in runs)
            rows.append(
                [
                    label,
                    f"{rate:,.0f}",
                    f"{(base_rate / rate - 1) * 100:+.1f}%",
                    f"{cpu:.2f}",
                    f"{(cpu / base_cpu - 1) * 100:+.1f}%",
                ]
            )
        print("\n" + ("enqueue_many(), then run" if batched else "enqueue() each, then run"))
        print(table(rows, ["contender", "jobs/s (median)", "vs off", "CPU us/job (best)", "vs off"]))
    print(
        "\nThe best CPU time per job is the steadiest figure on a shared machine."
        "\nThe issue's bar: instrument=True with no SDK within 5% of instrument=False."
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller N, for CI smoke runs")
    asyncio.run(main(parser.parse_args().quick))
