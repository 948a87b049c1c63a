"""Metrics on small arrays whose answers can be worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trtpipe import metrics
from trtpipe.errors import ConfigError, InvalidArtifact


def test_abs_and_rel_errors() -> None:
    ref = np.array([1.0, -2.0, 0.0, 4.0])
    test = np.array([1.5, -2.0, 0.001, 3.0])
    assert metrics.max_abs_error(ref, test) == pytest.approx(1.0)
    # 0.5/1, 0/2, 0.001/eps(1e-6) = 1000, 1/4
    assert metrics.max_rel_error(ref, test) == pytest.approx(1000.0)
    assert metrics.max_rel_error(ref, test, eps=1.0) == pytest.approx(0.5)
    assert metrics.mean_abs_error(ref, test) == pytest.approx((0.5 + 0 + 0.001 + 1.0) / 4)
    assert metrics.max_abs_error(ref, ref) == 0.0


def test_shape_mismatch_is_a_clear_error() -> None:
    with pytest.raises(InvalidArtifact, match=r"reference \[2\] vs test \[3\]"):
        metrics.max_abs_error(np.zeros(2), np.zeros(3))


def test_cosine_is_per_sample_minimum() -> None:
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    b = np.array([[1.0, 0.0], [1.0, 0.0]])  # second sample at 45 degrees
    assert metrics.cosine_similarity(a, b) == pytest.approx(math.cos(math.pi / 4))
    assert metrics.cosine_similarity(a, 3.0 * a) == pytest.approx(1.0)
    assert metrics.cosine_similarity(a, -a) == pytest.approx(-1.0)
    # Higher-rank samples are flattened: shape (2, 2, 2) -> 2 samples of 4 values.
    x = np.arange(8, dtype=float).reshape(2, 2, 2) + 1
    y = x.copy()
    y[1] = -y[1]
    assert metrics.cosine_similarity(x, y) == pytest.approx(-1.0)
    # Zero vectors: both zero agree, one zero does not.
    assert metrics.cosine_similarity(np.zeros((1, 3)), np.zeros((1, 3))) == 1.0
    assert metrics.cosine_similarity(np.zeros((1, 3)), np.ones((1, 3))) == 0.0


def test_top1_agreement_and_accuracy() -> None:
    ref = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])
    test = np.array([[0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7], [0.0, 0.1, 0.9]])
    assert metrics.top1_agreement(ref, test) == pytest.approx(0.75)
    assert metrics.top1_accuracy(ref, np.array([1, 0, 2, 0])) == pytest.approx(0.75)
    with pytest.raises(InvalidArtifact, match="labels"):
        metrics.top1_accuracy(ref, np.array([1, 0]))


def _detector(n_anchors: int = 6) -> tuple[np.ndarray, np.ndarray]:
    scores = np.zeros((1, n_anchors, 3))
    scores[0, :, 0] = 0.9  # background dominates everywhere ...
    scores[0, 1, 2] = 0.8  # ... but anchors 1, 4 have foreground detections
    scores[0, 4, 1] = 0.6
    scores[0, 2, 1] = 0.1
    boxes = np.tile(np.array([0.0, 0.0, 1.0, 1.0]), (1, n_anchors, 1))
    boxes[0, 1] = [0.0, 0.0, 0.5, 0.5]
    boxes[0, 4] = [0.5, 0.5, 1.0, 1.0]
    return scores, boxes


def test_detection_agreement_identical_outputs() -> None:
    s, b = _detector()
    r = metrics.detection_agreement(s, b, s, b, top_k=2)
    assert r["detections"] == 2
    assert r["matched_fraction"] == 1.0
    assert r["mean_iou"] == 1.0
    assert r["score_agreement"] == 1.0
    assert r["class_agreement"] == 1.0


def test_detection_agreement_shifted_box_and_changed_class() -> None:
    s, b = _detector()
    ts, tb = s.copy(), b.copy()
    # Anchor 1 (top detection, class 2): box shifted so IoU = 0.25*0.5 / (0.25+0.25-0.125) = 1/3.
    tb[0, 1] = [0.0, 0.25, 0.5, 0.75]
    # Anchor 4 (class 1, score 0.6): test prefers class 2 and lowers the class-1 score to 0.2.
    ts[0, 4, 1], ts[0, 4, 2] = 0.2, 0.7
    r = metrics.detection_agreement(s, b, ts, tb, top_k=2, iou_threshold=0.5)
    assert r["detections"] == 2
    assert r["matched_fraction"] == 0.0           # anchor 1 IoU too low, anchor 4 wrong class
    assert r["mean_iou"] == 0.0                   # no matched detection
    assert r["mean_iou_all"] == pytest.approx((1 / 3 + 1.0) / 2)
    assert r["class_agreement"] == pytest.approx(0.5)
    assert r["score_max_abs_diff"] == pytest.approx(0.4)
    assert r["score_agreement"] == pytest.approx(1 - 0.2)
    r = metrics.detection_agreement(s, b, ts, tb, top_k=2, iou_threshold=0.3)
    assert r["matched_fraction"] == pytest.approx(0.5)
    assert r["mean_iou"] == pytest.approx(1 / 3)


def test_detection_agreement_rejects_bad_shapes() -> None:
    s, b = _detector()
    with pytest.raises(InvalidArtifact, match="anchors"):
        metrics.detection_agreement(s, b[..., :3], s, b[..., :3])


def test_compare_outputs_rows() -> None:
    ref = {"a": np.array([[1.0, 2.0]]), "b": np.array([[0.0, 1.0, 0.0]]), "c": np.zeros((1, 2))}
    test = {"a": np.array([[1.0, 2.001]]), "b": np.array([[0.0, 1.0, 0.0]]), "c": np.zeros((1, 3))}
    rows = metrics.compare_outputs(ref, test, atol=1e-5, rtol=1e-3,
                                   metrics=["max_abs", "max_rel", "cosine", "top1_agreement"])
    by = {r["output"]: r for r in rows}
    assert [r["output"] for r in rows] == ["a", "b", "c"]
    assert by["a"]["max_abs"] == pytest.approx(0.001)
    assert by["a"]["ok"] is True                   # 0.001 <= 1e-5 + 1e-3 * 2
    assert by["b"]["ok"] is True and by["b"]["top1_agreement"] == 1.0
    assert by["c"]["ok"] is False and "shape mismatch" in by["c"]["error"]
    strict = metrics.compare_outputs(ref, test, atol=1e-5, rtol=1e-4)
    assert {r["output"]: r["ok"] for r in strict} == {"a": False, "b": True, "c": False}


def test_compare_outputs_cosine_gate_missing_and_nan() -> None:
    ref = {"x": np.array([[1.0, 1.0]]), "y": np.ones((1, 2))}
    test = {"x": np.array([[1.0, 0.0]])}
    rows = metrics.compare_outputs(ref, test, atol=None, rtol=None, metrics=["max_abs"],
                                   min_cosine=0.9)
    assert rows[0]["cosine"] == pytest.approx(math.sqrt(0.5)) and rows[0]["ok"] is False
    assert rows[1] == {"output": "y", "shape": [1, 2], "ok": False,
                       "error": "missing from test outputs"}
    nan_rows = metrics.compare_outputs({"x": np.ones(2)}, {"x": np.array([1.0, np.nan])},
                                       atol=1.0, rtol=None)
    assert nan_rows[0]["ok"] is False and "non-finite" in nan_rows[0]["error"]
    with pytest.raises(ConfigError, match="unknown metric"):
        metrics.compare_outputs(ref, test, atol=1.0, rtol=1.0, metrics=["psnr"])
