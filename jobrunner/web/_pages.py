"""The dashboard: server-rendered pages (Jinja2 templates in ``templates/``),
kept live by htmx (``static/htmx.min.js``, shipped in the package).

Each page marks its changing part ``id="live"``; htmx fetches the same page
every ``refresh`` seconds and swaps that part in, so a page's live update is
its own render (one code path, nothing to drift). Buttons post with htmx,
which sends ``HX-Request`` (the CSRF header ``_auth`` requires); they are
shown only when changes are allowed.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import jinja2
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from jobrunner.errors import InvalidJobState, JobNotFound
from jobrunner.models import JobStatus
from jobrunner.web._api import BadRequest, page_args
from jobrunner.web._auth import Access
from jobrunner.web._source import JobSource

__all__ = ["page_routes", "templates"]

TEMPLATES = Path(__file__).parent / "templates"
PAGE = 50


def _iso(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _ago(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "-"
    delta = (time.time() if now is None else now) - ts
    future, delta = delta < 0, abs(delta)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            text = f"{delta / size:.0f}{unit}"
            break
    else:
        text = f"{delta:.0f}s"
    return f"in {text}" if future else f"{text} ago"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 120 else _ago(time.time() - value).removesuffix(" ago")


def templates() -> Jinja2Templates:
    """The dashboard's templates with its filters."""
    found = Jinja2Templates(directory=str(TEMPLATES))
    found.env.filters.update(iso=_iso, ago=_ago, seconds=_seconds, tojson_pretty=_pretty, relative=_relative)
    found.env.globals["url_for"] = _url_for
    return found


@jinja2.pass_context
def _url_for(context: dict[str, Any], name: str, /, **params: Any) -> str:
    """Starlette's ``url_for``, as a path: links work behind a proxy that changes the host."""
    request: Request = context["request"]
    return request.url_for(name, **params).path


def _relative(url: Any) -> str:
    """A URL without scheme and host: behind a proxy the app does not know the host the browser used."""
    return f"{url.path}?{url.query}" if url.query else str(url.path)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=repr)


def _render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    access: Access = request.app.state.access
    source: JobSource = request.app.state.source
    found: Jinja2Templates = request.app.state.templates
    base = {
        "can_write": not access.read_only,
        "why_read_only": access.why_read_only,
        "refresh": request.app.state.refresh,
        "can_enqueue": source.can_enqueue,
        "now": source.clock.now(),
        "statuses": [s.value for s in JobStatus],
    }
    return found.TemplateResponse(request, name, {**base, **context}, status_code=status)


def _source(request: Request) -> JobSource:
    source: JobSource = request.app.state.source
    return source


async def overview(request: Request) -> Response:
    source = _source(request)
    stats, stale = await source.stats(wait=False)
    workers, leaders = await source.cluster()
    paused = await source.paused_queues()
    response = _render(
        request, "overview.html", {"stats": stats, "workers": workers, "leaders": leaders, "paused": paused}
    )
    if stale:
        response.background = BackgroundTask(source.refresh_stats)
    return response


async def jobs(request: Request) -> Response:
    source = _source(request)
    search = request.query_params.get("q", "").strip()
    if search:
        # A job id goes to its page; anything else filters by job name.
        try:
            await source.get(search)
        except JobNotFound:
            pass
        else:
            return RedirectResponse(request.url_for("page_job", job_id=search).path, status_code=303)
    try:
        args = page_args(request)
    except BadRequest as exc:
        return _render(request, "jobs.html", {"problem": str(exc), "records": [], "args": {}}, 400)
    if search and args["name"] is None:
        args["name"] = search
    if "limit" not in request.query_params:
        args["limit"] = PAGE
    try:
        records = await source.list_jobs(**args)
    except JobNotFound:
        return _render(
            request,
            "jobs.html",
            {"problem": "that page is gone; start again", "records": [], "args": args},
            400,
        )
    more = records[-1].id if len(records) == args["limit"] else None
    return _render(request, "jobs.html", {"records": records, "args": args, "search": search, "more": more})


async def dead(request: Request) -> Response:
    source = _source(request)
    before = request.query_params.get("before") or None
    try:
        records = await source.list_jobs(
            status=JobStatus.DEAD, queue=None, name=None, limit=PAGE, before=before
        )
    except JobNotFound:
        records = []
    more = records[-1].id if len(records) == PAGE else None
    return _render(request, "dead.html", {"records": records, "more": more})


async def job(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    try:
        record = await _source(request).get(job_id)
    except JobNotFound as exc:
        return _render(request, "missing.html", {"message": str(exc)}, 404)
    return _render(request, "job.html", {"job": record})


async def schedules(request: Request) -> Response:
    source = _source(request)
    infos = await source.schedules()
    last = await source.cron_state() if infos is None else {}
    return _render(request, "schedules.html", {"schedules": infos, "last": last})


async def retry(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    try:
        await _source(request).retry(job_id)
    except (JobNotFound, InvalidJobState) as exc:
        return _flash(str(exc))
    # Follow the job: its page shows it run again.
    return Response(status_code=204, headers={"HX-Redirect": request.url_for("page_job", job_id=job_id).path})


async def cancel(request: Request) -> Response:
    try:
        await _source(request).cancel(request.path_params["job_id"])
    except JobNotFound as exc:
        return _flash(str(exc))
    return Response(status_code=204, headers={"HX-Refresh": "true"})


async def pause(request: Request) -> Response:
    await _source(request).pause(request.path_params["queue"])
    return Response(status_code=204, headers={"HX-Refresh": "true"})


async def resume(request: Request) -> Response:
    await _source(request).resume(request.path_params["queue"])
    return Response(status_code=204, headers={"HX-Refresh": "true"})


async def purge_dead(request: Request) -> Response:
    purged = await _source(request).purge(JobStatus.DEAD, 0.0, 100_000)
    return _flash(f"purged {purged} dead jobs", refresh=True)


def _flash(message: str, *, refresh: bool = False) -> Response:
    headers = {"HX-Refresh": "true"} if refresh else None
    return HTMLResponse(f'<p class="flash">{escape(message)}</p>', headers=headers)


def page_routes() -> list[Route]:
    """The dashboard's pages and its buttons' actions."""
    return [
        Route("/", overview, name="page_overview"),
        Route("/jobs", jobs, name="page_jobs"),
        Route("/jobs/{job_id}", job, name="page_job"),
        Route("/jobs/{job_id}/retry", retry, methods=["POST"], name="page_retry"),
        Route("/jobs/{job_id}/cancel", cancel, methods=["POST"], name="page_cancel"),
        Route("/queues/{queue}/pause", pause, methods=["POST"], name="page_pause"),
        Route("/queues/{queue}/resume", resume, methods=["POST"], name="page_resume"),
        Route("/dead", dead, name="page_dead"),
        Route("/dead/purge", purge_dead, methods=["POST"], name="page_purge_dead"),
        Route("/schedules", schedules, name="page_schedules"),
    ]
