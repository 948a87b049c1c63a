"""Shared helpers for the benchmark scripts (not tests; they print ratios measured in one run)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRTPIPE = [sys.executable, "-m", "trtpipe.cli"]


def timed(cmd: list[str], cwd: Path = ROOT) -> float:
    """Wall seconds of one subprocess run; raises if it fails."""
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def ensure_built(pipeline: Path) -> dict:
    """Run the pipeline once (cheap when cached) and return its lock file."""
    subprocess.run([*TRTPIPE, "run", str(pipeline)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return json.loads(pipeline.with_suffix(".lock").read_bytes())


def median(xs: list[float]) -> float:
    return statistics.median(xs)
