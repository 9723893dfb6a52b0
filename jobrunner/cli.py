"""The ``jobrunner`` command: run workers, enqueue, inspect and repair jobs.

The app's runner is found by import path, as uvicorn does (``myapp.jobs:runner``).
Commands that only read or repair the store take ``--store URL`` (or
``JOBRUNNER_STORE``) and never import the app.

Exit codes (``EXIT_CODES``): 0 done; 1 failed (the store failed, or the job of
``enqueue --wait`` ended dead, was cancelled or outlived ``--timeout``); 2 usage
error; 130 interrupted; 141 stdout closed early.

Logging: the CLI is an app, so it may configure logging, as uvicorn does: a
handler on stderr for the ``jobrunner`` loggers, unless the app's own import
configured logging (then it is left alone). A worker logs its lifecycle at
INFO and every warning and error; a line per job only with ``--job-logs``.
Other commands print their results, and only warnings and errors besides.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import logging
import math
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import structlog

from jobrunner.cron import CronExpression, ScheduleInfo
from jobrunner.errors import JobCancelled, JobFailed, JobNotFound, JobrunnerError, StoreError, UnknownJob
from jobrunner.handle import JobHandle
from jobrunner.logs import get_logger, render
from jobrunner.models import JobRecord, JobStatus
from jobrunner.runner import Runner
from jobrunner.stores import store_from_url
from jobrunner.stores.base import Store
from jobrunner.stores.sqlite import SQLiteStore

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_PIPE = 0, 1, 2, 130, 141

EXIT_CODES = """\
exit codes:
  0    done; a worker stopped by SIGINT/SIGTERM once its jobs drained
  1    failed: the store failed (a worker whose store keeps failing stops), or
       the job of enqueue --wait ended dead, was cancelled or outlived --timeout
  2    usage error (an option value, import path, JSON or job name); nothing done
  130  interrupted by Ctrl-C (stats --watch, enqueue --wait, a worker starting up)
  141  stdout closed early (e.g. piped into head), as when killed by SIGPIPE"""

WORKER_LOGGING = """\
logging (stderr):
  By default a worker logs its lifecycle at INFO (worker starting, runner
  started, leadership acquired/lost, signal received, shutdown begun/finished)
  and every warning and error: one line per retried attempt, the traceback
  with a job's final failure. --job-logs adds a line per job (job started,
  job succeeded...) and per cron tick; --log-level debug shows everything.
  If importing the app configured logging (structlog.configure(), or a handler
  on the root logger), the worker leaves it alone and --log-level,
  --log-format and --job-logs do nothing."""

EXAMPLES = {
    "worker": "examples:\n  jobrunner worker myapp.jobs:runner\n"
    "  jobrunner worker myapp.jobs:runner --concurrency 20 --queues emails,images --log-format json\n"
    "  jobrunner worker myapp.jobs:runner --job-logs",
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


class StdoutClosed(Exception):
    """Whoever read stdout went away (``jobrunner jobs list | head -1``)."""


_log = get_logger("jobrunner.cli")


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


def load_app(args: argparse.Namespace) -> Runner:
    """The runner of ``args.app``, with logging set up once its import had its say."""
    runner = load_runner(args.app)
    setup_logging(args)
    return runner


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
        store = load_app(args).store
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

    def write(self, text: str) -> None:
        try:
            self.stream.write(text)
        except BrokenPipeError:
            raise StdoutClosed from None

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise StdoutClosed from None

    def json(self, value: Any) -> None:
        self.write(json.dumps(value, indent=2, default=_json_default) + "\n")

    def line(self, text: str = "") -> None:
        self.write(text + "\n")

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


# --- option values -----------------------------------------------------------------------------
# argparse calls these while parsing, so a value that makes no sense is a usage
# error (exit 2) before any app is imported or any store opened.
def whole_number(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An option type: an int in [minimum, maximum]."""
    allowed = (
        f"a whole number >= {minimum}" if maximum is None else f"a whole number from {minimum} to {maximum}"
    )

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {value}")
        return value

    return parse


def seconds(*, zero: bool) -> Callable[[str], float]:
    """An option type: a finite number of seconds, > 0 (or >= 0 with ``zero``)."""
    allowed = "a number of seconds >= 0" if zero else "a number of seconds > 0"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {text!r}")
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {text}")
        return value

    return parse


def non_empty(text: str) -> str:
    """An option type: any text but the empty one."""
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def queue_names(text: str) -> list[str]:
    """An option type: comma-separated queue names, none empty."""
    names = [name.strip() for name in text.split(",")]
    if not any(names):
        raise argparse.ArgumentTypeError("name at least one queue, e.g. emails,images")
    if not all(names):
        raise argparse.ArgumentTypeError(f"empty queue name in {text!r}")
    return names


def duration(text: str) -> str:
    """An option type: a duration, kept as typed for messages (``parse_duration`` reads it)."""
    try:
        parse_duration(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def status(text: str) -> JobStatus:
    """An option type: a job status by name."""
    try:
        return parse_status(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# PostgreSQL stores priorities as 32-bit integers; refuse what it would reject.
PRIORITY = whole_number(-(2**31), 2**31 - 1)


# --- logging -----------------------------------------------------------------------------------
JOB_LOGGERS = ("jobrunner.jobs", "jobrunner.cron")
"""The loggers that write a line per job or per cron tick at INFO: quiet unless asked."""


class ConsoleFormatter(logging.Formatter):
    """``2026-12-03 07:19:05 INFO     runner started worker_id=... concurrency=100``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-8s %(message)s", "%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        event, fields = record.__dict__.get("event"), record.__dict__.get("fields")
        if isinstance(event, str) and isinstance(fields, Mapping):
            # Lists read better as a,b,c than as a quoted Python repr; a copy,
            # so that other handlers still get the record as it was made.
            readable = {key: _joined(value) for key, value in fields.items()}
            record = logging.makeLogRecord({**record.__dict__, "msg": render(event, readable), "args": None})
        return super().format(record)


def _joined(value: Any) -> Any:
    """A collection of plain names as ``a,b,c``; anything else as it is."""
    if isinstance(value, list | tuple | set | frozenset) and all(
        isinstance(item, str) and item and not any(c.isspace() or c == "," for c in item) for item in value
    ):
        return ",".join(sorted(value) if isinstance(value, set | frozenset) else value)
    return value


class JSONFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, event, then the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        event = record.__dict__.get("event")
        data: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": event if isinstance(event, str) else record.getMessage(),
        }
        fields = record.__dict__.get("fields")
        if isinstance(fields, Mapping):
            for key, value in fields.items():
                data.setdefault(key, value)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def app_configured_logging() -> bool:
    """Whether the app set up logging itself (then the CLI must not touch it)."""
    return (
        structlog.is_configured()
        or bool(logging.getLogger().handlers)
        or bool(logging.getLogger("jobrunner").handlers)
    )


def configure_logging(fmt: str, level: int, job_logs: bool) -> None:
    """A handler on stderr for the ``jobrunner`` loggers, at ``level``; per-job lines only if asked."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else ConsoleFormatter())
    top = logging.getLogger("jobrunner")
    top.addHandler(handler)
    top.setLevel(level)
    # Handlers the app adds to the root logger later (in a job, say) must not print every line twice.
    top.propagate = False
    # At INFO a busy worker would print a line per job; lifecycle, warnings and errors are what an operator reads.
    job_level = level if job_logs or level <= logging.DEBUG else max(level, logging.WARNING)
    for name in JOB_LOGGERS:
        logging.getLogger(name).setLevel(job_level)


def setup_logging(args: argparse.Namespace) -> None:
    """Configure logging for this command, unless the app (imported by now, if any) did."""
    if app_configured_logging():
        flags = {"--log-level": args.log_level, "--log-format": args.log_format, "--job-logs": args.job_logs}
        ignored = [flag for flag, value in flags.items() if value]
        if ignored:
            _log.warning("logging left as the app configured it", app=args.app, ignored=",".join(ignored))
        return
    level = logging.getLevelName((args.log_level or args.default_log_level).upper())
    configure_logging(args.log_format or "console", level, args.job_logs)


# --- commands ------------------------------------------------------------------------------------
async def cmd_worker(args: argparse.Namespace, out: Output) -> int:
    runner = load_app(args)
    configure(runner, store=args.store, concurrency=args.concurrency, consume=args.queues)
    # Before the store opens: if opening hangs or fails, the log says what it was opening.
    _log.info(
        "worker starting", app=args.app, store=_shown(args.store, runner.store), queues=args.queues or "all"
    )
    await runner.serve()
    return EXIT_OK


def _shown(url: str | None, store: Store) -> str:
    """The store for a log line: its URL as given, password hidden, else the runner's own store."""
    if url is None:
        if isinstance(store, SQLiteStore):
            return f"sqlite:///{store.path}"
        return repr(store) if type(store).__repr__ is not object.__repr__ else type(store).__name__
    if url.partition("://")[0].lower() in ("postgres", "postgresql"):
        from jobrunner.stores.postgres import redact_dsn  # imported already: the store is a PostgresStore

        return redact_dsn(url)
    return url


async def cmd_enqueue(args: argparse.Namespace, out: Output) -> int:
    runner = load_app(args)
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
        # The id, for whoever stops waiting: stdout gets only the result.
        sys.stderr.write(
            f"jobrunner: waiting for job {handle.name!r} ({handle.id}); Ctrl-C stops the wait, not the job\n"
        )
        try:
            result = await runner.result(handle.id, timeout=args.timeout)
        except TimeoutError:
            state = await handle.status()
            what = f"did not finish within {args.timeout:g} s; it is still {state.value}"
            return _not_done(args, out, handle, state, what, retry=False)
        except JobFailed as exc:
            record = await runner.store.get(handle.id)
            attempts = f" after {record.attempts} of {record.max_attempts} attempts" if record else ""
            error = f": {exc.error.type}: {exc.error.message}" if exc.error else ""
            return _not_done(args, out, handle, JobStatus.DEAD, f"ended dead{attempts}{error}", retry=True)
        except JobCancelled:
            return _not_done(args, out, handle, JobStatus.CANCELLED, "was cancelled", retry=True)
        except asyncio.CancelledError:
            # Ctrl-C: the job goes on without us; say how to find it again.
            state = await handle.status()
            sys.stderr.write(
                f"jobrunner: stopped waiting; job {handle.name!r} ({handle.id}) is still {state.value}\n"
                f"  follow it:    {_command(args, 'show', handle.id)}\n"
            )
            raise
    finally:
        await runner.aclose()
    out.json({"id": handle.id, "result": result}) if out.as_json else out.line(
        json.dumps(result, default=repr)
    )
    return EXIT_OK


def _command(args: argparse.Namespace, action: str, job_id: str) -> str:
    """The ``jobrunner jobs ACTION ID`` command line for the store this command used."""
    where = f"--store {shlex.quote(args.store)}" if args.store else f"--app {shlex.quote(args.app)}"
    return f"jobrunner jobs {action} {job_id} {where}"


def _not_done(
    args: argparse.Namespace, out: Output, handle: JobHandle[Any], state: JobStatus, what: str, *, retry: bool
) -> int:
    """``enqueue --wait`` without a result: what happened, and the commands to run next."""
    error = f"job {handle.name!r} ({handle.id}) {what}"
    commands = {"show": _command(args, "show", handle.id)}
    if retry:
        commands["retry"] = _command(args, "retry", handle.id)
    if out.as_json:
        out.json({"id": handle.id, "status": state.value, "error": error, "commands": commands})
        return EXIT_FAILED
    labels = {"show": "inspect it:" if retry else "follow it:", "retry": "run it again:"}
    hints = "".join(f"  {labels[action]:<14}{command}\n" for action, command in commands.items())
    sys.stderr.write(f"jobrunner: error: {error}\n{hints}")
    return EXIT_FAILED


async def cmd_jobs_list(args: argparse.Namespace, out: Output) -> int:
    async with opened(resolve_store(args)) as store:
        records = await store.list_jobs(
            status=args.status, queue=args.queue, name=args.name, limit=args.limit
        )
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
    status: JobStatus = args.status
    if not status.is_final:
        raise UsageError(f"only finished jobs can be purged (succeeded, dead, cancelled), not {status.value}")
    older_than = parse_duration(args.older_than)  # checked by argparse already
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


STATS_INTERVAL = 2.0
"""Seconds between ``stats --watch`` refreshes when --interval is not given."""


def _finished(stats: Any) -> int:
    return sum(stats.counts.get(s, 0) for s in JobStatus if s.is_final)


async def cmd_stats(args: argparse.Namespace, out: Output) -> int:
    interval = STATS_INTERVAL if args.interval is None else args.interval
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
                    out.write("\033[H\033[2J")  # redraw in place
                out.line(f"jobrunner stats  {iso(now)}  (every {interval:g} s, Ctrl-C to stop)\n")
                _render_stats(stats, out, throughput if throughput is not None else 0.0)
            out.flush()
            refreshes += 1
            if args.count is None or refreshes < args.count:
                await asyncio.sleep(interval)
    return EXIT_OK


async def cmd_cron_list(args: argparse.Namespace, out: Output) -> int:
    runner = load_app(args)
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
class Parser(argparse.ArgumentParser):
    """argparse's parser, but --help into a closed pipe is noticed like any other output."""

    def print_help(self, file: SupportsWrite[str] | None = None) -> None:
        # argparse's own print_help drops write errors, so `--help | head` would exit 0, not 141.
        (file or sys.stdout).write(self.format_help())


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", help="store URL, e.g. sqlite:///var/jobs.db (default: $JOBRUNNER_STORE)")
    parser.add_argument("--app", help="or take the store of this runner, module:attribute")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def _command_parser(
    commands: Any, name: str, help: str, epilog: str, handler: Callable[..., Any]
) -> argparse.ArgumentParser:
    """A command's parser; its defaults say how to run it and which parser reports its usage errors."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help,
        epilog=f"{epilog}\n\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Commands print results, and of the library's logs only warnings and
    # errors; the worker raises default_log_level to info and adds the options.
    parser.set_defaults(
        handler=handler,
        command_parser=parser,
        app=None,
        log_level=None,
        log_format=None,
        job_logs=False,
        default_log_level="warning",
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = Parser(
        prog="jobrunner",
        description="Run jobrunner workers, enqueue jobs, inspect and repair them.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = _command_parser(
        commands,
        "worker",
        "run a worker until SIGINT/SIGTERM",
        f"{EXAMPLES['worker']}\n\n{WORKER_LOGGING}",
        cmd_worker,
    )
    worker.add_argument("app", help="the runner to serve, module:attribute (e.g. myapp.jobs:runner)")
    worker.add_argument("--concurrency", type=whole_number(1), help="jobs running at once")
    worker.add_argument("--queues", type=queue_names, help="only these queues, comma-separated")
    worker.add_argument("--store", help="store URL overriding the runner's")
    worker.add_argument("--log-format", choices=["console", "json"], help="console (default) or JSON lines")
    worker.add_argument(
        "--log-level",
        type=str.lower,
        choices=["debug", "info", "warning", "error"],
        help="least severe level logged (default: info)",
    )
    worker.add_argument(
        "--job-logs", action="store_true", help="also log a line per job and per cron tick (at info)"
    )
    worker.set_defaults(json=False, default_log_level="info")

    enqueue = _command_parser(commands, "enqueue", "enqueue a job by name", EXAMPLES["enqueue"], cmd_enqueue)
    enqueue.add_argument("app", help="the runner that knows the job, module:attribute")
    enqueue.add_argument("name", help="registered job name")
    enqueue.add_argument("--args", help="positional arguments as a JSON array")
    enqueue.add_argument("--kwargs", help="keyword arguments as a JSON object")
    enqueue.add_argument("--priority", type=PRIORITY, help="lower runs first")
    enqueue.add_argument("--delay", type=seconds(zero=True), help="seconds before it may run")
    enqueue.add_argument(
        "--key", type=non_empty, help="uniqueness key: no second job while one with it is active"
    )
    enqueue.add_argument("--queue", type=non_empty, help="queue overriding the job's")
    enqueue.add_argument("--store", help="store URL overriding the runner's")
    enqueue.add_argument("--wait", action="store_true", help="wait for the job and print its result")
    enqueue.add_argument(
        "--timeout", type=seconds(zero=False), help="with --wait: give up after this many seconds"
    )
    enqueue.add_argument("--json", action="store_true", help="print JSON for scripts")

    jobs = commands.add_parser(
        "jobs",
        help="list, show, retry, cancel, purge jobs",
        epilog=f"{EXAMPLES['jobs']}\n\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    jobs_commands = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    listing = _command_parser(jobs_commands, "list", "jobs, newest first", EXAMPLES["jobs"], cmd_jobs_list)
    listing.add_argument(
        "--status", type=status, help="queued, scheduled, running, retrying, succeeded, dead, cancelled"
    )
    listing.add_argument("--queue", type=non_empty)
    listing.add_argument("--name", type=non_empty)
    listing.add_argument("--limit", type=whole_number(1), default=50, help="at most this many (default: 50)")
    _store_options(listing)
    for action, handler, text in (
        ("show", cmd_jobs_show, "one job: arguments, attempts, errors with traceback, timeline"),
        ("retry", cmd_jobs_retry, "send a dead (or cancelled) job back to the queue"),
        ("cancel", cmd_jobs_cancel, "cancel a waiting or running job"),
    ):
        sub = _command_parser(jobs_commands, action, text, EXAMPLES["jobs"], handler)
        sub.add_argument("id", help="job id")
        _store_options(sub)
    purge = _command_parser(jobs_commands, "purge", "delete finished jobs", EXAMPLES["jobs"], cmd_jobs_purge)
    purge.add_argument("--status", type=status, required=True, help="succeeded, dead or cancelled")
    purge.add_argument("--older-than", type=duration, default="0s", help="e.g. 7d, 12h, 30m (default: all)")
    purge.add_argument("--batch", type=whole_number(1), default=1000, help=argparse.SUPPRESS)
    _store_options(purge)

    stats = _command_parser(commands, "stats", "counts by status and queue", EXAMPLES["stats"], cmd_stats)
    stats.add_argument("--watch", action="store_true", help="refresh in place")
    stats.add_argument(
        "--interval",
        type=seconds(zero=False),
        help=f"with --watch: seconds between refreshes (default: {STATS_INTERVAL:g})",
    )
    stats.add_argument("--count", type=whole_number(1), help=argparse.SUPPRESS)
    _store_options(stats)

    cron = commands.add_parser(
        "cron",
        help="cron schedules",
        epilog=f"{EXAMPLES['cron']}\n\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cron_commands = cron.add_subparsers(dest="cron_command", required=True, metavar="ACTION")
    cron_list = _command_parser(
        cron_commands, "list", "each schedule and its next runs", EXAMPLES["cron"], cmd_cron_list
    )
    cron_list.add_argument("app", help="the runner with the schedules, module:attribute")
    cron_list.add_argument("--count", type=whole_number(1), default=3, help="next runs to show (default: 3)")
    cron_list.add_argument("--store", help="store URL overriding the runner's (for last runs)")
    cron_list.add_argument("--json", action="store_true", help="print JSON for scripts")
    return parser


def check_combinations(args: argparse.Namespace) -> str | None:
    """What is wrong with options that make sense only together, if anything."""
    if getattr(args, "timeout", None) is not None and not args.wait:
        return "--timeout applies only with --wait"
    if getattr(args, "interval", None) is not None and not args.watch:
        return "--interval applies only with --watch"
    return None


def _fail(message: str, code: int) -> NoReturn:
    sys.stderr.write(f"jobrunner: error: {message}\n")
    raise SystemExit(code)


def _jobrunner_errors(group: BaseExceptionGroup[Any]) -> list[JobrunnerError] | None:
    """The errors in a task group's exception group, if every one of them is a JobrunnerError."""
    matched, rest = group.split(JobrunnerError)
    if matched is None or rest is not None:
        return None

    def leaves(exc: BaseException) -> Iterator[BaseException]:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                yield from leaves(inner)
        else:
            yield exc

    return [exc for exc in leaves(matched) if isinstance(exc, JobrunnerError)]


def run(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the command; the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except BrokenPipeError:  # --help into a closed pipe
        raise StdoutClosed from None
    problem = check_combinations(args)
    if problem:
        args.command_parser.error(problem)
    out = Output(sys.stdout, getattr(args, "json", False))
    try:
        if args.app is None:
            setup_logging(args)  # no app whose import could configure logging first
        code: int = asyncio.run(args.handler(args, out))
    except UsageError as exc:
        _fail(str(exc), EXIT_USAGE)
    except JobrunnerError as exc:  # StoreError, or e.g. a job purged while --wait waited for it
        _fail(str(exc), EXIT_FAILED)
    except BaseExceptionGroup as group:  # e.g. the store failing inside a worker's task group
        errors = _jobrunner_errors(group)
        if errors is None:
            raise
        _fail("; ".join(dict.fromkeys(str(exc) for exc in errors)), EXIT_FAILED)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jobrunner`` console script."""
    try:
        try:
            return run(argv)
        finally:
            # A reader that left is noticed here, not by Python's flush at exit (a traceback).
            try:
                sys.stdout.flush()
            except BrokenPipeError:
                raise StdoutClosed from None
    except StdoutClosed:
        # What the reader took was all it wanted (``| head``): exit as a process
        # killed by SIGPIPE reports, with stdout on /dev/null so that the flush
        # at exit has nowhere to fail.
        with suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
