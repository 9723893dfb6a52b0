"""What the worker processes of the SQLite-or-PostgreSQL multi-process tests share:
their command line and their runner.

    python tests/procs/<script>.py sqlite DB LOG --worker-id ID [--lease SECONDS] ...
    python tests/procs/<script>.py postgres DSN SCHEMA LOG --worker-id ID [--lease SECONDS] ...
"""

from __future__ import annotations

import argparse
import logging
import os

import structlog

from jobrunner import Runner, defaults
from jobrunner.stores.base import Store


def parse(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The common arguments added to ``parser`` (which may hold a script's own),
    parsed: ``kind``, ``where`` (DB, or DSN and SCHEMA), ``log``, ``worker_id``, ``lease``."""
    parser.add_argument("kind", choices=["sqlite", "postgres"])
    parser.add_argument("where", nargs="+", help="DB, or DSN and SCHEMA, then LOG")
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--lease", type=float, default=None)
    args = parser.parse_args()
    *args.where, args.log = args.where
    return args


def start(args: argparse.Namespace, *, concurrency: int) -> tuple[Runner, int]:
    """The runner on the store ``args`` name, and LOG opened for appending (one
    ``os.write`` per line, so lines of several processes never mix)."""
    store: Store
    if args.kind == "sqlite":
        from jobrunner.stores.sqlite import SQLiteStore

        store = SQLiteStore(args.where[0], poll_interval=0.02)
    else:
        from jobrunner.stores.postgres import PostgresStore

        store = PostgresStore(args.where[0], schema=args.where[1], max_connections=4)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    # The kill tests are about recovery, not the default cadence: expired leases
    # are looked for often, so a dead worker's jobs come back within a second.
    defaults.RESCUE_INTERVAL = 0.2
    options = {} if args.lease is None else {"lease": args.lease}
    runner = Runner(
        store=store, concurrency=concurrency, worker_id=args.worker_id, max_pending=None, **options
    )
    return runner, os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
