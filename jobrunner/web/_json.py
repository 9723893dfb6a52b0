"""Records and stats as the JSON the API returns. Times are epoch seconds (floats)."""

from __future__ import annotations

from typing import Any

from jobrunner.cron import ScheduleInfo
from jobrunner.models import JobRecord, LeaderInfo, WorkerInfo
from jobrunner.web._source import StatsView

__all__ = ["cluster_json", "job_json", "schedule_json", "stats_json"]


def job_json(record: JobRecord, *, full: bool = True) -> dict[str, Any]:
    """A job: status, attempts, result, error, progress and (``full``) arguments and timeline."""
    data: dict[str, Any] = {
        "id": record.id,
        "name": record.name,
        "queue": record.queue,
        "priority": record.priority,
        "status": record.status.value,
        "attempts": record.attempts,
        "max_attempts": record.max_attempts,
        "enqueued_at": record.enqueued_at,
        "run_at": record.run_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "worker": record.worker,
        "error": None
        if record.error is None
        else {"type": record.error.type, "message": record.error.message},
        "progress": None
        if record.progress is None
        else {
            "fraction": record.progress.fraction,
            "message": record.progress.message,
            "attempt": record.progress.attempt,
            "at": record.progress.at,
        },
    }
    if full:
        if data["error"] is not None and record.error is not None:
            data["error"]["traceback"] = record.error.traceback
        data.update(
            args=list(record.args),
            kwargs=record.kwargs,
            key=record.key,
            workspace_id=record.workspace_id,
            timeout=record.timeout,
            trigger=record.trigger.value,
            cancel_requested=record.cancel_requested,
            result=record.result,
            result_error=record.result_error,
            meta=None if record.meta is None else dict(record.meta),
            timeline=[
                {
                    "at": entry.at,
                    "status": entry.status.value,
                    "attempt": entry.attempt,
                    "worker": entry.worker,
                    "note": entry.note,
                }
                for entry in record.history
            ],
        )
    return data


def stats_json(stats: StatsView) -> dict[str, Any]:
    """Counts by status, per-queue depth and throughput, the oldest wait."""
    return {
        "at": stats.at,
        "counts": {status.value: n for status, n in stats.counts.items()},
        "queues": {
            queue.name: {
                "counts": {status.value: n for status, n in queue.counts.items()},
                "waiting": queue.waiting,
                "running": queue.running,
                "throughput": queue.throughput,
            }
            for queue in stats.queues
        },
        "oldest_waiting_age": stats.oldest_waiting_age,
        "unknown_names": dict(stats.unknown_names),
    }


def schedule_json(info: ScheduleInfo) -> dict[str, Any]:
    """A schedule with its next and last run (ISO 8601 in its timezone)."""
    return {
        "name": info.name,
        "job": info.job,
        "expression": info.expression,
        "timezone": info.timezone,
        "next_run": info.next_run.isoformat(),
        "last_run": None if info.last_run is None else info.last_run.isoformat(),
        "missed": str(info.missed),
        "jitter": info.jitter,
    }


def cluster_json(workers: list[WorkerInfo], leaders: list[LeaderInfo]) -> dict[str, Any]:
    """The runners seen lately and who leads."""
    return {
        "workers": [{"worker": w.worker, "names": list(w.names), "seen_at": w.seen_at} for w in workers],
        "leaders": [
            {"role": lead.role, "holder": lead.holder, "expires_at": lead.expires_at} for lead in leaders
        ],
    }
