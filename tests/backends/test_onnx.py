"""tf2onnx conversion: names, dynamic batch, numerics vs TensorFlow, unsupported ops, bad files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trtpipe.backends import onnx as onnxb
from trtpipe.errors import InvalidArtifact, UnsupportedOp


def test_conversion_names_batch_and_info(tiny_onnx: tuple[Path, dict[str, Any]],
                                         tiny_frozen: tuple[Path, dict[str, Any]]) -> None:
    path, info = tiny_onnx
    model = onnxb.load_model(path)
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["scores", "boxes"]
    for value in list(model.graph.input) + list(model.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == onnxb.BATCH_DIM
    assert info["opset"] == 17
    assert info["nodes"] == len(model.graph.node) == sum(info["ops"].values())
    assert "Conv" in info["ops"] and "Softmax" in info["ops"]
    assert info["inputs"][0]["shape"] == tiny_frozen[1]["inputs"][0]["shape"]
    assert info["tf2onnx"]


@pytest.mark.parametrize("batch", [1, 7])
def test_onnxruntime_matches_tensorflow(batch: int, helpers: Any, tiny_onnx: tuple[Path, dict[str, Any]],
                                        tf_reference: Callable[[np.ndarray], dict[str, np.ndarray]]) -> None:
    import onnxruntime as ort  # type: ignore[import-untyped]

    session = ort.InferenceSession(tiny_onnx[0].read_bytes(), providers=["CPUExecutionProvider"])
    x = helpers.images(batch, seed=10 + batch)
    got = dict(zip(["scores", "boxes"], session.run(["scores", "boxes"], {"image": x}), strict=True))
    want = tf_reference(x)
    for name in want:
        assert got[name].shape[0] == batch
        np.testing.assert_allclose(got[name], want[name], atol=1e-5, rtol=0, err_msg=name)


def _graph_pb(tmp_path: Path, build: Callable[[Any], None]) -> tuple[Path, dict[str, Any]]:
    import tensorflow as tf  # type: ignore[import-untyped]

    from trtpipe.backends import tf as tfb

    graph = tf.Graph()
    with graph.as_default():
        build(tf)
    data = graph.as_graph_def().SerializeToString()
    path = tmp_path / "g.pb"
    path.write_bytes(data)
    return path, tfb.signature_of_pb(data)


def test_unsupported_op_is_named(tmp_path: Path) -> None:
    def lgamma(tf: Any) -> None:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        tf.identity(tf.math.lgamma(x + 1.0, name="my_lgamma"), name="y")

    pb, sig = _graph_pb(tmp_path, lgamma)
    assert [o["name"] for o in sig["outputs"]] == ["y"]
    with pytest.raises(UnsupportedOp, match="'Lgamma'.*my_lgamma") as err:
        onnxb.tf_to_onnx(pb, sig, tmp_path / "g.onnx")
    assert err.value.node == "my_lgamma" and err.value.hint
    assert not (tmp_path / "g.onnx").exists()


def test_small_graph_converts_with_fixed_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def matmul(tf: Any) -> None:
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="features")
        w = tf.constant(np.arange(6, dtype=np.float32).reshape(3, 2))
        tf.identity(tf.nn.relu(tf.matmul(x, w)), name="logits")

    pb, sig = _graph_pb(tmp_path, matmul)
    capsys.readouterr()
    onnxb.tf_to_onnx(pb, sig, tmp_path / "m.onnx", opset=13)
    assert capsys.readouterr().out == ""  # converter chatter goes to logging, never to stdout
    import onnxruntime as ort  # type: ignore[import-untyped]

    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = np.array([[1, -2, 3], [0, 1, 0]], dtype=np.float32)
    (got,) = session.run(["logits"], {"features": x})
    np.testing.assert_allclose(got, np.maximum(x @ np.arange(6, dtype=np.float32).reshape(3, 2), 0))
    assert onnxb._main_opset(onnxb.load_model(tmp_path / "m.onnx")) == 13


def test_bad_conversion_inputs(tiny_frozen: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    pb, sig = tiny_frozen
    wrong = {**sig, "outputs": [{"name": "not_there", "dtype": "float32", "shape": None}]}
    with pytest.raises(InvalidArtifact, match="'not_there', which is not a node") as err:
        onnxb.tf_to_onnx(pb, wrong, tmp_path / "x.onnx")
    assert err.value.node == "not_there"
    with pytest.raises(InvalidArtifact, match="no inputs or no outputs"):
        onnxb.tf_to_onnx(pb, {"inputs": [], "outputs": []}, tmp_path / "x.onnx")
    (tmp_path / "junk.pb").write_bytes(b"\x0a\xff\xff\xff garbage")
    with pytest.raises(InvalidArtifact, match="junk.pb: not a TensorFlow GraphDef"):
        onnxb.tf_to_onnx(tmp_path / "junk.pb", sig, tmp_path / "x.onnx")


def test_load_model_rejects_corrupt_files(tiny_onnx: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    data = tiny_onnx[0].read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "text.onnx"
    text.write_bytes(b"hello, I am not a model\n")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    for bad in (truncated, text, empty):
        with pytest.raises(InvalidArtifact, match="not an ONNX model") as err:
            onnxb.load_model(bad)
        assert err.value.path == str(bad) and bad.name in str(err.value)
    with pytest.raises(InvalidArtifact, match="cannot read"):
        onnxb.load_model(tmp_path / "absent.onnx")


def test_describe_onnx(tiny_onnx: tuple[Path, dict[str, Any]]) -> None:
    text = onnxb.describe_onnx(tiny_onnx[0])
    assert "image: float32 [N, 16, 16, 3]" in text
    assert "scores: float32 [N, 32, 3]" in text and "boxes: float32 [N, 32, 4]" in text
    assert "ai.onnx=17" in text
    assert f"Conv: {tiny_onnx[1]['ops']['Conv']}" in text
