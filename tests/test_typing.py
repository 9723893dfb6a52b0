"""The public API is typed: mypy rejects wrong arguments and knows result types."""

from __future__ import annotations

import textwrap
from pathlib import Path

from mypy import api

SNIPPET = """
from jobrunner import Runner

runner = Runner()

@runner.job(retries=3)
async def resize(image_id: int, width: int = 800) -> dict[str, int]:
    return {"id": image_id, "width": width}

@runner.job
def count(words: list[str]) -> int:
    return len(words)

async def main() -> None:
    await resize.enqueue("x")
    await resize.enqueue(1, height=3)
    handle = await resize.enqueue(1, width=400)
    reveal_type(await handle.result())
    other = await count.options(priority=-1).enqueue(["a"])
    reveal_type(await other.result())
    await count.enqueue_many([count.call(["a"]), count.call(words=["b"])])
"""


def test_mypy_checks_enqueue_arguments_and_result_types(tmp_path: Path) -> None:
    path = tmp_path / "snippet.py"
    path.write_text(textwrap.dedent(SNIPPET))
    stdout, _, status = api.run(["--strict", "--no-incremental", "--cache-dir=/dev/null", str(path)])
    assert status == 1, stdout
    lines = [ln for ln in stdout.splitlines() if ln.startswith(str(path))]
    assert any(
        ':15: error: Argument 1 to "enqueue" of "BoundJob" has incompatible type "str"' in ln for ln in lines
    ), stdout
    assert any(':16: error: Unexpected keyword argument "height"' in ln for ln in lines), stdout
    assert any(':18: note: Revealed type is "dict[str, int]"' in ln for ln in lines), stdout
    assert any(':20: note: Revealed type is "int"' in ln for ln in lines), stdout
    errors = [ln for ln in lines if ": error:" in ln]
    assert len(errors) == 2, stdout


RESOURCES_SNIPPET = """
from collections.abc import AsyncIterator

from jobrunner import Runner, uses
from jobrunner.testing import override

runner = Runner()


class Client: ...


@runner.resource
async def http_client() -> AsyncIterator[Client]:
    yield Client()


@runner.resource(scope="job")
@uses(http_client)
async def session(client: Client) -> AsyncIterator[str]:
    yield "session"


@runner.job(retries=3)
@uses(http_client, session)
async def send_email(client: Client, s: str, to: str) -> bool:
    reveal_type(client)  # client type
    reveal_type(s)  # session type
    return True


@runner.job
@uses(session)
def archive(s: str, n: int) -> int:
    return n


@runner.job
@uses(http_client)  # uses a str
async def mistyped(client: str, to: str) -> None: ...


async def main() -> None:
    await send_email.enqueue("ada@example.com")
    await send_email.options(priority=-5).enqueue(to="ada@example.com")
    await send_email.enqueue_many([send_email.call("a@example.com"), send_email.call(to="b@example.com")])
    await send_email.enqueue("ada@example.com", client=Client())  # enqueue a resource by keyword
    await send_email.enqueue(Client(), "session", "ada@example.com")  # enqueue resources by position
    await send_email.options(delay=1).enqueue("ada@example.com", Client())  # options().enqueue a resource
    send_email.call("ada@example.com", s="session")  # call a resource by keyword
    reveal_type(await (await archive.enqueue(3)).result())  # sync result
    reveal_type(archive)  # sync job
    with override(http_client, Client()):
        pass
    with override(http_client, "not a client"):  # wrong fake
        pass
"""


def run_mypy(tmp_path: Path, snippet: str) -> tuple[Path, list[str], str]:
    path = tmp_path / "snippet.py"
    path.write_text(textwrap.dedent(snippet))
    stdout, _, _ = api.run(["--strict", "--no-incremental", "--cache-dir=/dev/null", str(path)])
    return path, [ln for ln in stdout.splitlines() if ln.startswith(str(path))], stdout


def line_of(snippet: str, marker: str) -> int:
    """The 1-based line of ``snippet`` that contains ``marker`` (exactly one)."""
    found = [n for n, text in enumerate(textwrap.dedent(snippet).splitlines(), 1) if marker in text]
    assert len(found) == 1, marker
    return found[0]


def test_mypy_types_a_job_that_uses_resources_by_its_own_arguments_only(tmp_path: Path) -> None:
    path, lines, stdout = run_mypy(tmp_path, RESOURCES_SNIPPET)

    def at(*markers: str) -> list[str]:
        numbers = {line_of(RESOURCES_SNIPPET, marker) for marker in markers}
        return [ln for ln in lines if int(ln[len(str(path)) + 1 :].split(":")[0]) in numbers]

    # Resources are neither keyword nor positional arguments of enqueue, options().enqueue or call.
    assert any('Unexpected keyword argument "client"' in ln for ln in at("enqueue a resource by keyword")), (
        stdout
    )
    assert any("Too many arguments" in ln for ln in at("enqueue resources by position")), stdout
    assert any("Too many arguments" in ln for ln in at("options().enqueue a resource")), stdout
    assert any('Unexpected keyword argument "s"' in ln for ln in at("call a resource by keyword")), stdout
    # The handler's parameter is checked against what the resource's generator yields
    # (mypy reports it at the decorator or the def, depending on its version).
    assert any(
        'incompatible type "Callable[[str, str]' in ln for ln in at("uses a str", "async def mistyped")
    ), stdout
    assert any('Revealed type is "snippet.Client"' in ln for ln in at("client type")), stdout
    assert any('Revealed type is "str"' in ln for ln in at("session type")), stdout
    assert any('Revealed type is "int"' in ln for ln in at("sync result")), stdout
    assert any('Revealed type is "jobrunner.registry.Job[[n: int], int]"' in ln for ln in at("sync job")), (
        stdout
    )
    # A fake must have the resource's type.
    assert any(": error:" in ln for ln in at("wrong fake")), stdout
    # The correct calls are accepted: every error is on a line above.
    expected = at(
        "enqueue a resource by keyword",
        "enqueue resources by position",
        "options().enqueue a resource",
        "call a resource by keyword",
        "uses a str",
        "async def mistyped",
        "wrong fake",
    )
    assert [ln for ln in lines if ": error:" in ln and ln not in expected] == [], stdout


DEPENDENCIES_SNIPPET = """
from jobrunner import Group, JobHandle, ParentOutcome, Runner, current_job

runner = Runner()

@runner.job
async def fetch(page: int) -> int:
    return page

@runner.job
async def total() -> int:
    outcomes: list[ParentOutcome] = await current_job().parent_outcomes()
    return len(outcomes)

async def main() -> None:
    first = await fetch.enqueue(1)
    after = await total.options(after=[first], on_parent_failure="dead").enqueue()
    reveal_type(await after.result())
    steps: list[JobHandle[object]] = await runner.chain(fetch.call(1), total.call())
    group: Group = await runner.group([fetch.call(2)], then=total.call())
    await runner.chain(fetch.call("x"))
"""


def test_mypy_checks_dependency_calls(tmp_path: Path) -> None:
    path = tmp_path / "snippet.py"
    path.write_text(textwrap.dedent(DEPENDENCIES_SNIPPET))
    stdout, _, status = api.run(["--strict", "--no-incremental", "--cache-dir=/dev/null", str(path)])
    lines = [ln for ln in stdout.splitlines() if ln.startswith(str(path))]
    assert any(':18: note: Revealed type is "int"' in ln for ln in lines), stdout
    errors = [ln for ln in lines if ": error:" in ln]
    assert len(errors) == 1 and ':21: error: Argument 1 to "call" of "BoundJob"' in errors[0], stdout
    assert status == 1


BATCH_SNIPPET = """
from jobrunner import Runner

runner = Runner()

@runner.job(batch=100, ttl=60, concurrency=2)
async def index(doc_ids: list[int]) -> list[str]:
    return [str(d) for d in doc_ids]

async def main() -> None:
    handle = await index.enqueue(7)
    reveal_type(await handle.result())
    await index.enqueue("x")
"""


def test_mypy_types_a_batch_job_by_its_item(tmp_path: Path) -> None:
    path = tmp_path / "snippet.py"
    path.write_text(textwrap.dedent(BATCH_SNIPPET))
    stdout, _, status = api.run(["--strict", "--no-incremental", "--cache-dir=/dev/null", str(path)])
    lines = [ln for ln in stdout.splitlines() if ln.startswith(str(path))]
    assert any(':12: note: Revealed type is "str"' in ln for ln in lines), stdout
    errors = [ln for ln in lines if ": error:" in ln]
    assert len(errors) == 1 and ":13: error: Argument 1" in errors[0], stdout
    assert status == 1
