"""Fixtures shared by the suite.

``store`` is parametrized over every store, so each behaviour test runs on
each of them: one suite, not copies. ``make_runner`` builds a runner on that
store with a ``FakeClock`` so delays, backoff and timeouts are driven by the
test, never by sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import structlog

from jobrunner import Runner
from jobrunner.stores.base import Store
from jobrunner.testing import FakeClock
from tests.processes import Proc, stop_all
from tests.stores import STORE_KINDS, open_test_store


@pytest.fixture(autouse=True)
def unconfigured_structlog() -> Iterator[None]:
    """Every test starts as an app that never configured structlog.

    ``structlog.testing.capture_logs`` and ``structlog.configure`` leave structlog
    marked configured for the rest of the process, which changes where
    jobrunner's events go (``jobrunner.logs``); each test gets a clean slate.
    """
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture(params=STORE_KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Store]:
    """A fresh, empty store of each kind."""
    async with open_test_store(request.param, tmp_path) as opened:
        yield opened


@pytest.fixture
def clock() -> FakeClock:
    """A clock that only moves when the test says so."""
    return FakeClock()


@pytest.fixture
def make_runner(store: Store, clock: FakeClock) -> Callable[..., Runner]:
    """``make_runner(**options)``: a Runner on the parametrized store and fake clock."""

    def make(**options: Any) -> Runner:
        options.setdefault("store", store)
        options.setdefault("clock", clock)
        return Runner(**options)

    return make


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes a multi-process test starts (``tests.processes.Proc``): at its end,
    each still running gets SIGTERM and 20 s to drain, then SIGKILL."""
    started: list[Proc] = []
    yield started
    stop_all(started, term_grace=20)
