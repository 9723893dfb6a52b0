"""The retry policy: how long to wait before the next attempt, and when to stop.

``decide`` is pure: given the failed attempt and its error it returns a
``Decision``; the executor records it and never second-guesses it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol, TypeAlias, runtime_checkable

from jobrunner import defaults
from jobrunner.errors import Abort, Retry
from jobrunner.models import OutcomeKind

__all__ = [
    "Backoff",
    "BackoffLike",
    "Decision",
    "ExponentialBackoff",
    "FixedBackoff",
    "as_backoff",
    "decide",
]


@runtime_checkable
class Backoff(Protocol):
    """A retry policy object."""

    def delay(self, attempt: int, error: BaseException) -> float | None:
        """Seconds to wait after failed ``attempt`` (1-based); None: do not retry."""
        ...


@dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    """``base * factor ** (attempt - 1)`` seconds, capped at ``max_delay``.

    With ``jitter`` (the default) the delay is drawn uniformly from zero to that
    value ("full jitter"), so jobs that failed together do not retry together.
    """

    base: float = defaults.BACKOFF_BASE
    factor: float = defaults.BACKOFF_FACTOR
    max_delay: float = defaults.BACKOFF_MAX
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.base < 0 or self.factor < 1 or self.max_delay < 0:
            raise ValueError(
                f"ExponentialBackoff(base={self.base}, factor={self.factor}, "
                f"max_delay={self.max_delay}): need base >= 0, factor >= 1, max_delay >= 0"
            )

    def delay(self, attempt: int, error: BaseException) -> float:
        """The capped exponential delay, jittered if asked."""
        # min() before the power would overflow for large attempts.
        exponent = min(attempt - 1, 64)
        cap = min(self.max_delay, self.base * self.factor**exponent)
        return random.uniform(0.0, cap) if self.jitter else cap


@dataclass(frozen=True, slots=True)
class FixedBackoff:
    """The same delay before every retry."""

    seconds: float

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError(f"FixedBackoff({self.seconds}): seconds must be >= 0")

    def delay(self, attempt: int, error: BaseException) -> float:
        """Always ``seconds``."""
        return self.seconds


@dataclass(frozen=True, slots=True)
class _CallableBackoff:
    fn: Callable[[int], float]

    def delay(self, attempt: int, error: BaseException) -> float:
        return float(self.fn(attempt))


BackoffLike: TypeAlias = Backoff | Callable[[int], float] | float
"""A policy object, a function of the failed attempt number, or fixed seconds."""


def as_backoff(value: BackoffLike) -> Backoff:
    """Normalise what a user passed as ``backoff=``; ValueError if it is none of them."""
    if isinstance(value, Backoff):
        return value
    if isinstance(value, bool):
        raise ValueError(f"backoff={value!r}: pass seconds, a function or a policy")
    if isinstance(value, int | float):
        return FixedBackoff(float(value))
    if callable(value):
        return _CallableBackoff(value)
    raise ValueError(
        f"backoff={value!r}: pass seconds, a function attempt -> seconds, "
        f"or an object with delay(attempt, error)"
    )


class Decision(NamedTuple):
    """What happens after a failed attempt."""

    kind: OutcomeKind
    """RETRY or DEAD."""
    delay: float = 0.0
    reason: str = ""


def decide(attempt: int, max_attempts: int, error: BaseException, backoff: Backoff) -> Decision:
    """Retry or dead-letter a job whose ``attempt`` failed with ``error``."""
    if isinstance(error, Abort):
        return Decision(OutcomeKind.DEAD, reason=f"aborted: {error.reason}")
    if attempt >= max_attempts:
        return Decision(OutcomeKind.DEAD, reason=f"all {max_attempts} attempts failed")
    if isinstance(error, Retry) and error.delay is not None:
        return Decision(OutcomeKind.RETRY, error.delay, "retry requested")
    delay = backoff.delay(attempt, error)
    if delay is None:
        return Decision(OutcomeKind.DEAD, reason="the retry policy declined another attempt")
    return Decision(OutcomeKind.RETRY, max(0.0, delay))
