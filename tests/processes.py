"""Processes of ``tests/procs`` for the multi-process tests: start one, read its
output for a failure message, open the store they share, wait on a condition
while they run, read the log they append to, stop them all at the end of a test."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

from jobrunner.stores.base import Store
from jobrunner.stores.sqlite import SQLiteStore

PROCS = Path(__file__).resolve().parent / "procs"


class Proc:
    """One process of ``tests/procs``, output kept for the failure message."""

    def __init__(self, script: str, *args: str, worker_id: str) -> None:
        self.id = worker_id
        self.process = subprocess.Popen(
            [sys.executable, str(PROCS / script), *args, "--worker-id", worker_id],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def output(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.read()


def stop_all(procs: Iterable[Proc], *, term_grace: float | None = None) -> None:
    """Stop every process still running (SIGTERM and ``term_grace`` seconds to
    drain first, if given; else SIGKILL) and close their output pipes."""
    for proc in procs:
        if proc.process.poll() is None:
            if term_grace is not None:
                proc.process.send_signal(signal.SIGTERM)
                try:
                    proc.process.wait(term_grace)
                except subprocess.TimeoutExpired:
                    pass
            if proc.process.poll() is None:
                proc.process.kill()
                proc.process.wait(10)
        if proc.process.stdout is not None:
            proc.process.stdout.close()


def lines(log: Path) -> list[list[str]]:
    """The words of each line the processes appended to ``log`` so far."""
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


async def wait_for(
    condition: Callable[[], object], what: str, procs: list[Proc], within: float = 90.0
) -> None:
    """Ask ``condition`` (sync or async) until it holds; fail early if a process
    exited (other than by the SIGKILL a test sent), or after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        answer = condition()
        if asyncio.iscoroutine(answer):
            answer = await answer
        if answer:
            return
        for proc in procs:
            if proc.process.poll() not in (None, -signal.SIGKILL):
                raise AssertionError(f"{proc.id} exited: {proc.output()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def store_target(kind: str, tmp_path: Path) -> AsyncIterator[tuple[Store, list[str]]]:
    """A store of ``kind`` ("sqlite": a file in ``tmp_path``; "postgres": a
    temporary schema) for this process, and the arguments that open the same
    store in a process of ``tests/procs`` (``sqlite DB`` or ``postgres DSN SCHEMA``)."""
    if kind == "sqlite":
        db = tmp_path / "jobs.db"
        yield SQLiteStore(db), ["sqlite", str(db)]
        return
    from jobrunner.stores.postgres import PostgresStore
    from tests.pg_support import temporary_schema

    async with temporary_schema() as (dsn, schema):
        yield PostgresStore(dsn, schema=schema, max_connections=4), ["postgres", dsn, schema]
