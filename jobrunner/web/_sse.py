"""Server-Sent Events: one job's updates, and live stats.

* ``GET /jobs/{id}/events``: an ``event: job`` with the job (as ``GET
  /jobs/{id}``) now and whenever it changes (status, attempts, progress);
  the stream ends after the job is final.
* ``GET /stats/events``: an ``event: stats`` (as ``GET /stats``) every
  ``interval`` seconds; ``?count=N`` ends it after N events.

The store is read every ``interval`` seconds per stream (stats are shared by
every stream, see ``JobSource.stats``); a comment line every ``keepalive``
seconds keeps proxies from closing a quiet stream. A client that goes away
ends its stream at the next event (Starlette cancels the response).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from jobrunner.errors import JobNotFound
from jobrunner.web._api import error
from jobrunner.web._json import job_json, stats_json
from jobrunner.web._source import JobSource

__all__ = ["SSEOptions", "sse_routes"]

_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class SSEOptions:
    """How often streams read the store and send keep-alives."""

    def __init__(self, interval: float = 1.0, keepalive: float = 15.0) -> None:
        self.interval = interval
        self.keepalive = keepalive


def _event(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def job_events(request: Request) -> Response:
    source: JobSource = request.app.state.source
    options: SSEOptions = request.app.state.sse
    job_id = request.path_params["job_id"]
    try:
        first = await source.get(job_id)
    except JobNotFound as exc:
        return error(404, str(exc))

    async def stream() -> AsyncIterator[str]:
        record = first
        last: dict[str, Any] | None = None
        quiet = 0.0
        while True:
            data = job_json(record)
            if data != last:
                yield _event("job", data)
                last, quiet = data, 0.0
                if record.status.is_final:
                    return
            elif quiet >= options.keepalive:
                yield ": keepalive\n\n"
                quiet = 0.0
            await source.clock.sleep(options.interval)
            quiet += options.interval
            try:
                record = await source.get(job_id)
            except JobNotFound:
                yield _event("gone", {"id": job_id})
                return

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_HEADERS)


async def stats_events(request: Request) -> Response:
    source: JobSource = request.app.state.source
    options: SSEOptions = request.app.state.sse
    try:
        count = int(request.query_params.get("count", 0))
    except ValueError:
        return error(400, "count must be a whole number")

    async def stream() -> AsyncIterator[str]:
        sent = 0
        while True:
            view, _ = await source.stats()
            yield _event("stats", stats_json(view))
            sent += 1
            if count and sent >= count:
                return
            await source.clock.sleep(options.interval)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_HEADERS)


def sse_routes() -> list[Route]:
    """The event-stream routes."""
    return [
        Route("/jobs/{job_id}/events", job_events, methods=["GET"], name="sse_job"),
        Route("/stats/events", stats_events, methods=["GET"], name="sse_stats"),
    ]
