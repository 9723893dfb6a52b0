"""``jobrunner web``: serve the Service API and dashboard (``jobrunner.web``) with uvicorn.

With the app's runner (``jobrunner web myapp.jobs:runner``) everything works,
``POST /jobs/{name}`` included; with a store URL alone (``jobrunner web
--store sqlite:///var/jobs.db``) the app needs none of the app's code and
offers reading and repair. Either way it is read-only unless ``--auth
module:callable`` names an auth hook (and ``--read-only`` is not given).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import signal
import sys
from typing import Any

from jobrunner.cli._app import configure, load_app, resolve_store
from jobrunner.cli._errors import EXIT_OK, UsageError
from jobrunner.cli._output import Output
from jobrunner.logs import get_logger

_log = get_logger("jobrunner.cli")

MISSING = "jobrunner web needs the web extra: pip install 'jobrunner[web]' (starlette, uvicorn, jinja2)"


def _load_auth(path: str) -> Any:
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise UsageError(f"--auth {path!r}: write it as module:callable, e.g. myapp.auth:allow")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as for the app: it lives where you run the command
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"--auth {path!r}: cannot load it: {exc}") from None
    if not callable(target):
        raise UsageError(f"--auth {path!r} is a {type(target).__name__}, not a callable taking the request")
    return target


async def cmd_web(args: argparse.Namespace, out: Output) -> int:
    try:
        import uvicorn

        from jobrunner.web import create_app
    except ImportError:
        raise UsageError(MISSING) from None
    auth = _load_auth(args.auth) if args.auth else None
    target: Any
    if args.app:
        runner = load_app(args)
        if args.store:
            configure(runner, store=args.store)
        if not runner.store.durable:
            _log.warning(
                "the runner keeps jobs in this process's memory: the dashboard shows only "
                "what this process enqueues, and no worker runs them",
                app=args.app,
            )
        target = runner
    else:
        target = resolve_store(args)
    app = create_app(target, auth=auth, read_only=args.read_only)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    mode = "read-only" if args.read_only or auth is None else "read-write (auth hook)"
    _log.warning("dashboard serving", url=f"http://{args.host}:{args.port}/", mode=mode)
    # Our own handlers, not uvicorn's: uvicorn raises the signal again once it
    # has stopped (exit 130 or death by SIGTERM); a dashboard told to stop has
    # done its job, like a worker that drained, and exits 0.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    loop = asyncio.get_running_loop()
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    for sig in stop_signals:
        loop.add_signal_handler(sig, _stop, server)
    try:
        await server.serve()
    finally:
        for sig in stop_signals:
            loop.remove_signal_handler(sig)
        if not args.app:
            await target.close()  # the store this command opened for the app
    return EXIT_OK


def _stop(server: Any) -> None:
    """First signal: finish the requests under way; second: stop now."""
    if server.should_exit:
        server.force_exit = True
    server.should_exit = True
