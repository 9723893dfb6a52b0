"""The JSON API: submit, follow and repair jobs.

Routes (relative to where the app is mounted):

* ``POST /jobs/{name}``: body ``{"args": [...], "kwargs": {...}}`` and optional
  ``priority``, ``delay`` (seconds), ``key``, ``queue``; checked against the
  handler's signature; 201 with the id, 422 with the reason (nothing written),
  404 for an unknown name, 503 with Retry-After when the queue is full, 501
  when the app was built from a store alone (no registry to check against).
* ``GET /jobs/{id}``: status, attempts, result, error with traceback, progress, timeline.
* ``GET /jobs?status=&queue=&name=&limit=&before=``: newest first; ``next`` is
  the ``before`` of the next page (keyset paging, stable while jobs arrive).
* ``POST /jobs/{id}/cancel``, ``POST /jobs/{id}/retry``.
* ``DELETE /jobs?status=dead|succeeded|cancelled&older_than=SECONDS&limit=N``: purge.
* ``GET /stats``, ``GET /schedules``, ``GET /workers``, ``GET /health`` (200 or 503).

Errors are ``{"error": "what went wrong and what to do"}``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jobrunner import defaults
from jobrunner.errors import InvalidJobState, JobNotFound, QueueFull, UnknownJob
from jobrunner.models import JobStatus
from jobrunner.web._json import cluster_json, job_json, schedule_json, stats_json
from jobrunner.web._source import JobSource

__all__ = ["MAX_PAGE", "api_routes", "error", "page_args"]

MAX_PAGE = 500
"""Most jobs one ``GET /jobs`` returns."""
DEFAULT_PAGE = 50
HEALTH_TIMEOUT = 2.0
_ENQUEUE_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "priority": int,
    "delay": (int, float),
    "key": str,
    "queue": str,
}


def error(status: int, message: str, **headers: str) -> JSONResponse:
    """An error response in the API's shape."""
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


class BadRequest(Exception):
    """A query or body the API cannot use; the message says why."""

    status = 422


class TooLarge(BadRequest):
    """A body larger than ``MAX_BODY``."""

    status = 413


MAX_BODY = 2 * defaults.MAX_PAYLOAD
"""Largest request body read, in bytes: room for arguments of the largest
payload a runner accepts by default, plus the JSON around them. A larger body
is refused (413) before it is read whole."""


def page_args(request: Request) -> dict[str, Any]:
    """Filters and paging of a job listing, from the query string; BadRequest if invalid."""
    query = request.query_params
    status = query.get("status") or None
    if status is not None:
        try:
            status_value: JobStatus | None = JobStatus(status)
        except ValueError:
            raise BadRequest(
                f"status={status!r} is not a status; use one of {', '.join(s.value for s in JobStatus)}"
            ) from None
    else:
        status_value = None
    try:
        limit = int(query.get("limit", DEFAULT_PAGE))
    except ValueError:
        raise BadRequest(f"limit={query.get('limit')!r}: give a whole number") from None
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit={limit}: from 1 to {MAX_PAGE}")
    return {
        "status": status_value,
        "queue": query.get("queue") or None,
        "name": query.get("name") or None,
        "limit": limit,
        "before": query.get("before") or None,
    }


def _source(request: Request) -> JobSource:
    source: JobSource = request.app.state.source
    return source


async def list_jobs(request: Request) -> Response:
    try:
        args = page_args(request)
        records = await _source(request).list_jobs(**args)
    except BadRequest as exc:
        return error(400, str(exc))
    except JobNotFound:
        return error(400, f"before={args['before']!r}: that job is gone (purged); list from the first page")
    more = len(records) == args["limit"]
    return JSONResponse(
        {"jobs": [job_json(r, full=False) for r in records], "next": records[-1].id if more else None}
    )


async def get_job(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    try:
        record = await _source(request).get(job_id)
    except JobNotFound as exc:
        return error(404, str(exc))
    return JSONResponse(job_json(record))


async def enqueue(request: Request) -> Response:
    source = _source(request)
    name = request.path_params["name"]
    if not source.can_enqueue:
        return error(
            501,
            "this app reads a store and has no job registry to check a job against; "
            "serve it from the app's runner (create_app(runner) or `jobrunner web module:runner`) to enqueue",
        )
    try:
        body = await _body(request)
        args, kwargs, options = _call(body)
    except BadRequest as exc:
        return error(exc.status, str(exc))
    try:
        handle = await source.enqueue(name, args, kwargs, options)
    except UnknownJob as exc:
        return error(404, str(exc))
    except (TypeError, ValueError) as exc:
        return error(422, str(exc))
    except QueueFull as exc:
        return error(503, f"{exc}; try again later", **{"Retry-After": "1"})
    return JSONResponse(
        {
            "id": handle.id,
            "name": name,
            "created": handle.created,
            "url": str(request.url_for("api_job", job_id=handle.id)),
        },
        status_code=201 if handle.created else 200,
    )


async def _body(request: Request) -> dict[str, Any]:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise TooLarge(f"the body is {int(declared):,} bytes; at most {MAX_BODY:,} are read")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():  # a body sent without a length is cut off as it grows
        size += len(chunk)
        if size > MAX_BODY:
            raise TooLarge(f"the body is over {MAX_BODY:,} bytes, the most that is read")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object, e.g. {"args": [1], "kwargs": {"to": "ada"}}')
    return body


def _call(body: dict[str, Any]) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    unknown = set(body) - {"args", "kwargs", *_ENQUEUE_OPTIONS}
    if unknown:
        raise BadRequest(
            f"unknown field(s) {', '.join(sorted(unknown))}; the body takes args, kwargs, "
            f"{', '.join(_ENQUEUE_OPTIONS)}"
        )
    args = body.get("args", [])
    kwargs = body.get("kwargs", {})
    if not isinstance(args, list):
        raise BadRequest("args must be a JSON array")
    if not isinstance(kwargs, dict):
        raise BadRequest("kwargs must be a JSON object")
    options = {}
    for option, kind in _ENQUEUE_OPTIONS.items():
        value = body.get(option)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, kind):
            raise BadRequest(f"{option}={value!r} has the wrong type")
        options[option] = value
    return args, kwargs, options


async def cancel(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    try:
        status = await _source(request).cancel(job_id)
    except JobNotFound as exc:
        return error(404, str(exc))
    return JSONResponse(
        {"id": job_id, "status": status.value, "cancel_requested": status is JobStatus.RUNNING}
    )


async def retry(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    try:
        record = await _source(request).retry(job_id)
    except JobNotFound as exc:
        return error(404, str(exc))
    except InvalidJobState as exc:
        return error(409, str(exc))
    return JSONResponse(job_json(record))


async def queues(request: Request) -> Response:
    """Paused queues, with when each was paused."""
    paused = await _source(request).paused_queues()
    return JSONResponse({"paused": [{"queue": q, "paused_at": at} for q, at in sorted(paused.items())]})


async def pause(request: Request) -> Response:
    queue = request.path_params["queue"]
    changed = await _source(request).pause(queue)
    return JSONResponse({"queue": queue, "paused": True, "changed": changed})


async def resume(request: Request) -> Response:
    queue = request.path_params["queue"]
    changed = await _source(request).resume(queue)
    return JSONResponse({"queue": queue, "paused": False, "changed": changed})


async def purge(request: Request) -> Response:
    query = request.query_params
    status = query.get("status")
    finals = ", ".join(sorted(s.value for s in JobStatus if s.is_final))
    try:
        status_value = JobStatus(status or "")
    except ValueError:
        return error(400, f"status={status!r}: purge needs a final status, one of {finals}")
    if not status_value.is_final:
        return error(400, f"status={status}: only finished jobs can be purged ({finals})")
    try:
        older_than = float(query.get("older_than", 0))
        limit = int(query.get("limit", 10_000))
    except ValueError:
        return error(400, "older_than is seconds (a number) and limit a whole number")
    if older_than < 0 or limit < 1:
        return error(400, "older_than must be >= 0 and limit >= 1")
    purged = await _source(request).purge(status_value, older_than, limit)
    return JSONResponse({"status": status_value.value, "purged": purged})


async def stats(request: Request) -> Response:
    source = _source(request)
    view, stale = await source.stats(wait=False)
    return JSONResponse(stats_json(view), background=BackgroundTask(source.refresh_stats) if stale else None)


async def schedules(request: Request) -> Response:
    source = _source(request)
    infos = await source.schedules()
    if infos is None:
        # A bare store knows when each schedule last fired, not the schedules themselves.
        last = await source.cron_state()
        return JSONResponse(
            {
                "schedules": [{"name": name, "last_fire_at": at} for name, at in sorted(last.items())],
                "partial": True,
            }
        )
    return JSONResponse({"schedules": [schedule_json(info) for info in infos], "partial": False})


async def workers(request: Request) -> Response:
    return JSONResponse(cluster_json(*await _source(request).cluster()))


async def health(request: Request) -> Response:
    ok, details = await _source(request).health(HEALTH_TIMEOUT)
    return JSONResponse({"ok": ok, **details}, status_code=200 if ok else 503)


def api_routes() -> list[Route]:
    """The JSON API's routes; the SSE routes are ``_sse.sse_routes``."""
    return [
        Route("/jobs", list_jobs, methods=["GET"], name="api_jobs"),
        Route("/jobs", purge, methods=["DELETE"], name="api_purge"),
        Route("/jobs/{job_id}", get_job, methods=["GET"], name="api_job"),
        Route("/jobs/{name}", enqueue, methods=["POST"], name="api_enqueue"),
        Route("/jobs/{job_id}/cancel", cancel, methods=["POST"], name="api_cancel"),
        Route("/jobs/{job_id}/retry", retry, methods=["POST"], name="api_retry"),
        Route("/queues", queues, methods=["GET"], name="api_queues"),
        Route("/queues/{queue}/pause", pause, methods=["POST"], name="api_pause"),
        Route("/queues/{queue}/resume", resume, methods=["POST"], name="api_resume"),
        Route("/stats", stats, methods=["GET"], name="api_stats"),
        Route("/schedules", schedules, methods=["GET"], name="api_schedules"),
        Route("/workers", workers, methods=["GET"], name="api_workers"),
        Route("/health", health, methods=["GET", "HEAD"], name="api_health"),
    ]
