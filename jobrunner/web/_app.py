"""The app factory: one ASGI app with the JSON API, the event streams and the dashboard."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jobrunner.clock import Clock
from jobrunner.runner import Runner
from jobrunner.stores.base import Store
from jobrunner.web._api import api_routes
from jobrunner.web._auth import Access, AccessMiddleware, AuthHook
from jobrunner.web._pages import page_routes, templates
from jobrunner.web._source import JobSource
from jobrunner.web._sse import SSEOptions, sse_routes

__all__ = ["create_app"]

STATIC = Path(__file__).parent / "static"


def create_app(
    target: Runner | Store | str,
    *,
    auth: AuthHook | None = None,
    read_only: bool = False,
    stats_ttl: float = 1.0,
    refresh: float = 2.0,
    sse_interval: float = 1.0,
    clock: Clock | None = None,
) -> Starlette:
    """The jobrunner web app for a runner, a store, or a store URL.

    Mount it in FastAPI or Starlette (``app.mount("/jobs", create_app(runner,
    auth=...))``) or serve it alone (``jobrunner web module:runner``). Built
    from a runner, serve it on the runner's event loop (a runner started in
    the host app's lifespan is): the app calls the runner, whose asyncio
    objects belong to one loop.

    Args:
        target: the app's ``Runner`` (everything, including ``POST /jobs/{name}``
            and schedules), or a ``Store`` / store URL (read and repair only;
            needs none of the app's code).
        auth: ``auth(request) -> bool`` (or async), asked for every request.
            Without it nothing that changes jobs is allowed.
        read_only: refuse changes even with ``auth``.
        stats_ttl: seconds the store's stats are reused for (every dashboard
            tab polls them; the store is asked once per this).
        refresh: seconds between the dashboard's live updates.
        sse_interval: seconds between the event streams' reads of the store.
        clock: the clock of a bare store's app (a runner brings its own).
    """
    source = JobSource(target, clock=clock, stats_ttl=stats_ttl)
    access = Access(auth, read_only)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Run alone, the app closes a store it opened; mounted, the host app's
        # lifespan runs instead and the store closes with the process.
        try:
            yield
        finally:
            await source.aclose()

    async def home(request: Request) -> Response:
        return RedirectResponse(request.url_for("page_overview").path, status_code=307)

    app = Starlette(
        routes=[
            Route("/", home, name="home"),
            *api_routes(),
            *sse_routes(),
            Mount("/ui", routes=page_routes()),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[Middleware(AccessMiddleware, access=access)],
        lifespan=lifespan,
    )
    app.state.source = source
    app.state.access = access
    app.state.sse = SSEOptions(interval=sse_interval)
    app.state.refresh = refresh
    app.state.templates = templates()
    return app
