"""Real TensorRT builds on a GPU (marker ``trt``); skipped with the reason everywhere else.

Run on a machine with an NVIDIA GPU and TensorRT 8.6 / 10.x / 11.x installed:
``python -m pytest tests/gpu -m trt -q -rs``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trtpipe.backends.tensorrt import available, environment, nvidia_smi


def _skip_reason() -> str | None:
    ok, info = available()
    if not ok:
        return f"TensorRT unavailable: {info}"
    if not nvidia_smi():
        return "no NVIDIA GPU found (nvidia-smi absent or reports none)"
    return None


REASON = _skip_reason()
pytestmark = [pytest.mark.trt, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


def _tiny_onnx(path: Path) -> None:
    """Conv(3->4, 3x3) + Relu with a dynamic batch, inputs named like a trtpipe signature."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["conv"], ["scores"])],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 4, 8, 8])],
        initializer=[weight, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path.write_bytes(model.SerializeToString())


def _ort(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(path.read_bytes(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))


def _plan(precision: str = "fp32", **extra: Any) -> Any:
    from trtpipe.backends.trt_plan import derive_plan

    env = environment()
    cc = tuple(int(x) for x in str(env["compute_capability"]).split(".")[:2])
    intent = {"max_batch": 4, "opt_batch": 2, "workspace_bytes": 1 << 28, "precision": precision,
              "on_unsupported": "fallback", "builder_optimization_level": 1, **extra}
    return derive_plan(intent, trt_version=str(env["tensorrt"]),
                       input_shapes={"image": [None, 3, 8, 8]},
                       capabilities={"compute_capability": cc})


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.onnx"
    _tiny_onnx(path)
    return path


def test_fp32_build_matches_onnxruntime(model: Path, tmp_path: Path) -> None:
    from trtpipe.backends.tensorrt import build_engine, run_engine

    plan = _plan()
    engine = tmp_path / "tiny.plan"
    report = build_engine(model, plan, engine, timing_cache_in=None,
                          timing_cache_out=tmp_path / "timing.cache", log_path=tmp_path / "build.log")
    assert engine.stat().st_size == report["engine_bytes"] > 0
    assert (tmp_path / "timing.cache").stat().st_size > 0
    (inp,) = [t for t in report["io_tensors"] if t["mode"] == "INPUT"]
    assert inp["name"] == "image"
    assert inp["profiles"] == [{"min": [1, 3, 8, 8], "opt": [2, 3, 8, 8], "max": [4, 3, 8, 8]}]
    feeds = {"image": np.random.default_rng(1).standard_normal((3, 3, 8, 8)).astype(np.float32)}
    got = run_engine(engine, feeds)
    want = _ort(model, feeds)
    np.testing.assert_allclose(got["scores"], want["scores"], rtol=1e-4, atol=1e-4)


def test_timing_cache_is_fed_back(model: Path, tmp_path: Path) -> None:
    from trtpipe.backends.tensorrt import build_engine

    plan = _plan()
    cache = tmp_path / "timing.cache"
    build_engine(model, plan, tmp_path / "a.plan", timing_cache_in=None, timing_cache_out=cache,
                 log_path=tmp_path / "a.log")
    second = _plan(timing_cache=str(cache), error_on_timing_cache_miss=plan.era != "8.6")
    build_engine(model, second, tmp_path / "b.plan", timing_cache_in=cache, timing_cache_out=None,
                 log_path=tmp_path / "b.log")
    assert (tmp_path / "b.plan").stat().st_size > 0


def test_int8_calibration_writes_and_reuses_the_cache(model: Path, tmp_path: Path) -> None:
    from trtpipe.backends.tensorrt import build_engine

    cache = tmp_path / "calib.cache"
    plan = _plan("int8", calibrator={"algorithm": "entropy", "batch_size": 2, "max_batches": 3,
                                     "cache": str(cache)})
    if plan.era == "11":
        pytest.skip("TensorRT 11 has no calibrators (int8 comes from a Q/DQ model)")
    if plan.precision != "int8":
        pytest.skip(f"this GPU cannot build int8: {plan.fallback}")
    data = {"image": np.random.default_rng(2).standard_normal((8, 3, 8, 8)).astype(np.float32)}
    first = build_engine(model, plan, tmp_path / "a.plan", calib_data=data, timing_cache_in=None,
                         timing_cache_out=None, log_path=tmp_path / "a.log")
    assert first["calibration_batches"] == 3
    assert cache.read_bytes().startswith(b"TRT-")
    second = build_engine(model, plan, tmp_path / "b.plan", calib_data=data, timing_cache_in=None,
                          timing_cache_out=None, log_path=tmp_path / "b.log")
    assert second["calibration_batches"] == 0  # the cache was read: no batch requested


def test_garbage_engine_is_rejected(tmp_path: Path) -> None:
    from trtpipe.backends.tensorrt import load_engine
    from trtpipe.errors import InvalidArtifact

    bad = tmp_path / "bad.plan"
    bad.write_bytes(b"not an engine" * 10)
    with pytest.raises(InvalidArtifact, match="deserialize"):
        load_engine(bad)
