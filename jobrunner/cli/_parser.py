"""The command line: every command's options, help text and examples, and the option checks.

Each command's parser carries its handler (``args.handler``) and itself
(``args.command_parser``, which reports that command's usage errors).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jobrunner.cli._commands import STATS_INTERVAL, cmd_cron_list, cmd_enqueue, cmd_stats, cmd_worker
from jobrunner.cli._errors import EXIT_CODES
from jobrunner.cli._jobs import cmd_jobs_cancel, cmd_jobs_list, cmd_jobs_purge, cmd_jobs_retry, cmd_jobs_show
from jobrunner.cli._options import (
    PRIORITY,
    duration,
    non_empty,
    queue_names,
    seconds,
    seconds_or_never,
    status,
    whole_number,
)
from jobrunner.cli._queues import cmd_queues_list, cmd_queues_pause, cmd_queues_resume
from jobrunner.cli._web import cmd_web

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

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
    "  jobrunner worker myapp.jobs:runner --job-logs\n"
    "  jobrunner worker myapp.jobs:runner --store-give-up 600",
    "enqueue": "examples:\n  jobrunner enqueue myapp.jobs:runner send_email --args '[\"ada@example.com\"]'\n"
    "  jobrunner enqueue myapp.jobs:runner resize --kwargs '{\"image_id\": 42}' --delay 60 --wait",
    "jobs": "examples:\n  jobrunner jobs list --store sqlite:///var/jobs.db --status dead\n"
    "  jobrunner jobs show 01a2... --store sqlite:///var/jobs.db\n"
    "  jobrunner jobs retry 01a2... --store sqlite:///var/jobs.db\n"
    "  jobrunner jobs purge --status dead --older-than 7d --store sqlite:///var/jobs.db",
    "stats": "examples:\n  jobrunner stats --store sqlite:///var/jobs.db\n"
    "  jobrunner stats --store sqlite:///var/jobs.db --watch",
    "cron": "examples:\n  jobrunner cron list myapp.jobs:runner",
    "web": "examples:\n  jobrunner web myapp.jobs:runner --auth myapp.auth:allow\n"
    "  jobrunner web --store sqlite:///var/jobs.db --port 8080\n"
    "  jobrunner web myapp.jobs:runner --host 0.0.0.0 --read-only",
    "queues": "examples:\n  jobrunner queues pause emails --store sqlite:///var/jobs.db\n"
    "  jobrunner queues resume emails --store sqlite:///var/jobs.db\n"
    "  jobrunner queues list --store sqlite:///var/jobs.db",
}


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
    worker.add_argument(
        "--store-give-up",
        type=seconds_or_never,
        metavar="SECONDS",
        # Left out, the attribute is absent and the runner keeps its own (None means never).
        default=argparse.SUPPRESS,
        help="once the store has failed this many seconds without a break, drain and exit 1; "
        "'never' retries for ever (default: the runner's store_give_up, 120 s unless the app sets it)",
    )
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

    queues = commands.add_parser(
        "queues",
        help="pause, resume, list queues",
        epilog=f"{EXAMPLES['queues']}\n\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    queues_commands = queues.add_subparsers(dest="queues_command", required=True, metavar="ACTION")
    for action, handler, text in (
        ("pause", cmd_queues_pause, "stop every worker on the store from starting the queue's jobs"),
        ("resume", cmd_queues_resume, "let workers start the queue's jobs again"),
    ):
        sub = _command_parser(queues_commands, action, text, EXAMPLES["queues"], handler)
        sub.add_argument("queue", type=non_empty, help="queue name")
        _store_options(sub)
    queues_list = _command_parser(
        queues_commands,
        "list",
        "each queue: paused or not, jobs waiting and running",
        EXAMPLES["queues"],
        cmd_queues_list,
    )
    _store_options(queues_list)

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

    web = _command_parser(
        commands,
        "web",
        "serve the Service API and web dashboard (needs jobrunner[web])",
        EXAMPLES["web"],
        cmd_web,
    )
    web.add_argument(
        "app", nargs="?", help="the app's runner, module:attribute (omit it to read a --store alone)"
    )
    web.add_argument("--store", help="store URL (default: $JOBRUNNER_STORE, or the runner's)")
    web.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    web.add_argument("--port", type=whole_number(1), default=8000, help="port (default: 8000)")
    web.add_argument(
        "--auth", help="auth hook, module:callable taking the request; without it the dashboard is read-only"
    )
    web.add_argument("--read-only", action="store_true", help="refuse changes even with --auth")
    web.set_defaults(json=False)
    return parser


def check_combinations(args: argparse.Namespace) -> str | None:
    """What is wrong with options that make sense only together, if anything."""
    if getattr(args, "timeout", None) is not None and not args.wait:
        return "--timeout applies only with --wait"
    if getattr(args, "interval", None) is not None and not args.watch:
        return "--interval applies only with --watch"
    return None
