"""The README is true: each Python sample in it runs as shown, in a fresh directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pg_support import temporary_database

README = Path(__file__).resolve().parent.parent / "README.md"
SAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def run_sample(code: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = cwd / "sample.py"
    script.write_text(code)
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_readme_opens_with_exactly_the_two_commands() -> None:
    first_shell = re.search(r"```sh\n(.*?)```", README.read_text(), re.S)
    assert first_shell is not None
    commands = [line.split("#")[0].strip() for line in first_shell.group(1).splitlines()]
    assert commands == ["make demo", "make test"]


@pytest.mark.parametrize("index", range(len(SAMPLES)), ids=lambda i: f"sample{i}")
async def test_each_python_sample_runs(index: int, tmp_path: Path) -> None:
    code = SAMPLES[index]
    if "postgresql://" in code:
        async with temporary_database() as dsn:
            done = run_sample(code, tmp_path, {"DATABASE_URL": dsn})
    else:
        done = run_sample(code, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_quickstart_runs_a_job_and_dead_letters_another(tmp_path: Path) -> None:
    done = run_sample(SAMPLES[0], tmp_path)
    assert "image 42 resized to 400px on attempt 1" in done.stdout
    assert "charge (7,) 3 card declined for order 7" in done.stdout
    assert (tmp_path / "jobs.db").exists()
