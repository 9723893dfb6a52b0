"""``jobrunner queues pause|resume|list``: stop and restart the claims of a queue.

A pause is stored in the store, so it holds for every worker on it (and for
workers started later) until it is resumed; jobs still enqueue meanwhile and
running ones finish. These commands need the store's URL, not the app.
"""

from __future__ import annotations

import argparse
import time

from jobrunner.cli._app import opened, resolve_store
from jobrunner.cli._errors import EXIT_OK
from jobrunner.cli._output import Output, ago, iso
from jobrunner.models import WAITING_STATUSES, JobStatus


async def cmd_queues_pause(args: argparse.Namespace, out: Output) -> int:
    async with opened(resolve_store(args)) as store:
        changed = await store.pause_queue(args.queue, time.time())
    text = "paused: no worker starts its jobs until it is resumed" if changed else "was paused already"
    out.json({"queue": args.queue, "paused": True, "changed": changed}) if out.as_json else out.line(
        f"{args.queue}: {text}"
    )
    return EXIT_OK


async def cmd_queues_resume(args: argparse.Namespace, out: Output) -> int:
    async with opened(resolve_store(args)) as store:
        changed = await store.resume_queue(args.queue)
    text = "resumed" if changed else "was not paused"
    out.json({"queue": args.queue, "paused": False, "changed": changed}) if out.as_json else out.line(
        f"{args.queue}: {text}"
    )
    return EXIT_OK


async def cmd_queues_list(args: argparse.Namespace, out: Output) -> int:
    """Every queue with jobs or a pause: paused since when, jobs waiting and running."""
    now = time.time()
    async with opened(resolve_store(args)) as store:
        paused = await store.paused_queues()
        stats = await store.stats(now)
    names = sorted(set(stats.queues) | set(paused))
    rows = []
    for name in names:
        counts = stats.queues.get(name, {})
        waiting = sum(counts.get(s, 0) for s in WAITING_STATUSES)
        rows.append((name, paused.get(name), waiting, counts.get(JobStatus.RUNNING, 0)))
    if out.as_json:
        out.json(
            [
                {
                    "queue": q,
                    "paused": at is not None,
                    "paused_at": iso(at) if at else None,
                    "waiting": w,
                    "running": r,
                }
                for q, at, w, r in rows
            ]
        )
        return EXIT_OK
    if not rows:
        out.line("no queues: no jobs and no pauses in this store")
        return EXIT_OK
    table = [
        [q, "paused " + ago(at, now) if at is not None else "active", str(w), str(r)] for q, at, w, r in rows
    ]
    out.table(["QUEUE", "STATE", "WAITING", "RUNNING"], table)
    return EXIT_OK
