"""``jobrunner jobs list|show|retry|cancel|purge``: inspect and repair the jobs in a store.

These commands open the store for one command and close it after; they need
its URL, not the app (``_app.resolve_store``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from jobrunner.cli._app import opened, resolve_store
from jobrunner.cli._errors import EXIT_OK, UsageError
from jobrunner.cli._options import parse_duration
from jobrunner.cli._output import Output, ago, iso, record_json
from jobrunner.errors import JobNotFound, JobrunnerError
from jobrunner.models import JobRecord, JobStatus, ParentOutcome
from jobrunner.stores.base import Store


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


def _parent_detail(parent: ParentOutcome) -> str:
    if parent.error is not None:
        return f"{parent.error.type}: {parent.error.message}"
    return "" if parent.status is None else json.dumps(parent.result, default=repr)


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
        parents = await store.parent_outcomes(record.id)
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
        ("expires", "-" if record.expires_at is None else iso(record.expires_at)),
        ("started", iso(record.started_at)),
        ("finished", iso(record.finished_at)),
        ("worker", record.worker or "-"),
    ]
    if record.progress is not None:
        p = record.progress
        text = f"{p.fraction:.0%}" + (f" {p.message}" if p.message else "")
        fields.append(("progress", f"{text} (attempt {p.attempt}, {ago(p.at, now)})"))
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
    if parents:
        out.line()
        out.line("parents (after=):")
        rows = [
            [p.id, p.name, "not ended" if p.status is None else p.status.value, _short(_parent_detail(p), 50)]
            for p in parents
        ]
        out.table(["ID", "NAME", "STATUS", "RESULT / ERROR"], rows, status_column=2)
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
