"""Finding what a command works on: the app's runner by import path, or a store by URL.

The app's runner is found as uvicorn finds an app (``myapp.jobs:runner``).
Commands that only read or repair the store take ``--store URL`` (or
``JOBRUNNER_STORE``) and never import the app.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from jobrunner.cli._errors import UsageError
from jobrunner.cli._logging import setup_logging
from jobrunner.errors import StoreError
from jobrunner.runner import Runner
from jobrunner.stores import store_from_url
from jobrunner.stores.base import Store
from jobrunner.stores.sqlite import SQLiteStore


def load_runner(path: str) -> Runner:
    """Import ``module:attribute`` and return the Runner it names."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise UsageError(
            f"{path!r} is not an import path; write it as module:attribute, e.g. myapp.jobs:runner"
        )
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like uvicorn: the app lives where you run the command
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise UsageError(
                f"cannot load {path!r}: no module named {missing!r}; check the spelling, and that "
                f"its directory is the current one or on PYTHONPATH"
            ) from None
        raise UsageError(f"cannot load {path!r}: importing module {module_name!r} failed: {exc}") from None
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            runners = sorted(name for name, value in vars(module).items() if isinstance(value, Runner))
            hint = f"; it has these runners: {', '.join(runners)}" if runners else ""
            raise UsageError(
                f"cannot load {path!r}: module {module_name!r} has no attribute {attribute!r}{hint}"
            ) from None
    if not isinstance(target, Runner):
        raise UsageError(f"{path} is a {type(target).__name__}, not a jobrunner.Runner")
    return target


def load_app(args: argparse.Namespace) -> Runner:
    """The runner of ``args.app``, with logging set up once its import had its say."""
    runner = load_runner(args.app)
    setup_logging(args)
    return runner


def resolve_store(args: argparse.Namespace) -> Store:
    """The store for a read/repair command: --store, else JOBRUNNER_STORE, else --app's."""
    url = getattr(args, "store", None) or os.environ.get("JOBRUNNER_STORE")
    app = getattr(args, "app", None)
    if url:
        try:
            store = store_from_url(url)
        except (ValueError, ImportError) as exc:
            raise UsageError(str(exc)) from None
    elif app:
        store = load_app(args).store
    else:
        raise UsageError("say which store: --store URL (or set JOBRUNNER_STORE), or --app module:runner")
    if not store.durable:
        # A fresh memory store is always empty: answering "no jobs" would mislead.
        raise UsageError(
            f"{url or app} keeps jobs in the memory of the process that runs them, out of this "
            f"command's reach; pass the URL of a durable store, e.g. --store sqlite:///var/jobs.db"
        )
    if isinstance(store, SQLiteStore) and not os.path.exists(store.path):
        # Opening would create an empty database: a typo in the path must not look like "no jobs".
        raise StoreError(
            f"cannot open the SQLite store {store.path}: the file does not exist; check the path "
            f"(a worker or an enqueue creates it)"
        )
    return store


def configure(runner: Runner, **settings: Any) -> None:
    """``runner.configure()`` with a bad flag value reported as a usage error."""
    try:
        runner.configure(**settings)
    except (ValueError, ImportError) as exc:
        raise UsageError(str(exc)) from None


@asynccontextmanager
async def opened(store: Store) -> AsyncIterator[Store]:
    """Open the store for one command and close it after."""
    await store.open()
    try:
        yield store
    finally:
        await store.close()
