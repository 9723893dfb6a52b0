"""``make demo``: jobrunner on its durable default, an SQLite file, end to end.

What happens, on ``var/demo/jobs.db`` (recreated on every run):

1. This process is the app: it enqueues jobs it does not run itself (it
   ``declare``s them) and, as the first runner on the file, leads maintenance:
   lease rescue and the cron schedule.
2. A worker process (``python -m jobrunner worker examples.demo_app:runner``)
   starts running them, and is killed with SIGKILL mid-run.
3. A second worker starts. The jobs the dead one held are rescued when their
   2-second leases run out and run again (trigger "retry", attempt 2); none is lost.
4. Arguments JSON cannot hold (a set) are refused at enqueue with a TypeError
   naming the job and the argument; nothing is written.
5. A flaky job succeeds on its third attempt; a job that always fails ends in
   the dead-letter queue; the cause is "fixed" and the dead job requeued.
6. A cron schedule ticks every second throughout, each tick run exactly once.
7. Flow control: a paused queue holds a report (and one enqueued with a
   ``ttl=`` shorter than the pause expires instead of running); the report's
   progress; a job enqueued ``after=`` three others reads their results; ten
   calls of a ``batch=`` handler run in a few invocations.
8. The Service API (``jobrunner web``) answers from the same file.
9. The worker gets SIGTERM, drains and exits 0; a summary is printed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from jobrunner import JobStatus, Runner

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / "var" / "demo"
STORE_URL = "sqlite:///var/demo/jobs.db"
IMAGES = 16


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def start_worker(n: int) -> tuple[subprocess.Popen[bytes], Path]:
    log = DEMO_DIR / f"worker-{n}.log"
    env = {**os.environ, "DEMO_DIR": str(DEMO_DIR), "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobrunner", "worker", "examples.demo_app:runner", "--store", STORE_URL],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, log


async def wait_for(what: str, check: object, timeout: float = 60.0) -> None:
    """Poll ``check()`` (an async predicate) until it holds; fail loudly if it never does."""
    deadline = time.monotonic() + timeout
    while not await check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"demo failed: {what} did not happen within {timeout:.0f} s")
        await asyncio.sleep(0.1)


async def main() -> int:
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir(parents=True)
    # The app decides what jobrunner logs: here its warnings (a recovered lease,
    # a retried attempt), in the demo's own indented style. Left unconfigured,
    # the library shows the same through Python's default, without the prefix.
    logging.basicConfig(level=logging.WARNING, format="   log: %(levelname)s %(message)s")

    app = Runner(store=STORE_URL)
    # The app enqueues these; worker processes run them. The options that travel
    # with a job (timeout, attempts) are declared where it is enqueued.
    resize = app.declare("resize", timeout=30.0)
    flaky_upload = app.declare("flaky_upload", retries=3)
    charge = app.declare("charge", retries=2)
    build_report = app.declare("build_report", queue="reports")
    count_rows = app.declare("count_rows")
    total_rows = app.declare("total_rows")
    index_doc = app.declare("index_doc")
    app.declare("tick")
    app.schedule("tick", cron="* * * * * *")

    async with app:
        say(f"1. enqueue into {STORE_URL}")
        images = await resize.enqueue_many([(i,) for i in range(IMAGES)])
        upload = await flaky_upload.enqueue("report.pdf")
        order = await charge.enqueue(1001)
        print(f"   {IMAGES} resize jobs, 1 flaky upload, 1 charge that will keep failing")

        say("2. start worker 1, kill it with SIGKILL while it runs jobs")
        worker, log = start_worker(1)

        async def some_done() -> bool:
            done = await app.list_jobs(status=JobStatus.SUCCEEDED, name="resize", limit=IMAGES)
            running = await app.list_jobs(status=JobStatus.RUNNING, name="resize", limit=IMAGES)
            return len(done) >= 4 and len(running) > 0

        await wait_for("worker 1 finishing some jobs", some_done)
        in_flight = await app.list_jobs(status=JobStatus.RUNNING, name="resize", limit=IMAGES)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        print(f"   killed worker 1 (pid {worker.pid}) holding {len(in_flight)} running resize jobs")
        print(f"   its log: {log.relative_to(ROOT)}")

        say("3. start worker 2: the dead worker's jobs come back when their leases expire")
        worker, log = start_worker(2)
        results = [await handle.result(timeout=60) for handle in images]
        retried = [r for r in results if "retry" in r]
        for line in retried:
            print(f"   {line}")
        print(f"   all {len(results)} resize jobs succeeded; {len(retried)} of them after the kill")

        say("4. arguments a durable store cannot keep are refused at enqueue")
        try:
            await resize.enqueue({1, 2})  # a set: not JSON
        except TypeError as refused:
            print(f"   TypeError: {refused}")

        say("5. retries and dead letters")
        print(f"   {await upload.result(timeout=30)}")
        await wait_for("the charge job dying", lambda: _is(app, order.id, JobStatus.DEAD))
        dead = await app.dead_letters()
        for record in dead:
            assert record.error is not None
            print(
                f"   dead: {record.name}{record.args} after {record.attempts} attempts: {record.error.message}"
            )
        (DEMO_DIR / "gateway-fixed").touch()
        print("   the gateway is fixed; requeue the dead job")
        again = await app.requeue(order.id)
        print(f"   {await again.result(timeout=30)}")

        say("6. cron")
        await wait_for("three cron ticks", lambda: _ticks(app, 3))
        ticks = await app.list_jobs(status=JobStatus.SUCCEEDED, name="tick", limit=10_000)
        slots = Counter(record.result for record in ticks)
        duplicates = sum(n - 1 for n in slots.values())
        print(f"   'tick' ran {len(ticks)} times for {len(slots)} distinct seconds; duplicates: {duplicates}")
        for info in await app.schedules():
            print(f"   schedule {info.name!r} ({info.expression}): last run {_hms(info.last_run)}")

        say("7. flow control: a paused queue, a deadline, progress, after=, a batch handler")
        await app.pause("reports")  # durable, and every worker on the store obeys it
        report = await build_report.enqueue(20)
        stale = await build_report.options(ttl=0.5).enqueue(1)  # must start within 0.5 s
        await asyncio.sleep(1.0)
        print(f"   'reports' paused: the report is {(await app.status(report.id)).value}")
        await app.resume("reports")
        print(f"   resumed: {await report.result(timeout=30)}")
        expired = await app.get_job(stale.id)
        assert expired.error is not None
        print(f"   the one with ttl=0.5 s: {expired.status.value} ({expired.error.type}, it never ran)")
        record = await app.get_job(report.id)
        assert record.progress is not None
        print(f"   its last progress: {record.progress.fraction:.0%} ({record.progress.message})")
        counts = [await count_rows.enqueue(table) for table in ("orders", "refunds", "customers")]
        total = await total_rows.options(after=counts).enqueue()  # blocked until the counts succeed
        print(f"   total_rows after 3 count_rows: {await total.result(timeout=30)}")
        docs = await index_doc.enqueue_many([(doc_id,) for doc_id in range(1, 11)])
        indexed = [await doc.result(timeout=30) for doc in docs]
        print(f"   10 index_doc calls, each its own job: {indexed[0]}; ...; {indexed[-1]}")

        say("8. the Service API, on the same store (what `jobrunner web` serves)")
        await _show_api()

        say("9. stop worker 2 with SIGTERM: it drains and exits")
        worker.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.wait, 30)
        print(f"   worker 2 exited with code {code}")

        say("summary")
        stats = await app.stats()
        for status in JobStatus:
            print(f"   {status.value:<10} {stats.counts.get(status, 0):>4}")
        if stats.counts.get(JobStatus.QUEUED, 0):
            print("   (queued: cron ticks that came due after the worker stopped wait for the next worker)")
        lost = [h.id for h in images if await app.status(h.id) is not JobStatus.SUCCEEDED]
        print(f"   jobs lost: {len(lost)}; duplicate cron ticks: {duplicates}; worker exit code: {code}")
        print(f"   inspect it yourself: .venv/bin/jobrunner jobs list --store {STORE_URL}")
        return 0 if not lost and duplicates == 0 and code == 0 else 1


async def _show_api() -> None:
    """GET /stats and the dead letters from the web app, in process (no server needed)."""
    try:
        import httpx

        from jobrunner.web import create_app
    except ImportError:  # the web extra is not installed: jobrunner[web]
        print("   skipped: pip install 'jobrunner[web]' (and httpx) to try it")
        return
    web = create_app(STORE_URL)
    transport = httpx.ASGITransport(app=web)
    # ASGITransport sends no lifespan events: run the app's own, which closes
    # the store it opened from the URL.
    async with (
        web.router.lifespan_context(web),
        httpx.AsyncClient(transport=transport, base_url="http://demo") as client,
    ):
        stats = (await client.get("/stats")).json()
        health = await client.get("/health")
    print(f"   GET /health -> {health.status_code}; GET /stats -> {json.dumps(stats['counts'])}")
    print(
        f"   the dashboard: .venv/bin/jobrunner web --store {STORE_URL}  (then open http://127.0.0.1:8000/)"
    )


async def _is(app: Runner, job_id: str, status: JobStatus) -> bool:
    return await app.status(job_id) is status


async def _ticks(app: Runner, n: int) -> bool:
    return len(await app.list_jobs(status=JobStatus.SUCCEEDED, name="tick", limit=n)) >= n


def _hms(at: datetime | None) -> str:
    return "never" if at is None else at.strftime("%H:%M:%S %Z")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
