"""ONNX Runtime engines: build report, metadata, numerics, feed validation, corrupt files, SSD e2e."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trtpipe.backends import onnx as onnxb
from trtpipe.backends import onnxruntime as ortb
from trtpipe.errors import InvalidArtifact


@pytest.fixture(scope="module")
def engine(tiny_engine: tuple[Path, dict[str, Any]]) -> ortb.Engine:
    return ortb.Engine(tiny_engine[0], intra_op_threads=1)


def test_build_report_and_metadata(tiny_engine: tuple[Path, dict[str, Any]], engine: ortb.Engine) -> None:
    _, report = tiny_engine
    assert report["onnxruntime"] == ortb.version()
    assert report["provider"] == "CPUExecutionProvider"
    assert report["optimization_level"] == "all" and report["max_batch"] == 8
    assert report["inputs"] == [{"name": "image", "dtype": "float32", "shape": [None, 16, 16, 3]}]
    assert [o["name"] for o in report["outputs"]] == ["scores", "boxes"]
    assert report["nodes_before"] == sum(report["ops_before"].values())
    assert report["nodes_after"] == sum(report["ops_after"].values())
    assert report["ops_after"] != report["ops_before"]  # "all" rewrites the graph (fusions, NCHWc)
    assert engine.max_batch == 8
    assert engine.metadata["trtpipe.precision"] == "fp32"
    assert engine.inputs == report["inputs"] and engine.outputs == report["outputs"]


@pytest.mark.parametrize("batch", [1, 7, 8])
def test_engine_matches_tensorflow(batch: int, helpers: Any, engine: ortb.Engine,
                                   tf_reference: Callable[[np.ndarray], dict[str, np.ndarray]]) -> None:
    x = helpers.images(batch, seed=20 + batch)
    got, want = engine.run({"image": x}), tf_reference(x)
    assert list(got) == ["scores", "boxes"]
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-5, rtol=0, err_msg=name)


def test_engine_rejects_bad_feeds_before_running(engine: ortb.Engine) -> None:
    ok = np.zeros((2, 16, 16, 3), np.float32)
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "batch": ({"image": np.zeros((9, 16, 16, 3), np.float32)},
                  "input 'image': expected [N≤8, 16, 16, 3] float32, got [9, 16, 16, 3] float32"),
        "dtype": ({"image": ok.astype(np.float64)},
                  "input 'image': expected [N≤8, 16, 16, 3] float32, got [2, 16, 16, 3] float64"),
        "dims": ({"image": np.zeros((2, 16, 15, 3), np.float32)}, "got [2, 16, 15, 3] float32"),
        "rank": ({"image": np.zeros((16, 16, 3), np.float32)}, "got [16, 16, 3] float32"),
        "empty batch": ({"image": np.zeros((0, 16, 16, 3), np.float32)}, "got [0, 16, 16, 3] float32"),
        "missing": ({}, "missing input(s) 'image'"),
        "unknown": ({"image": ok, "extra": ok}, "unknown input(s) 'extra'"),
        "not array": ({"image": ok.tolist()}, "expected a numpy array, got list"),
    }
    for case, (feeds, message) in cases.items():
        with pytest.raises(ortb.InvalidFeed, match=re.escape(message)) as err:
            engine.run(feeds)
        assert err.value.hint, case
        assert isinstance(err.value, ValueError) and isinstance(err.value, InvalidArtifact)
    assert engine.run({"image": ok})["scores"].shape == (2, 32, 3)  # still usable afterwards


def test_optimization_levels_and_plain_onnx(tiny_onnx: tuple[Path, dict[str, Any]], tmp_path: Path,
                                            engine: ortb.Engine) -> None:
    x = np.random.default_rng(3).random((3, 16, 16, 3), dtype=np.float32)
    want = engine.run({"image": x})
    for level in ("disable", "basic"):
        out = tmp_path / f"{level}.engine"
        report = ortb.build(tiny_onnx[0], out, max_batch=4, optimization_level=level)
        eng = ortb.Engine(out)
        assert eng.max_batch == 4 and eng.metadata["trtpipe.optimization_level"] == level
        assert report["optimization_level"] == level
        got = eng.run({"image": x})
        for name in want:
            np.testing.assert_allclose(got[name], want[name], atol=1e-5, rtol=0)
    # A plain ONNX file also loads as an engine: no batch limit recorded.
    plain = ortb.Engine(tiny_onnx[0])
    assert plain.max_batch is None
    assert plain.run({"image": np.zeros((11, 16, 16, 3), np.float32)})["boxes"].shape == (11, 32, 4)
    with pytest.raises(InvalidArtifact, match="unknown ONNX Runtime optimization level 'max'"):
        ortb.build(tiny_onnx[0], tmp_path / "x.engine", max_batch=1, optimization_level="max")
    with pytest.raises(InvalidArtifact, match="max_batch must be a positive integer"):
        ortb.build(tiny_onnx[0], tmp_path / "x.engine", max_batch=0)
    assert not (tmp_path / "x.engine").exists()


def test_corrupt_engine_files(tiny_engine: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    data = tiny_engine[0].read_bytes()
    truncated = tmp_path / "truncated.engine"
    truncated.write_bytes(data[: len(data) // 3])
    garbage = tmp_path / "garbage.engine"
    garbage.write_bytes(bytes(range(256)) * 4)
    for bad in (truncated, garbage):
        with pytest.raises(InvalidArtifact, match=re.escape(str(bad))) as err:
            ortb.Engine(bad)
        assert err.value.path == str(bad) and err.value.hint
    with pytest.raises(InvalidArtifact, match="cannot read engine"):
        ortb.Engine(tmp_path / "absent.engine")
    with pytest.raises(InvalidArtifact, match="not an ONNX model"):
        ortb.build(garbage, tmp_path / "out.engine", max_batch=1)


def test_describe_engine(tiny_engine: tuple[Path, dict[str, Any]]) -> None:
    text = ortb.describe_engine(tiny_engine[0])
    assert "max batch: 8" in text
    assert "image: float32 [N≤8, 16, 16, 3]" in text
    assert "trtpipe.precision: fp32" in text and "CPUExecutionProvider" in text


def test_ssd_model_end_to_end(helpers: Any, tmp_path: Path) -> None:
    """The default model freezes, converts, builds and matches TensorFlow on ONNX Runtime."""
    from trtpipe.backends import tf as tfb

    pb = tmp_path / "ssd.pb"
    sig = tfb.freeze("configs/models/ssd.py:build_model", pb, base_dir=helpers.repo, seed=0)
    assert sig["inputs"] == [{"name": "image", "dtype": "float32", "shape": [None, 300, 300, 3]}]
    assert [(o["name"], o["shape"]) for o in sig["outputs"]] == [
        ("scores", [None, 1383, 21]), ("boxes", [None, 1383, 4])]
    info = onnxb.tf_to_onnx(pb, sig, tmp_path / "ssd.onnx")
    assert info["ops"].get("Conv", 0) >= 10
    ortb.build(tmp_path / "ssd.onnx", tmp_path / "ssd.engine", max_batch=4)
    eng = ortb.Engine(tmp_path / "ssd.engine")
    x = np.random.default_rng(0).random((2, 300, 300, 3), dtype=np.float32) * 2.0 - 1.0
    got = eng.run({"image": x})
    want = tfb.run_frozen(pb, {"image": x}, ["scores", "boxes"])
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-5, rtol=0, err_msg=name)
    np.testing.assert_allclose(got["scores"].sum(-1), 1.0, atol=1e-5)
    # Non-trivial: scores differ across anchors and images.
    assert float(got["scores"].std()) > 1e-3
    assert not np.allclose(got["boxes"][0], got["boxes"][1])


def test_ssd_model_is_small_and_uses_allowed_layers(helpers: Any) -> None:
    import importlib.util

    import keras  # type: ignore[import-untyped]

    spec = importlib.util.spec_from_file_location("ssd_under_test", helpers.repo / "configs/models/ssd.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    build_model = module.build_model
    model = build_model()
    assert model.count_params() <= 300_000
    allowed = {"InputLayer", "Conv2D", "BatchNormalization", "ReLU", "ZeroPadding2D", "DepthwiseConv2D", "Activation",
               "Reshape", "Concatenate", "Softmax"}
    assert {type(layer).__name__ for layer in model.layers} <= allowed
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and all(float(np.abs(np.asarray(b.moving_mean)).max()) > 0 for b in bns)
    assert model.output_names == ["scores", "boxes"]
    with pytest.raises(ValueError, match="num_classes"):
        build_model(num_classes=1)
