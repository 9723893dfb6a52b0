"""An older jobrunner to measure against in the same run: the package as of a git
revision, extracted with ``git archive`` into a directory that a child process
puts first on ``sys.path`` (no stash, no checkout; the work tree is untouched)."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

BEFORE_FLOW = "2349714"
"""The last commit before job progress, flow control and dependencies: what
``bench_flow.py`` and ``bench_dependencies.py`` compare the hot path with."""


def extract_package(rev: str, into: Path) -> tuple[str, str]:
    """``(directory holding jobrunner as of rev, the full commit id)``.

    Raises SystemExit with what to do when git or the revision is not there
    (a copy of the source without its history).
    """
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        archive = into / "baseline.tar"
        with archive.open("wb") as out:
            subprocess.run(["git", "-C", str(REPO), "archive", commit, "jobrunner"], stdout=out, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(
            f"cannot extract jobrunner at {rev!r} with git ({exc}); run from a git clone "
            f"with its history, or pass another revision"
        ) from exc
    with tarfile.open(archive) as tar:
        tar.extractall(into / "baseline", filter="data")
    return str(into / "baseline"), commit
