"""Latency statistics with trtexec's conventions, and the marginal cost of a bigger batch.

Conventions (chosen to match TensorRT's ``trtexec``, ``samples/common/sampleReporting.cpp``, so the
numbers trtpipe prints for ONNX Runtime line up with the ones users already read from trtexec):

* **percentiles** are *nearest-rank*: ``sorted[n - 1 - floor((1 - p/100) * n)]`` (clamped at 0),
  i.e. always an observed sample, never an interpolation. That is numpy's
  ``method="inverted_cdf"``; we compute it in exact arithmetic, whereas trtexec uses float32 and can
  land one rank off at exact multiples (e.g. its p99 of exactly 100 samples is the maximum).
* **median** is the usual one (mean of the two middle samples for even ``n``), which trtexec also
  reports separately from p50.
* **std** is the population standard deviation (divide by ``n``) and ``cv = std / mean`` -- trtexec's
  "coefficient of variance", which it prints in percent; here it is a fraction.
* **throughput** is ``batch / mean latency`` in samples per second.

All latencies in the returned dicts are in milliseconds (``*_ms``); inputs are in seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trtpipe.errors import ConfigError

#: A run whose coefficient of variation exceeds this is flagged ``noisy``.
NOISY_CV = 0.1

#: Percentiles every summary carries (key ``p<N>_ms``).
PERCENTILES = (90, 95, 99)


def summarize(latencies_s: Sequence[float], batch: int) -> dict[str, Any]:
    """Summarize per-iteration latencies (seconds) of one batch size.

    Returns ``{"batch", "iterations", "mean_ms", "median_ms", "p90_ms", "p95_ms", "p99_ms",
    "min_ms", "max_ms", "std_ms", "cv", "throughput", "noisy"}`` with ``throughput`` in samples/s
    and ``noisy = cv > 0.1``. Raises ``ConfigError`` for an empty/invalid sample or batch.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"summarize: batch must be a positive integer, found {batch!r}",
                          hint="pass the batch size the latencies were measured with")
    arr = np.asarray(list(latencies_s), dtype=np.float64)
    if arr.size == 0:
        raise ConfigError("summarize: no latency samples to summarize",
                          hint="measure() at least one iteration (min_iterations >= 1)")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        bad = next(float(x) for x in arr if not np.isfinite(x) or x < 0)
        raise ConfigError(f"summarize: latency samples must be finite and >= 0 seconds, found {bad!r}",
                          hint="latencies come from time.perf_counter differences")
    ms = arr * 1e3
    mean = float(ms.mean())
    std = float(ms.std())  # ddof=0: population std, as trtexec
    out: dict[str, Any] = {
        "batch": batch,
        "iterations": int(ms.size),
        "mean_ms": mean,
        "median_ms": float(np.median(ms)),
    }
    for p in PERCENTILES:
        out[f"p{p}_ms"] = nearest_rank(ms, p)
    cv = std / mean if mean > 0 else 0.0
    out.update({
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
        "std_ms": std,
        "cv": cv,
        # A zero mean only happens with a clock coarser than the work; report inf, not a crash.
        "throughput": batch / (mean / 1e3) if mean > 0 else float("inf"),
        "noisy": bool(cv > NOISY_CV),
    })
    return out


def nearest_rank(values: Sequence[float] | np.ndarray, percent: float) -> float:
    """Nearest-rank percentile (trtexec's convention, numpy ``inverted_cdf``) of ``values``."""
    if not 0 <= percent <= 100:
        raise ConfigError(f"percentile must be in [0, 100], found {percent!r}")
    return float(np.percentile(np.asarray(values, dtype=np.float64), percent, method="inverted_cdf"))


def marginal_cost(points: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Least-squares line of median latency (ms) over batch size, across sweep points.

    Returns ``{"slope_ms_per_sample", "intercept_ms", "r2", "points"}``: the slope is what each
    extra sample in a batch adds ("each extra image adds ~2.3 ms"), the intercept the fixed
    per-call overhead, ``r2`` how well a straight line explains the sweep (1.0 when every point
    is on it, including the degenerate case of a perfectly flat sweep).
    """
    if len(points) < 2:
        raise ConfigError(f"marginal_cost needs at least 2 sweep points, found {len(points)}",
                          hint="sweep at least two different batch sizes, e.g. batches: [1, 2, 4, 8]")
    try:
        x = np.array([float(p["batch"]) for p in points])
        y = np.array([float(p["median_ms"]) for p in points])
    except KeyError as exc:
        raise ConfigError(f"marginal_cost: sweep point is missing key {exc.args[0]!r}",
                          hint="pass the point dicts returned by trtpipe.bench.sweep()") from exc
    if np.unique(x).size < 2:
        raise ConfigError(f"marginal_cost needs at least 2 different batch sizes, found only {int(x[0])}",
                          hint="sweep at least two different batch sizes")
    slope, intercept = np.polyfit(x, y, 1)
    fit = slope * x + intercept
    ss_res = float(np.sum((y - fit) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    # A flat sweep has no variance to explain; the line explains it perfectly iff residuals vanish.
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res <= 1e-24 else 0.0)
    return {"slope_ms_per_sample": float(slope), "intercept_ms": float(intercept),
            "r2": float(r2), "points": int(x.size)}


def baseline_label(labels: Sequence[str]) -> str | None:
    """The series that speedups are measured against: the first label naming TensorFlow."""
    for label in labels:
        if label.strip().lower().startswith("tensorflow") or label.strip().lower() == "tf":
            return label
    return None


def speedups(series: Mapping[str, Sequence[Mapping[str, Any]]],
             baseline: str | None = None) -> dict[str, dict[int, float | None]]:
    """Per series and batch: baseline median latency / this series' median latency.

    ``baseline`` defaults to :func:`baseline_label`. A batch the baseline did not measure (or no
    baseline at all) gives ``None``. The baseline itself gets 1.0 at every batch it measured.
    """
    base = baseline if baseline is not None else baseline_label(list(series))
    if base is not None and base not in series:
        raise ConfigError(f"speedup baseline {base!r} is not one of the series {sorted(series)}")
    base_median = {int(p["batch"]): float(p["median_ms"]) for p in series[base]} if base else {}
    out: dict[str, dict[int, float | None]] = {}
    for label, points in series.items():
        row: dict[int, float | None] = {}
        for p in points:
            b = int(p["batch"])
            ref, own = base_median.get(b), float(p["median_ms"])
            row[b] = ref / own if ref is not None and own > 0 else None
        out[label] = row
    return out
