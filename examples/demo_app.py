"""The demo's worker application: the jobs, served by ``jobrunner worker``.

``examples/demo.py`` starts this module in worker processes with
``python -m jobrunner worker examples.demo_app:runner --store sqlite:///...``,
kills one of them with SIGKILL, and starts another.
"""

from __future__ import annotations

import asyncio
import os

import anyio

from jobrunner import Runner, current_job

# lease=2.0: a killed worker's jobs are rescued about two seconds after it died
# (the default, the job's timeout plus 30 s, suits real work better than a demo).
# backoff=0.2: retries come back quickly enough to watch.
runner = Runner(concurrency=4, lease=2.0, backoff=0.2, shutdown_grace=10.0)


@runner.job(timeout=30.0)
async def resize(image_id: int) -> str:
    """Pretend to resize an image: long enough to be caught mid-run by a kill."""
    await asyncio.sleep(0.4)
    job = current_job()
    return f"image {image_id} resized on attempt {job.attempt} ({job.trigger})"


@runner.job(retries=3)
async def flaky_upload(name: str) -> str:
    """Fail on the first two attempts, as a flaky network does; succeed on the third."""
    attempt = current_job().attempt
    if attempt < 3:
        raise ConnectionError(f"upload of {name} reset by peer (attempt {attempt})")
    return f"{name} uploaded on attempt {attempt}"


@runner.job(retries=2)
async def charge(order_id: int) -> str:
    """Fail every attempt until the payment gateway is "fixed" (a file appears)."""
    fixed = anyio.Path(os.environ.get("DEMO_DIR", "."), "gateway-fixed")
    if not await fixed.exists():
        raise RuntimeError(f"payment gateway rejected order {order_id}: API key revoked")
    return f"order {order_id} charged"


# Every runner sharing a store registers the same schedules; only the leader
# fires them, and each tick is enqueued under a unique key, so it runs once.
@runner.cron("* * * * * *")  # every second (a sixth field, seconds, comes last)
async def tick() -> float | None:
    """The cron job: returns the scheduled time it ran for."""
    job = current_job()
    assert job.trigger == "cron"
    return job.scheduled_for


@runner.job(queue="reports")
async def build_report(pages: int) -> str:
    """A long job that reports how far it got (``jobrunner jobs show`` and the dashboard show it)."""
    job = current_job()
    for page in range(1, pages + 1):
        await asyncio.sleep(0.05)
        job.progress(page / pages, f"rendered page {page} of {pages}")
    return f"report of {pages} pages"


@runner.job(batch=10)
async def index_doc(doc_ids: list[int]) -> list[str]:
    """A batch handler: each call enqueues one id, the calls claimed together
    arrive as one list, and each keeps its own result (or its own failure)."""
    return [f"doc {doc_id} indexed in a batch of {len(doc_ids)}" for doc_id in doc_ids]


@runner.job
async def count_rows(table: str) -> int:
    """A parent: its result is read by the job that waits for it."""
    return {"orders": 120, "refunds": 7, "customers": 45}[table]


@runner.job
async def total_rows() -> str:
    """A child enqueued ``after=`` the counts: runs once they all succeeded."""
    counts: list[int] = await current_job().parent_results()
    return f"{sum(counts)} rows in {len(counts)} tables"
