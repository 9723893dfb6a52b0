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
import re
import shlex
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
from tests.sqlite_support import damage_the_ready_index

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


@runner.job(retries=1, backoff=0.01)
async def flaky() -> None:
    raise RuntimeError("out of luck")


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


STDLIB_LOGGING_APP = '''\
"""An app that configures stdlib logging itself: ``stdlibapp:runner``."""

import logging
import sys

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="app-format %(name)s: %(message)s")

from cliapp import runner  # noqa: E402
'''

STRUCTLOG_APP = '''\
"""An app that configures structlog itself: ``structlogapp:runner``."""

import sys

import structlog

structlog.configure(
    processors=[lambda _logger, _method, event: {**event, "app": "structlog-app"}, structlog.processors.JSONRenderer()],
    logger_factory=structlog.PrintLoggerFactory(sys.stderr),
)

from cliapp import runner  # noqa: E402
'''

FAILING_APP = '''\
"""Runners whose serve() fails as a store that keeps failing makes it fail."""

from jobrunner import Runner
from jobrunner.errors import StoreError

MESSAGE = "the SQLite store /var/jobs.db kept failing for 60 s: database disk image is malformed"


class StoreFails(Runner):
    async def serve(self) -> None:
        raise StoreError(MESSAGE)


class StoreFailsInATaskGroup(Runner):
    async def serve(self) -> None:
        raise ExceptionGroup("unhandled errors in a TaskGroup", [StoreError(MESSAGE)])


runner = StoreFails()
grouped = StoreFailsInATaskGroup()
'''


# --- running the command ------------------------------------------------------------------
@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding ``cliapp.py``."""
    directory = tmp_path_factory.mktemp("app")
    (directory / "cliapp.py").write_text(APP)
    (directory / "stdlibapp.py").write_text(STDLIB_LOGGING_APP)
    (directory / "structlogapp.py").write_text(STRUCTLOG_APP)
    (directory / "failingapp.py").write_text(FAILING_APP)
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


def start(app_dir: Path, *args: str) -> subprocess.Popen[str]:
    """``jobrunner *args`` in the background, its stdout and stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "jobrunner", *args],
        cwd=app_dir,
        env=environment(app_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def job_id_in(text: str) -> str:
    """The job id in the first ``job 'name' (ID)`` of ``text``."""
    match = re.search(r"job '\w+' \(([^)]+)\)", text)
    assert match is not None, text
    return match[1]


def start_waiting(app_dir: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """``jobrunner enqueue *args`` (with --wait) in the background, once it waits: it and the job's id."""
    process = start(app_dir, "enqueue", *args)
    assert process.stderr is not None
    return process, job_id_in(process.stderr.readline())  # the line that says the wait began


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


def assert_refused(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    """A usage error from the options: exit 2, the usage and one line saying what is allowed."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert result.stderr.startswith("usage: jobrunner "), result.stderr
    last = result.stderr.rstrip("\n").splitlines()[-1]
    assert "error: " in last, result.stderr
    for phrase in phrases:
        assert phrase in last, last


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

    def __init__(self, app_dir: Path, log: Path, *args: str, app: str = "cliapp:runner") -> None:
        self.log = log
        with log.open("w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "jobrunner", "worker", app, *args],
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


def serve_jobs(
    jobrunner: Run,
    app_dir: Path,
    tmp_path: Path,
    *options: str,
    jobs: tuple[tuple[str, str], ...] = (("add", "[1, 2]"),),
    app: str = "cliapp:runner",
    ready: str | None = None,
) -> tuple[str, list[subprocess.CompletedProcess[str]]]:
    """Start a worker, run ``jobs`` (name, JSON args) through it, stop it with SIGTERM.

    With ``ready``, SIGTERM waits until the worker logged that text.

    Returns everything it logged and the ``enqueue --wait`` of each job. Each
    wait returns once the worker settled the job, after it logged the job's
    lines; the log is read after the worker exited.
    """
    db = tmp_path / "jobs.db"
    worker = Worker(app_dir, tmp_path / "worker.log", "--store", url(db), *options, app=app)
    try:
        waits = [
            jobrunner("enqueue", app, name, "--args", args, "--wait", "--timeout", "20", "--store", url(db))
            for name, args in jobs
        ]
        if ready is not None:
            worker.wait_until_logged(ready)
        worker.process.send_signal(signal.SIGTERM)
        code = worker.process.wait(WITHIN)
    finally:
        worker.close()
    log = worker.log.read_text()
    assert code == 0, log
    return log, waits


CONSOLE_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO |WARNING|ERROR) {1,4} (.*)")
"""A line of the worker's console log: time, level, then ``event key=value ...``."""


def console_events(log: str) -> list[tuple[str, str]]:
    """(level, message) of each log line, tracebacks left out."""
    return [(m[1].strip(), m[2]) for m in map(CONSOLE_LINE.fullmatch, log.splitlines()) if m]


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
    "web",
]


def test_help_lists_every_command(jobrunner: Run) -> None:
    result = jobrunner("--help")
    assert result.returncode == 0, result.stderr
    for command in ("worker", "enqueue", "jobs", "stats", "cron", "web"):
        assert f"    {command}" in result.stdout


@pytest.mark.parametrize(
    "program",
    [[str(Path(sys.executable).with_name("jobrunner"))], [sys.executable, "-m", "jobrunner.cli"]],
    ids=["console-script", "python-m-jobrunner-cli"],
)
def test_every_way_of_starting_the_command_runs_it(app_dir: Path, program: list[str]) -> None:
    # The console script is pyproject's entry point (jobrunner.cli:main); `python -m jobrunner` is above.
    result = subprocess.run(
        [*program, "--help"],
        cwd=app_dir,
        env=environment(app_dir),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: jobrunner ")


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


WAITING = "jobrunner: waiting for job '{name}' ({id}); Ctrl-C stops the wait, not the job"

NEVER_READY = ("--args", "[1,1]", "--delay", "3600", "--wait")
"""``enqueue`` options for a job that stays scheduled while the command waits."""


def test_enqueue_wait_for_a_dead_job_names_the_commands_to_show_and_retry_it(
    jobrunner: Run, served: tuple[Path, Worker]
) -> None:
    db, _ = served
    store = url(db)
    result = jobrunner("enqueue", "cliapp:runner", "boom", "--wait", "--timeout", "20", "--store", store)

    assert (result.returncode, result.stdout) == (1, ""), result.stderr  # stdout is for a result
    job_id = job_id_in(result.stderr)
    assert result.stderr.splitlines() == [
        WAITING.format(name="boom", id=job_id),
        f"jobrunner: error: job 'boom' ({job_id}) ended dead after 1 of 4 attempts: Abort: it broke",
        f"  inspect it:   jobrunner jobs show {job_id} --store {shlex.quote(store)}",
        f"  run it again: jobrunner jobs retry {job_id} --store {shlex.quote(store)}",
    ]
    assert read_jobs(db)[job_id].status is JobStatus.DEAD


def test_enqueue_wait_for_a_dead_job_gives_commands_that_work(
    jobrunner: Run, served: tuple[Path, Worker]
) -> None:
    db, _ = served
    result = jobrunner("enqueue", "cliapp:runner", "boom", "--wait", "--timeout", "20", "--store", url(db))
    assert result.returncode == 1, result.stderr
    retry = shlex.split(result.stderr.splitlines()[-1].partition(": ")[2])
    assert retry[:3] == ["jobrunner", "jobs", "retry"]

    requeued = jobrunner(*retry[1:])

    assert requeued.returncode == 0, requeued.stderr
    assert requeued.stdout.startswith(f"requeued {retry[3]} (boom)")


def test_enqueue_wait_json_for_a_dead_job_has_its_status_error_and_commands(
    jobrunner: Run, served: tuple[Path, Worker]
) -> None:
    db, _ = served
    store = url(db)
    result = jobrunner("enqueue", "cliapp:runner", "boom", "--wait", "--json", "--store", store)

    assert result.returncode == 1, result.stderr
    answer = json.loads(result.stdout)
    job_id = answer["id"]
    assert answer == {
        "id": job_id,
        "status": "dead",
        "error": f"job 'boom' ({job_id}) ended dead after 1 of 4 attempts: Abort: it broke",
        "commands": {
            "show": f"jobrunner jobs show {job_id} --store {shlex.quote(store)}",
            "retry": f"jobrunner jobs retry {job_id} --store {shlex.quote(store)}",
        },
    }


def test_enqueue_wait_for_a_cancelled_job_names_the_commands_to_show_and_retry_it(
    app_dir: Path, jobrunner: Run, tmp_path: Path
) -> None:
    store = url(tmp_path / "jobs.db")
    waiting, job_id = start_waiting(app_dir, "cliapp:runner", "add", *NEVER_READY, "--store", store)
    try:
        cancelled = jobrunner("jobs", "cancel", job_id, "--store", store)
        assert cancelled.returncode == 0, cancelled.stderr
        stdout, stderr = waiting.communicate(timeout=WITHIN)
    finally:
        waiting.kill()
        waiting.communicate(timeout=TIMEOUT)

    assert (waiting.returncode, stdout) == (1, ""), stderr
    assert stderr.splitlines() == [
        f"jobrunner: error: job 'add' ({job_id}) was cancelled",
        f"  inspect it:   jobrunner jobs show {job_id} --store {shlex.quote(store)}",
        f"  run it again: jobrunner jobs retry {job_id} --store {shlex.quote(store)}",
    ]


def test_enqueue_wait_that_times_out_names_the_command_to_follow_the_job(
    jobrunner: Run, tmp_path: Path
) -> None:
    store = url(tmp_path / "jobs.db")
    result = jobrunner("enqueue", "cliapp:runner", "add", *NEVER_READY, "--timeout", "0.2", "--store", store)

    assert result.returncode == 1, result.stderr
    job_id = job_id_in(result.stderr)
    assert result.stderr.splitlines()[1:] == [
        f"jobrunner: error: job 'add' ({job_id}) did not finish within 0.2 s; it is still scheduled",
        f"  follow it:    jobrunner jobs show {job_id} --store {shlex.quote(store)}",
    ]


def test_enqueue_wait_names_the_app_when_the_store_is_the_apps_own(app_dir: Path, tmp_path: Path) -> None:
    # The app, run from its own directory, gives the runner its store itself.
    (tmp_path / "ownstore.py").write_text(
        f"from cliapp import runner\n\nrunner.configure(store={url(tmp_path / 'jobs.db')!r})\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobrunner",
            "enqueue",
            "ownstore:runner",
            "add",
            *NEVER_READY,
            "--timeout",
            "0.2",
        ],
        cwd=tmp_path,
        env=environment(app_dir),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )

    assert result.returncode == 1, result.stderr
    job_id = job_id_in(result.stderr)
    assert (
        result.stderr.splitlines()[-1]
        == f"  follow it:    jobrunner jobs show {job_id} --app ownstore:runner"
    )


# --- worker ----------------------------------------------------------------------------------------
def test_worker_logs_json_lines_with_its_settings(served: tuple[Path, Worker]) -> None:
    _, worker = served
    lines = worker.log.read_text().splitlines(keepends=True)
    events = [json.loads(line) for line in lines if line.endswith("\n")]  # not one being written
    starting = next(e for e in events if e["event"] == "worker starting")
    assert (starting["app"], starting["queues"]) == ("cliapp:runner", ["default", "emails"])
    started = next(e for e in events if e["event"] == "runner started")
    assert (started["level"], started["logger"]) == ("info", "jobrunner.runner")
    assert datetime.fromisoformat(started["timestamp"]).tzinfo is not None
    assert started["concurrency"] == 4
    assert {"add", "boom", "hold"} <= set(started["jobs"])


def test_worker_logs_its_lifecycle_one_line_each(jobrunner: Run, app_dir: Path, tmp_path: Path) -> None:
    log, _ = serve_jobs(
        jobrunner, app_dir, tmp_path, "--concurrency", "3", "--queues", "default,emails", ready="leadership"
    )

    events = console_events(log)
    assert len(events) == len(log.splitlines())  # nothing but these lines
    assert [level for level, _ in events] == ["INFO", "INFO", "INFO", "WARNING", "INFO", "INFO"]
    starting, started, leading, signalled, begun, finished = (message for _, message in events)
    assert starting.startswith("worker starting app=cliapp:runner store=")
    assert "queues=default,emails" in starting
    assert started.startswith("runner started worker_id=")
    assert "concurrency=3" in started
    assert leading.startswith("leadership acquired")
    assert signalled == "signal received; stopping gracefully signal=SIGTERM"
    assert begun.startswith("shutdown begun")
    assert finished.startswith("shutdown finished")


def test_worker_logs_no_line_per_job_by_default(jobrunner: Run, app_dir: Path, tmp_path: Path) -> None:
    log, (waited,) = serve_jobs(jobrunner, app_dir, tmp_path)

    assert (waited.returncode, waited.stdout) == (0, "3\n"), waited.stderr  # the job ran
    assert "job started" not in log
    assert "job succeeded" not in log


@pytest.mark.parametrize("options", [("--job-logs",), ("--log-level", "debug")], ids=["job-logs", "debug"])
def test_worker_logs_a_line_per_job_when_asked(
    jobrunner: Run, app_dir: Path, tmp_path: Path, options: tuple[str, ...]
) -> None:
    log, (waited,) = serve_jobs(jobrunner, app_dir, tmp_path, *options)

    assert waited.returncode == 0, waited.stderr
    messages = [message for _, message in console_events(log)]
    assert any(m.startswith("job started ") and "job_name=add" in m for m in messages), log
    assert any(m.startswith("job succeeded ") and "job_name=add" in m for m in messages), log


def test_worker_logs_a_retried_attempt_in_one_line_and_the_traceback_once(
    jobrunner: Run, app_dir: Path, tmp_path: Path
) -> None:
    log, (waited,) = serve_jobs(jobrunner, app_dir, tmp_path, jobs=(("flaky", "[]"),))

    assert waited.returncode == 1, waited.stderr  # dead after its 2 attempts
    lines = log.splitlines()
    (retried,) = [i for i, line in enumerate(lines) if "job attempt failed; retry scheduled" in line]
    assert " WARNING  " in lines[retried]
    assert "job_name=flaky" in lines[retried]
    assert "error='RuntimeError: out of luck'" in lines[retried]
    assert CONSOLE_LINE.fullmatch(lines[retried + 1])  # no traceback after it
    (dead,) = [i for i, line in enumerate(lines) if "job dead" in line]
    assert " ERROR    " in lines[dead]
    assert lines[dead + 1] == "Traceback (most recent call last):"
    assert "RuntimeError: out of luck" in lines[dead + 2 :]
    assert log.count("Traceback") == 1


def test_worker_leaves_stdlib_logging_the_app_configured_alone(
    jobrunner: Run, app_dir: Path, tmp_path: Path
) -> None:
    log, (waited,) = serve_jobs(jobrunner, app_dir, tmp_path, app="stdlibapp:runner")

    assert waited.returncode == 0, waited.stderr
    assert console_events(log) == []  # none in the CLI's own format
    assert "app-format jobrunner.runner: runner started" in log
    # The app asked for INFO from every logger: the CLI does not quieten per-job lines.
    assert "app-format jobrunner.jobs: job succeeded" in log


def test_worker_leaves_structlog_the_app_configured_alone(
    jobrunner: Run, app_dir: Path, tmp_path: Path
) -> None:
    log, (waited,) = serve_jobs(jobrunner, app_dir, tmp_path, app="structlogapp:runner")

    assert waited.returncode == 0, waited.stderr
    events = [json.loads(line) for line in log.splitlines()]  # every line the app's JSON
    assert any(e["event"] == "runner started" and e["app"] == "structlog-app" for e in events), log


def test_worker_says_which_logging_options_it_ignored(jobrunner: Run, app_dir: Path, tmp_path: Path) -> None:
    log, _ = serve_jobs(
        jobrunner, app_dir, tmp_path, "--log-format", "json", "--job-logs", app="stdlibapp:runner"
    )

    assert "app-format jobrunner.cli: logging left as the app configured it" in log
    assert "ignored=--log-format,--job-logs" in log


def test_worker_log_level_warning_logs_only_warnings_and_errors(
    jobrunner: Run, app_dir: Path, tmp_path: Path
) -> None:
    log, _ = serve_jobs(jobrunner, app_dir, tmp_path, "--log-level", "warning")

    assert console_events(log) == [("WARNING", "signal received; stopping gracefully signal=SIGTERM")]


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


def add_blocked_child(shop: Shop) -> str:
    """add(0, 0) after the shop's succeeded and scheduled jobs: blocked on the second."""

    async def main() -> str:
        runner = Runner(SQLiteStore(shop.db), instrument=False)

        @runner.job
        async def add(a: int, b: int) -> int:
            return a + b

        handle = await add.options(after=[shop.succeeded, shop.scheduled]).enqueue(0, 0)
        await runner.aclose()
        return handle.id

    return asyncio.run(main())


def test_jobs_show_lists_the_parents_of_a_blocked_job(jobrunner: Run, own_shop: Shop) -> None:
    child = add_blocked_child(own_shop)
    result = jobrunner("jobs", "show", child, "--store", own_shop.url)
    assert result.returncode == 0, result.stderr
    parents = result.stdout.partition("parents (after=):\n")[2].split("\n\n")[0].splitlines()
    assert [row.split()[:3] for row in parents[1:]] == [
        [own_shop.succeeded, "add", "succeeded"],
        [own_shop.scheduled, "add", "not"],
    ]
    listed = jobrunner("jobs", "list", "--status", "blocked", "--json", "--store", own_shop.url)
    assert [r["id"] for r in json.loads(listed.stdout)] == [child]


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
    assert rows["QUEUE"] == [
        "QUEUED",
        "SCHEDULED",
        "RUNNING",
        "RETRYING",
        "SUCCEEDED",
        "DEAD",
        "CANCELLED",
        "BLOCKED",
    ]
    assert rows["default"] == ["0", "0", "0", "0", "1", "2", "0", "0"]
    assert rows["emails"] == ["0", "1", "0", "0", "0", "0", "0", "0"]
    assert rows["(all)"] == ["0", "1", "0", "0", "1", "2", "0", "0"]


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
        # At --log-level warning a worker's stderr is the error alone.
        (
            "worker cliapp:runner --log-level warning",
            "missing-dir/jobs.db",
            "the directory {dir}/missing-dir does not exist",
        ),
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


# --- stdout closed early ---------------------------------------------------------------------------
PIPED = {
    "jobs-list": "jobs list --store {store}",
    "jobs-list-json": "jobs list --json --store {store}",
    "jobs-show": "jobs show {dead} --store {store}",
    "stats": "stats --store {store}",
    "stats-json": "stats --json --store {store}",
    "stats-watch": "stats --watch --interval 0.05 --store {store}",
    "stats-watch-json": "stats --watch --interval 0.05 --json --store {store}",
    "cron-list": "cron list cliapp:runner",
    "help": "--help",
}


@pytest.mark.parametrize("command", PIPED.values(), ids=PIPED.keys())
def test_output_into_a_pipe_nobody_reads_exits_141_quietly(app_dir: Path, shop: Shop, command: str) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes a byte
    try:
        result = subprocess.run(
            [sys.executable, "-m", "jobrunner", *command.format(store=shop.url, dead=shop.dead).split()],
            cwd=app_dir,
            env=environment(app_dir),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=TIMEOUT,
        )
    finally:
        os.close(write_end)

    assert (result.returncode, result.stderr) == (141, "")


def test_stats_watch_into_a_reader_that_stops_after_one_line_exits_141_quietly(
    app_dir: Path, shop: Shop
) -> None:
    # As in ``jobrunner stats --watch | head -1``: the reader leaves mid-stream.
    with start(app_dir, "stats", "--watch", "--interval", "0.05", "--store", shop.url) as watch:
        assert watch.stdout is not None and watch.stderr is not None
        try:
            assert watch.stdout.readline().startswith("jobrunner stats ")
            watch.stdout.close()
            code = watch.wait(TIMEOUT)
        finally:
            if watch.poll() is None:
                watch.kill()
        stderr = watch.stderr.read()

    assert (code, stderr) == (141, "")


# --- option values -----------------------------------------------------------------------------------
REFUSED = """
worker cliapp:runner --concurrency 0             | --concurrency: must be a whole number >= 1, not 0
worker cliapp:runner --concurrency -3            | --concurrency: must be a whole number >= 1, not -3
worker cliapp:runner --concurrency many          | --concurrency: must be a whole number >= 1, not 'many'
worker cliapp:runner --queues=                   | --queues: name at least one queue, e.g. emails,images
worker cliapp:runner --queues ,                  | --queues: name at least one queue, e.g. emails,images
worker cliapp:runner --queues emails,,images     | --queues: empty queue name in 'emails,,images'
worker cliapp:runner --log-level loud            | --log-level: invalid choice: 'loud'
worker cliapp:runner --store-give-up 0           | --store-give-up: must be a number of seconds > 0, or never, not 0
worker cliapp:runner --store-give-up -5          | --store-give-up: must be a number of seconds > 0, or never, not -5
worker cliapp:runner --store-give-up inf         | --store-give-up: must be a number of seconds > 0, or never, not 'inf'
worker cliapp:runner --store-give-up soon        | --store-give-up: must be a number of seconds > 0, or never, not 'soon'
enqueue cliapp:runner add --wait --timeout -1    | --timeout: must be a number of seconds > 0, not -1
enqueue cliapp:runner add --wait --timeout 0     | --timeout: must be a number of seconds > 0, not 0
enqueue cliapp:runner add --wait --timeout nan   | --timeout: must be a number of seconds > 0, not 'nan'
enqueue cliapp:runner add --timeout 5            | --timeout applies only with --wait
enqueue cliapp:runner add --delay -5             | --delay: must be a number of seconds >= 0, not -5
enqueue cliapp:runner add --delay inf            | --delay: must be a number of seconds >= 0, not 'inf'
enqueue cliapp:runner add --priority 3000000000  | --priority: must be a whole number from -2147483648 to 2147483647
enqueue cliapp:runner add --queue=               | --queue: must not be empty
enqueue cliapp:runner add --key=                 | --key: must not be empty
jobs list --limit 0                              | --limit: must be a whole number >= 1, not 0
jobs list --limit -1                             | --limit: must be a whole number >= 1, not -1
jobs list --queue=                               | --queue: must not be empty
jobs list --name=                                | --name: must not be empty
jobs purge --status dead --older-than=-1d        | --older-than: '-1d' is not a duration; use e.g. 90s, 15m, 12h, 7d or 2w
jobs purge --status dead --older-than 7days      | --older-than: '7days' is not a duration; use e.g. 90s, 15m, 12h, 7d or 2w
jobs purge --status dead --batch 0               | --batch: must be a whole number >= 1, not 0
stats --watch --interval 0                       | --interval: must be a number of seconds > 0, not 0
stats --interval 5                               | --interval applies only with --watch
stats --watch --count 0                          | --count: must be a whole number >= 1, not 0
cron list cliapp:runner --count 0                | --count: must be a whole number >= 1, not 0
cron list cliapp:runner --count -2               | --count: must be a whole number >= 1, not -2
"""
"""Each command line and what its usage error says is allowed."""


@pytest.mark.parametrize(
    ("command", "message"),
    [
        pytest.param(*(cell.strip() for cell in line.split("|")), id=line.split("|")[0].strip())
        for line in REFUSED.strip().splitlines()
    ],
)
def test_option_values_that_make_no_sense_are_refused_before_the_store_is_touched(
    jobrunner: Run, tmp_path: Path, command: str, message: str
) -> None:
    db = tmp_path / "jobs.db"

    result = jobrunner(*command.split(), "--store", url(db))

    # Refused while parsing: a store that had been opened would exist now, or,
    # for the reading commands, would have been refused as missing (exit 1).
    assert_refused(result, message)
    assert not db.exists()


# --- worker exit codes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("app", ["failingapp:runner", "failingapp:grouped"], ids=["plain", "in-a-task-group"])
def test_worker_whose_store_keeps_failing_exits_1_with_one_line(jobrunner: Run, app: str) -> None:
    result = jobrunner("worker", app, "--log-level", "warning")

    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert result.stderr == (
        "jobrunner: error: the SQLite store /var/jobs.db kept failing for 60 s: "
        "database disk image is malformed\n"
    )


def test_worker_store_give_up_stops_a_worker_whose_claims_always_fail(jobrunner: Run, tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"

    async def enqueue() -> None:
        runner = Runner(SQLiteStore(db), instrument=False)
        add = runner.declare("add")
        for n in range(3):
            await add.enqueue(n, n)
        await runner.aclose()

    asyncio.run(enqueue())
    damage_the_ready_index(db)  # the file opens; every claim fails as "database disk image is malformed"
    began = time.monotonic()

    # cliapp's runner would retry for its default 120 s; the flag says 1.
    result = jobrunner("worker", "cliapp:runner", "--store", url(db), "--store-give-up", "1")

    took = time.monotonic() - began
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert took < WITHIN, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("jobrunner: error: ")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.endswith(errors[0] + "\n")
    assert re.search(r"has failed for \d+ s without a break", errors[0]), errors[0]
    assert "database disk image is malformed" in errors[0]


def test_ctrl_c_while_enqueue_waits_exits_130_and_names_the_job(app_dir: Path, tmp_path: Path) -> None:
    store = url(tmp_path / "jobs.db")
    waiting, job_id = start_waiting(app_dir, "cliapp:runner", "add", *NEVER_READY, "--store", store)
    try:
        waiting.send_signal(signal.SIGINT)
        stdout, stderr = waiting.communicate(timeout=WITHIN)
    finally:
        waiting.kill()
        waiting.communicate(timeout=TIMEOUT)

    assert (waiting.returncode, stdout) == (130, ""), stderr
    assert stderr.splitlines() == [
        f"jobrunner: stopped waiting; job 'add' ({job_id}) is still scheduled",
        f"  follow it:    jobrunner jobs show {job_id} --store {shlex.quote(store)}",
    ]
