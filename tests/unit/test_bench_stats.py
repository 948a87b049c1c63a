"""Statistics, the timing loop, batch specs and sweeps (the sweep on a real ONNX Runtime model)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numpy as np
import pytest

from trtpipe.backends._imports import require
from trtpipe.bench import (
    batches_from_spec,
    current_rss_bytes,
    marginal_cost,
    measure,
    peak_rss_bytes,
    speedups,
    summarize,
    sweep,
)
from trtpipe.errors import ConfigError, StageFailed


def trtexec_percentile(values: list[float], percent: int) -> float:
    """trtexec's findPercentile in exact integer arithmetic: sorted[n-1-floor((1-p/100)*n)]."""
    ordered = sorted(values)
    n = len(ordered)
    exclude = ((100 - percent) * n) // 100
    return ordered[max(n - 1 - exclude, 0)]


# --- summarize ---------------------------------------------------------------------------------

def test_summarize_one_to_hundred() -> None:
    # 1..100 ms: every statistic has a closed form.
    s = summarize([i / 1000 for i in range(1, 101)], batch=4)
    assert s["iterations"] == 100 and s["batch"] == 4
    assert s["mean_ms"] == pytest.approx(50.5)
    assert s["median_ms"] == pytest.approx(50.5)  # even n: mean of the two middle samples
    assert (s["p90_ms"], s["p95_ms"], s["p99_ms"]) == pytest.approx((90, 95, 99))  # nearest rank
    assert (s["min_ms"], s["max_ms"]) == pytest.approx((1, 100))
    std = math.sqrt((100**2 - 1) / 12)  # population std of 1..n
    assert s["std_ms"] == pytest.approx(std)
    assert s["cv"] == pytest.approx(std / 50.5)
    assert s["throughput"] == pytest.approx(4 / 0.0505)
    assert s["noisy"] is True


def test_percentiles_follow_trtexec_nearest_rank_on_random_samples() -> None:
    rng = random.Random(7)
    for n in (1, 2, 3, 10, 19, 20, 99, 100, 101, 257):
        sample = [rng.uniform(0.001, 0.01) for _ in range(n)]
        s = summarize(sample, batch=1)
        for p in (90, 95, 99):
            assert s[f"p{p}_ms"] == pytest.approx(trtexec_percentile(sample, p) * 1e3)
            # Always an observed sample, never an interpolation between two.
            assert any(s[f"p{p}_ms"] == pytest.approx(x * 1e3) for x in sample)
        assert s["median_ms"] == pytest.approx(float(np.median(sample)) * 1e3)


def test_summarize_odd_count_and_quiet_run() -> None:
    s = summarize([0.002, 0.002, 0.0021, 0.002, 0.0019], batch=8)
    assert s["median_ms"] == pytest.approx(2.0)
    assert s["min_ms"] == pytest.approx(1.9) and s["max_ms"] == pytest.approx(2.1)
    assert s["cv"] < 0.1 and s["noisy"] is False
    one = summarize([0.004], batch=2)
    assert one["p99_ms"] == one["median_ms"] == one["mean_ms"] == pytest.approx(4.0)
    assert one["std_ms"] == 0 and one["noisy"] is False
    assert one["throughput"] == pytest.approx(500.0)


@pytest.mark.parametrize(("sample", "batch", "needle"), [
    ([], 1, "no latency samples"),
    ([0.001], 0, "batch must be a positive integer"),
    ([0.001], True, "batch must be a positive integer"),
    ([0.001, -0.5], 1, "-0.5"),
    ([float("nan")], 1, "nan"),
])
def test_summarize_rejects_bad_input(sample: list[float], batch: int, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        summarize(sample, batch)
    assert needle in err.value.message and err.value.hint


# --- marginal cost and speedups ---------------------------------------------------------------

def test_marginal_cost_on_exact_line() -> None:
    points = [{"batch": b, "median_ms": 1.7 + 2.3 * b} for b in (1, 2, 4, 8, 16)]
    mc = marginal_cost(points)
    assert mc["slope_ms_per_sample"] == pytest.approx(2.3)
    assert mc["intercept_ms"] == pytest.approx(1.7)
    assert mc["r2"] == pytest.approx(1.0)
    assert mc["points"] == 5


def test_marginal_cost_imperfect_and_flat() -> None:
    bumpy = marginal_cost([{"batch": 1, "median_ms": 1.0}, {"batch": 2, "median_ms": 3.0},
                           {"batch": 3, "median_ms": 3.0}])
    assert bumpy["slope_ms_per_sample"] == pytest.approx(1.0)
    assert 0 < bumpy["r2"] < 1
    flat = marginal_cost([{"batch": 1, "median_ms": 5.0}, {"batch": 4, "median_ms": 5.0}])
    assert flat["slope_ms_per_sample"] == pytest.approx(0.0, abs=1e-12) and flat["r2"] == 1.0


@pytest.mark.parametrize(("points", "needle"), [
    ([{"batch": 1, "median_ms": 1.0}], "at least 2 sweep points"),
    ([{"batch": 2, "median_ms": 1.0}, {"batch": 2, "median_ms": 1.1}], "2 different batch sizes"),
    ([{"batch": 1}, {"batch": 2}], "median_ms"),
])
def test_marginal_cost_errors(points: list[dict[str, float]], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        marginal_cost(points)


def test_speedups_against_tensorflow() -> None:
    series = {
        "onnxruntime fp32": [{"batch": 1, "median_ms": 2.0}, {"batch": 2, "median_ms": 3.0},
                             {"batch": 4, "median_ms": 5.0}],
        "tensorflow": [{"batch": 1, "median_ms": 4.0}, {"batch": 2, "median_ms": 6.0}],
    }
    ups = speedups(series)
    assert ups["onnxruntime fp32"] == {1: pytest.approx(2.0), 2: pytest.approx(2.0), 4: None}
    assert ups["tensorflow"] == {1: 1.0, 2: 1.0}
    assert speedups({"onnxruntime": series["onnxruntime fp32"]}) == {"onnxruntime": {1: None, 2: None, 4: None}}
    with pytest.raises(ConfigError, match="baseline 'nope'"):
        speedups(series, baseline="nope")


# --- measure -----------------------------------------------------------------------------------

class StepClock:
    """A monotonic clock that advances by ``step`` seconds per call of the work function."""

    def __init__(self, step: float) -> None:
        self.step, self.calls = step, 0

    def work(self) -> None:
        self.calls += 1

    def now(self) -> float:
        return self.calls * self.step


def test_measure_runs_min_iterations_when_duration_is_met() -> None:
    calls = []
    lat = measure(lambda: calls.append(1), warmup_s=0, min_duration_s=0, min_iterations=7)
    assert len(lat) == len(calls) == 7
    assert all(x >= 0 for x in lat)


def test_measure_runs_until_min_duration_after_warmup() -> None:
    clock = StepClock(0.125)  # binary fractions: exact arithmetic
    lat = measure(clock.work, warmup_s=0.5, min_duration_s=2.0, min_iterations=3, clock=clock.now)
    assert len(lat) == 16          # 2.0 s / 0.125 s, more than min_iterations
    assert clock.calls == 4 + 16   # 0.5 s of warm-up calls are not returned
    assert lat == [0.125] * 16


def test_measure_min_iterations_outlast_duration_and_max_caps() -> None:
    clock = StepClock(0.5)
    assert len(measure(clock.work, warmup_s=0, min_duration_s=1.0, min_iterations=6, clock=clock.now)) == 6
    clock = StepClock(0.001)
    capped = measure(clock.work, warmup_s=0, min_duration_s=1e6, min_iterations=2, max_iterations=5,
                     clock=clock.now)
    assert len(capped) == 5 and clock.calls == 5


def test_measure_warmup_calls_at_least_once() -> None:
    clock = StepClock(10.0)  # one call outlasts the warm-up budget
    measure(clock.work, warmup_s=0.1, min_duration_s=0, min_iterations=1, clock=clock.now)
    assert clock.calls == 2


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"min_iterations": 0}, "min_iterations"),
    ({"warmup_s": -1}, "warmup_s"),
    ({"min_duration_s": "1s"}, "min_duration_s"),
    ({"min_iterations": 10, "max_iterations": 3}, "below min_iterations"),
    ({"max_iterations": 0}, "max_iterations"),
])
def test_measure_rejects_bad_settings(kwargs: dict[str, object], needle: str) -> None:
    calls = []
    with pytest.raises(ConfigError, match=needle):
        measure(lambda: calls.append(1), **kwargs)  # type: ignore[arg-type]
    assert calls == []  # validated before any work


def test_rss_readings() -> None:
    slack = 1 << 20  # the interpreter may allocate a page or two between two readings
    rss = current_rss_bytes()
    assert rss > 1 << 20 and peak_rss_bytes() >= rss - slack
    grow = bytearray(64 << 20)  # touch 64 MiB: both readings must follow
    grow[::4096] = b"\x01" * len(grow[::4096])
    grown = current_rss_bytes()
    assert grown >= rss + (32 << 20)
    assert peak_rss_bytes() >= grown - slack
    del grow


# --- batches_from_spec --------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "expected"), [
    ([1, 2, 4, 8], [1, 2, 4, 8]),
    (3, [3]),
    ("1..4", [1, 2, 3, 4]),
    (" 2 .. max ", [2, 3, 4, 5, 6, 7, 8]),
    ({"start": 1, "stop": 8, "step": 3}, [1, 4, 7]),
    ({"stop": 3}, [1, 2, 3]),
    ({"start": 4, "stop": "max", "step": 2}, [4, 6, 8]),
])
def test_batches_from_spec(spec: object, expected: list[int]) -> None:
    assert batches_from_spec(spec, max_batch=8) == expected


@pytest.mark.parametrize(("spec", "max_batch", "needle"), [
    ([1, 2, 16], 8, "batch 16 exceeds the engine's max_batch 8"),
    ("1..9", 8, "batch 9 exceeds"),
    ({"start": 1, "stop": 12}, 8, "batch 9 exceeds"),
    ([1, 1], 8, "batch 1 is listed twice"),
    ([0, 1], 8, "found 0"),
    ([1.5], 8, "found 1.5"),
    ([True], 8, "found True"),
    ([], 8, "empty"),
    ("1-8", 8, "cannot parse '1-8'"),
    ("5..2", 8, "stop 2 < start 5"),
    ("1..max", None, "no max_batch"),
    ({"begin": 1, "stop": 2}, 8, "found keys"),
    ({"start": 0, "stop": 2}, 8, "start must be an integer >= 1"),
    (2.0, 8, "found float 2.0"),
])
def test_batches_from_spec_errors(spec: object, max_batch: int | None, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        batches_from_spec(spec, max_batch)
    assert needle in err.value.message


# --- sweep on a real ONNX Runtime session --------------------------------------------------------

def _ort_session(batch_dim: object) -> object:
    """A tiny real ONNX model (y = relu(x @ W)) loaded in ONNX Runtime."""
    onnx = require("onnx")
    ort = require("onnxruntime")
    helper, tp = onnx.helper, onnx.TensorProto
    w = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", tp.FLOAT, [batch_dim, 64])],
        [helper.make_tensor_value_info("y", tp.FLOAT, [batch_dim, 32])],
        initializer=[onnx.numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # the CI box is shared; one thread is plenty for a 64x32 matmul
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def test_sweep_on_onnxruntime() -> None:
    sess = _ort_session("batch")

    def make_runner(batch: int) -> Callable[[], object]:
        feed = {"x": np.ones((batch, 64), np.float32)}
        return lambda: sess.run(["y"], feed)  # type: ignore[attr-defined]

    settings = {"warmup_s": 0.01, "min_duration_s": 0.02, "min_iterations": 5}
    points = sweep(make_runner, [1, 4, 16], settings=settings)
    assert [p["batch"] for p in points] == [1, 4, 16]
    for p in points:
        assert p["iterations"] >= 5
        assert p["min_ms"] <= p["median_ms"] <= p["p90_ms"] <= p["p99_ms"] <= p["max_ms"]
        assert p["throughput"] == pytest.approx(p["batch"] / (p["mean_ms"] / 1e3))
        assert p["peak_rss_bytes"] >= p["rss_bytes"] > 0
    mc = marginal_cost(points)
    assert math.isfinite(mc["slope_ms_per_sample"]) and mc["r2"] <= 1.0


def test_sweep_wraps_framework_errors_naming_the_batch() -> None:
    sess = _ort_session(2)  # fixed batch 2: ONNX Runtime rejects batch 3

    def make_runner(batch: int) -> Callable[[], object]:
        feed = {"x": np.ones((batch, 64), np.float32)}
        return lambda: sess.run(["y"], feed)  # type: ignore[attr-defined]

    settings = {"warmup_s": 0, "min_duration_s": 0, "min_iterations": 2}
    assert len(sweep(make_runner, [2], settings=settings)) == 1
    with pytest.raises(StageFailed) as err:
        sweep(make_runner, [2, 3], settings=settings)
    assert "batch 3" in err.value.message and err.value.hint


def test_sweep_rejects_unknown_settings_and_empty_batches() -> None:
    with pytest.raises(ConfigError, match="warmup"):
        sweep(lambda b: lambda: None, [1], settings={"warmup": 1})
    with pytest.raises(ConfigError, match="empty"):
        sweep(lambda b: lambda: None, [], settings={})
