"""Who may do what: the auth hook, read-only mode, and CSRF protection.

* ``auth``: a callable taking the Starlette ``Request`` and returning (or
  awaiting to) True to allow it. It is asked for every request, reads
  included; ``request.method`` tells reads from changes. It runs before the
  app reads the request: look at headers, cookies, the client address, the
  session, not at the body.
* Nothing that changes jobs works without an auth hook: with none, the app is
  read-only whatever ``read_only`` says, so a dashboard exposed by accident
  cannot retry, cancel, purge or enqueue. ``read_only=True`` refuses changes
  even with a hook (a view for a wider audience).
* CSRF: a request that changes something (any method but GET, HEAD, OPTIONS)
  must carry a header a cross-site form cannot send without a CORS preflight,
  which this app never grants: ``HX-Request`` (htmx sends it) or
  ``X-Jobrunner-Request``. When the browser sends ``Origin``, it must be this
  app's own. Cookies of the user's session are therefore useless to another site.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["CSRF_HEADERS", "Access", "AccessMiddleware", "AuthHook"]

AuthHook = Callable[[Request], "bool | Awaitable[bool]"]
"""``auth(request) -> bool`` (or a coroutine function): True allows the request."""

CSRF_HEADERS = ("hx-request", "x-jobrunner-request")
"""A changing request needs one of these headers (any value)."""

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Access:
    """The app's access policy."""

    def __init__(self, auth: AuthHook | None, read_only: bool) -> None:
        self.auth = auth
        self.read_only = read_only or auth is None

    @property
    def why_read_only(self) -> str:
        """What to do to allow changes, for the 403 message and the dashboard."""
        if self.auth is None:
            return (
                "this dashboard is read-only: changes need an auth hook, "
                "create_app(..., auth=callable) or `jobrunner web --auth module:callable`"
            )
        return "this dashboard is read-only (read_only=True)"

    async def allows(self, request: Request) -> bool:
        """What the auth hook says of ``request`` (True without a hook)."""
        if self.auth is None:
            return True
        verdict: Any = self.auth(request)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return bool(verdict)


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    # No Origin: not a browser's cross-site request (browsers send it with every
    # non-GET fetch and form post). "null" (a sandboxed page) is refused.
    # Host only, not the scheme: behind a proxy that ends TLS the app sees http.
    return origin is None or urlsplit(origin).netloc == request.url.netloc


class AccessMiddleware:
    """Applies ``Access`` to every HTTP request before the app sees it."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        problem = await self._problem(request)
        if problem is not None:
            status, message = problem
            await JSONResponse({"error": message}, status_code=status)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _problem(self, request: Request) -> tuple[int, str] | None:
        if not await self.access.allows(request):
            return 403, "the auth hook refused this request"
        if request.method in SAFE_METHODS:
            return None
        if self.access.read_only:
            return 403, self.access.why_read_only
        if not any(header in request.headers for header in CSRF_HEADERS):
            return 403, (
                "a request that changes jobs needs the header X-Jobrunner-Request: 1 "
                "(or HX-Request), so that another site's form cannot make it"
            )
        if not _same_origin(request):
            return 403, f"cross-origin request refused (Origin: {request.headers.get('origin')})"
        return None
