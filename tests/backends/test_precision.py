"""fp16 conversion and table-driven int8 quantization of a tiny Keras CNN, run on ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_cnn import tiny_cnn_onnx  # pytest puts this test folder on sys.path (prepend mode)

from trtpipe import metrics
from trtpipe.backends import calibration as cal
from trtpipe.backends import precision as prec
from trtpipe.errors import ConfigError, InvalidArtifact

DEPTHWISE = "*depthwise*"


def _tiny_cnn_onnx(path: Path) -> Path:
    return tiny_cnn_onnx(path, extra_conv=True)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_cnn_onnx(tmp_path_factory.mktemp("prec") / "cnn.onnx")


@pytest.fixture(scope="module")
def table(model: Path) -> dict:
    return cal.calibrate(model, _images(0, 32), algorithm="minmax")


def _images(seed: int, n: int) -> dict[str, np.ndarray]:
    return {"image": np.random.default_rng(seed).standard_normal((n, 16, 16, 3)).astype(np.float32)}


def _run(path: Path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feed), strict=True))


def _min_cosine(ref: dict[str, np.ndarray], test: dict[str, np.ndarray]) -> float:
    return min(metrics.cosine_similarity(ref[k], test[k]) for k in ref)


def test_int8_default_settings_close_to_fp32(model: Path, table: dict, tmp_path: Path) -> None:
    out = tmp_path / "int8.onnx"
    report = prec.quantize_int8(model, out, table)
    assert report["counts"]["QuantizeLinear"] > 0 and report["counts"]["DequantizeLinear"] > 0
    assert report["settings"] == {**prec.default_int8_settings(prec.read_cpu_flags())}
    assert len(report["nodes"]["int8"]) >= 5            # the convolutions at least
    assert all(p in ("int8", "fp32", "none", "qdq") for p in prec.node_precisions(out).values())
    feed = _images(7, 8)
    ref, test = _run(model, feed), _run(out, feed)
    assert set(test) == {"scores", "boxes"}
    assert _min_cosine(ref, test) >= 0.99
    assert metrics.max_abs_error(ref["boxes"], test["boxes"]) > 0   # really quantized


def test_int8_symmetric_scales_come_from_the_table(model: Path, table: dict, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper
    out = tmp_path / "s8.onnx"
    settings = {"activation_type": "int8", "weight_type": "int8", "per_channel": True,
                "activation_symmetric": True}
    report = prec.quantize_int8(model, out, table, settings=settings)
    assert report["settings"]["activation_type"] == "int8"
    m = onnx.load(str(out))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    checked = 0
    for node in m.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in table["tensors"]:
            scale = float(inits[node.input[1]])
            assert scale == pytest.approx(table["tensors"][node.input[0]]["scale"], rel=1e-6)
            assert int(inits[node.input[2]]) == 0
            checked += 1
    assert checked >= 3
    feed = _images(8, 4)
    assert _min_cosine(_run(model, feed), _run(out, feed)) >= 0.98


def test_exclude_keeps_nodes_fp32(model: Path, table: dict, tmp_path: Path) -> None:
    out = tmp_path / "mixed.onnx"
    report = prec.quantize_int8(model, out, table, exclude=[DEPTHWISE])
    excluded = report["excluded_nodes"]
    assert len(excluded) == 1 and "depthwise" in excluded[0]
    precisions = prec.node_precisions(out)
    assert precisions[excluded[0]] == "fp32"
    assert excluded[0] in report["nodes"]["fp32"]
    full = prec.quantize_int8(model, tmp_path / "full.onnx", table)
    assert full["nodes"]["int8"] and excluded[0] in full["nodes"]["int8"]
    assert report["counts"]["DequantizeLinear"] < full["counts"]["DequantizeLinear"]
    feed = _images(9, 4)
    assert _min_cosine(_run(model, feed), _run(out, feed)) >= 0.99


def test_zero_calibration_is_much_worse(model: Path, table: dict, tmp_path: Path) -> None:
    zero_table = cal.calibrate(model, {"image": np.zeros((8, 16, 16, 3), np.float32)},
                               algorithm="minmax")
    good, bad = tmp_path / "good.onnx", tmp_path / "bad.onnx"
    prec.quantize_int8(model, good, table)
    prec.quantize_int8(model, bad, zero_table)
    feed = _images(10, 8)
    ref = _run(model, feed)
    good_rows = metrics.compare_outputs(ref, _run(good, feed), atol=None, rtol=None,
                                        metrics=["max_abs"], min_cosine=0.99)
    bad_rows = metrics.compare_outputs(ref, _run(bad, feed), atol=None, rtol=None,
                                       metrics=["max_abs"], min_cosine=0.99)
    assert all(r["ok"] for r in good_rows)
    assert not all(r["ok"] for r in bad_rows)         # a cosine gate catches it
    good_cos = min(r["cosine"] for r in good_rows)
    bad_cos = min(r["cosine"] for r in bad_rows)
    assert 1 - bad_cos > 10 * (1 - good_cos)


def test_table_must_match_model(model: Path, table: dict, tmp_path: Path) -> None:
    partial = {**table, "tensors": dict(list(table["tensors"].items())[:3])}
    with pytest.raises(InvalidArtifact, match="calibration table covers"):
        prec.quantize_int8(model, tmp_path / "p.onnx", partial)
    foreign = {**table, "tensors": {"other:0": {"min": 0.0, "max": 1.0, "scale": 1 / 127}}}
    with pytest.raises(InvalidArtifact, match="covers none of"):
        prec.quantize_int8(model, tmp_path / "f.onnx", foreign)
    with pytest.raises(InvalidArtifact, match="expected format"):
        prec.quantize_int8(model, tmp_path / "x.onnx", {"tensors": {}})
    assert not any(tmp_path.iterdir())                 # nothing half-written


def test_bad_exclude_and_settings(model: Path, table: dict, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="matches no node"):
        prec.quantize_int8(model, tmp_path / "a.onnx", table, exclude=["no_such_node*"])
    with pytest.raises(ConfigError, match="unknown int8 setting"):
        prec.quantize_int8(model, tmp_path / "b.onnx", table, settings={"per_chanel": True})
    with pytest.raises(ConfigError, match="activation_type='int4'"):
        prec.quantize_int8(model, tmp_path / "c.onnx", table, settings={"activation_type": "int4"})


def test_fp16_model_has_fp16_weights_and_runs(model: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "fp16.onnx"
    report = prec.to_fp16(model, out)
    assert report["initializers"].get("float16", 0) >= 5
    assert "float" not in report["initializers"]      # no fp32 weights left
    assert len(report["nodes"]["fp16"]) >= 5 and "Resize" in report["op_block_list"]
    m = onnx.load(str(out))
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in m.graph.input)
    feed = _images(11, 4)
    ref, test = _run(model, feed), _run(out, feed)
    assert test["scores"].dtype == np.float32           # keep_io_types
    assert _min_cosine(ref, test) >= 0.999
    assert metrics.max_abs_error(ref["boxes"], test["boxes"]) < 0.05
    assert prec.node_precisions(model)  # fp32 model: no fp16 nodes at all
    assert "fp16" not in set(prec.node_precisions(model).values())


def test_fp16_block_list_keeps_op_types_fp32(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "fp16b.onnx"
    report = prec.to_fp16(model, out, op_block_list=["Softmax"])
    softmax = [n for n, p in prec.node_precisions(out).items() if "Softmax" in n and "cast" not in n]
    assert softmax and all(n in report["nodes"]["fp32"] for n in softmax)
    with pytest.raises(InvalidArtifact, match="not found"):
        prec.to_fp16(tmp_path / "missing.onnx", tmp_path / "o.onnx")


@pytest.mark.parametrize("flags, expected", [
    ({"sse4_2", "avx", "avx2", "fma"}, ("uint8", "uint8", True, "avx2")),
    ({"avx2", "avx512f", "avx512_vnni"}, ("int8", "int8", True, "avx-vnni")),
    ({"avx2", "avx512_vnni", "amx_tile", "amx_int8"}, ("int8", "int8", True, "amx")),
    ({"fp", "asimd", "asimddp"}, ("int8", "int8", True, "arm-dotprod")),
    (set(), ("uint8", "int8", False, "generic")),
])
def test_default_int8_settings_by_cpu(flags: set[str], expected: tuple) -> None:
    s = prec.default_int8_settings(flags)
    assert (s["activation_type"], s["weight_type"], s["per_channel"], s["isa"]) == expected
    assert s["format"] == "qdq" and s["reason"]
