"""``jobrunner web``: the dashboard served by uvicorn from the command line (a real process)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from jobrunner import Runner, current_job
from jobrunner.stores.sqlite import SQLiteStore
from tests.test_web_browser import free_port


async def a_store_with_one_job(path: Path) -> str:
    runner = Runner(SQLiteStore(str(path)))

    @runner.job
    async def send_email(to: str) -> None: ...

    handle = await send_email.enqueue("ada@example.com")
    await runner.store.close()
    return handle.id


def wait_for_health(url: str, process: subprocess.Popen[str]) -> httpx.Response:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            return httpx.get(f"{url}/health", timeout=1)
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("jobrunner web did not answer within 20 s")


def test_web_serves_a_read_only_dashboard_of_a_store_alone(tmp_path: Path) -> None:
    job_id = asyncio.run(a_store_with_one_job(tmp_path / "jobs.db"))
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jobrunner",
            "web",
            "--store",
            f"sqlite:///{tmp_path / 'jobs.db'}",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        health = wait_for_health(url, process)
        listed = httpx.get(f"{url}/jobs").json()
        page = httpx.get(f"{url}/ui/jobs/{job_id}")
        cancel = httpx.post(f"{url}/jobs/{job_id}/cancel", headers={"X-Jobrunner-Request": "1"})
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    assert health.status_code == 200
    assert [job["id"] for job in listed["jobs"]] == [job_id]
    assert page.status_code == 200 and "send_email" in page.text
    assert cancel.status_code == 403 and "read-only" in cancel.json()["error"]
    assert process.returncode == 0, stderr
    assert "dashboard serving" in stderr and "read-only" in stderr


def test_web_refuses_an_auth_hook_it_cannot_load(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jobrunner", "web", "--store", "sqlite:///x.db", "--auth", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "module:callable" in done.stderr


async def test_jobs_show_prints_the_progress_of_a_job(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "jobs.db"))
    runner = Runner(store)
    gate = asyncio.Event()

    @runner.job
    async def resize() -> None:
        current_job().progress(0.4, "resized 4 of 10")
        await gate.wait()

    async with runner:
        handle = await resize.enqueue()
        while (await runner.get_job(handle.id)).progress is None:
            await asyncio.sleep(0.001)
        shown = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "jobrunner",
                "jobs",
                "show",
                handle.id,
                "--store",
                f"sqlite:///{store.path}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        gate.set()
    assert shown.returncode == 0, shown.stderr
    assert "progress  40% resized 4 of 10 (attempt 1," in shown.stdout
