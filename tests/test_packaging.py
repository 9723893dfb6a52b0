"""The installed package is usable by a user's own app, wherever that app lives.

These run the venv's own tools in a subprocess from a directory outside the
repository, as a user would, so the repository's checkout cannot stand in for
the installed package.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

APP = """
from jobrunner import Runner

runner = Runner()


@runner.job
async def resize(image_id: int) -> str:
    return f"resized {image_id}"


async def main() -> None:
    handle = await resize.enqueue(42)
    reveal_type(await handle.result(timeout=5))
"""


def run_outside_the_repo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert not tmp_path.resolve().is_relative_to(REPO), "the app must live outside the repository"
    # Nothing may point the tools at the checkout: only what the venv installed counts.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    return subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_mypy_strict_type_checks_a_users_app_against_the_installed_package(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    done = run_outside_the_repo(
        tmp_path, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", os.devnull, "app.py"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # The result type comes from jobrunner's annotations, so mypy really read them.
    assert 'app.py:14: note: Revealed type is "str"' in done.stdout, done.stdout


def test_the_installed_package_has_every_module_of_the_source_tree(tmp_path: Path) -> None:
    done = run_outside_the_repo(
        tmp_path, "-c", "import pathlib, jobrunner; print(pathlib.Path(jobrunner.__file__).parent)"
    )
    assert done.returncode == 0, done.stderr
    installed = Path(done.stdout.strip())
    source = REPO / "jobrunner"

    def files(root: Path) -> set[str]:
        return {
            str(path.relative_to(root))
            for path in root.rglob("*")
            if path.name == "py.typed"
            or (path.suffix == ".py" and "__pycache__" not in path.parts)
            # The dashboard's package data: templates and static files (htmx).
            or (path.is_file() and {"templates", "static"} & set(path.relative_to(root).parts))
        }

    missing = files(source) - files(installed)
    assert not missing, (
        f"{sorted(missing)} not installed in {installed}; `make test` reinstalls when the modules change"
    )
