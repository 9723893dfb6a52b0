"""What commands print: aligned tables or JSON on stdout, and times people can read."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TextIO

from jobrunner.cli._errors import StdoutClosed
from jobrunner.models import JobRecord


class Output:
    """Aligned tables for people, JSON for scripts; colour only on a terminal."""

    COLOURS = {
        "succeeded": "32",
        "dead": "31",
        "cancelled": "33",
        "running": "36",
        "retrying": "35",
        "queued": "34",
        "scheduled": "34",
        "blocked": "90",
    }

    def __init__(self, stream: TextIO, as_json: bool) -> None:
        self.stream = stream
        self.as_json = as_json
        self.colour = stream.isatty() and os.environ.get("NO_COLOR") is None

    def paint(self, text: str, status: str) -> str:
        code = self.COLOURS.get(status)
        return f"\033[{code}m{text}\033[0m" if self.colour and code else text

    def write(self, text: str) -> None:
        try:
            self.stream.write(text)
        except BrokenPipeError:
            raise StdoutClosed from None

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise StdoutClosed from None

    def json(self, value: Any) -> None:
        self.write(json.dumps(value, indent=2, default=_json_default) + "\n")

    def line(self, text: str = "") -> None:
        self.write(text + "\n")

    def table(
        self, header: Sequence[str], rows: Sequence[Sequence[str]], status_column: int | None = None
    ) -> None:
        widths = [len(h) for h in header]
        for row in rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
        self.line("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
        for row in rows:
            cells = []
            for index, (cell, width) in enumerate(zip(row, widths, strict=True)):
                padded = cell.ljust(width)
                cells.append(self.paint(padded, cell) if index == status_column else padded)
            self.line("  ".join(cells).rstrip())


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return repr(value)


def iso(ts: float | None) -> str:
    """Epoch seconds as ISO 8601 UTC, or '-'."""
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def ago(ts: float | None, now: float) -> str:
    """A short relative time: '5s ago', '3m ago', 'in 2h'."""
    if ts is None:
        return "-"
    delta = now - ts
    future = delta < 0
    delta = abs(delta)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            text = f"{delta / size:.0f}{unit}"
            break
    else:
        text = f"{delta:.0f}s"
    return f"in {text}" if future else f"{text} ago"


def record_json(record: JobRecord) -> dict[str, Any]:
    """A job record as JSON-ready data, timestamps in ISO 8601 UTC."""
    data = dataclasses.asdict(record)
    for field in ("enqueued_at", "run_at", "started_at", "finished_at", "expires_at"):
        data[field] = iso(data[field]) if data[field] is not None else None
    for entry in data["history"]:
        entry["at"] = iso(entry["at"])
    if data["progress"] is not None:
        data["progress"]["at"] = iso(data["progress"]["at"])
    return data
