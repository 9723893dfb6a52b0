"""The commands that work with the app's runner, and ``stats``.

``worker`` serves the runner; ``enqueue`` submits (and may wait for) a job;
``cron list`` shows the runner's schedules; ``stats`` counts the jobs in a
store. The ``jobs ...`` commands are in ``_jobs``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shlex
import sys
import time
from datetime import datetime
from typing import Any

from jobrunner.cli._app import configure, load_app, opened, resolve_store
from jobrunner.cli._errors import EXIT_FAILED, EXIT_OK, UsageError
from jobrunner.cli._options import parse_json
from jobrunner.cli._output import Output, iso
from jobrunner.cron import CronExpression, ScheduleInfo
from jobrunner.errors import JobCancelled, JobFailed, UnknownJob
from jobrunner.handle import JobHandle
from jobrunner.logs import get_logger
from jobrunner.models import JobStatus
from jobrunner.stores.base import Store
from jobrunner.stores.sqlite import SQLiteStore

_log = get_logger("jobrunner.cli")


# --- worker ------------------------------------------------------------------------------------------
async def cmd_worker(args: argparse.Namespace, out: Output) -> int:
    runner = load_app(args)
    # --store-give-up never is None, so only a flag given may reach configure().
    give_up = {"store_give_up": args.store_give_up} if "store_give_up" in vars(args) else {}
    configure(runner, store=args.store, concurrency=args.concurrency, consume=args.queues, **give_up)
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


# --- enqueue -----------------------------------------------------------------------------------------
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


# --- stats -------------------------------------------------------------------------------------------
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


# --- cron --------------------------------------------------------------------------------------------
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
