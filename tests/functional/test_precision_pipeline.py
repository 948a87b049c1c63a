"""int8 through a whole pipeline on the trained digits classifier (real TF, tf2onnx, ORT).

The calibration table is a stage of its own: a build param change reuses it, new data recalibrates;
the TensorRT-format cache beside it parses back to the same scales; a deliberately broken
calibration (all-zero data) is caught by the accuracy/cosine gates and fails the run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from trtpipe import api
from trtpipe.backends.calibration import parse_trt_cache

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "configs" / "examples" / "classifier"

PIPELINE = """\
version: 1
name: digits
store: store
stages:
  freeze: {{kind: freeze, inputs: {{model: model.keras}}}}
  onnx: {{kind: onnx, inputs: {{graph: freeze}}}}
  build:
    kind: build
    inputs: {{model: onnx}}
    backend: onnxruntime
    precision: int8
    max_batch: {max_batch}
    calibrator: {{algorithm: minmax, batch_size: 32, data: {{source: {calib}}}}}
  serialize: {{kind: serialize, inputs: {{engine: build}}}}
  verify:
    kind: verify-roundtrip
    inputs: {{engine: serialize, reference: freeze}}
    samples: {{source: heldout.npz, count: 200, labels: labels}}
    batches: [1, {max_batch}]
    metrics: [max_abs, max_rel, cosine, top1_agreement, accuracy]
    gates: {{accuracy_drop: 0.01}}
"""


def _write(folder: Path, *, max_batch: int = 32, calib: str = "calib.npz") -> Path:
    path = folder / "pipeline.yaml"
    path.write_bytes(PIPELINE.format(max_batch=max_batch, calib=calib).encode())
    return path


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    for name in ("model.keras", "heldout.npz", "calib.npz"):
        shutil.copyfile(EXAMPLE / name, tmp_path / name)
    return tmp_path


def _outputs(result: api.RunResult, stage: str) -> dict[str, Path]:
    st = next(s for s in result.stages if s.name == stage)
    return {n: Path(o["path"]) for n, o in st.outputs.items()}


def test_calibration_is_cached_on_its_own_and_follows_the_data(project: Path) -> None:
    pipeline = _write(project)
    first = api.run(pipeline)
    assert first.ok, [(s.name, s.error) for s in first.stages]
    assert {s.name: s.status for s in first.stages}["build.calibrate"] == "built"
    table_path = _outputs(first, "build.calibrate")["table"]
    table = json.loads(table_path.read_bytes())
    assert table["algorithm"] == "minmax" and table["tensors"]
    # The TensorRT legacy cache beside the table (header TRT-<ver>-MinMaxCalibration) carries the same scales.
    cache = parse_trt_cache(_outputs(first, "build.calibrate")["trt_cache"].read_bytes())
    assert cache["algorithm"] == "minmax"
    for name, entry in table["tensors"].items():
        assert cache["scales"][name] == pytest.approx(entry["scale"], rel=1e-6)
    # The int8 engine really is quantized, and the verification recorded accuracy.
    report = json.loads(_outputs(first, "build")["report"].read_bytes())
    assert report["precision_report"]["counts"]["QuantizeLinear"] > 0
    assert report["precision_report"]["nodes"]["int8"]
    verify = json.loads(_outputs(first, "verify")["report"].read_bytes())
    assert verify["ok"] and verify["task_metrics"]["accuracy"]["engine"] > 0.9

    # A build-only param change reuses the table.
    _write(project, max_batch=16)
    second = api.run(pipeline)
    states = {s.name: s.status for s in second.stages}
    assert states["build.calibrate"] == "cached"
    assert states["build"] == "built"

    # New calibration data recalibrates (and gives a different table).
    rng = np.random.default_rng(7)
    with np.load(project / "calib.npz") as data:
        images = data["image"]
    np.savez(project / "calib2.npz", image=images[rng.permutation(len(images))[:32]] * 0.5)
    _write(project, max_batch=16, calib="calib2.npz")
    third = api.run(pipeline)
    states = {s.name: s.status for s in third.stages}
    assert states["build.calibrate"] == "built"
    assert json.loads(_outputs(third, "build.calibrate")["table"].read_bytes())["tensors"] != table["tensors"]


def test_broken_calibration_fails_the_accuracy_gate(project: Path) -> None:
    with np.load(project / "calib.npz") as data:
        zeros = np.zeros_like(data["image"])
    np.savez(project / "zeros.npz", image=zeros)
    result = api.run(_write(project, calib="zeros.npz"))
    assert not result.ok
    verify = next(s for s in result.stages if s.name == "verify")
    assert verify.status == "failed"
    assert "verification failed for the int8 engine" in (verify.error or "")
    # Nothing that looks valid was left for the failed stage.
    assert not (project / "store" / "digits" / "verify").exists()


def test_quantization_settings_from_yaml_reach_the_quantizer(project: Path) -> None:
    path = _write(project)
    text = path.read_bytes().decode().replace(
        "    precision: int8\n", "    precision: int8\n    quantization: {format: qoperator, per_channel: false}\n")
    path.write_bytes(text.encode())
    result = api.run(path)
    assert result.ok, [(s.name, s.error) for s in result.stages]
    settings = json.loads(_outputs(result, "build")["report"].read_bytes())["precision_report"]["settings"]
    assert settings["format"] == "qoperator" and settings["per_channel"] is False
