"""Processes of ``tests/procs`` for the multi-process tests: start one, read its
output for a failure message, stop them all at the end of a test."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

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
