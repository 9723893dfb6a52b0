"""The dashboard in a real browser: headless Chromium (Debian's) driven by Playwright.

It opens the dashboard served by uvicorn on a free localhost port, finds a dead
job in the dead letters, retries it and sees it succeed. It takes the
screenshots the README shows (``docs/dashboard.png``, the queues, and
``docs/dashboard-job.png``, the retried job) when they are missing or
``JOBRUNNER_SCREENSHOTS=1`` asks for new ones (so a test run leaves the
checkout as it was).

Without Chromium or Playwright the test skips and says which is missing,
except under ``CI=true``, where it fails (as the PostgreSQL tests do).
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from jobrunner import JobStatus, Runner, current_job
from jobrunner.stores.sqlite import SQLiteStore
from jobrunner.web import create_app
from tests.helpers import until_status

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parent.parent / "docs"


async def screenshot(page: Any, name: str) -> None:
    """Save the page as ``docs/<name>`` if it is missing or JOBRUNNER_SCREENSHOTS=1."""
    path = DOCS / name
    if path.exists() and os.environ.get("JOBRUNNER_SCREENSHOTS") != "1":
        return
    DOCS.mkdir(exist_ok=True)
    await page.screenshot(path=str(path), full_page=True)


def missing_browser() -> str | None:
    """Why the browser test cannot run here, or None."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "Python playwright is not installed (pip install playwright; never `playwright install`)"
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    return None


def require_browser() -> None:
    reason = missing_browser()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true needs the browser test to run: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """``app`` served by uvicorn on a free localhost port, for the block; yields its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(10):
            while not server.started:
                await anyio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True


async def test_a_dead_job_is_found_retried_and_succeeds_in_the_browser(tmp_path: Path) -> None:
    require_browser()
    from playwright.async_api import async_playwright, expect

    runner = Runner(SQLiteStore(str(tmp_path / "jobs.db")), worker_id="web-demo:1")
    broken = [True]

    @runner.job(retries=0)
    async def resize_image(image_id: int, *, width: int = 800) -> dict[str, int]:
        current_job().progress(0.5, f"resizing {image_id}")
        if broken[0]:
            raise OSError(f"image {image_id}: storage bucket not mounted")
        current_job().progress(1.0, "done")
        return {"image_id": image_id, "width": width}

    @runner.job
    async def send_email(to: str) -> str:
        return f"sent to {to}"

    app = create_app(runner, auth=lambda request: True, refresh=0.3)
    async with runner, served(app) as url, async_playwright() as pw:
        for i in range(3):
            await send_email.enqueue(f"user{i}@example.com")
        dead = await resize_image.enqueue(42, width=1024)
        await until_status(dead, JobStatus.DEAD)
        broken[0] = False  # the bucket is back: a retry will work

        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(url)
            await expect(page.get_by_role("heading", name="Queues")).to_be_visible()
            await expect(page.get_by_text("web-demo:1").first).to_be_visible()  # the worker, live
            await screenshot(page, "dashboard.png")
            await page.get_by_role("link", name="Dead letters").first.click()
            await page.get_by_role("link", name=dead.id).click()
            await expect(page.locator("#job-status")).to_have_text("dead")
            await expect(page.locator("pre.traceback")).to_contain_text("storage bucket not mounted")
            await page.locator("#retry").click()
            await expect(page.locator("#job-status")).to_have_text("succeeded", timeout=15_000)
            await expect(page.locator("#result")).to_contain_text('"width": 1024')
            await screenshot(page, "dashboard-job.png")
        finally:
            await browser.close()
    assert await dead.result(timeout=5) == {"image_id": 42, "width": 1024}
