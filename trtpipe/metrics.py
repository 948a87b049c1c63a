"""Accuracy metrics comparing a reference output with a test output (numpy only).

Conventions: ``ref`` is the trusted output (TensorFlow or ORT fp32), ``test`` the candidate
(fp16, int8, TensorRT...). Arrays are compared as float64. Per-sample metrics treat the first
axis as the sample axis. Shape mismatches raise ``InvalidArtifact`` naming both shapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trtpipe.errors import ConfigError, InvalidArtifact

#: metric name -> column produced by ``compare_outputs``
METRICS = ("max_abs", "max_rel", "mean_abs", "cosine", "top1_agreement")
DEFAULT_METRICS = ("max_abs", "max_rel", "cosine")


def _pair(ref: Any, test: Any, what: str = "output") -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(ref, dtype=np.float64)
    t = np.asarray(test, dtype=np.float64)
    if r.shape != t.shape:
        raise InvalidArtifact(f"{what}: shape mismatch: reference {list(r.shape)} vs test "
                              f"{list(t.shape)}",
                              hint="both runs must use the same inputs and batch size")
    return r, t


def max_abs_error(ref: Any, test: Any) -> float:
    """Largest ``|test - ref|`` (0.0 for empty arrays; NaN if either holds NaN)."""
    r, t = _pair(ref, test)
    if r.size == 0:
        return 0.0
    return float(np.max(np.abs(t - r)))


def max_rel_error(ref: Any, test: Any, *, eps: float = 1e-6) -> float:
    """Largest ``|test - ref| / max(|ref|, eps)``; ``eps`` keeps zeros in ``ref`` from dividing by 0."""
    r, t = _pair(ref, test)
    if r.size == 0:
        return 0.0
    return float(np.max(np.abs(t - r) / np.maximum(np.abs(r), eps)))


def mean_abs_error(ref: Any, test: Any) -> float:
    """Mean ``|test - ref|`` (0.0 for empty arrays)."""
    r, t = _pair(ref, test)
    return float(np.mean(np.abs(t - r))) if r.size else 0.0


def cosine_similarity(a: Any, b: Any) -> float:
    """Cosine similarity of each sample (first axis, rest flattened); the minimum over samples.

    Arrays of rank <= 1 count as one sample. Two all-zero samples are identical (1.0); one
    all-zero sample against a non-zero one scores 0.0.
    """
    x, y = _pair(a, b)
    if x.ndim <= 1:
        x, y = x.reshape(1, -1), y.reshape(1, -1)
    else:
        x, y = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)
    if x.shape[0] == 0:
        return 1.0
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    dot = np.sum(x * y, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = dot / (nx * ny)
    cos = np.where((nx == 0) & (ny == 0), 1.0, np.where((nx == 0) | (ny == 0), 0.0, cos))
    return float(np.min(np.clip(cos, -1.0, 1.0)))


def top1_agreement(ref_logits: Any, test_logits: Any) -> float:
    """Fraction of positions whose arg-max over the last axis agrees between ref and test."""
    r, t = _pair(ref_logits, test_logits, "logits")
    if r.ndim == 0 or r.shape[-1] == 0:
        raise InvalidArtifact(f"logits: need a class axis, got shape {list(r.shape)}")
    if r.size == 0:
        return 1.0
    return float(np.mean(np.argmax(r, axis=-1) == np.argmax(t, axis=-1)))


def top1_accuracy(logits: Any, labels: Any) -> float:
    """Fraction of positions whose arg-max over the last axis equals the integer label."""
    lg = np.asarray(logits)
    lb = np.asarray(labels)
    if lg.ndim == 0 or lg.shape[:-1] != lb.shape:
        raise InvalidArtifact(f"labels: expected shape {list(lg.shape[:-1])} for logits of shape "
                              f"{list(lg.shape)}, found {list(lb.shape)}",
                              hint="one integer label per sample (per position)")
    if lb.size == 0:
        return 1.0
    return float(np.mean(np.argmax(lg, axis=-1) == lb))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise IoU of corner boxes ``[..., 4]`` (``y1, x1, y2, x2`` or ``x1, y1, x2, y2``)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    lo = np.maximum(a[..., :2], b[..., :2])
    hi = np.minimum(a[..., 2:], b[..., 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=-1)
    area_a = np.prod(np.clip(a[..., 2:] - a[..., :2], 0.0, None), axis=-1)
    area_b = np.prod(np.clip(b[..., 2:] - b[..., :2], 0.0, None), axis=-1)
    union = area_a + area_b - inter
    same = np.all(a == b, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return np.where(same, 1.0, iou)  # identical (even degenerate) boxes agree fully


def detection_agreement(ref_scores: Any, ref_boxes: Any, test_scores: Any, test_boxes: Any, *,
                        top_k: int = 10, iou_threshold: float = 0.5,
                        background_class: int | None = 0) -> dict[str, float]:
    """Agreement of an SSD-style detector's raw outputs (before NMS).

    Shapes: scores ``[N, anchors, classes]``, boxes ``[N, anchors, 4]`` (decoded corners). For
    each sample the reference's ``top_k`` anchors by best non-background class score are
    compared with the test output at the same anchor and class. A detection is *matched* when
    the test's best class there is the same and the boxes overlap with IoU >= ``iou_threshold``.

    Returns ``matched_fraction``, ``mean_iou`` (over matched detections; 0.0 if none),
    ``mean_iou_all`` (over all top detections), ``class_agreement``, ``score_max_abs_diff``,
    ``score_agreement`` (``1 - mean |score diff|`` at the reference class, clipped to [0, 1])
    and ``detections`` (how many were compared).
    """
    rs, ts = _pair(ref_scores, test_scores, "scores")
    rb, tb = _pair(ref_boxes, test_boxes, "boxes")
    if rs.ndim != 3 or rb.ndim != 3 or rb.shape[-1] != 4 or rb.shape[:2] != rs.shape[:2]:
        raise InvalidArtifact(f"detections: expected scores [N, anchors, classes] and boxes "
                              f"[N, anchors, 4], found {list(rs.shape)} and {list(rb.shape)}",
                              hint="pass the detector's raw score and box outputs")
    if top_k < 1:
        raise ConfigError(f"detection top_k must be >= 1, got {top_k}")
    classes = np.arange(rs.shape[-1])
    if background_class is not None:
        classes = classes[classes != background_class]
    if classes.size == 0:
        raise InvalidArtifact("detections: no class left after removing the background class")

    ious, matched, cls_ok, diffs = [], [], [], []
    for i in range(rs.shape[0]):
        cand = rs[i][:, classes]                          # [anchors, fg classes]
        best = np.argmax(cand, axis=1)
        best_score = cand[np.arange(cand.shape[0]), best]
        k = min(top_k, best_score.size)
        # Stable sort: ties resolve to the lower anchor index, so results are deterministic.
        top = np.argsort(-best_score, kind="stable")[:k]
        ref_cls = classes[best[top]]
        test_best = classes[np.argmax(ts[i][top][:, classes], axis=1)]
        iou = box_iou(rb[i, top], tb[i, top])
        same = test_best == ref_cls
        ious.append(iou)
        cls_ok.append(same)
        matched.append(same & (iou >= iou_threshold))
        diffs.append(np.abs(ts[i, top, ref_cls] - rs[i, top, ref_cls]))
    if not ious:
        return {"detections": 0, "matched_fraction": 1.0, "mean_iou": 1.0, "mean_iou_all": 1.0,
                "class_agreement": 1.0, "score_max_abs_diff": 0.0, "score_agreement": 1.0}
    iou_all, m_all = np.concatenate(ious), np.concatenate(matched)
    d_all = np.concatenate(diffs)
    return {
        "detections": int(iou_all.size),
        "matched_fraction": float(np.mean(m_all)),
        "mean_iou": float(np.mean(iou_all[m_all])) if m_all.any() else 0.0,
        "mean_iou_all": float(np.mean(iou_all)),
        "class_agreement": float(np.mean(np.concatenate(cls_ok))),
        "score_max_abs_diff": float(np.max(d_all)),
        "score_agreement": float(np.clip(1.0 - np.mean(d_all), 0.0, 1.0)),
    }


def compare_outputs(ref: Mapping[str, Any], test: Mapping[str, Any], *,
                    atol: float | None = 1e-5, rtol: float | None = 1e-3,
                    metrics: Sequence[str] = DEFAULT_METRICS, min_cosine: float | None = None,
                    min_top1: float | None = None) -> list[dict[str, Any]]:
    """One row per reference output: ``{output, shape, <metrics>, ok[, error]}``.

    ``ok`` requires: the output exists in ``test`` with the same shape, all values finite,
    ``|test - ref| <= atol + rtol * |ref|`` element-wise (skipped when both are None),
    ``cosine >= min_cosine`` and ``top1_agreement >= min_top1`` when those are given (their
    columns are then computed even if not listed in ``metrics``). Rows come in ``ref`` order.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}", hint=f"use: {', '.join(METRICS)}")
    wanted = list(dict.fromkeys([*metrics, *(["cosine"] if min_cosine is not None else []),
                                 *(["top1_agreement"] if min_top1 is not None else [])]))
    rows: list[dict[str, Any]] = []
    for name, r_val in ref.items():
        r = np.asarray(r_val)
        row: dict[str, Any] = {"output": name, "shape": list(r.shape)}
        if name not in test:
            rows.append({**row, "ok": False, "error": "missing from test outputs"})
            continue
        t = np.asarray(test[name])
        if t.shape != r.shape:
            rows.append({**row, "ok": False,
                         "error": f"shape mismatch: reference {list(r.shape)} vs test {list(t.shape)}"})
            continue
        ok = bool(np.all(np.isfinite(t)))
        if not ok:
            row["error"] = f"{int(np.size(t) - np.count_nonzero(np.isfinite(t)))} non-finite values"
        for m in wanted:
            if m == "max_abs":
                row[m] = max_abs_error(r, t)
            elif m == "max_rel":
                row[m] = max_rel_error(r, t)
            elif m == "mean_abs":
                row[m] = mean_abs_error(r, t)
            elif m == "cosine":
                row[m] = cosine_similarity(r, t)
            elif m == "top1_agreement":
                row[m] = top1_agreement(r, t) if r.ndim >= 1 and r.shape[-1] > 0 else None
        if atol is not None or rtol is not None:
            rf, tf = r.astype(np.float64), t.astype(np.float64)
            within = np.abs(tf - rf) <= (atol or 0.0) + (rtol or 0.0) * np.abs(rf)
            row["within_tolerance"] = float(np.mean(within)) if within.size else 1.0
            ok = ok and bool(np.all(within))
        if min_cosine is not None:
            ok = ok and row["cosine"] >= min_cosine
        if min_top1 is not None:
            ok = ok and row["top1_agreement"] is not None and row["top1_agreement"] >= min_top1
        row["ok"] = ok
        rows.append(row)
    return rows
