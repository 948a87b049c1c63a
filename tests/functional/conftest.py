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

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "fixtures" / "models" / "tiny.py"
PIPELINE_NAME = "tiny"

STAGES = """\
  freeze:
    kind: freeze
    inputs: {{model: {model}}}
  onnx:
    kind: onnx
    inputs: {{graph: freeze}}
  build:
    kind: build
    inputs: {{model: onnx}}
    backend: onnxruntime
    max_batch: {max_batch}
  serialize:
    kind: serialize
    inputs: {{engine: build}}
  verify:
    kind: verify-roundtrip
    inputs: {{engine: serialize, reference: {reference}}}
"""


def pipeline_text(*, name: str = PIPELINE_NAME, model: str = "tiny.py:build", max_batch: int = 8,
                  reference: str = "freeze", extra: str = "", store: str = "artifacts") -> str:
    """The tiny pipeline's YAML (``extra`` is appended inside ``stages:``)."""
    head = f"version: 1\nname: {name}\nstore: {store}\nstages:\n"
    return head + STAGES.format(model=model, max_batch=max_batch, reference=reference) + extra


def write_pipeline(folder: Path, filename: str = "pipeline.yaml", **kwargs: Any) -> Path:
    """Write the tiny pipeline (and its builder file) into ``folder``; returns the pipeline path."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "tiny.py").exists():
        shutil.copyfile(TINY, folder / "tiny.py")
    path = folder / filename
    path.write_bytes(pipeline_text(**kwargs).encode())
    return path


def set_max_batch(path: Path, old: int, new: int) -> None:
    """Edit the pipeline file's build max_batch in place (as a user would)."""
    text = path.read_bytes().decode()
    assert f"max_batch: {old}\n" in text
    path.write_bytes(text.replace(f"max_batch: {old}\n", f"max_batch: {new}\n").encode())


def statuses(result: api.RunResult) -> dict[str, str]:
    """Stage name -> status of a run."""
    return {s.name: s.status for s in result.stages}


def subprocess_env() -> dict[str, str]:
    """Environment for `python -m trtpipe.cli` children: quiet TF, this interpreter's packages."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONIOENCODING": "utf-8", "COLUMNS": "200"}


TRTPIPE = [sys.executable, "-m", "trtpipe.cli"]


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
