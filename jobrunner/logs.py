"""jobrunner's loggers: structlog when the app configured it, stdlib ``logging`` otherwise.

A library must stay quiet unless the app asks. structlog left unconfigured
prints every event to stdout, so jobrunner routes its events by what the app
did:

* the app called ``structlog.configure()``: events go through structlog, as
  the app's processors and filters decide (bound contextvars included);
* it did not: events go to the stdlib logger of the same name
  (``jobrunner.jobs``, ``jobrunner.pool``...), so the app's ``logging``
  configuration decides, and with none only warnings and errors reach stderr
  (Python's last-resort handler). The message is the event followed by its
  fields as ``key=value``; the record also carries them as ``record.event``
  and ``record.fields`` for formatters that want them apart.

The choice is made at each call (one flag read), so configuring logging after
importing jobrunner works.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import structlog

__all__ = ["Logger", "get_logger", "render"]


def _value(value: Any) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in "\"'=" for c in text):
        return repr(text)
    return text


def render(event: str, fields: Mapping[str, Any]) -> str:
    """``event key=value ...``: the message of a stdlib record."""
    if not fields:
        return event
    return event + "".join(f" {key}={_value(value)}" for key, value in fields.items())


class Logger:
    """A named jobrunner logger: ``log.warning("job failed", job_id=..., exc_info=exc)``."""

    __slots__ = ("_std", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._std = logging.getLogger(name)

    def is_enabled_for(self, level: int) -> bool:
        """Whether an event at ``level`` would be emitted (True when it cannot tell)."""
        if not structlog.is_configured():
            return self._std.isEnabledFor(level)
        try:
            bound = structlog.get_logger(self.name).bind()
            check = getattr(bound, "is_enabled_for", None) or getattr(bound, "isEnabledFor", None)
            return True if check is None else bool(check(level))
        except Exception:
            return True

    def _emit(self, level: int, method: str, event: str, fields: dict[str, Any]) -> None:
        if structlog.is_configured():
            getattr(structlog.get_logger(self.name), method)(event, **fields)
            return
        std = self._std
        if not std.isEnabledFor(level):
            return
        exc_info = fields.pop("exc_info", None)
        std.log(
            level,
            render(event, fields),
            exc_info=exc_info,
            extra={"event": event, "fields": fields},
            stacklevel=3,
        )

    def debug(self, event: str, **fields: Any) -> None:
        """Log at DEBUG."""
        self._emit(logging.DEBUG, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        """Log at INFO."""
        self._emit(logging.INFO, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Log at WARNING."""
        self._emit(logging.WARNING, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        """Log at ERROR."""
        self._emit(logging.ERROR, "error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """Log at ERROR with the exception being handled."""
        fields.setdefault("exc_info", True)
        self._emit(logging.ERROR, "error", event, fields)


def get_logger(name: str) -> Logger:
    """The jobrunner logger called ``name`` (``jobrunner.<part>``)."""
    return Logger(name)
