"""The ``jobrunner`` command, run as a real subprocess on SQLite files.

Each test runs ``python -m jobrunner ...`` and checks its exit code and what it
printed. The app the commands load is ``cliapp.py``, written into a temporary
directory put on PYTHONPATH. Stores are filled in this process through the
library (fast; a subprocess costs ~0.3 s), read back the same way, and shared by
the read-only tests of one kind; a test that changes a store gets its own.
Waits on other processes poll files or the store with a bounded deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from jobrunner import Abort, JobRecord, JobStatus, Runner
from jobrunner.stores.sqlite import SQLiteStore
from jobrunner.testing import FakeClock

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30.0
"""Seconds any one command may take before the test fails (they take well under one)."""
WITHIN = 20.0
"""Seconds a test waits for another process to reach a state."""

APP = '''\
"""The app of the CLI tests: ``cliapp:runner``."""

import asyncio
import itertools
from pathlib import Path

from jobrunner import Abort, Runner, current_job

runner = Runner()


@runner.job
async def add(a: int, b: int) -> int:
    return a + b


@runner.job
async def boom() -> None:
    raise Abort("it broke")


@runner.job
async def hold(marks: str) -> str:
    """Touch MARKS/started-<id>, then return the id once MARKS/release exists."""
    job_id = current_job().id
    Path(marks, f"started-{job_id}").touch()
    release = Path(marks, "release")
    while not release.exists():
        await asyncio.sleep(0.01)
    return job_id


@runner.cron("0 3 * * *", timezone="Europe/Paris", name="nightly")
async def tidy() -> None:
    pass


# Handled by another service's runner; this app only enqueues it.
transcode = runner.declare("transcode", queue="video")
'''


# --- running the command ------------------------------------------------------------------
@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding ``cliapp.py``."""
    directory = tmp_path_factory.mktemp("app")
    (directory / "cliapp.py").write_text(APP)
    return directory


def environment(app_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "JOBRUNNER_STORE"}
    env["PYTHONPATH"] = os.pathsep.join([str(app_dir), str(ROOT)])
    env["NO_COLOR"] = "1"
    return env


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def jobrunner(app_dir: Path) -> Run:
    """``jobrunner(*args)``: run the command to its end; its exit code and output."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "jobrunner", *args],
            cwd=app_dir,
            env=environment(app_dir),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )

    return run


def url(db: Path) -> str:
    """The store URL of ``db``; polls every 50 ms so waits across processes are short."""
    return f"sqlite:///{db}?poll_interval=0.05"


def wait_for(condition: Callable[[], bool], what: str, process: subprocess.Popen[str] | None = None) -> None:
    """Poll ``condition`` until it holds; fail after WITHIN seconds or if ``process`` exits."""
    deadline = time.monotonic() + WITHIN
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the worker exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WITHIN} s waiting for {what}")
        time.sleep(0.01)


def assert_usage_error(result: subprocess.CompletedProcess[str], code: int, *phrases: str) -> None:
    """Exit ``code``, one clear line on stderr naming ``phrases``, no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert "Traceback" not in output
    assert result.stderr.startswith("jobrunner: error: "), result.stderr
    for phrase in phrases:
        assert phrase in result.stderr


def json_documents(text: str) -> list[Any]:
    """Every JSON value in ``text``, one after another."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while at < len(text):
        if text[at].isspace():
            at += 1
            continue
        value, at = decoder.raw_decode(text, at)
        values.append(value)
    return values


# --- stores filled through the library ---------------------------------------------------------
@dataclass(frozen=True)
class Shop:
    """A store with one job of each kind the commands show."""

    db: Path
    url: str
    old_dead: str
    """boom(), dead since 8 days ago."""
    succeeded: str
    """add(2, 3) = 5."""
    dead: str
    """boom(), dead just now."""
    scheduled: str
    """add(1, 1) on queue "emails", priority 5, in an hour; the newest job."""


def read_jobs(db: Path) -> dict[str, JobRecord]:
    async def read() -> dict[str, JobRecord]:
        store = SQLiteStore(db)
        await store.open()
        try:
            return {r.id: r for r in await store.list_jobs(limit=1000)}
        finally:
            await store.close()

    return asyncio.run(read())


def fill(db: Path) -> Shop:
    """Run jobs into ``db`` through the library, one at a time so their order is known."""

    async def add(a: int, b: int) -> int:
        return a + b

    async def boom() -> None:
        raise Abort("it broke")

    def make_runner(**options: Any) -> Runner:
        runner = Runner(SQLiteStore(db), instrument=False, **options)
        runner.job(add)
        runner.job(boom)
        return runner

    async def run(runner: Runner, name: str, *args: Any, **options: Any) -> str:
        handle = await runner.jobs[name].options(**options).enqueue(*args)
        await runner.run_until_idle()
        return handle.id

    async def main() -> Shop:
        past = make_runner(clock=FakeClock(time.time() - 8 * 86_400))
        old_dead = await run(past, "boom")
        await past.aclose()
        now = make_runner()
        succeeded = await run(now, "add", 2, 3)
        dead = await run(now, "boom")
        scheduled = await run(now, "add", 1, 1, queue="emails", priority=5, delay=3600)
        await now.aclose()
        return Shop(db, url(db), old_dead, succeeded, dead, scheduled)

    return asyncio.run(main())


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    """A store the read-only tests share; never changed after it is filled."""
    return fill(tmp_path_factory.mktemp("shop") / "jobs.db")


@pytest.fixture
def own_shop(tmp_path: Path) -> Shop:
    """A store of the same jobs for one test that changes it."""
    return fill(tmp_path / "jobs.db")


# --- workers -----------------------------------------------------------------------------------
class Worker:
    """A ``jobrunner worker`` process; its stderr (the logs) goes to a file."""

    def __init__(self, app_dir: Path, log: Path, *args: str) -> None:
        self.log = log
        with log.open("w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "jobrunner", "worker", "cliapp:runner", *args],
                cwd=app_dir,
                env=environment(app_dir),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                text=True,
            )

    def logged(self, text: str) -> bool:
        return text in self.log.read_text()

    def wait_until_logged(self, text: str) -> None:
        wait_for(lambda: self.logged(text), f"the worker to log {text!r}", self.process)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(TIMEOUT)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, app_dir: Path) -> Iterator[tuple[Path, Worker]]:
    """A worker on its own store, for the tests that need jobs to run: the store and it."""
    directory = tmp_path_factory.mktemp("served")
    db = directory / "jobs.db"
    worker = Worker(
        app_dir,
        directory / "worker.log",
        *("--store", url(db), "--concurrency", "4", "--queues", "default,emails", "--log-format", "json"),
    )
    try:
        worker.wait_until_logged("runner started")
        yield db, worker
    finally:
        worker.close()


# --- help ------------------------------------------------------------------------------------------
COMMANDS = [
    "worker",
    "enqueue",
    "jobs",
    "jobs list",
    "jobs show",
    "jobs retry",
    "jobs cancel",
    "jobs purge",
    "stats",
    "cron",
    "cron list",
]


def test_help_lists_every_command(jobrunner: Run) -> None:
    result = jobrunner("--help")
    assert result.returncode == 0, result.stderr
    for command in ("worker", "enqueue", "jobs", "stats", "cron"):
        assert f"    {command}" in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_each_command_shows_examples(jobrunner: Run, command: str) -> None:
    result = jobrunner(*command.split(), "--help")
    assert result.returncode == 0, result.stderr
    assert f"usage: jobrunner {command}" in result.stdout
    examples = result.stdout.partition("\nexamples:\n")[2]
    assert f"  jobrunner {command.split()[0]} " in examples


# --- enqueue ---------------------------------------------------------------------------------------
def test_enqueue_accepts_a_job_the_app_only_declares(jobrunner: Run, tmp_path: Path) -> None:
    store = url(tmp_path / "jobs.db")
    enqueued = jobrunner("enqueue", "cliapp:runner", "transcode", "--args", '["a.mp4"]', "--store", store)
    assert enqueued.returncode == 0, enqueued.stderr

    shown = jobrunner("jobs", "show", enqueued.stdout.strip(), "--json", "--store", store)

    record = json.loads(shown.stdout)
    assert (record["name"], record["queue"], record["args"]) == ("transcode", "video", ["a.mp4"])


def test_enqueue_prints_the_id_that_jobs_show_shows(jobrunner: Run, tmp_path: Path) -> None:
    store = url(tmp_path / "jobs.db")
    enqueued = jobrunner("enqueue", "cliapp:runner", "add", "--args", "[1, 2]", "--store", store)
    assert enqueued.returncode == 0, enqueued.stderr
    job_id = enqueued.stdout.strip()

    shown = jobrunner("jobs", "show", job_id, "--json", "--store", store)

    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert (record["id"], record["name"], record["status"], record["args"]) == (
        job_id,
        "add",
        "queued",
        [1, 2],
    )


def test_enqueue_applies_kwargs_priority_delay_and_key(jobrunner: Run, tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    options = ("--kwargs", '{"a": 1, "b": 2}', "--priority", "3", "--delay", "600", "--key", "k1")

    result = jobrunner("enqueue", "cliapp:runner", "add", *options, "--json", "--store", url(db))

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["created"] is True
    record = read_jobs(db)[answer["id"]]
    assert (record.kwargs, record.priority, record.key) == ({"a": 1, "b": 2}, 3, "k1")
    assert record.status is JobStatus.SCHEDULED
    assert record.run_at - record.enqueued_at == pytest.approx(600)


def test_enqueue_wait_prints_the_result_and_exits_0(jobrunner: Run, served: tuple[Path, Worker]) -> None:
    db, _ = served
    result = jobrunner(
        "enqueue", "cliapp:runner", "add", "--args", "[2, 3]", "--wait", "--timeout", "20", "--store", url(db)
    )
    assert (result.returncode, result.stdout) == (0, "5\n"), result.stderr


def test_enqueue_wait_exits_1_when_the_job_ends_dead(jobrunner: Run, served: tuple[Path, Worker]) -> None:
    db, _ = served
    result = jobrunner("enqueue", "cliapp:runner", "boom", "--wait", "--timeout", "20", "--store", url(db))
    assert result.returncode == 1, result.stderr
    assert "ended dead" in result.stdout
    assert "Abort: it broke" in result.stdout


# --- worker ----------------------------------------------------------------------------------------
def test_worker_logs_json_lines_with_its_settings(served: tuple[Path, Worker]) -> None:
    _, worker = served
    lines = worker.log.read_text().splitlines(keepends=True)
    events = [json.loads(line) for line in lines if line.endswith("\n")]  # not one being written
    started = next(e for e in events if e["event"] == "runner started")
    assert started["concurrency"] == 4
    assert {"add", "boom", "hold"} <= set(started["jobs"])


def test_worker_takes_jobs_only_from_its_queues(jobrunner: Run, served: tuple[Path, Worker]) -> None:
    db, _ = served
    store = url(db)
    elsewhere = jobrunner(
        "enqueue", "cliapp:runner", "add", "--args", "[1, 1]", "--queue", "other", "--store", store
    )
    assert elsewhere.returncode == 0, elsewhere.stderr

    # Claims take the oldest ready job first: had the worker taken queue "other",
    # it would have claimed that job no later than this one.
    mine = jobrunner(
        "enqueue", "cliapp:runner", "add", "--args", "[1, 1]", "--queue", "emails", "--wait", "--store", store
    )

    assert (mine.returncode, mine.stdout) == (0, "2\n"), mine.stderr
    assert read_jobs(db)[elsewhere.stdout.strip()].status is JobStatus.QUEUED


def test_sigterm_drains_running_jobs_and_exits_0(app_dir: Path, tmp_path: Path) -> None:
    db, marks = tmp_path / "jobs.db", tmp_path / "marks"
    marks.mkdir()

    async def enqueue() -> list[str]:
        runner = Runner(SQLiteStore(db), instrument=False)
        hold = runner.declare("hold")
        ids = [(await hold.enqueue(str(marks))).id for _ in range(3)]
        await runner.aclose()
        return ids

    ids = asyncio.run(enqueue())
    worker = Worker(app_dir, tmp_path / "worker.log", "--store", url(db), "--concurrency", "3")
    try:
        wait_for(lambda: len(list(marks.glob("started-*"))) == 3, "all 3 jobs to start", worker.process)

        worker.process.send_signal(signal.SIGTERM)
        worker.wait_until_logged("stopping gracefully")
        assert worker.process.poll() is None  # it waits for the jobs, which wait for us
        (marks / "release").touch()
        code = worker.process.wait(WITHIN)
    finally:
        worker.close()

    assert code == 0, worker.log.read_text()
    jobs = read_jobs(db)
    assert [jobs[i].status for i in ids] == [JobStatus.SUCCEEDED] * 3
    assert [jobs[i].result for i in ids] == ids


# --- jobs list -------------------------------------------------------------------------------------
def test_jobs_list_prints_a_table_of_jobs(jobrunner: Run, shop: Shop) -> None:
    result = jobrunner("jobs", "list", "--store", shop.url)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "STATUS", "QUEUE", "ATTEMPTS", "ENQUEUED", "LAST", "ERROR"]
    dead_row = next(row for row in rows if row.startswith(shop.dead))
    assert dead_row.split()[1:5] == ["boom", "dead", "default", "1/4"]
    assert dead_row.endswith("Abort: it broke")
    assert len(rows) == 4


def test_jobs_list_json_filters_by_status(jobrunner: Run, shop: Shop) -> None:
    result = jobrunner("jobs", "list", "--status", "dead", "--json", "--store", shop.url)
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert [r["id"] for r in records] == [shop.dead, shop.old_dead]
    assert records[0]["error"]["type"] == "Abort"
    assert records[0]["error"]["message"] == "it broke"


def test_jobs_list_filters_by_queue(jobrunner: Run, shop: Shop) -> None:
    result = jobrunner("jobs", "list", "--queue", "emails", "--json", "--store", shop.url)
    assert result.returncode == 0, result.stderr
    assert [r["id"] for r in json.loads(result.stdout)] == [shop.scheduled]


def test_jobs_list_filters_by_name(jobrunner: Run, shop: Shop) -> None:
    result = jobrunner("jobs", "list", "--name", "add", "--json", "--store", shop.url)
    assert result.returncode == 0, result.stderr
    assert {r["id"] for r in json.loads(result.stdout)} == {shop.succeeded, shop.scheduled}


def test_jobs_list_limit_keeps_the_newest(jobrunner: Run, shop: Shop) -> None:
    result = jobrunner("jobs", "list", "--limit", "1", "--json", "--store", shop.url)
    assert result.returncode == 0, result.stderr
    assert [r["id"] for r in json.loads(result.stdout)] == [shop.scheduled]


# --- jobs show -------------------------------------------------------------------------------------
def test_jobs_show_prints_the_error_traceback_and_timeline(jobrunner: Run, shop: Shop) -> None:
    result = jobrunner("jobs", "show", shop.dead, "--store", shop.url)
    assert result.returncode == 0, result.stderr
    fields = dict(line.strip().split("  ", 1) for line in result.stdout.split("\n\n")[0].splitlines())
    assert (fields["id"], fields["name"], fields["status"].strip()) == (shop.dead, "boom", "dead")
    assert "last error: Abort: it broke" in result.stdout
    assert 'raise Abort("it broke")' in result.stdout  # the job's own traceback
    timeline = result.stdout.partition("timeline:\n")[2].splitlines()
    assert [row.split()[1] for row in timeline[1:]] == ["queued", "running", "dead"]


def test_jobs_show_json_has_the_record(jobrunner: Run, shop: Shop) -> None:
    result = jobrunner("jobs", "show", shop.succeeded, "--json", "--store", shop.url)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert (record["id"], record["name"], record["status"]) == (shop.succeeded, "add", "succeeded")
    assert (record["args"], record["result"], record["attempts"]) == ([2, 3], 5, 1)
    assert datetime.fromisoformat(record["finished_at"]).tzinfo is not None
    assert [h["status"] for h in record["history"]] == ["queued", "running", "succeeded"]


# --- jobs retry, cancel, purge ---------------------------------------------------------------------
def test_jobs_retry_requeues_a_dead_job(jobrunner: Run, own_shop: Shop) -> None:
    result = jobrunner("jobs", "retry", own_shop.dead, "--store", own_shop.url)
    assert (result.returncode, result.stdout) == (0, f"requeued {own_shop.dead} (boom)\n"), result.stderr
    record = read_jobs(own_shop.db)[own_shop.dead]
    assert (record.status, record.attempts) == (JobStatus.QUEUED, 0)


def test_jobs_retry_refuses_a_succeeded_job(jobrunner: Run, shop: Shop) -> None:
    result = jobrunner("jobs", "retry", shop.succeeded, "--store", shop.url)
    assert_usage_error(result, 2, shop.succeeded, "only dead or cancelled jobs can be requeued")


def test_jobs_cancel_cancels_a_waiting_job(jobrunner: Run, own_shop: Shop) -> None:
    result = jobrunner("jobs", "cancel", own_shop.scheduled, "--json", "--store", own_shop.url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"id": own_shop.scheduled, "status": "cancelled"}
    assert read_jobs(own_shop.db)[own_shop.scheduled].status is JobStatus.CANCELLED


def test_jobs_purge_deletes_only_jobs_older_than_asked(jobrunner: Run, own_shop: Shop) -> None:
    result = jobrunner("jobs", "purge", "--status", "dead", "--older-than", "7d", "--store", own_shop.url)
    assert (result.returncode, result.stdout) == (0, "purged 1 dead jobs finished more than 7d ago\n")
    left = read_jobs(own_shop.db)
    assert own_shop.old_dead not in left
    assert {own_shop.dead, own_shop.succeeded, own_shop.scheduled} <= set(left)


# --- stats -----------------------------------------------------------------------------------------
def test_stats_prints_counts_by_queue_and_status(jobrunner: Run, shop: Shop) -> None:
    result = jobrunner("stats", "--store", shop.url)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.split("\n\n")[0].splitlines()}
    assert rows["QUEUE"] == ["QUEUED", "SCHEDULED", "RUNNING", "RETRYING", "SUCCEEDED", "DEAD", "CANCELLED"]
    assert rows["default"] == ["0", "0", "0", "0", "1", "2", "0"]
    assert rows["emails"] == ["0", "1", "0", "0", "0", "0", "0"]
    assert rows["(all)"] == ["0", "1", "0", "0", "1", "2", "0"]


def test_stats_json_has_counts_and_queues(jobrunner: Run, shop: Shop) -> None:
    result = jobrunner("stats", "--json", "--store", shop.url)
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert set(stats) == {"counts", "queues", "oldest_waiting_age", "unknown_names"}
    assert {s: n for s, n in stats["counts"].items() if n} == {"scheduled": 1, "succeeded": 1, "dead": 2}
    assert {s: n for s, n in stats["queues"]["emails"].items() if n} == {"scheduled": 1}


def test_stats_watch_refreshes_with_throughput(jobrunner: Run, shop: Shop) -> None:
    result = jobrunner(
        "stats", "--watch", "--interval", "0.05", "--count", "2", "--json", "--store", shop.url
    )
    assert result.returncode == 0, result.stderr
    first, second = json_documents(result.stdout)
    assert first["throughput"] is None
    assert second["throughput"] == 0.0  # nothing finished between the refreshes
    assert second["counts"] == first["counts"]


# --- cron ------------------------------------------------------------------------------------------
def test_cron_list_shows_each_schedule_and_its_next_runs(jobrunner: Run) -> None:
    result = jobrunner("cron", "list", "cliapp:runner")
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split() == ["SCHEDULE", "EXPRESSION", "TIMEZONE", "NEXT", "RUNS", "LAST", "RUN"]
    name, expression, timezone, runs, last = (cell.strip() for cell in row.split("  ") if cell.strip())
    assert (name, expression, timezone, last) == ("nightly", "0 3 * * *", "Europe/Paris", "-")
    times = [datetime.fromisoformat(t) for t in runs.split(", ")]
    assert [(t.hour, t.minute) for t in times] == [(3, 0)] * 3
    assert [(b - a).days for a, b in itertools.pairwise(times)] == [1, 1]


def test_cron_list_json_has_iso_times(jobrunner: Run) -> None:
    result = jobrunner("cron", "list", "cliapp:runner", "--json")
    assert result.returncode == 0, result.stderr
    (schedule,) = json.loads(result.stdout)
    assert (schedule["name"], schedule["job"], schedule["timezone"]) == ("nightly", "tidy", "Europe/Paris")
    assert (schedule["expression"], schedule["last_run"]) == ("0 3 * * *", None)
    next_run = datetime.fromisoformat(schedule["next_run"])
    assert (next_run.hour, next_run.minute) == (3, 0)


# --- errors ----------------------------------------------------------------------------------------
def test_app_module_that_does_not_exist_is_named(jobrunner: Run, tmp_path: Path) -> None:
    result = jobrunner("enqueue", "nosuchapp:runner", "add", "--store", url(tmp_path / "jobs.db"))
    assert_usage_error(result, 2, "'nosuchapp:runner'", "no module named 'nosuchapp'")


def test_app_attribute_that_does_not_exist_is_named(jobrunner: Run) -> None:
    result = jobrunner("worker", "cliapp:runnr")
    assert_usage_error(result, 2, "module 'cliapp' has no attribute 'runnr'", "these runners: runner")


@pytest.mark.parametrize(
    ("command", "path", "message"),
    [
        ("worker cliapp:runner", "missing-dir/jobs.db", "the directory {dir}/missing-dir does not exist"),
        ("jobs list", "garbage.db", "{dir}/garbage.db: open failed: file is not a database"),
        ("stats", "missing.db", "cannot open the SQLite store {dir}/missing.db: the file does not exist"),
    ],
    ids=["worker-missing-directory", "list-not-a-database", "stats-missing-file"],
)
def test_store_that_cannot_be_opened_exits_1(
    jobrunner: Run, tmp_path: Path, command: str, path: str, message: str
) -> None:
    (tmp_path / "garbage.db").write_text("not the pages of a database\n" * 200)
    result = jobrunner(*command.split(), "--store", url(tmp_path / path))
    assert_usage_error(result, 1, message.format(dir=tmp_path))


def test_read_command_does_not_create_a_missing_store(jobrunner: Run, tmp_path: Path) -> None:
    result = jobrunner("jobs", "list", "--store", url(tmp_path / "typo.db"))
    assert result.returncode == 1
    assert list(tmp_path.iterdir()) == []


def test_store_url_that_is_not_one_is_a_usage_error(jobrunner: Run) -> None:
    result = jobrunner("enqueue", "cliapp:runner", "add", "--args", "[1, 2]", "--store", "jobs.db")
    assert_usage_error(result, 2, "store='jobs.db' is not a URL", "sqlite:///path/to/jobs.db")


def test_memory_store_cannot_be_inspected(jobrunner: Run) -> None:
    result = jobrunner("jobs", "list", "--app", "cliapp:runner")
    assert_usage_error(result, 2, "cliapp:runner keeps jobs in the memory", "--store sqlite:///")


@pytest.mark.parametrize("action", ["show", "retry", "cancel"])
def test_unknown_job_id_is_a_usage_error(jobrunner: Run, shop: Shop, action: str) -> None:
    result = jobrunner("jobs", action, "no-such-id", "--store", shop.url)
    assert_usage_error(result, 2, "no job with id 'no-such-id' in the store")


def test_unknown_job_name_is_a_usage_error(jobrunner: Run, tmp_path: Path) -> None:
    result = jobrunner("enqueue", "cliapp:runner", "addd", "--store", url(tmp_path / "jobs.db"))
    assert_usage_error(result, 2, "no job named 'addd'", "Did you mean 'add'?", "'boom'")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--args", "[1, 2", "--args is not valid JSON (Expecting ',' delimiter at column 6): [1, 2"),
        ("--kwargs", "[1, 2]", "--kwargs must be an object"),
    ],
    ids=["args-not-json", "kwargs-not-an-object"],
)
def test_invalid_json_arguments_are_a_usage_error(
    jobrunner: Run, tmp_path: Path, option: str, value: str, message: str
) -> None:
    result = jobrunner("enqueue", "cliapp:runner", "add", option, value, "--store", url(tmp_path / "jobs.db"))
    assert_usage_error(result, 2, message)
    assert not (tmp_path / "jobs.db").exists()  # refused before anything was written
