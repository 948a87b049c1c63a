"""Shared fixtures for the functional tests: one tiny pipeline, built once per session.

``built_tiny`` runs freeze -> onnx -> build -> serialize -> verify (real TensorFlow, tf2onnx and
ONNX Runtime) on the 16x16x3 CNN of ``tests/fixtures/models/tiny.py``; ``tiny_copy`` gives each
test its own copy of that directory (pipeline file, builder, store, lock file), so tests that
corrupt, delete or rebuild things never see each other and never pay for a full build.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from trtpipe import api
from trtpipe.stages import REGISTRY

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))

from trtpipe_testkit import statuses, write_pipeline  # noqa: E402


@pytest.fixture(scope="session")
def built_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the tiny pipeline fully built (every stage in the store, lock file written)."""
    folder = tmp_path_factory.mktemp("built") / "tiny"
    path = write_pipeline(folder)
    result = api.run(path)
    assert result.ok, [(s.name, s.status, s.error) for s in result.stages]
    assert set(statuses(result).values()) == {"built"}
    return folder


@pytest.fixture
def tiny_copy(built_tiny: Path, tmp_path: Path) -> Path:
    """A private copy of the built tiny pipeline; returns its pipeline file."""
    dest = tmp_path / "tiny"
    shutil.copytree(built_tiny, dest)
    return dest / "pipeline.yaml"


@pytest.fixture
def stage_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of stages whose ``run`` actually executed, in order.

    Every registered kind is replaced (for this test) by a subclass that records the call and
    then does the real work: same ``kind`` and ``VERSION``, so keys and behaviour are unchanged.
    """
    calls: list[str] = []
    for kind, cls in list(REGISTRY.items()):
        def run(self: Any, ctx: Any, _base: Any = cls) -> Any:
            calls.append(ctx.name)
            return _base.run(self, ctx)

        monkeypatch.setitem(REGISTRY, kind, type(f"Counting{cls.__name__}", (cls,), {"run": run}))
    return calls
