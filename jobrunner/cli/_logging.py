"""The CLI's logging: formatters for stderr, and the set-up a command gets unless the app made its own.

The CLI is an app, so it may configure logging, as uvicorn does; the library
never does (see ``jobrunner.logs``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from jobrunner.logs import get_logger, render

JOB_LOGGERS = ("jobrunner.jobs", "jobrunner.cron")
"""The loggers that write a line per job or per cron tick at INFO: quiet unless asked."""

_log = get_logger("jobrunner.cli")


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
