"""What observability costs: the memory-store benchmark with instrumentation on and off.

Contenders (N no-op async jobs enqueued into a started runner, then run;
everything else at its default: concurrency 100, max_pending 10,000, the
default ``MemoryStore()``):

* ``Runner(instrument=False)``: the baseline, no per-job telemetry at all (run
  twice: the second shows how far two identical runners differ here);
* ``Runner()``: instrumentation on, logging as a user gets it (this script
  configures none for this row), no OpenTelemetry SDK;
* ``Runner()`` with structlog's default processors filtered at WARNING
  (``quiet_logs``), with and without ``merge_contextvars``: per-job lines are
  skipped, so these isolate the cost of binding each job's log fields (the
  issue's bar: within 5% of off) from the cost of printing them;
* extras a user may turn on: structlog configured at INFO rendering JSON into
  /dev/null; an OpenTelemetry SDK (global tracer and meter providers, spans
  batched into an exporter that drops them), in every fifth round only (slow).

Every run happens in its own fresh interpreter (``_common.measure``): logging
and OpenTelemetry are configured once per process, globally. Each round runs
every contender back to back, in an order that rotates; the table shows the
median throughput, the best CPU time per job, and the paired figure: the
median over rounds of a contender's CPU time against the baseline's in the
same round, with a 90% bootstrap interval.

Usage: python benchmarks/bench_observability.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import OTEL_LABEL, STRUCTLOG_LABEL, defaults_note, measure, serve_child, table
from benchmarks._workloads import jobrunner_run


async def run_jobs(n: int, instrument: bool, batched: bool) -> dict[str, Any]:
    """``Runner(instrument=...)``: the enqueue-then-run workload."""
    return await jobrunner_run(n, {"instrument": instrument}, batched)


@dataclass(frozen=True)
class Contender:
    label: str
    instrument: bool
    extra: str | None = None
    every: int = 1
    """Run in every ``every``-th round only."""


CONTENDERS = [
    Contender("Runner(instrument=False) (baseline)", False),
    Contender("Runner(instrument=False) again (the noise)", False),
    Contender("Runner(), all defaults", True),
    Contender("Runner() + structlog defaults at WARNING, no merge_contextvars", True, "quiet-nomerge"),
    Contender("Runner() + structlog defaults at WARNING (merge_contextvars)", True, "quiet"),
    Contender(f"Runner() {STRUCTLOG_LABEL}", True, "structlog"),
    Contender(f"Runner() {OTEL_LABEL}", True, "otel", every=5),
]


def paired_interval(ratios: list[float], seed: int = 1) -> tuple[float, float, float]:
    """Median of per-round ratios, with a 90% percentile-bootstrap interval."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
    return statistics.median(ratios), medians[100], medians[1899]


def main(quick: bool) -> None:
    n = 2_000 if quick else 20_000
    rounds = 2 if quick else 20
    print(f"memory store, N={n:,} no-op jobs per run, {rounds} rounds, each run in a fresh process")
    print(defaults_note(), flush=True)
    baseline = CONTENDERS[0]
    for batched in (False, True):
        # samples[label][round] = (jobs/s, CPU us/job)
        samples: dict[str, dict[int, tuple[float, float]]] = {c.label: {} for c in CONTENDERS}
        for r in range(rounds):
            order = [c for c in CONTENDERS if r % c.every == 0]
            shift = r % len(order)  # no contender always runs first
            for c in order[shift:] + order[:shift]:
                got = measure(
                    __file__, "run_jobs", extra=c.extra, n=n, instrument=c.instrument, batched=batched
                )
                samples[c.label][r] = (got["jobs"] / got["seconds"], got["cpu"] / got["jobs"] * 1e6)
        base = samples[baseline.label]
        base_rate = statistics.median(rate for rate, _ in base.values())
        base_cpu = min(cpu for _, cpu in base.values())
        rows = []
        for contender in CONTENDERS:
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
            "time vs off",
            "CPU us/job (best)",
            "vs off",
            "CPU vs off, paired [90%]",
        ]
        print(table(rows, header), flush=True)
    print(
        "\nCPU time per job is steadier than wall time on a shared machine. 'Paired': the"
        "\nmedian over rounds of each round's CPU time against the baseline's in that round."
        "\nThe issue's bar: Runner() with structlog at WARNING (merge_contextvars) within 5% of off."
    )


if __name__ == "__main__" and not serve_child(globals()):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small N and 2 rounds, for smoke runs")
    main(parser.parse_args().quick)
