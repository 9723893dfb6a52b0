"""The web app's JSON API and event streams, on every store (httpx against the ASGI app)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from jobrunner import JobStatus, MemoryStore, Runner, SystemClock, current_job
from jobrunner.models import StoreStats
from jobrunner.stores.base import Store
from jobrunner.testing import FakeClock
from jobrunner.web import create_app
from jobrunner.web._api import MAX_BODY
from tests.helpers import Gate, until, until_status

WRITE = {"X-Jobrunner-Request": "1"}


def allow_all(request: Any) -> bool:
    return True


@asynccontextmanager
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def app_runner(make_runner: Callable[..., Runner], **options: Any) -> Runner:
    """A runner with a job that sends mail and one that fails (no retries)."""
    runner = make_runner(**options)

    @runner.job
    async def send_email(to: str, *, subject: str = "hi") -> str:
        return f"sent {subject} to {to}"

    @runner.job(retries=0)
    async def explode() -> None:
        raise RuntimeError("boom")

    return runner


# submitting ------------------------------------------------------------------------------------
async def test_a_valid_call_is_enqueued_and_answered_with_its_id(make_runner: Callable[..., Runner]) -> None:
    runner = app_runner(make_runner)
    async with client(create_app(runner, auth=allow_all)) as http:
        answer = await http.post(
            "/jobs/send_email", json={"args": ["ada@example.com"], "kwargs": {"subject": "x"}}, headers=WRITE
        )
        assert answer.status_code == 201, answer.text
        job_id = answer.json()["id"]
        job = (await http.get(f"/jobs/{job_id}")).json()
    assert (job["name"], job["status"], job["args"], job["kwargs"]) == (
        "send_email",
        "queued",
        ["ada@example.com"],
        {"subject": "x"},
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"args": []}, "missing a required argument: 'to'"),
        ({"args": ["a", "b"]}, "too many positional arguments"),
        ({"args": ["a"], "kwargs": {"cc": "b"}}, "unexpected keyword argument 'cc'"),
        ({"args": "a"}, "args must be a JSON array"),
        ({"args": ["a"], "priority": "high"}, "priority='high' has the wrong type"),
        ({"argz": ["a"]}, "unknown field(s) argz"),
    ],
)
async def test_a_call_the_handler_does_not_take_is_refused_with_the_reason_and_nothing_is_written(
    make_runner: Callable[..., Runner], store: Store, body: dict[str, Any], reason: str
) -> None:
    runner = app_runner(make_runner)
    async with client(create_app(runner, auth=allow_all)) as http:
        answer = await http.post("/jobs/send_email", json=body, headers=WRITE)
    assert answer.status_code == 422
    assert reason in answer.json()["error"]
    assert await store.list_jobs() == []


async def test_a_body_that_is_not_json_is_refused(make_runner: Callable[..., Runner]) -> None:
    async with client(create_app(app_runner(make_runner), auth=allow_all)) as http:
        answer = await http.post("/jobs/send_email", content=b"{nope", headers=WRITE)
    assert answer.status_code == 422 and "not JSON" in answer.json()["error"]


async def test_a_body_over_the_limit_is_refused_unread_and_nothing_is_written(
    make_runner: Callable[..., Runner], store: Store
) -> None:
    huge = b'{"args": ["' + b"x" * (MAX_BODY + 1) + b'"]}'

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: cut off as it grows
        for start in range(0, len(huge), 65_536):
            yield huge[start : start + 65_536]

    async with client(create_app(app_runner(make_runner), auth=allow_all)) as http:
        declared = await http.post("/jobs/send_email", content=huge, headers=WRITE)
        streamed = await http.post("/jobs/send_email", content=chunks(), headers=WRITE)
    assert declared.status_code == 413 and "at most" in declared.json()["error"]
    assert streamed.status_code == 413 and "over" in streamed.json()["error"]
    assert await store.list_jobs() == []


async def test_an_unknown_job_name_is_not_found(make_runner: Callable[..., Runner]) -> None:
    async with client(create_app(app_runner(make_runner), auth=allow_all)) as http:
        answer = await http.post("/jobs/nope", json={}, headers=WRITE)
    assert answer.status_code == 404 and "nope" in answer.json()["error"]


async def test_an_app_built_from_a_store_cannot_enqueue_and_says_why(store: Store) -> None:
    async with client(create_app(store, auth=allow_all)) as http:
        answer = await http.post("/jobs/send_email", json={"args": ["a"]}, headers=WRITE)
    assert answer.status_code == 501
    assert "no job registry" in answer.json()["error"]


# access ------------------------------------------------------------------------------------------
async def test_without_an_auth_hook_nothing_changes_jobs(
    make_runner: Callable[..., Runner], store: Store
) -> None:
    runner = app_runner(make_runner)
    handle = await runner.enqueue("send_email", "a")
    async with client(create_app(runner)) as http:
        assert (await http.get(f"/jobs/{handle.id}")).status_code == 200
        for method, path in (
            ("POST", "/jobs/send_email"),
            ("POST", f"/jobs/{handle.id}/cancel"),
            ("POST", f"/jobs/{handle.id}/retry"),
            ("DELETE", "/jobs?status=dead"),
        ):
            answer = await http.request(method, path, headers=WRITE, json={"args": ["b"]})
            assert answer.status_code == 403, (method, path)
            assert "need an auth hook" in answer.json()["error"]
    assert len(await store.list_jobs()) == 1
    assert await handle.status() is JobStatus.QUEUED


async def test_read_only_refuses_changes_even_with_an_auth_hook(make_runner: Callable[..., Runner]) -> None:
    runner = app_runner(make_runner)
    handle = await runner.enqueue("send_email", "a")
    async with client(create_app(runner, auth=allow_all, read_only=True)) as http:
        answer = await http.post(f"/jobs/{handle.id}/cancel", headers=WRITE)
    assert answer.status_code == 403 and "read_only=True" in answer.json()["error"]


async def test_the_auth_hook_is_asked_for_every_request(make_runner: Callable[..., Runner]) -> None:
    asked: list[str] = []

    async def only_admins(request: Any) -> bool:
        asked.append(request.method)
        return bool(request.headers.get("x-user") == "admin")

    async with client(create_app(app_runner(make_runner), auth=only_admins)) as http:
        assert (await http.get("/stats")).status_code == 403
        assert (await http.get("/stats", headers={"x-user": "admin"})).status_code == 200
        refused = await http.post("/jobs/send_email", json={"args": ["a"]}, headers=WRITE)
        assert refused.status_code == 403
        allowed = await http.post(
            "/jobs/send_email", json={"args": ["a"]}, headers={**WRITE, "x-user": "admin"}
        )
        assert allowed.status_code == 201
    assert asked == ["GET", "GET", "POST", "POST"]


async def test_a_change_without_the_csrf_header_is_refused(make_runner: Callable[..., Runner]) -> None:
    async with client(create_app(app_runner(make_runner), auth=allow_all)) as http:
        answer = await http.post("/jobs/send_email", json={"args": ["a"]})
    assert answer.status_code == 403 and "X-Jobrunner-Request" in answer.json()["error"]


async def test_a_change_from_another_origin_is_refused(make_runner: Callable[..., Runner]) -> None:
    async with client(create_app(app_runner(make_runner), auth=allow_all)) as http:
        evil = await http.post(
            "/jobs/send_email", json={"args": ["a"]}, headers={**WRITE, "Origin": "https://evil.example"}
        )
        same = await http.post(
            "/jobs/send_email", json={"args": ["a"]}, headers={**WRITE, "Origin": "http://testserver"}
        )
    assert evil.status_code == 403 and "cross-origin" in evil.json()["error"]
    assert same.status_code == 201


# following ---------------------------------------------------------------------------------------
async def test_a_job_shows_attempts_error_traceback_and_timeline(make_runner: Callable[..., Runner]) -> None:
    runner = app_runner(make_runner)
    async with runner:
        handle = await runner.enqueue("explode")
        await until_status(handle, JobStatus.DEAD)
    async with client(create_app(runner)) as http:
        job = (await http.get(f"/jobs/{handle.id}")).json()
    assert job["status"] == "dead" and job["attempts"] == 1
    assert job["error"]["type"] == "RuntimeError" and job["error"]["message"] == "boom"
    assert 'raise RuntimeError("boom")' in job["error"]["traceback"]
    assert [entry["status"] for entry in job["timeline"]] == ["queued", "running", "dead"]


async def test_an_unknown_job_id_is_not_found(store: Store) -> None:
    async with client(create_app(store)) as http:
        answer = await http.get("/jobs/nope")
    assert answer.status_code == 404 and "nope" in answer.json()["error"]


async def test_progress_is_visible_in_the_api(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()
    gate = Gate()

    @runner.job
    async def resize() -> None:
        current_job().progress(0.4, "resized 4 of 10")
        await gate.wait()

    async with runner, client(create_app(runner)) as http:
        handle = await resize.enqueue()
        progress: list[Any] = [None]

        async def look() -> None:
            while progress[0] is None:
                progress[0] = (await http.get(f"/jobs/{handle.id}")).json()["progress"]
                await asyncio.sleep(0.001)

        await asyncio.wait_for(look(), 10)
        gate.open()
    assert progress[0]["fraction"] == 0.4 and progress[0]["message"] == "resized 4 of 10"


async def test_the_list_filters_and_pages(make_runner: Callable[..., Runner]) -> None:
    runner = app_runner(make_runner)
    ids = [(await runner.enqueue("send_email", f"u{i}")).id for i in range(5)]
    other = await runner.job_named("send_email").options(queue="bulk").enqueue("x")
    async with client(create_app(runner)) as http:
        first = (
            await http.get("/jobs", params={"name": "send_email", "queue": "default", "limit": 2})
        ).json()
        second = (
            await http.get("/jobs", params={"queue": "default", "limit": 2, "before": first["next"]})
        ).json()
        third = (
            await http.get("/jobs", params={"queue": "default", "limit": 2, "before": second["next"]})
        ).json()
        bulk = (await http.get("/jobs", params={"queue": "bulk"})).json()
        bad = await http.get("/jobs", params={"status": "lost"})
        gone = await http.get("/jobs", params={"before": "nope"})
    newest = ids[::-1]
    assert [j["id"] for j in first["jobs"]] == newest[:2]
    assert [j["id"] for j in second["jobs"]] == newest[2:4]
    assert [j["id"] for j in third["jobs"]] == newest[4:] and third["next"] is None
    assert [j["id"] for j in bulk["jobs"]] == [other.id]
    assert bad.status_code == 400 and "lost" in bad.json()["error"]
    assert gone.status_code == 400 and "first page" in gone.json()["error"]


# repairing ---------------------------------------------------------------------------------------
async def test_a_dead_job_is_retried_and_succeeds(make_runner: Callable[..., Runner]) -> None:
    runner = make_runner()
    failing = [True]

    @runner.job(retries=0)
    async def flaky() -> str:
        if failing[0]:
            raise RuntimeError("not yet")
        return "ok"

    async with runner, client(create_app(runner, auth=allow_all)) as http:
        handle = await flaky.enqueue()
        await until_status(handle, JobStatus.DEAD)
        failing[0] = False
        answer = await http.post(f"/jobs/{handle.id}/retry", headers=WRITE)
        assert answer.status_code == 200 and answer.json()["status"] == "queued"
        assert await handle.result(timeout=10) == "ok"
        again = await http.post(f"/jobs/{handle.id}/retry", headers=WRITE)
    assert again.status_code == 409 and "succeeded" in again.json()["error"]


async def test_a_waiting_job_is_cancelled(make_runner: Callable[..., Runner]) -> None:
    runner = app_runner(make_runner)
    handle = await runner.enqueue("send_email", "a")
    async with client(create_app(runner, auth=allow_all)) as http:
        answer = await http.post(f"/jobs/{handle.id}/cancel", headers=WRITE)
        missing = await http.post("/jobs/nope/cancel", headers=WRITE)
    assert answer.json() == {"id": handle.id, "status": "cancelled", "cancel_requested": False}
    assert missing.status_code == 404


async def test_purge_deletes_finished_jobs_of_one_status(
    make_runner: Callable[..., Runner], store: Store
) -> None:
    runner = app_runner(make_runner)
    async with runner:
        dead = [await runner.enqueue("explode") for _ in range(3)]
        for handle in dead:
            await until_status(handle, JobStatus.DEAD)
    waiting = await runner.enqueue("send_email", "a")
    async with client(create_app(store, auth=allow_all)) as http:
        refused = await http.delete("/jobs", params={"status": "queued"}, headers=WRITE)
        purged = await http.delete("/jobs", params={"status": "dead", "limit": 2}, headers=WRITE)
    assert refused.status_code == 400 and "only finished jobs" in refused.json()["error"]
    assert purged.json() == {"status": "dead", "purged": 2}
    left = await store.list_jobs()
    assert left[0].id == waiting.id
    assert [r.status for r in left[1:]] == [JobStatus.DEAD]  # which one: the store's choice


# stats, schedules, workers, health ------------------------------------------------------------
async def test_stats_count_by_status_and_queue(make_runner: Callable[..., Runner]) -> None:
    runner = app_runner(make_runner)
    await runner.enqueue("send_email", "a")
    await runner.job_named("send_email").options(queue="bulk").enqueue("b")
    async with client(create_app(runner, stats_ttl=0)) as http:
        stats = (await http.get("/stats")).json()
    assert stats["counts"]["queued"] == 2
    assert stats["queues"]["bulk"]["waiting"] == 1 and stats["queues"]["default"]["waiting"] == 1


async def test_stats_are_read_once_per_ttl_and_refreshed_after_answering(
    make_runner: Callable[..., Runner], clock: FakeClock
) -> None:
    runner = app_runner(make_runner)

    async def queued(http: httpx.AsyncClient) -> int:
        count: int = (await http.get("/stats")).json()["counts"]["queued"]
        return count

    async with client(create_app(runner, stats_ttl=10)) as http:
        assert await queued(http) == 0
        await runner.enqueue("send_email", "a")
        assert await queued(http) == 0  # within the ttl: a thousand tabs cost the store one read
        clock.advance(11)
        assert await queued(http) == 0  # stale: answered at once, then read again
        assert await queued(http) == 1


async def test_a_slow_count_is_repeated_at_most_every_ten_times_its_duration(clock: FakeClock) -> None:
    class SlowStore(MemoryStore):
        reads = 0

        async def stats(self, now: float) -> StoreStats:
            self.reads += 1
            clock.advance(2.0)  # counting takes the store 2 s
            return await super().stats(now)

    store = SlowStore()
    async with client(create_app(store, clock=clock, stats_ttl=1)) as http:
        await http.get("/stats")
        clock.advance(15.0)  # 17 s after the read began: within 10 x 2 s
        await http.get("/stats")
        assert store.reads == 1
        clock.advance(5.0)
        await http.get("/stats")
    assert store.reads == 2


async def test_schedules_show_next_and_last_runs(make_runner: Callable[..., Runner], store: Store) -> None:
    runner = app_runner(make_runner)
    runner.schedule("send_email", cron="0 3 * * *", name="nightly", args=("ops@example.com",))
    async with client(create_app(runner)) as http:
        full = (await http.get("/schedules")).json()
    async with client(create_app(store)) as http:
        partial = (await http.get("/schedules")).json()
    (nightly,) = full["schedules"]
    assert (nightly["name"], nightly["job"], nightly["last_run"], full["partial"]) == (
        "nightly",
        "send_email",
        None,
        False,
    )
    assert "T03:00:00" in nightly["next_run"]
    assert partial == {"schedules": [], "partial": True}


async def test_workers_and_leaders_are_listed(make_runner: Callable[..., Runner]) -> None:
    runner = app_runner(make_runner, worker_id="w-1")
    async with runner, client(create_app(runner)) as http:
        await runner.enqueue("send_email", "a")
        cluster: dict[str, Any] = {}

        async def look() -> None:
            while not (cluster.get("workers") and cluster.get("leaders")):
                cluster.update((await http.get("/workers")).json())
                await asyncio.sleep(0.001)

        await asyncio.wait_for(look(), 10)
    assert [w["worker"] for w in cluster["workers"]] == ["w-1"]
    assert {lead["holder"] for lead in cluster["leaders"]} == {"w-1"}


async def test_health_is_200_while_the_store_answers(make_runner: Callable[..., Runner]) -> None:
    runner = app_runner(make_runner)
    async with runner, client(create_app(runner)) as http:
        answer = await http.get("/health")
    assert answer.status_code == 200 and answer.json()["ok"] is True


async def test_health_is_503_when_the_store_fails(store: Store) -> None:
    class Broken:
        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        async def count_pending(self) -> int:
            raise OSError("disk on fire")

    async with client(create_app(Broken())) as http:  # type: ignore[arg-type]
        answer = await http.get("/health")
    assert answer.status_code == 503
    assert answer.json() == {"ok": False, "store": "OSError: disk on fire"}


# event streams -----------------------------------------------------------------------------------
def events(body: str) -> list[tuple[str, Any]]:
    found = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        found.append((lines["event"], json.loads(lines["data"])))
    return found


async def test_a_job_stream_sends_each_change_and_ends_when_the_job_is_final(
    make_runner: Callable[..., Runner],
) -> None:
    runner = make_runner(clock=SystemClock())
    gate = Gate()

    @runner.job
    async def resize() -> str:
        current_job().progress(0.5, "half")
        await gate.wait()
        return "done"

    async with runner, client(create_app(runner, sse_interval=0.01)) as http:
        handle = await resize.enqueue()
        stream = asyncio.create_task(http.get(f"/jobs/{handle.id}/events"))
        try:
            await until(lambda: gate.waiting == 1)
            record = await handle.status()
            assert record is JobStatus.RUNNING
            while (await runner.get_job(handle.id)).progress is None:
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.05)  # let the stream's 10 ms reads see the progress
        finally:
            gate.open()
        answer = await asyncio.wait_for(stream, 10)
    assert answer.headers["content-type"].startswith("text/event-stream")
    sent = events(answer.text)
    assert {kind for kind, _ in sent} == {"job"}
    assert sent[-1][1]["status"] == "succeeded" and sent[-1][1]["result"] == "done"
    assert any(job["progress"] and job["progress"]["message"] == "half" for _, job in sent)


async def test_a_stats_stream_sends_stats(store: Store) -> None:
    async with client(create_app(store, sse_interval=0.0, stats_ttl=0)) as http:
        answer = await http.get("/stats/events", params={"count": 2})
    sent = events(answer.text)
    assert [kind for kind, _ in sent] == ["stats", "stats"]
    assert sent[0][1]["counts"]["queued"] == 0


# packaging ---------------------------------------------------------------------------------------
def test_importing_jobrunner_does_not_import_the_web_stack() -> None:
    code = "import sys, jobrunner; print(sorted(m for m in ('starlette', 'jinja2', 'uvicorn', 'jobrunner.web') if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Run the app's lifespan around the block, as a server does."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.ensure_future(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
        await task


async def test_the_app_closes_a_store_it_made_from_a_url_but_not_one_passed_in(tmp_path: Any) -> None:
    class Counting(MemoryStore):
        closed = 0

        async def close(self) -> None:
            self.closed += 1

    passed_in = Counting()
    app = create_app(passed_in)
    async with lifespan(app), client(app) as http:
        assert (await http.get("/health")).status_code == 200
    assert passed_in.closed == 0

    made = create_app(f"sqlite:///{tmp_path / 'jobs.db'}")
    async with lifespan(made), client(made) as http:
        assert (await http.get("/health")).status_code == 200
        assert made.state.source._opened is not None
    assert made.state.source._opened is None
