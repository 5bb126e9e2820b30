"""Instruction counts under callgrind: the one cost figure a loaded 2-core machine cannot move.

Wall-clock and CPU-time ratios on a shared machine swing by a fifth from one run to the next;
callgrind counts the instructions a run executes, the same for the same code and input
whatever else runs. A benchmark runs a child (`python -m <module> <args>`) twice, with more and
with less of the work, and divides the difference by the units between: set-up and start-up
cancel out. Skipped (None) without valgrind or with `EVCAM_BENCH_CALLGRIND=0`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def available() -> bool:
    """Is valgrind here and not switched off?"""
    return shutil.which("valgrind") is not None and os.environ.get("EVCAM_BENCH_CALLGRIND") != "0"


def instructions(module: str, args: Sequence[str]) -> int:
    """Instructions executed by `python -m module *args` (a fixed hash seed: deterministic)."""
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         "-m", module, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=3600, check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )  # fmt: skip
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind: {out.stderr[-500:]}")
    return int(found.group(1))


def run_all(jobs: Sequence[tuple[str, Sequence[str]]]) -> list[int]:
    """`instructions` of each (module, args), two at a time (one per core), in order."""
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda job: instructions(*job), jobs))
