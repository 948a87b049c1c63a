"""Calibration on a tiny Keras CNN exported with tf2onnx, and the TensorRT cache text format."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
from tiny_cnn import tiny_cnn_onnx  # pytest puts this test folder on sys.path (prepend mode)

from trtpipe.backends import calibration as cal
from trtpipe.errors import ConfigError, InvalidArtifact


def _tiny_cnn_onnx(path: Path) -> Path:
    return tiny_cnn_onnx(path)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_cnn_onnx(tmp_path_factory.mktemp("calib") / "cnn.onnx")


def _data(seed: int, n: int = 16) -> dict[str, np.ndarray]:
    return {"image": np.random.default_rng(seed).standard_normal((n, 16, 16, 3)).astype(np.float32)}


def test_table_shape_and_determinism(model: Path) -> None:
    a = cal.calibrate(model, _data(0), algorithm="minmax", batch_size=4)
    b = cal.calibrate(model, _data(0), algorithm="minmax", batch_size=4)
    assert a == b
    assert a["format"] == "trtpipe-calibration/1" and a["algorithm"] == "minmax"
    assert a["samples"] == 16 and a["params"]["batch_size"] == 4
    # Graph inputs and outputs are calibrated under their ONNX tensor names.
    assert {"image", "scores", "boxes"} <= set(a["tensors"])
    img = _data(0)["image"]
    assert a["tensors"]["image"]["min"] == pytest.approx(float(img.min()))
    assert a["tensors"]["image"]["max"] == pytest.approx(float(img.max()))
    c = cal.calibrate(model, _data(1), algorithm="minmax", batch_size=4)
    assert c["tensors"] != a["tensors"]


@pytest.mark.parametrize("algorithm", ["entropy", "minmax", "percentile"])
def test_each_algorithm_gives_finite_positive_scales(model: Path, algorithm: str) -> None:
    table = cal.calibrate(model, _data(2), algorithm=algorithm, batch_size=8)
    assert table["algorithm"] == algorithm and len(table["tensors"]) >= 8
    for name, t in table["tensors"].items():
        assert math.isfinite(t["scale"]) and t["scale"] > 0, name
        assert t["min"] <= t["max"]
        amax = max(abs(t["min"]), abs(t["max"]))
        assert t["scale"] == pytest.approx(amax / 127, rel=1e-6)
    assert table == cal.calibrate(model, _data(2), algorithm=algorithm, batch_size=8)


def test_percentile_clips_outliers_more_than_minmax(model: Path) -> None:
    data = _data(3, n=8)
    data["image"][0, 0, 0, 0] = 40.0  # one extreme input value
    mm = cal.calibrate(model, data, algorithm="minmax")
    pc = cal.calibrate(model, data, algorithm="percentile", percentile=99.9)
    assert mm["tensors"]["image"]["max"] == pytest.approx(40.0)
    assert pc["tensors"]["image"]["scale"] < mm["tensors"]["image"]["scale"] / 2
    assert pc["params"]["percentile"] == 99.9


def test_max_batches_limits_samples(model: Path) -> None:
    table = cal.calibrate(model, _data(4, n=10), algorithm="minmax", batch_size=3, max_batches=2)
    assert table["samples"] == 6


def test_bad_inputs_are_named(model: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidArtifact, match="missing \\['image'\\]"):
        cal.calibrate(model, {"img": np.zeros((2, 16, 16, 3), np.float32)}, algorithm="minmax")
    with pytest.raises(InvalidArtifact, match=r"expected shape \['N', 16, 16, 3\].*\[2, 8, 8, 3\]"):
        cal.calibrate(model, {"image": np.zeros((2, 8, 8, 3), np.float32)}, algorithm="minmax")
    with pytest.raises(InvalidArtifact, match="NaN"):
        cal.calibrate(model, {"image": np.full((2, 16, 16, 3), np.nan, np.float32)},
                      algorithm="minmax")
    with pytest.raises(ConfigError, match="unknown calibration algorithm"):
        cal.calibrate(model, _data(0), algorithm="kl")
    with pytest.raises(InvalidArtifact, match="not found"):
        cal.calibrate(tmp_path / "nope.onnx", _data(0), algorithm="minmax")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a model")
    with pytest.raises(InvalidArtifact, match="junk.onnx"):
        cal.calibrate(junk, _data(0), algorithm="minmax")


def test_trt_cache_round_trip_is_exact(model: Path) -> None:
    table = cal.calibrate(model, _data(5), algorithm="entropy")
    blob = cal.to_trt_cache(table, trt_version="8601")
    lines = blob.decode().splitlines()
    assert lines[0] == "TRT-8601-EntropyCalibration2"
    assert len(lines) == 1 + len(table["tensors"])
    parsed = cal.parse_trt_cache(blob)
    assert parsed["version"] == "8601" and parsed["algorithm"] == "entropy"
    assert parsed["scales"] == {n: t["scale"] for n, t in table["tensors"].items()}
    # The same table under another header: the calibrator name follows the algorithm.
    assert cal.to_trt_cache(table, algorithm="minmax").startswith(b"TRT-8600-MinMaxCalibration\n")
    assert cal.to_trt_cache(table, algorithm="percentile").startswith(b"TRT-8600-LegacyCalibration\n")


def test_parse_hand_written_cache() -> None:
    text = (b"TRT-8601-EntropyCalibration2\n"
            b"images: 3c010a14\n"
            b"conv1/Conv2D:0: 3d8e0b3b\r\n"
            b"\n")
    parsed = cal.parse_trt_cache(text)
    assert parsed["version"] == "8601" and parsed["algorithm"] == "entropy"
    assert parsed["scales"]["images"] == struct.unpack(">f", bytes.fromhex("3c010a14"))[0]
    assert parsed["scales"]["images"] == pytest.approx(1 / 127, rel=1e-3)
    assert parsed["scales"]["conv1/Conv2D:0"] == pytest.approx(0.06936, rel=1e-3)
    legacy = cal.parse_trt_cache(b"TRT-7000-EntropyCalibration\nx: 3f800000\n")
    assert legacy["algorithm"] == "entropy" and legacy["scales"] == {"x": 1.0}


@pytest.mark.parametrize("blob, where", [
    (b"", "empty"),
    (b"NOT-A-CACHE\nx: 3f800000\n", ":1: expected header"),
    (b"TRT-8601-MinMaxCalibration\nx 3f800000\n", ":2: expected '<tensor>: <8 hex digits>'"),
    (b"TRT-8601-MinMaxCalibration\nx: 3f8000\n", ":2:"),
    (b"TRT-8601-MinMaxCalibration\nx: 3f800000\nx: 3f800000\n", ":3: tensor 'x' listed twice"),
    (b"TRT-8601-MinMaxCalibration\nx: 7fc00000\n", "invalid scale"),
    (b"\xff\xfe", "not a text calibration cache"),
])
def test_malformed_caches_raise(blob: bytes, where: str) -> None:
    with pytest.raises(InvalidArtifact, match=None) as info:
        cal.parse_trt_cache(blob, source="calib.cache")
    assert where in info.value.message
    assert info.value.hint


def test_to_trt_cache_rejects_bad_tables() -> None:
    with pytest.raises(InvalidArtifact, match="expected format"):
        cal.to_trt_cache({"tensors": {}})
    table = {"format": cal.TABLE_FORMAT, "algorithm": "minmax",
             "tensors": {"x": {"min": 0.0, "max": 1.0, "scale": 1 / 127}}}
    with pytest.raises(ConfigError, match="no TensorRT calibrator"):
        cal.to_trt_cache(table, algorithm="kl")
    bad = {**table, "tensors": {"x": {"min": 0.0, "max": float("nan"), "scale": 1.0}}}
    with pytest.raises(InvalidArtifact, match="tensor 'x'"):
        cal.to_trt_cache(bad)
