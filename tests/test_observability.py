"""Observability: structlog context and lifecycle events, OpenTelemetry spans and
metrics, stats() and health().

OpenTelemetry's global providers can be set only once per process, so no test
sets them: each builds its own SDK providers and hands them to the runner with
``Instrumentation(tracer_provider=..., meter_provider=...)``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from structlog.contextvars import bind_contextvars, merge_contextvars
from structlog.testing import capture_logs

from jobrunner import JobStatus, Runner, current_job
from jobrunner.maintenance import RescueDuty
from jobrunner.models import ClaimRequest, LeaseTerms
from jobrunner.observability import JOB_FIELDS, Instrumentation, JobContextFilter
from jobrunner.stores.base import Store
from jobrunner.testing import FakeClock, drain
from tests.helpers import Gate, until, until_status


@dataclass
class Otel:
    """An SDK of the test's own: spans and metrics in memory."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader

    @property
    def instrument(self) -> Instrumentation:
        return Instrumentation(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)

    def finished(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans.get_finished_spans() if span.name == name]

    def points(self, metric: str) -> dict[tuple[Any, ...], Any]:
        """Data points of ``metric`` keyed by their attribute values (sorted by key)."""
        found: dict[tuple[Any, ...], Any] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name == metric:
                        for point in m.data.data_points:
                            attrs = dict(point.attributes or {})
                            key = tuple(attrs[k] for k in sorted(attrs))
                            # A sum or gauge has a value; a histogram, a count.
                            found[key] = point.value if hasattr(point, "value") else point.count
        return found


@pytest.fixture
def make_otel() -> Iterator[Callable[[], Otel]]:
    made: list[Otel] = []

    def make() -> Otel:
        spans = InMemorySpanExporter()
        tracer_provider = TracerProvider(shutdown_on_exit=False)
        tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
        reader = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
        made.append(Otel(tracer_provider, meter_provider, spans, reader))
        return made[-1]

    yield make
    for otel in made:
        otel.tracer_provider.shutdown()
        otel.meter_provider.shutdown()


@pytest.fixture
def otel(make_otel: Callable[[], Otel]) -> Otel:
    return make_otel()


def job_context(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry[k] for k in JOB_FIELDS if k in entry}


# --- tracing ---------------------------------------------------------------------------
async def test_a_job_continues_the_trace_of_the_request_that_enqueued_it(
    make_runner: Callable[..., Runner], otel: Otel
) -> None:
    runner = make_runner(instrument=otel.instrument)
    seen: list[trace.SpanContext] = []

    @runner.job
    async def resize(width: int) -> None:
        seen.append(trace.get_current_span().get_span_context())

    tracer = otel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("POST /images") as request:
        handle = await resize.options(priority=3).enqueue(400)
    await runner.run_until_idle()

    (send,) = otel.finished("send default")
    (process,) = otel.finished("process default")
    assert send.kind is SpanKind.PRODUCER
    assert process.kind is SpanKind.CONSUMER
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    assert process.parent is not None and process.parent.span_id == send.context.span_id
    assert process.context.trace_id == request.get_span_context().trace_id
    # The creation context is also a link, as the messaging conventions ask.
    assert [link.context.span_id for link in process.links] == [send.context.span_id]
    # The handler runs inside the process span: its own spans nest under it.
    assert seen == [process.context]
    assert dict(send.attributes or {}) == {
        "messaging.system": "jobrunner",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": "default",
        "messaging.message.id": handle.id,
        "jobrunner.job.name": "resize",
        "jobrunner.job.priority": 3,
    }
    assert dict(process.attributes or {}) == {
        "messaging.system": "jobrunner",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "default",
        "messaging.message.id": handle.id,
        "messaging.client.id": runner.worker_id,
        "jobrunner.job.name": "resize",
        "jobrunner.job.attempt": 1,
        "jobrunner.job.priority": 3,
        "jobrunner.job.trigger": "enqueue",
        "jobrunner.job.outcome": "succeeded",
    }
    assert process.status.status_code is StatusCode.UNSET


async def test_the_trace_context_travels_with_the_job_through_the_store(
    store: Store, clock: FakeClock, make_otel: Callable[[], Otel]
) -> None:
    # Two runners with nothing in common but the store: as two processes would be.
    api, worker = make_otel(), make_otel()
    producer = Runner(store=store, clock=clock, instrument=api.instrument)
    consumer = Runner(store=store, clock=clock, instrument=worker.instrument)
    remote = producer.declare("report")

    @consumer.job
    async def report() -> None:
        pass

    with api.tracer_provider.get_tracer("app").start_as_current_span("GET /report"):
        handle = await remote.enqueue()
    record = await producer.get_job(handle.id)
    assert record.headers is not None and "traceparent" in record.headers
    await consumer.run_until_idle()

    (send,) = api.finished("send default")
    (process,) = worker.finished("process default")
    assert worker.finished("send default") == [] and api.finished("process default") == []
    assert process.context.trace_id == send.context.trace_id
    assert process.parent is not None and process.parent.span_id == send.context.span_id
    assert process.parent.is_remote


async def test_a_batch_is_sent_in_one_span_and_each_job_is_its_child(
    make_runner: Callable[..., Runner], otel: Otel
) -> None:
    runner = make_runner(instrument=otel.instrument)

    @runner.job
    async def thumb(n: int) -> None:
        pass

    await thumb.enqueue_many([(1,), (2,), (3,)])
    await runner.run_until_idle()
    (send,) = otel.finished("send default")
    processes = otel.finished("process default")
    assert (send.attributes or {})["messaging.batch.message_count"] == 3
    assert "messaging.message.id" not in (send.attributes or {})
    assert len(processes) == 3
    assert {p.parent.span_id for p in processes if p.parent} == {send.context.span_id}


async def test_a_chain_is_sent_in_one_span_and_its_steps_continue_it(
    make_runner: Callable[..., Runner], otel: Otel
) -> None:
    runner = make_runner(instrument=otel.instrument)

    @runner.job
    async def step() -> None:
        pass

    await runner.chain(step.call(), step.call())
    await runner.run_until_idle()
    (send,) = otel.finished("send default")
    processes = otel.finished("process default")
    assert len(processes) == 2
    assert {p.parent.span_id for p in processes if p.parent} == {send.context.span_id}


async def test_failed_attempts_mark_their_spans_and_are_counted(
    make_runner: Callable[..., Runner], clock: FakeClock, otel: Otel
) -> None:
    runner = make_runner(instrument=otel.instrument, backoff=0)

    @runner.job(retries=1)
    async def flaky() -> None:
        raise ValueError("boom")

    @runner.job
    async def fine() -> int:
        return 1

    await flaky.enqueue()
    await fine.enqueue()
    await drain(runner, clock)

    failed = [
        s for s in otel.finished("process default") if (s.attributes or {})["jobrunner.job.name"] == "flaky"
    ]
    assert [(s.attributes or {})["jobrunner.job.attempt"] for s in failed] == [1, 2]
    assert [(s.attributes or {})["jobrunner.job.outcome"] for s in failed] == ["retry", "dead"]
    for span in failed:
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "ValueError: boom"
        assert (span.attributes or {})["error.type"] == "ValueError"
        assert [event.name for event in span.events] == ["exception"]

    # Keys: attribute values in the order of their names: error.type,
    # jobrunner.job.name, jobrunner.job.outcome, messaging.destination.name.
    assert otel.points("jobrunner.jobs.enqueued") == {("fine", "default"): 1, ("flaky", "default"): 1}
    assert otel.points("jobrunner.jobs.started") == {("fine", "default"): 1, ("flaky", "default"): 2}
    assert otel.points("jobrunner.jobs.succeeded") == {("fine", "default"): 1}
    assert otel.points("jobrunner.jobs.failed") == {("ValueError", "flaky", "default"): 2}
    assert otel.points("jobrunner.jobs.retried") == {("flaky", "default"): 1}
    assert otel.points("jobrunner.jobs.dead") == {("flaky", "default"): 1}
    assert otel.points("jobrunner.attempt.duration") == {
        ("fine", "succeeded", "default"): 1,
        ("flaky", "retry", "default"): 1,
        ("flaky", "dead", "default"): 1,
    }
    assert otel.points("jobrunner.queue.wait_time") == {("fine", "default"): 1, ("flaky", "default"): 2}


async def test_a_cancelled_attempt_is_counted(make_runner: Callable[..., Runner], otel: Otel) -> None:
    runner = make_runner(instrument=otel.instrument)
    gate = Gate()

    @runner.job
    async def waits() -> None:
        await gate.wait()

    async with runner:
        handle = await waits.enqueue()
        await until(lambda: gate.waiting == 1)
        await handle.cancel()
        await until_status(handle, JobStatus.CANCELLED)
    assert otel.points("jobrunner.jobs.cancelled") == {("waits", "default"): 1}
    (span,) = otel.finished("process default")
    assert (span.attributes or {})["jobrunner.job.outcome"] == "cancelled"


async def test_gauges_report_queue_depth_and_running_jobs(
    make_runner: Callable[..., Runner], otel: Otel
) -> None:
    runner = make_runner(instrument=otel.instrument)
    gate = Gate()

    @runner.job
    async def waits() -> None:
        await gate.wait()

    @runner.job
    async def later() -> None:
        pass

    await later.options(delay=600).enqueue()
    await later.options(delay=600).enqueue()
    assert otel.points("jobrunner.jobs.running") == {}  # not started: nothing to report
    async with runner:
        try:
            await waits.enqueue()
            await until(lambda: gate.waiting == 1)
            assert otel.points("jobrunner.jobs.running") == {(): 1}
            # The leader reads the depth as soon as it leads. Keys: (status, queue).
            await until(lambda: ("scheduled", "default") in otel.points("jobrunner.queue.depth"))
            depth = otel.points("jobrunner.queue.depth")
            assert depth[("scheduled", "default")] == 2
            assert depth[("retrying", "default")] == 0
        finally:
            gate.open()


# --- logging ---------------------------------------------------------------------------
async def test_a_jobs_own_logs_carry_its_context_and_nothing_leaks_after_it(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner()
    log = structlog.get_logger("app")

    @runner.job
    async def charge(order: int) -> None:
        log.info("charging")

        async def receipt() -> None:
            log.info("sending receipt")

        await asyncio.create_task(receipt())  # a task the job spawns
        bind_contextvars(order=order)  # the handler's own binding
        log.info("charged")

    @runner.job
    async def tidy() -> None:
        log.info("tidying")

    @runner.job
    def blocking_io() -> None:  # a plain def: it runs in a worker thread
        log.info("in a thread")

    # The app's configuration: structlog's contextvars merged into every event.
    with capture_logs(processors=[merge_contextvars]) as logs:
        charged = await charge.options(workspace_id="ws-1").enqueue(7)
        await runner.run_until_idle()
        tidied = await tidy.enqueue()
        await runner.run_until_idle()
        threaded = await blocking_io.enqueue()
        await runner.run_until_idle()
        log.info("after")

    by_event = {entry["event"]: entry for entry in logs}
    expected = {
        "job_id": charged.id,
        "job_name": "charge",
        "attempt": 1,
        "queue": "default",
        "workspace_id": "ws-1",
        "trigger": "enqueue",
    }
    for event in ("charging", "sending receipt", "charged"):
        assert job_context(by_event[event]) == expected, event
    assert by_event["charged"]["order"] == 7
    # The next job has its own context, without the first job's workspace or binding.
    assert job_context(by_event["tidying"]) == {
        "job_id": tidied.id,
        "job_name": "tidy",
        "attempt": 1,
        "queue": "default",
        "trigger": "enqueue",
    }
    assert "order" not in by_event["tidying"]
    assert by_event["in a thread"]["job_id"] == threaded.id
    assert job_context(by_event["after"]) == {}
    assert "order" not in by_event["after"]


async def test_a_job_without_a_workspace_hides_one_the_app_bound_around_the_runner(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner()
    log = structlog.get_logger("app")

    @runner.job
    async def report() -> None:
        log.info("reporting")

    async def app() -> list[dict[str, Any]]:
        # The app's own fields, bound before the runner starts (a task: its own context).
        bind_contextvars(workspace_id="app-ws", deployment="blue")
        with capture_logs(processors=[merge_contextvars]) as logs:
            await report.enqueue()
            await runner.run_until_idle()
            await report.options(workspace_id="ws-9").enqueue()
            await runner.run_until_idle()
        return logs

    logs = await asyncio.create_task(app())
    plain, scoped = (entry for entry in logs if entry["event"] == "reporting")
    assert "workspace_id" not in plain
    assert scoped["workspace_id"] == "ws-9"
    # Fields the app bound that a job does not set are still there.
    assert plain["deployment"] == scoped["deployment"] == "blue"


async def test_each_attempt_binds_its_own_attempt_trigger_queue_and_workspace(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    # Attempts of one job name share bound fields through a cached context. Each
    # step below differs from the one before in one field only, so an attempt
    # that got the previous attempt's context would show.
    runner = make_runner(backoff=0)
    log = structlog.get_logger("app")

    @runner.job(retries=2)
    async def sync(fails: int) -> None:
        log.info("syncing")
        if current_job().attempt <= fails:
            raise ValueError("flaky")

    bulk, tenant = sync.options(queue="bulk"), sync.options(queue="bulk", workspace_id="ws-2")
    with capture_logs(processors=[merge_contextvars]) as logs:
        async with runner:
            ids = []
            for handle, fails in ((sync, 0), (bulk, 0), (tenant, 0), (tenant, 2), (sync, 3), (sync, 0)):
                ids.append((await handle.enqueue(fails)).id)
                await drain(runner, clock)
            await runner.requeue(ids[4])  # dead after three attempts; now attempt 1 again
            await drain(runner, clock)

    def bound(i: int, attempt: int, queue: str, trigger: str, **workspace: str) -> dict[str, Any]:
        fields = {"job_id": ids[i], "job_name": "sync", "attempt": attempt, "queue": queue}
        return {**fields, **workspace, "trigger": trigger}

    assert [job_context(entry) for entry in logs if entry["event"] == "syncing"] == [
        bound(0, 1, "default", "enqueue"),
        bound(1, 1, "bulk", "enqueue"),  # another queue
        bound(2, 1, "bulk", "enqueue", workspace_id="ws-2"),  # a workspace
        bound(3, 1, "bulk", "enqueue", workspace_id="ws-2"),
        bound(3, 2, "bulk", "retry", workspace_id="ws-2"),
        bound(3, 3, "bulk", "retry", workspace_id="ws-2"),  # another attempt
        bound(4, 1, "default", "enqueue"),
        bound(4, 2, "default", "retry"),
        bound(4, 3, "default", "retry"),
        bound(5, 1, "default", "enqueue"),
        bound(4, 1, "default", "requeue"),  # another trigger
        bound(4, 2, "default", "retry"),
        bound(4, 3, "default", "retry"),
    ]


@pytest.fixture
def structlog_config() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


async def test_stdlib_logging_through_structlogs_bridge_carries_the_job(
    make_runner: Callable[..., Runner], structlog_config: None
) -> None:
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    # The bridge as structlog documents it: stdlib records and structlog events
    # both rendered by a ProcessorFormatter, contextvars merged for stdlib ones.
    handler = Keep()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=structlog.processors.JSONRenderer(), foreign_pre_chain=[merge_contextvars]
        )
    )
    structlog.configure(
        processors=[structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        runner = make_runner()

        @runner.job
        async def legacy() -> None:
            logging.getLogger("legacy.app").info("plain stdlib call")

        handle = await legacy.enqueue()
        await runner.run_until_idle()
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    events = [json.loads(line) for line in lines]
    plain = next(e for e in events if e["event"] == "plain stdlib call")
    assert (plain["job_id"], plain["job_name"], plain["attempt"]) == (handle.id, "legacy", 1)
    succeeded = next(e for e in events if e["event"] == "job succeeded")
    assert succeeded["job_id"] == handle.id


async def test_lifecycle_events_have_consistent_names_and_fields(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(backoff=0)
    gate = Gate()

    @runner.job
    async def ok() -> None:
        pass

    @runner.job(retries=1)
    async def bad() -> None:
        raise ValueError("boom")

    @runner.job(timeout=1.0, retries=0)
    async def slow() -> None:
        await gate.wait()

    @runner.job
    async def waits() -> None:
        await gate.wait()

    with capture_logs() as logs:  # no merge_contextvars: the fields are passed explicitly
        await ok.enqueue()
        await bad.enqueue()
        async with runner:
            await drain(runner, clock)
            timed = await slow.enqueue()
            await until(lambda: gate.waiting == 1)
            clock.advance(1.5)
            await until_status(timed, JobStatus.DEAD)
            cancelled = await waits.enqueue()
            await until(lambda: gate.waiting == 1)
            await cancelled.cancel()
            await until_status(cancelled, JobStatus.CANCELLED)

    def events(name: str) -> list[tuple[str, str]]:
        return [(e["event"], e["log_level"]) for e in logs if e.get("job_name") == name]

    assert events("ok") == [("job enqueued", "debug"), ("job started", "info"), ("job succeeded", "info")]
    assert events("bad") == [
        ("job enqueued", "debug"),
        ("job started", "info"),
        ("job attempt failed; retry scheduled", "warning"),
        ("job started", "info"),
        ("job dead", "error"),
    ]
    assert events("slow") == [
        ("job enqueued", "debug"),
        ("job started", "info"),
        ("job dead", "error"),
    ]
    assert events("waits") == [("job enqueued", "debug"), ("job started", "info"), ("job cancelled", "info")]
    runner_events = [e["event"] for e in logs if "job_name" not in e]
    assert runner_events[0] == "runner started"
    assert runner_events[-2:] == ["shutdown begun", "shutdown finished"]

    bad_logs = [e for e in logs if e.get("job_name") == "bad"]
    retry, dead = bad_logs[2], bad_logs[4]
    # A retried attempt is one line without a traceback; the final failure carries it.
    assert "exc_info" not in retry
    assert retry["delay"] == 0 and retry["next_attempt"] == 2 and retry["error"] == "ValueError: boom"
    assert retry["duration"] >= 0
    assert isinstance(dead["exc_info"], ValueError)
    assert dead["reason"] == "all 2 attempts failed" and dead["error"] == "ValueError: boom"
    for entry in logs:
        if entry["event"] in ("job started", "job attempt failed; retry scheduled", "job dead"):
            assert set(JOB_FIELDS) - {"workspace_id"} <= entry.keys(), entry
    succeeded = next(e for e in logs if e["event"] == "job succeeded")
    assert succeeded["duration"] >= 0
    timed_out = next(e for e in logs if e["event"] == "job dead" and e["job_name"] == "slow")
    assert timed_out["job_id"] == timed.id and timed_out["timeout"] == 1.0
    assert timed_out["error"].startswith("JobTimeout: ") and "exc_info" not in timed_out


async def test_a_recovered_lease_is_logged(store: Store, clock: FakeClock) -> None:
    runner = Runner(store=store, clock=clock)

    @runner.job
    async def orphan() -> None:
        pass

    handle = await orphan.enqueue()
    terms = LeaseTerms(fixed=1.0, margin=0.0, without_timeout=0.0)
    (claimed,) = await store.claim(ClaimRequest("crashed-worker", 1, clock.now(), None, {}, terms))
    with capture_logs() as logs:
        await RescueDuty(store, 5.0).run(clock.now() + 10)
    (entry,) = logs
    assert entry["event"] == "job lease recovered"
    assert entry["log_level"] == "warning"
    assert (entry["job_id"], entry["job_name"], entry["attempt"]) == (handle.id, "orphan", claimed.attempt)
    assert entry["status"] == "retrying"


async def test_instrument_false_binds_nothing_but_still_logs_failures(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner(instrument=False, retries=0)
    log = structlog.get_logger("app")

    @runner.job
    async def broken() -> None:
        log.info("inside")
        raise RuntimeError("nope")

    with capture_logs(processors=[merge_contextvars]) as logs:
        await broken.enqueue()
        await drain(runner, clock)
    events = [e["event"] for e in logs if e["event"].startswith("job ")]
    assert events == ["job dead"]
    inside = next(e for e in logs if e["event"] == "inside")
    assert job_context(inside) == {}


def test_instrument_takes_a_bool_or_an_instrumentation() -> None:
    with pytest.raises(TypeError, match="instrument="):
        Runner(instrument="yes")  # type: ignore[arg-type]


async def test_with_nothing_configured_the_executor_takes_its_fast_path(
    make_runner: Callable[..., Runner], structlog_config: None
) -> None:
    # The global OpenTelemetry providers are the API's proxies: no SDK in this process.
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
    structlog.configure(
        processors=[structlog.processors.KeyValueRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(30),
    )
    runner = make_runner()

    @runner.job
    async def noop() -> None:
        pass

    async with runner:
        telemetry = runner._telemetry
        assert (telemetry.templates, telemetry.observing, telemetry.sending) == (None, False, False)
        await noop.enqueue()
        await runner.run_until_idle()
        # merge_contextvars turns binding on (the next refresh sees it); still no spans.
        structlog.configure(processors=[merge_contextvars, structlog.processors.KeyValueRenderer()])
        telemetry.refresh()
        assert telemetry.templates is not None and not telemetry.observing and not telemetry.sending


# --- stats and health --------------------------------------------------------------------
async def test_stats_counts_by_status_and_queue_with_running_jobs_and_waits(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = make_runner()
    gate = Gate()

    @runner.job
    async def waits() -> None:
        await gate.wait()

    @runner.job
    async def later() -> None:
        pass

    @runner.job(queue="emails")
    async def mail() -> None:
        pass

    await later.options(delay=600).enqueue()
    await mail.enqueue()
    clock.advance(5.0)
    stats = await runner.stats()
    assert stats.counts[JobStatus.QUEUED] == 1
    assert stats.counts[JobStatus.SCHEDULED] == 1
    assert stats.queues["emails"][JobStatus.QUEUED] == 1
    assert stats.queues["default"][JobStatus.SCHEDULED] == 1
    assert stats.oldest_waiting_age == 5.0
    assert (stats.running, stats.workers, stats.throughput) == (0, 0, 0.0)

    async with runner:
        await runner.run_until_idle()  # "mail" runs and its outcome is recorded
        await waits.enqueue()
        await until(lambda: gate.waiting == 1)
        try:
            during = await runner.stats()
        finally:
            gate.open()  # a failed assertion must not leave shutdown waiting on the job
        await runner.run_until_idle()
        stats = await runner.stats()
    assert during.running == 1 and during.workers >= 1
    assert during.counts[JobStatus.RUNNING] == 1, during.counts
    assert stats.counts[JobStatus.SUCCEEDED] == 2
    assert stats.oldest_waiting_age is None  # only the delayed job waits, and it is not due
    assert stats.throughput == 2 / 60


async def test_health_says_whether_workers_are_alive_and_the_loop_responsive(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner()
    assert not runner.health().running and not runner.health().ok
    async with runner:
        health = runner.health()
        assert health.running and health.workers_alive and health.loop_responsive and health.ok
        assert health.blocking_job is None
    assert not runner.health().running


async def test_a_handler_blocking_the_loop_is_named_while_it_blocks(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner(instrument=Instrumentation(loop_block_threshold=0.05))
    seen: list[Any] = []

    @runner.job
    async def hog() -> None:
        # Blocks the loop (a sync sleep in an async handler) until the watchdog
        # has warned: a condition, not a duration.
        deadline = time.monotonic() + 10
        while not any(naming_a_job(e) for e in list(logs)):
            assert time.monotonic() < deadline, "no warning within 10 s"
            time.sleep(0.005)
        seen.append(runner.health())

    def naming_a_job(event: dict[str, Any]) -> bool:
        # A loaded machine may stall the loop before the job starts (opening a
        # store, a GC pause): that warning names no job and is not this one.
        return event["event"] == "event loop blocked" and event.get("job_id") is not None

    with capture_logs() as logs:
        handle = await hog.enqueue()
        await runner.run_until_idle()
    warning = next(e for e in logs if naming_a_job(e))
    assert warning["log_level"] == "warning"
    assert (warning["job_id"], warning["job_name"], warning["attempt"]) == (handle.id, "hog", 1)
    assert "test_observability.py" in warning["where"] and "in hog" in warning["where"]
    (health,) = seen
    assert health.blocking_job == handle.id
    assert not health.loop_responsive and not health.ok


# --- where jobrunner's own events go -------------------------------------------------------


async def test_with_structlog_unconfigured_events_go_to_stdlib_logging(
    make_runner: Callable[..., Runner], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    runner = make_runner(retries=1, backoff=0)

    @runner.job
    async def flaky() -> None:
        raise ValueError("boom")

    caplog.set_level(logging.INFO, logger="jobrunner")
    handle = await flaky.enqueue()
    await drain(runner, clock)
    records = [r for r in caplog.records if getattr(r, "fields", {}).get("job_id") == handle.id]
    assert [(r.name, r.levelname, r.event) for r in records] == [  # type: ignore[attr-defined]
        ("jobrunner.jobs", "INFO", "job started"),
        ("jobrunner.jobs", "WARNING", "job attempt failed; retry scheduled"),
        ("jobrunner.jobs", "INFO", "job started"),
        ("jobrunner.jobs", "ERROR", "job dead"),
    ]
    retried, dead = records[1], records[3]
    assert retried.exc_info is None and "error='ValueError: boom'" in retried.getMessage()
    assert dead.exc_info is not None and dead.exc_info[0] is ValueError
    assert f"job_id={handle.id}" in dead.getMessage()


async def test_with_structlog_unconfigured_nothing_below_warning_is_printed(
    make_runner: Callable[..., Runner], clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    # No logging configuration at all, as in an app that never set any up:
    # Python's last-resort handler prints warnings and errors only.
    runner = make_runner()

    @runner.job
    async def fine() -> None:
        pass

    async with runner:
        for _ in range(20):
            await fine.enqueue()
        await drain(runner, clock)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


async def test_with_structlog_configured_events_go_through_structlog(
    make_runner: Callable[..., Runner], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    runner = make_runner()

    @runner.job
    async def fine() -> None:
        pass

    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        handle = await fine.enqueue()
        await drain(runner, clock)
    assert [e["event"] for e in logs if e.get("job_id") == handle.id] == [
        "job enqueued",
        "job started",
        "job succeeded",
    ]
    assert not [r for r in caplog.records if r.name.startswith("jobrunner")]


async def test_job_context_filter_adds_the_job_to_stdlib_records(
    make_runner: Callable[..., Runner], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    runner = make_runner()
    app_log = logging.getLogger("app")

    @runner.job
    async def tagged() -> None:
        app_log.warning("inside the job")

    caplog.handler.addFilter(JobContextFilter())
    handle = await tagged.options(workspace_id="acme").enqueue()
    await drain(runner, clock)
    app_log.warning("outside any job")
    inside, outside = [r for r in caplog.records if r.name == "app"]
    assert (inside.job_id, inside.job_name, inside.attempt, inside.workspace_id) == (  # type: ignore[attr-defined]
        handle.id,
        "tagged",
        1,
        "acme",
    )
    assert outside.job_id is None  # type: ignore[attr-defined]
