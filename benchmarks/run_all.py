"""Run every benchmark script in this folder, one after another (``make bench``).

Each script prints its own tables with ratios to a baseline measured in the
same run; its default rows leave logging as a user gets it, so whatever
jobrunner prints by default is interleaved with them on stdout. Pass
``--quick`` to run each with small sizes. A script that fails does not stop
the others; the exit status says whether any did.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    extra = sys.argv[1:]
    scripts = sorted(p for p in HERE.glob("bench_*.py"))
    failed = []
    for script in scripts:
        print(f"\n=== {script.name} ===", flush=True)
        result = subprocess.run([sys.executable, str(script), *extra], check=False)
        if result.returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
