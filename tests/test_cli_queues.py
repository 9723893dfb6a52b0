"""``jobrunner queues pause|resume|list`` and how ``jobs show`` tells of an expired job,
run as the command, against an SQLite store."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from jobrunner import Runner
from jobrunner.stores.sqlite import SQLiteStore
from jobrunner.testing import FakeClock

ROOT = Path(__file__).resolve().parent.parent


def jobrunner(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "JOBRUNNER_STORE"}
    env["PYTHONPATH"] = str(ROOT)
    env["NO_COLOR"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "jobrunner", *args], env=env, capture_output=True, text=True, timeout=60
    )


async def _create(db: Path) -> None:
    store = SQLiteStore(db)
    await store.open()
    await store.close()


def test_pause_list_and_resume_a_queue(tmp_path: Path) -> None:
    asyncio.run(_create(tmp_path / "jobs.db"))
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    paused = jobrunner("queues", "pause", "emails", "--store", store)
    assert (paused.returncode, paused.stdout) == (
        0,
        "emails: paused: no worker starts its jobs until it is resumed\n",
    ), paused.stderr
    again = jobrunner("queues", "pause", "emails", "--store", store)
    assert again.stdout == "emails: was paused already\n"
    listed = jobrunner("queues", "list", "--json", "--store", store)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["queue"], row["paused"], row["waiting"], row["running"]) == ("emails", True, 0, 0)
    resumed = jobrunner("queues", "resume", "emails", "--store", store)
    assert resumed.stdout == "emails: resumed\n"
    assert jobrunner("queues", "list", "--store", store).stdout == (
        "no queues: no jobs and no pauses in this store\n"
    )


def test_queues_list_shows_the_waiting_jobs_of_a_paused_queue(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"

    async def fill() -> None:
        runner = Runner(store=SQLiteStore(db))

        @runner.job(queue="emails")
        async def send() -> None:
            pass

        await runner.pause("emails")
        await send.enqueue()
        await send.enqueue()
        await runner.aclose()

    asyncio.run(fill())
    listed = jobrunner("queues", "list", "--store", f"sqlite:///{db}")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["QUEUE", "STATE", "WAITING", "RUNNING"]
    assert row.split()[:2] == ["emails", "paused"]
    assert row.split()[-2:] == ["2", "0"]


def test_jobs_show_tells_that_a_job_expired(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    clock = FakeClock()

    async def expire() -> str:
        runner = Runner(store=SQLiteStore(db), clock=clock)

        @runner.job(queue="slow")
        async def work() -> None:
            pass

        await runner.pause("slow")
        handle = await work.options(ttl=5).enqueue()
        clock.advance(6)
        await runner.resume("slow")
        await runner.run_until_idle()
        return handle.id

    job_id = asyncio.run(expire())
    shown = jobrunner("jobs", "show", job_id, "--store", f"sqlite:///{db}")
    assert shown.returncode == 0, shown.stderr
    assert "status  cancelled" in shown.stdout
    assert "expires  2025-06-15T15:06:45" in shown.stdout
    assert "last error: JobExpired: the job was not started by its deadline" in shown.stdout
    assert "expired before it started" in shown.stdout
