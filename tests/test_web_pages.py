"""The dashboard's pages render from every store, and its buttons repair jobs."""

from __future__ import annotations

from collections.abc import Callable

from jobrunner import JobStatus, Runner
from jobrunner.stores.base import Store
from jobrunner.web import create_app
from tests.helpers import until_status
from tests.test_store_contract import NOW, request, spec
from tests.test_web_api import WRITE, allow_all, app_runner, client

HTMX = {"HX-Request": "true"}


async def dead_job(runner: Runner) -> str:
    async with runner:
        handle = await runner.enqueue("explode")
        await until_status(handle, JobStatus.DEAD)
    return handle.id


async def test_every_page_renders_from_a_bare_store(make_runner: Callable[..., Runner], store: Store) -> None:
    runner = app_runner(make_runner)
    job_id = await dead_job(runner)
    async with client(create_app(store)) as http:
        home = await http.get("/", follow_redirects=True)
        pages = {
            path: await http.get(path)
            for path in ("/ui/jobs", "/ui/dead", f"/ui/jobs/{job_id}", "/ui/schedules")
        }
    assert home.status_code == 200 and "Queues" in home.text and "read-only" in home.text
    assert all(page.status_code == 200 for page in pages.values()), {
        p: r.status_code for p, r in pages.items()
    }
    assert job_id in pages["/ui/dead"].text
    job_page = pages[f"/ui/jobs/{job_id}"].text
    assert "RuntimeError" in job_page and "boom" in job_page and "Traceback" in job_page
    assert 'id="retry"' not in job_page  # read-only: no buttons
    assert "no schedule has fired" in pages["/ui/schedules"].text


async def test_the_overview_shows_queues_workers_and_the_leader(make_runner: Callable[..., Runner]) -> None:
    runner = app_runner(make_runner, worker_id="worker-7")
    await dead_job(runner)
    await runner.enqueue("send_email", "a")
    async with client(create_app(runner)) as http:
        page = (await http.get("/ui/")).text
    assert "default" in page and "worker-7" in page and "send_email" in page
    assert "leader: maintenance" not in page  # the runner stopped: its leadership lapsed or was resigned


async def test_the_search_box_opens_a_job_by_id_or_filters_by_name(
    make_runner: Callable[..., Runner],
) -> None:
    runner = app_runner(make_runner)
    handle = await runner.enqueue("send_email", "a")
    async with client(create_app(runner)) as http:
        by_id = await http.get("/ui/jobs", params={"q": handle.id})
        by_name = await http.get("/ui/jobs", params={"q": "send_email"})
        nothing = await http.get("/ui/jobs", params={"q": "resize"})
    assert by_id.status_code == 303 and by_id.headers["location"].endswith(f"/ui/jobs/{handle.id}")
    assert handle.id in by_name.text
    assert handle.id not in nothing.text and "no jobs" in nothing.text


async def test_the_retry_button_requeues_and_follows_the_job(
    make_runner: Callable[..., Runner], store: Store
) -> None:
    runner = app_runner(make_runner)
    job_id = await dead_job(runner)
    async with client(create_app(store, auth=allow_all)) as http:
        page = (await http.get(f"/ui/jobs/{job_id}")).text
        answer = await http.post(f"/ui/jobs/{job_id}/retry", headers=HTMX)
        again = await http.post(f"/ui/jobs/{job_id}/retry", headers=HTMX)
    assert 'id="retry"' in page
    assert answer.status_code == 204 and answer.headers["HX-Redirect"].endswith(f"/ui/jobs/{job_id}")
    assert "queued" in again.text  # not dead any more: said in the flash
    record = await store.get(job_id)
    assert record is not None and record.status is JobStatus.QUEUED


async def test_the_purge_button_empties_the_dead_letters(
    make_runner: Callable[..., Runner], store: Store
) -> None:
    runner = app_runner(make_runner)
    await dead_job(runner)
    async with client(create_app(store, auth=allow_all)) as http:
        answer = await http.post("/ui/dead/purge", headers=HTMX)
    assert "purged 1 dead jobs" in answer.text
    assert await store.list_jobs(status=JobStatus.DEAD) == []


async def test_a_page_for_a_missing_job_is_404(store: Store) -> None:
    async with client(create_app(store)) as http:
        answer = await http.get("/ui/jobs/nope")
    assert answer.status_code == 404 and "nope" in answer.text


async def test_the_dashboard_loads_htmx_from_the_package(store: Store) -> None:
    async with client(create_app(store)) as http:
        page = (await http.get("/ui/")).text
        script = await http.get("/static/htmx.min.js")
    assert "/static/htmx.min.js" in page and "//unpkg" not in page and "cdn" not in page.lower()
    assert script.status_code == 200 and "htmx" in script.text[:200] and "0BSD" in script.text[:300]


async def test_mounted_under_a_prefix_the_links_are_paths_under_it(
    make_runner: Callable[..., Runner], store: Store
) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    runner = app_runner(make_runner)
    job_id = await dead_job(runner)
    site = Starlette(routes=[Mount("/ops/jobs", app=create_app(store, auth=allow_all))])
    async with client(site) as http:
        home = await http.get("/ops/jobs/")
        page = await http.get("/ops/jobs/ui/dead")
        retried = await http.post(f"/ops/jobs/ui/jobs/{job_id}/retry", headers=HTMX)
    assert home.status_code == 307 and home.headers["location"] == "/ops/jobs/ui/"
    assert f'href="/ops/jobs/ui/jobs/{job_id}"' in page.text
    assert 'src="/ops/jobs/static/htmx.min.js"' in page.text and "http://" not in page.text
    assert retried.headers["HX-Redirect"] == f"/ops/jobs/ui/jobs/{job_id}"


async def test_the_pause_and_resume_buttons_stop_and_restart_a_queue_on_the_store(store: Store) -> None:
    await store.enqueue([spec(queue="emails")], NOW)
    async with client(create_app(store, auth=allow_all)) as http:
        assert "Pause</button>" in (await http.get("/ui/")).text
        paused = await http.post("/ui/queues/emails/pause", headers=HTMX)
        page = (await http.get("/ui/")).text
        assert await store.claim(request()) == []  # no runner starts the queue's jobs
        resumed = await http.post("/ui/queues/emails/resume", headers=HTMX)
    assert paused.status_code == resumed.status_code == 204
    assert "paused" in page and "Resume" in page
    assert await store.paused_queues() == {}
    assert len(await store.claim(request())) == 1


async def test_the_queue_api_pauses_resumes_and_lists(store: Store) -> None:
    async with client(create_app(store, auth=allow_all)) as http:
        first = (await http.post("/queues/emails/pause", headers=WRITE)).json()
        again = (await http.post("/queues/emails/pause", headers=WRITE)).json()
        listed = (await http.get("/queues")).json()
        resumed = (await http.post("/queues/emails/resume", headers=WRITE)).json()
    assert (first["changed"], again["changed"], resumed["changed"]) == (True, False, True)
    assert [q["queue"] for q in listed["paused"]] == ["emails"]
    assert await store.paused_queues() == {}


async def test_a_read_only_dashboard_cannot_pause_a_queue(store: Store) -> None:
    await store.enqueue([spec(queue="emails")], NOW)
    async with client(create_app(store)) as http:
        answer = await http.post("/queues/emails/pause", headers=WRITE)
        page = (await http.get("/ui/")).text
    assert answer.status_code == 403
    assert "Pause" not in page
    assert await store.paused_queues() == {}
