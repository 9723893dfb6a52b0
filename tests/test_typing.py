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
