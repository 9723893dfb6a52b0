"""The benchmark scripts still run: a smoke test at tiny sizes; no timing is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("bench_*.py"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=100, check=False)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_each_script_imports_and_offers_quick(script: Path) -> None:
    result = run(str(script), "--help")
    assert result.returncode == 0, result.stderr
    assert "--quick" in result.stdout


def test_the_aiojobs_comparison_runs_its_contenders_in_child_processes() -> None:
    result = run(str(BENCHMARKS / "bench_vs_aiojobs.py"), "-n", "200", "--rounds", "1")
    assert result.returncode == 0, result.stderr
    assert "x aiojobs" in result.stdout
    assert "memory store end to end vs aiojobs, both with defaults:" in result.stdout


def test_the_web_benchmark_times_every_endpoint() -> None:
    result = run(
        str(BENCHMARKS / "bench_web.py"), "--quick", "--store", "sqlite", "--jobs", "3000", "--requests", "3"
    )
    assert result.returncode == 0, result.stderr
    for endpoint in ("GET /stats (as served", "GET /jobs?status=dead", "GET /jobs?before=", "GET /jobs/{id}"):
        assert endpoint in result.stdout, result.stdout
