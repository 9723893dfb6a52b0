"""The ``jobrunner`` command: run workers, enqueue, inspect and repair jobs.

Commands (``jobrunner COMMAND --help`` shows each one's options and examples):

* ``worker APP``: serve the app's runner until SIGINT/SIGTERM, then drain.
* ``enqueue APP NAME``: enqueue a job by name; ``--wait`` prints its result.
* ``jobs list|show|retry|cancel|purge``: inspect and repair the jobs in a store.
* ``queues pause|resume|list``: stop and restart a queue's claims on every worker.
* ``stats``: counts by status and queue; ``--watch`` refreshes in place.
* ``cron list APP``: each schedule and its next runs.
* ``web [APP]``: serve the Service API and dashboard (``jobrunner.web``, uvicorn).

The app's runner is found by import path, as uvicorn does (``myapp.jobs:runner``).
Commands that only read or repair the store take ``--store URL`` (or
``JOBRUNNER_STORE``) and never import the app.

Exit codes (``_errors.EXIT_CODES``): 0 done; 1 failed (the store failed, or the
job of ``enqueue --wait`` ended dead, was cancelled or outlived ``--timeout``);
2 usage error; 130 interrupted; 141 stdout closed early. Option values are
checked while parsing, so a bad one exits 2 before anything is imported or
opened.

Logging: the CLI is an app, so it may configure logging, as uvicorn does: a
handler on stderr for the ``jobrunner`` loggers, unless the app's own import
configured logging (then it is left alone). A worker logs its lifecycle at
INFO and every warning and error; a line per job only with ``--job-logs``.
Other commands print their results, and only warnings and errors besides.

Where things are: ``_parser`` (options, help, examples, option checks),
``_options`` (what each option value accepts), ``_app`` (loading the app's
runner, finding the store), ``_commands`` (worker, enqueue, stats, cron) and
``_jobs`` (the ``jobs`` commands), ``_queues`` (the ``queues`` commands), ``_web`` (``web``),
``_output`` (tables, JSON, times),
``_logging`` (the CLI's log formatters and set-up), ``_errors`` (exit codes).
This module runs a command and turns how it ended into an exit code.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import suppress
from typing import Any, NoReturn

from jobrunner.cli._errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_PIPE,
    EXIT_USAGE,
    StdoutClosed,
    UsageError,
)
from jobrunner.cli._logging import setup_logging
from jobrunner.cli._output import Output
from jobrunner.cli._parser import build_parser, check_combinations
from jobrunner.errors import JobrunnerError

__all__ = ["main"]


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
