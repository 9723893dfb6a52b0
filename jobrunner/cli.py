"""The ``jobrunner`` command: run workers, enqueue, inspect and repair jobs.

The app's runner is found by import path, as uvicorn does (``myapp.jobs:runner``).
Commands that only read or repair the store take ``--store URL`` (or
``JOBRUNNER_STORE``) and never import the app.

Exit codes: 0 success; 1 the job ended dead or cancelled (``enqueue --wait``) or
the store failed; 2 a usage error (bad import path, bad JSON, unknown job).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from enum import Enum
from typing import Any, NoReturn, TextIO

import structlog

from jobrunner.cron import CronExpression, ScheduleInfo
from jobrunner.errors import JobCancelled, JobFailed, JobNotFound, JobrunnerError, StoreError, UnknownJob
from jobrunner.models import JobRecord, JobStatus
from jobrunner.runner import Runner
from jobrunner.stores import store_from_url
from jobrunner.stores.base import Store
from jobrunner.stores.sqlite import SQLiteStore

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

EXAMPLES = {
    "worker": "examples:\n  jobrunner worker myapp.jobs:runner\n"
    "  jobrunner worker myapp.jobs:runner --concurrency 20 --queues emails,images --log-format json",
    "enqueue": "examples:\n  jobrunner enqueue myapp.jobs:runner send_email --args '[\"ada@example.com\"]'\n"
    "  jobrunner enqueue myapp.jobs:runner resize --kwargs '{\"image_id\": 42}' --delay 60 --wait",
    "jobs": "examples:\n  jobrunner jobs list --store sqlite:///var/jobs.db --status dead\n"
    "  jobrunner jobs show 01a2... --store sqlite:///var/jobs.db\n"
    "  jobrunner jobs retry 01a2... --store sqlite:///var/jobs.db\n"
    "  jobrunner jobs purge --status dead --older-than 7d --store sqlite:///var/jobs.db",
    "stats": "examples:\n  jobrunner stats --store sqlite:///var/jobs.db\n"
    "  jobrunner stats --store sqlite:///var/jobs.db --watch",
    "cron": "examples:\n  jobrunner cron list myapp.jobs:runner",
}


class UsageError(Exception):
    """A mistake in what the user typed: printed without a traceback, exit 2."""


# --- finding the app ---------------------------------------------------------------------
def load_runner(path: str) -> Runner:
    """Import ``module:attribute`` and return the Runner it names."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise UsageError(
            f"{path!r} is not an import path; write it as module:attribute, e.g. myapp.jobs:runner"
        )
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like uvicorn: the app lives where you run the command
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise UsageError(
                f"cannot load {path!r}: no module named {missing!r}; check the spelling, and that "
                f"its directory is the current one or on PYTHONPATH"
            ) from None
        raise UsageError(f"cannot load {path!r}: importing module {module_name!r} failed: {exc}") from None
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            runners = sorted(name for name, value in vars(module).items() if isinstance(value, Runner))
            hint = f"; it has these runners: {', '.join(runners)}" if runners else ""
            raise UsageError(
                f"cannot load {path!r}: module {module_name!r} has no attribute {attribute!r}{hint}"
            ) from None
    if not isinstance(target, Runner):
        raise UsageError(f"{path} is a {type(target).__name__}, not a jobrunner.Runner")
    return target


def resolve_store(args: argparse.Namespace) -> Store:
    """The store for a read/repair command: --store, else JOBRUNNER_STORE, else --app's."""
    url = getattr(args, "store", None) or os.environ.get("JOBRUNNER_STORE")
    app = getattr(args, "app", None)
    if url:
        try:
            store = store_from_url(url)
        except (ValueError, ImportError) as exc:
            raise UsageError(str(exc)) from None
    elif app:
        store = load_runner(app).store
    else:
        raise UsageError("say which store: --store URL (or set JOBRUNNER_STORE), or --app module:runner")
    if not store.durable:
        # A fresh memory store is always empty: answering "no jobs" would mislead.
        raise UsageError(
            f"{url or app} keeps jobs in the memory of the process that runs them, out of this "
            f"command's reach; pass the URL of a durable store, e.g. --store sqlite:///var/jobs.db"
        )
    if isinstance(store, SQLiteStore) and not os.path.exists(store.path):
        # Opening would create an empty database: a typo in the path must not look like "no jobs".
        raise StoreError(
            f"cannot open the SQLite store {store.path}: the file does not exist; check the path "
            f"(a worker or an enqueue creates it)"
        )
    return store


def configure(runner: Runner, **settings: Any) -> None:
    """``runner.configure()`` with a bad flag value reported as a usage error."""
    try:
        runner.configure(**settings)
    except (ValueError, ImportError) as exc:
        raise UsageError(str(exc)) from None


@asynccontextmanager
async def opened(store: Store) -> Any:
    """Open the store for one command and close it after."""
    await store.open()
    try:
        yield store
    finally:
        await store.close()


# --- output ------------------------------------------------------------------------------------
class Output:
    """Aligned tables for people, JSON for scripts; colour only on a terminal."""

    COLOURS = {
        "succeeded": "32",
        "dead": "31",
        "cancelled": "33",
        "running": "36",
        "retrying": "35",
        "queued": "34",
        "scheduled": "34",
    }

    def __init__(self, stream: TextIO, as_json: bool) -> None:
        self.stream = stream
        self.as_json = as_json
        self.colour = stream.isatty() and os.environ.get("NO_COLOR") is None

    def paint(self, text: str, status: str) -> str:
        code = self.COLOURS.get(status)
        return f"\033[{code}m{text}\033[0m" if self.colour and code else text

    def json(self, value: Any) -> None:
        self.stream.write(json.dumps(value, indent=2, default=_json_default) + "\n")

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")

    def table(
        self, header: Sequence[str], rows: Sequence[Sequence[str]], status_column: int | None = None
    ) -> None:
        widths = [len(h) for h in header]
        for row in rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
        self.line("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
        for row in rows:
            cells = []
            for index, (cell, width) in enumerate(zip(row, widths, strict=True)):
                padded = cell.ljust(width)
                cells.append(self.paint(padded, cell) if index == status_column else padded)
            self.line("  ".join(cells).rstrip())


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return repr(value)


def iso(ts: float | None) -> str:
    """Epoch seconds as ISO 8601 UTC, or '-'."""
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def ago(ts: float | None, now: float) -> str:
    """A short relative time: '5s ago', '3m ago', 'in 2h'."""
    if ts is None:
        return "-"
    delta = now - ts
    future = delta < 0
    delta = abs(delta)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            text = f"{delta / size:.0f}{unit}"
            break
    else:
        text = f"{delta:.0f}s"
    return f"in {text}" if future else f"{text} ago"


def record_json(record: JobRecord) -> dict[str, Any]:
    """A job record as JSON-ready data, timestamps in ISO 8601 UTC."""
    data = dataclasses.asdict(record)
    for field in ("enqueued_at", "run_at", "started_at", "finished_at"):
        data[field] = iso(data[field]) if data[field] is not None else None
    for entry in data["history"]:
        entry["at"] = iso(entry["at"])
    return data


def parse_duration(text: str) -> float:
    """'90s', '15m', '12h', '7d', '2w' or plain seconds -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not match:
        raise UsageError(f"{text!r} is not a duration; use e.g. 90s, 15m, 12h, 7d or 2w")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]


def parse_json(text: str | None, what: str, kind: type) -> Any:
    """Parse a --args/--kwargs value, checking its JSON type."""
    if text is None:
        return kind()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} is not valid JSON ({exc.msg} at column {exc.colno}): {text}") from None
    if not isinstance(value, kind):
        expected = "an array, e.g. '[1, \"two\"]'" if kind is list else "an object, e.g. '{\"key\": 1}'"
        raise UsageError(f"{what} must be {expected}, not {type(value).__name__}")
    return value


def parse_status(text: str) -> JobStatus:
    """A JobStatus from its name."""
    try:
        return JobStatus(text.lower())
    except ValueError:
        names = ", ".join(s.value for s in JobStatus)
        raise UsageError(f"unknown status {text!r}; use one of {names}") from None


def configure_logging(fmt: str, level: str) -> None:
    """The CLI is an app: it configures structlog (the library never does)."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise UsageError(f"unknown log level {level!r}; use debug, info, warning or error")
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


# --- commands ------------------------------------------------------------------------------------
async def cmd_worker(args: argparse.Namespace, out: Output) -> int:
    runner = load_runner(args.app)
    consume = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else None
    configure(runner, store=args.store, concurrency=args.concurrency, consume=consume)
    await runner.serve()
    return EXIT_OK


async def cmd_enqueue(args: argparse.Namespace, out: Output) -> int:
    runner = load_runner(args.app)
    if args.store:
        configure(runner, store=args.store)
    if not runner.store.durable:
        raise UsageError(
            f"{args.app} keeps jobs in memory, so a job enqueued from this command would vanish "
            f"when it exits; pass --store URL (e.g. sqlite:///var/jobs.db) or give the runner a durable store"
        )
    positional = parse_json(args.args, "--args", list)
    keywords = parse_json(args.kwargs, "--kwargs", dict)
    try:
        job = runner.job_named(args.name)
    except UnknownJob as exc:
        raise UsageError(str(exc)) from None
    options: dict[str, Any] = {}
    if args.priority is not None:
        options["priority"] = args.priority
    if args.delay is not None:
        options["delay"] = args.delay
    if args.key is not None:
        options["key"] = args.key
    if args.queue is not None:
        options["queue"] = args.queue
    try:  # the store is closed however the command ends, not only after --wait
        try:
            handle = await job.options(**options).enqueue(*positional, **keywords)
        except (TypeError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        if not args.wait:
            out.json({"id": handle.id, "created": handle.created}) if out.as_json else out.line(handle.id)
            return EXIT_OK
        try:
            result = await runner.result(handle.id, timeout=args.timeout)
        except TimeoutError:
            error = f"no result within {args.timeout} s (the job is still {await handle.status()})"
            out.json({"id": handle.id, "error": error}) if out.as_json else out.line(f"{handle.id}: {error}")
            return EXIT_FAILED
        except (JobFailed, JobCancelled) as exc:
            if out.as_json:
                out.json({"id": handle.id, "error": str(exc)})
            else:
                out.line(f"{handle.id}: {exc}")
            return EXIT_FAILED
    finally:
        await runner.aclose()
    out.json({"id": handle.id, "result": result}) if out.as_json else out.line(
        json.dumps(result, default=repr)
    )
    return EXIT_OK


async def cmd_jobs_list(args: argparse.Namespace, out: Output) -> int:
    status = parse_status(args.status) if args.status else None
    async with opened(resolve_store(args)) as store:
        records = await store.list_jobs(status=status, queue=args.queue, name=args.name, limit=args.limit)
    if out.as_json:
        out.json([record_json(r) for r in records])
        return EXIT_OK
    if not records:
        out.line("no jobs match")
        return EXIT_OK
    now = time.time()
    rows = [
        [
            r.id,
            r.name,
            r.status.value,
            r.queue,
            f"{r.attempts}/{r.max_attempts}",
            ago(r.enqueued_at, now),
            _short(f"{r.error.type}: {r.error.message}" if r.error else ""),
        ]
        for r in records
    ]
    out.table(["ID", "NAME", "STATUS", "QUEUE", "ATTEMPTS", "ENQUEUED", "LAST ERROR"], rows, status_column=2)
    return EXIT_OK


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


async def _get(store: Store, job_id: str) -> JobRecord:
    record = await store.get(job_id)
    if record is None:
        raise UsageError(str(JobNotFound(job_id)))
    return record


async def cmd_jobs_show(args: argparse.Namespace, out: Output) -> int:
    async with opened(resolve_store(args)) as store:
        record = await _get(store, args.id)
    if out.as_json:
        out.json(record_json(record))
        return EXIT_OK
    now = time.time()
    fields = [
        ("id", record.id),
        ("name", record.name),
        ("status", out.paint(record.status.value, record.status.value)),
        ("queue", record.queue),
        ("priority", str(record.priority)),
        ("attempts", f"{record.attempts} of {record.max_attempts}"),
        ("args", json.dumps(list(record.args), default=repr)),
        ("kwargs", json.dumps(record.kwargs, default=repr)),
        ("key", record.key or "-"),
        ("workspace", record.workspace_id or "-"),
        ("timeout", "-" if record.timeout is None else f"{record.timeout:g} s"),
        ("enqueued", f"{iso(record.enqueued_at)} ({ago(record.enqueued_at, now)})"),
        ("run at", iso(record.run_at)),
        ("started", iso(record.started_at)),
        ("finished", iso(record.finished_at)),
        ("worker", record.worker or "-"),
    ]
    if record.status is JobStatus.SUCCEEDED:
        fields.append(("result", json.dumps(record.result, default=repr)))
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        out.line(f"{key.rjust(width)}  {value}")
    if record.error is not None:
        out.line()
        out.line(f"last error: {record.error.type}: {record.error.message}")
        if record.error.traceback:
            out.line(record.error.traceback.rstrip())
    out.line()
    out.line("timeline:")
    rows = [[iso(h.at), h.status.value, str(h.attempt), h.worker or "", h.note] for h in record.history]
    out.table(["AT", "STATUS", "ATTEMPT", "WORKER", "NOTE"], rows, status_column=1)
    return EXIT_OK


async def cmd_jobs_retry(args: argparse.Namespace, out: Output) -> int:
    async with opened(resolve_store(args)) as store:
        try:
            record = await store.requeue(args.id, time.time())
        except JobNotFound as exc:
            raise UsageError(str(exc)) from None
        except JobrunnerError as exc:
            raise UsageError(str(exc)) from None
    out.json(record_json(record)) if out.as_json else out.line(f"requeued {record.id} ({record.name})")
    return EXIT_OK


async def cmd_jobs_cancel(args: argparse.Namespace, out: Output) -> int:
    async with opened(resolve_store(args)) as store:
        try:
            status = await store.cancel(args.id, time.time())
        except JobNotFound as exc:
            raise UsageError(str(exc)) from None
    messages = {
        JobStatus.CANCELLED: "cancelled",
        JobStatus.RUNNING: "cancel requested; its runner stops it at its next heartbeat",
    }
    text = messages.get(status, f"not cancelled: it already ended {status.value}")
    out.json({"id": args.id, "status": status.value}) if out.as_json else out.line(f"{args.id}: {text}")
    return EXIT_OK


async def cmd_jobs_purge(args: argparse.Namespace, out: Output) -> int:
    status = parse_status(args.status)
    if not status.is_final:
        raise UsageError(f"only finished jobs can be purged (succeeded, dead, cancelled), not {status.value}")
    older_than = parse_duration(args.older_than)
    before = time.time() - older_than
    total = 0
    progress = sys.stderr.isatty()
    async with opened(resolve_store(args)) as store:
        while True:
            purged = await store.purge(status, before, args.batch)
            total += purged
            if progress and purged:
                sys.stderr.write(f"\rpurged {total:,} {status.value} jobs…")
                sys.stderr.flush()
            if purged < args.batch:
                break
    if progress and total:
        sys.stderr.write("\n")
    if out.as_json:
        out.json({"status": status.value, "older_than_seconds": older_than, "purged": total})
    else:
        out.line(f"purged {total:,} {status.value} jobs finished more than {args.older_than} ago")
    return EXIT_OK


def _stats_json(stats: Any) -> dict[str, Any]:
    return {
        "counts": {s.value: n for s, n in stats.counts.items()},
        "queues": {q: {s.value: n for s, n in by.items()} for q, by in stats.queues.items()},
        "oldest_waiting_age": stats.oldest_waiting_age,
        "unknown_names": dict(stats.unknown_names),
    }


def _render_stats(stats: Any, out: Output, throughput: float | None) -> None:
    statuses = [s for s in JobStatus]
    header = ["QUEUE", *[s.value.upper() for s in statuses]]
    rows = [[queue, *[str(by.get(s, 0)) for s in statuses]] for queue, by in sorted(stats.queues.items())]
    rows.append(["(all)", *[str(stats.counts.get(s, 0)) for s in statuses]])
    out.table(header, rows)
    out.line()
    age = stats.oldest_waiting_age
    out.line(f"oldest waiting job: {'none waiting' if age is None else f'{age:.1f} s'}")
    if throughput is not None:
        out.line(f"throughput: {throughput:.1f} jobs/s")
    for name, oldest in sorted(stats.unknown_names.items()):
        out.line(f"waiting for a runner that knows {name!r} (oldest {oldest:.0f} s)")


def _finished(stats: Any) -> int:
    return sum(stats.counts.get(s, 0) for s in JobStatus if s.is_final)


async def cmd_stats(args: argparse.Namespace, out: Output) -> int:
    async with opened(resolve_store(args)) as store:
        if not args.watch:
            stats = await store.stats(time.time())
            if out.as_json:
                out.json(_stats_json(stats))
            else:
                _render_stats(stats, out, None)
            return EXIT_OK
        previous: tuple[float, int] | None = None
        refreshes = 0
        while args.count is None or refreshes < args.count:
            now = time.time()
            stats = await store.stats(now)
            finished = _finished(stats)
            # Throughput from the change in finished jobs between refreshes.
            throughput = (
                None if previous is None else max(0.0, (finished - previous[1]) / (now - previous[0]))
            )
            previous = (now, finished)
            if out.as_json:
                out.json({**_stats_json(stats), "throughput": throughput})
            else:
                if out.stream.isatty():
                    out.stream.write("\033[H\033[2J")  # redraw in place
                out.line(f"jobrunner stats  {iso(now)}  (every {args.interval:g} s, Ctrl-C to stop)\n")
                _render_stats(stats, out, throughput if throughput is not None else 0.0)
            out.stream.flush()
            refreshes += 1
            if args.count is None or refreshes < args.count:
                await asyncio.sleep(args.interval)
    return EXIT_OK


async def cmd_cron_list(args: argparse.Namespace, out: Output) -> int:
    runner = load_runner(args.app)
    if args.store:
        configure(runner, store=args.store)
    try:
        schedules = await runner.schedules()
    finally:
        await runner.aclose()
    if out.as_json:
        out.json(
            [
                dataclasses.asdict(s) if dataclasses.is_dataclass(s) and not isinstance(s, type) else s
                for s in schedules
            ]
        )
        return EXIT_OK
    if not schedules:
        out.line("no schedules")
        return EXIT_OK
    rows = [
        [s.name, s.expression, s.timezone, ", ".join(map(_when, _upcoming(s, args.count))), _when(s.last_run)]
        for s in schedules
    ]
    out.table(["SCHEDULE", "EXPRESSION", "TIMEZONE", "NEXT RUNS", "LAST RUN"], rows)
    return EXIT_OK


def _upcoming(schedule: ScheduleInfo, count: int) -> list[datetime]:
    """The schedule's next ``count`` runs (ScheduleInfo holds only the first)."""
    cron = CronExpression(schedule.expression, schedule.timezone)
    runs = [schedule.next_run]
    while len(runs) < count:
        runs.append(cron.local(cron.next_after(runs[-1].timestamp())))
    return runs[: max(count, 1)]


def _when(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return iso(float(value))


# --- parser ------------------------------------------------------------------------------------------
def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", help="store URL, e.g. sqlite:///var/jobs.db (default: $JOBRUNNER_STORE)")
    parser.add_argument("--app", help="or take the store of this runner, module:attribute")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="jobrunner",
        description="Run jobrunner workers, enqueue jobs, inspect and repair them.",
        epilog="Exit codes: 0 ok, 1 job failed or store error, 2 usage error.",
        formatter_class=formatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = commands.add_parser(
        "worker",
        help="run a worker until SIGINT/SIGTERM",
        epilog=EXAMPLES["worker"],
        formatter_class=formatter,
    )
    worker.add_argument("app", help="the runner to serve, module:attribute (e.g. myapp.jobs:runner)")
    worker.add_argument("--concurrency", type=int, help="jobs running at once")
    worker.add_argument("--queues", help="only these queues, comma-separated")
    worker.add_argument("--store", help="store URL overriding the runner's")
    worker.add_argument("--log-format", choices=["console", "json"], default="console")
    worker.add_argument("--log-level", default="info")
    worker.set_defaults(handler=cmd_worker, json=False)

    enqueue = commands.add_parser(
        "enqueue", help="enqueue a job by name", epilog=EXAMPLES["enqueue"], formatter_class=formatter
    )
    enqueue.add_argument("app", help="the runner that knows the job, module:attribute")
    enqueue.add_argument("name", help="registered job name")
    enqueue.add_argument("--args", help="positional arguments as a JSON array")
    enqueue.add_argument("--kwargs", help="keyword arguments as a JSON object")
    enqueue.add_argument("--priority", type=int, help="lower runs first")
    enqueue.add_argument("--delay", type=float, help="seconds before it may run")
    enqueue.add_argument("--key", help="uniqueness key: no second job while one with it is active")
    enqueue.add_argument("--queue", help="queue overriding the job's")
    enqueue.add_argument("--store", help="store URL overriding the runner's")
    enqueue.add_argument("--wait", action="store_true", help="wait for the job and print its result")
    enqueue.add_argument("--timeout", type=float, help="with --wait: give up after this many seconds")
    enqueue.add_argument("--json", action="store_true", help="print JSON for scripts")
    enqueue.set_defaults(handler=cmd_enqueue)

    jobs = commands.add_parser(
        "jobs",
        help="list, show, retry, cancel, purge jobs",
        epilog=EXAMPLES["jobs"],
        formatter_class=formatter,
    )
    jobs_commands = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    listing = jobs_commands.add_parser(
        "list", help="jobs, newest first", epilog=EXAMPLES["jobs"], formatter_class=formatter
    )
    listing.add_argument("--status", help="queued, scheduled, running, retrying, succeeded, dead, cancelled")
    listing.add_argument("--queue")
    listing.add_argument("--name")
    listing.add_argument("--limit", type=int, default=50)
    _store_options(listing)
    listing.set_defaults(handler=cmd_jobs_list)
    for action, handler, text in (
        ("show", cmd_jobs_show, "one job: arguments, attempts, errors with traceback, timeline"),
        ("retry", cmd_jobs_retry, "send a dead (or cancelled) job back to the queue"),
        ("cancel", cmd_jobs_cancel, "cancel a waiting or running job"),
    ):
        sub = jobs_commands.add_parser(action, help=text, epilog=EXAMPLES["jobs"], formatter_class=formatter)
        sub.add_argument("id", help="job id")
        _store_options(sub)
        sub.set_defaults(handler=handler)
    purge = jobs_commands.add_parser(
        "purge", help="delete finished jobs", epilog=EXAMPLES["jobs"], formatter_class=formatter
    )
    purge.add_argument("--status", required=True, help="succeeded, dead or cancelled")
    purge.add_argument("--older-than", default="0s", help="e.g. 7d, 12h, 30m (default: all)")
    purge.add_argument("--batch", type=int, default=1000, help=argparse.SUPPRESS)
    _store_options(purge)
    purge.set_defaults(handler=cmd_jobs_purge)

    stats = commands.add_parser(
        "stats", help="counts by status and queue", epilog=EXAMPLES["stats"], formatter_class=formatter
    )
    stats.add_argument("--watch", action="store_true", help="refresh in place")
    stats.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    stats.add_argument("--count", type=int, help=argparse.SUPPRESS)
    _store_options(stats)
    stats.set_defaults(handler=cmd_stats)

    cron = commands.add_parser(
        "cron", help="cron schedules", epilog=EXAMPLES["cron"], formatter_class=formatter
    )
    cron_commands = cron.add_subparsers(dest="cron_command", required=True, metavar="ACTION")
    cron_list = cron_commands.add_parser(
        "list", help="each schedule and its next runs", epilog=EXAMPLES["cron"], formatter_class=formatter
    )
    cron_list.add_argument("app", help="the runner with the schedules, module:attribute")
    cron_list.add_argument("--count", type=int, default=3, help="next runs to show")
    cron_list.add_argument("--store", help="store URL overriding the runner's (for last runs)")
    cron_list.add_argument("--json", action="store_true", help="print JSON for scripts")
    cron_list.set_defaults(handler=cmd_cron_list)
    return parser


def _fail(message: str, code: int) -> NoReturn:
    sys.stderr.write(f"jobrunner: error: {message}\n")
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jobrunner`` console script."""
    args = build_parser().parse_args(argv)
    out = Output(sys.stdout, getattr(args, "json", False))
    try:
        if args.command == "worker":
            configure_logging(args.log_format, args.log_level)
        else:
            # Commands print results; the library's logs are for workers.
            configure_logging("console", "warning")
        code: int = asyncio.run(args.handler(args, out))
    except UsageError as exc:
        _fail(str(exc), EXIT_USAGE)
    except JobrunnerError as exc:  # StoreError, or e.g. a job purged while --wait waited for it
        _fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
