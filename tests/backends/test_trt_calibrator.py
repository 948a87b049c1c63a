"""Calibration batch feeding (pure numpy) and the calibration cache file I/O."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trtpipe.backends.tensorrt import available
from trtpipe.backends.trt_calibrator import (
    CalibrationBatches,
    layout_permutation,
    make_calibrator,
    read_cache_file,
    write_cache_file,
)
from trtpipe.errors import BackendUnavailable, ConfigError, InvalidArtifact


def samples(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    # NHWC float64 images + an int64 side input: both need converting for the network
    return {"image": rng.random((n, 4, 5, 3)), "scale": np.arange(n, dtype=np.int64).reshape(n, 1)}


def test_layout_dtype_and_contiguity() -> None:
    data = samples(8)
    batches = CalibrationBatches(data, 4, ["image", "scale"], layouts={"image": ("NHWC", "NCHW")},
                                 dtypes={"image": "float32", "scale": np.int32})
    assert len(batches) == 2
    assert batches.shapes() == {"image": (4, 3, 4, 5), "scale": (4, 1)}
    first = batches.batch(0)
    assert list(first) == ["image", "scale"]  # network input order
    img = first["image"]
    assert img.shape == (4, 3, 4, 5) and img.dtype == np.float32
    assert img.flags["C_CONTIGUOUS"]  # a transpose alone would be a strided view
    np.testing.assert_array_equal(img, data["image"][:4].transpose(0, 3, 1, 2).astype(np.float32))
    assert first["scale"].dtype == np.int32 and first["scale"].flags["C_CONTIGUOUS"]
    second = batches.batch(1)
    np.testing.assert_array_equal(second["scale"][:, 0], [4, 5, 6, 7])


def test_last_partial_batch_policies() -> None:
    data = samples(10)
    dropped = CalibrationBatches(data, 4, ["image", "scale"])
    assert len(dropped) == 2 and [b["scale"][0, 0] for b in dropped] == [0, 4]

    wrapped = CalibrationBatches(data, 4, ["image", "scale"], partial="wrap")
    assert len(wrapped) == 3
    last = list(wrapped)[-1]
    assert last["scale"][:, 0].tolist() == [8, 9, 0, 1]  # refilled from the start, full size

    kept = CalibrationBatches(data, 4, ["image", "scale"], partial="keep")
    assert [b["image"].shape[0] for b in kept] == [4, 4, 2]


def test_batch_count_limit() -> None:
    batches = CalibrationBatches(samples(40), 4, ["image", "scale"], max_batches=3)
    fed = list(batches)
    assert len(batches) == 3 and len(fed) == 3
    assert fed[-1]["scale"][:, 0].tolist() == [8, 9, 10, 11]
    with pytest.raises(IndexError):
        batches.batch(3)


def test_fewer_samples_than_a_batch_is_an_error_with_a_hint() -> None:
    with pytest.raises(InvalidArtifact) as info:
        CalibrationBatches(samples(3), 4, ["image", "scale"])
    assert "3 samples" in info.value.message and "partial='wrap'" in (info.value.hint or "")
    assert len(CalibrationBatches(samples(3), 4, ["image", "scale"], partial="wrap")) == 1


def test_inputs_must_match_the_network() -> None:
    with pytest.raises(InvalidArtifact, match="missing \\['mask'\\]"):
        CalibrationBatches(samples(8), 4, ["image", "scale", "mask"])
    with pytest.raises(InvalidArtifact, match="unexpected \\['scale'\\]"):
        CalibrationBatches(samples(8), 4, ["image"])
    bad = samples(8)
    bad["scale"] = bad["scale"][:6]
    with pytest.raises(InvalidArtifact, match="different sample counts"):
        CalibrationBatches(bad, 4, ["image", "scale"])
    with pytest.raises(InvalidArtifact, match="layout"):
        CalibrationBatches(samples(8), 4, ["image", "scale"], layouts={"scale": ("NHWC", "NCHW")})


@pytest.mark.parametrize("bad", [0, -2, 2.5])
def test_bad_batch_size(bad: object) -> None:
    with pytest.raises(ConfigError):
        CalibrationBatches(samples(8), bad, ["image", "scale"])  # type: ignore[arg-type]


def test_layout_permutation() -> None:
    assert layout_permutation("NHWC", "NCHW") == (0, 3, 1, 2)
    assert layout_permutation("NCHW", "NHWC") == (0, 2, 3, 1)
    with pytest.raises(ConfigError):
        layout_permutation("NHWC", "NCW")


def test_cache_file_roundtrip_is_binary_and_atomic(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "calib.cache"
    assert read_cache_file(path) is None and read_cache_file(None) is None
    table = b"TRT-8601-EntropyCalibration2\nimage: 3c010a14\n"
    write_cache_file(path, table)
    assert read_cache_file(path) == table
    assert [p.name for p in path.parent.iterdir()] == ["calib.cache"]  # no temp file left
    path.write_bytes(b"")
    assert read_cache_file(path) is None  # empty cache -> calibrate


@pytest.mark.skipif(available()[0], reason="TensorRT is installed here")
def test_calibrator_factory_needs_tensorrt(tmp_path: Path) -> None:
    batches = CalibrationBatches(samples(8), 4, ["image", "scale"])
    with pytest.raises(BackendUnavailable) as info:
        make_calibrator("EntropyCalibrator2", batches, tmp_path / "c.cache")
    assert info.value.hint
