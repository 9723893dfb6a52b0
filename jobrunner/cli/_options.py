"""Option values: what each flag accepts, and the parsing of durations, statuses and JSON.

The option types (``whole_number``, ``seconds``...) are argparse ``type=``
callables: argparse calls them while parsing, so a value that makes no sense is
a usage error (exit 2) before any app is imported or any store opened.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Callable
from typing import Any

from jobrunner.cli._errors import UsageError
from jobrunner.models import JobStatus


# --- parsing -----------------------------------------------------------------------------------
def parse_duration(text: str) -> float:
    """'90s', '15m', '12h', '7d', '2w' or plain seconds -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not match:
        raise UsageError(f"{text!r} is not a duration; use e.g. 90s, 15m, 12h, 7d or 2w")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]


def parse_json(text: str | None, what: str, kind: type) -> Any:
    """Parse a --args/--kwargs value, checking its JSON type."""
    if text is None:
        return kind()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} is not valid JSON ({exc.msg} at column {exc.colno}): {text}") from None
    if not isinstance(value, kind):
        expected = "an array, e.g. '[1, \"two\"]'" if kind is list else "an object, e.g. '{\"key\": 1}'"
        raise UsageError(f"{what} must be {expected}, not {type(value).__name__}")
    return value


def parse_status(text: str) -> JobStatus:
    """A JobStatus from its name."""
    try:
        return JobStatus(text.lower())
    except ValueError:
        names = ", ".join(s.value for s in JobStatus)
        raise UsageError(f"unknown status {text!r}; use one of {names}") from None


# --- option types ------------------------------------------------------------------------------
def whole_number(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An option type: an int in [minimum, maximum]."""
    allowed = (
        f"a whole number >= {minimum}" if maximum is None else f"a whole number from {minimum} to {maximum}"
    )

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {value}")
        return value

    return parse


def seconds(*, zero: bool) -> Callable[[str], float]:
    """An option type: a finite number of seconds, > 0 (or >= 0 with ``zero``)."""
    allowed = "a number of seconds >= 0" if zero else "a number of seconds > 0"
    return lambda text: _seconds(text, zero=zero, allowed=allowed)


NEVER = "never"
"""The word that turns a time limit off (``--store-give-up never``)."""


def seconds_or_never(text: str) -> float | None:
    """An option type: a number of seconds > 0, or ``never`` for no limit (None)."""
    if text.strip().lower() == NEVER:
        return None
    return _seconds(text, zero=False, allowed=f"a number of seconds > 0, or {NEVER}")


def _seconds(text: str, *, zero: bool, allowed: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {allowed}, not {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be {allowed}, not {text!r}")
    if value < 0 or (value == 0 and not zero):
        raise argparse.ArgumentTypeError(f"must be {allowed}, not {text}")
    return value


def non_empty(text: str) -> str:
    """An option type: any text but the empty one."""
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def queue_names(text: str) -> list[str]:
    """An option type: comma-separated queue names, none empty."""
    names = [name.strip() for name in text.split(",")]
    if not any(names):
        raise argparse.ArgumentTypeError("name at least one queue, e.g. emails,images")
    if not all(names):
        raise argparse.ArgumentTypeError(f"empty queue name in {text!r}")
    return names


def duration(text: str) -> str:
    """An option type: a duration, kept as typed for messages (``parse_duration`` reads it)."""
    try:
        parse_duration(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def status(text: str) -> JobStatus:
    """An option type: a job status by name."""
    try:
        return parse_status(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# PostgreSQL stores priorities as 32-bit integers; refuse what it would reject.
PRIORITY = whole_number(-(2**31), 2**31 - 1)
