"""Rebuilding from scratch reproduces every artifact byte for byte (ONNX Runtime route).

A release manager must be able to rebuild an engine and get the file the lock file names. Forced
rebuilds of the whole tiny pipeline (real TF, tf2onnx, ORT) give the same sha256 for every output
except the logs (which carry timestamps).
"""

from __future__ import annotations

import json
from pathlib import Path

from trtpipe import api


def _digests(lock: Path) -> dict[str, str]:
    stages = json.loads(lock.read_bytes())["stages"]
    return {f"{name}.{out}": o["sha256"] for name, st in stages.items() for out, o in st["outputs"].items()
            if out != "log"}


def test_forced_rebuild_reproduces_every_artifact(tiny_copy: Path) -> None:
    lock = tiny_copy.with_suffix(".lock")
    before = _digests(lock)
    result = api.run(tiny_copy, force_all=True)
    assert result.ok and all(s.status == "built" for s in result.stages)
    assert _digests(lock) == before
