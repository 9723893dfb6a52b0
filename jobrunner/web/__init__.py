"""jobrunner's Service API and web dashboard (``pip install 'jobrunner[web]'``).

One ASGI app (Starlette) with a JSON API to submit, follow and repair jobs,
Server-Sent Events for live updates, and a server-rendered dashboard (htmx,
shipped in the package: no CDN)::

    from jobrunner.web import create_app

    app = create_app(runner, auth=lambda request: request.headers.get("x-token") == TOKEN)

Mount it in FastAPI or Starlette, or serve it alone: ``jobrunner web
myapp.jobs:runner`` (or ``jobrunner web --store sqlite:///jobs.db`` for a
read-only view that needs none of the app's code).

Where things are: ``_app`` (the factory), ``_api`` (JSON routes), ``_sse``
(event streams), ``_pages`` (the dashboard and its templates), ``_auth`` (the
auth hook, read-only mode, CSRF), ``_source`` (the runner or store behind it),
``_json`` (records as JSON). Importing ``jobrunner`` never imports this package.
"""

from __future__ import annotations

from jobrunner.web._app import create_app
from jobrunner.web._auth import AuthHook

__all__ = ["AuthHook", "create_app"]
