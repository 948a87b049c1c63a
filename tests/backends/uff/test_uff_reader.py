"""UFF -> ONNX on NVIDIA's own lenet5.uff, checked against TensorFlow running lenet5.pb."""

from __future__ import annotations

import numpy as np
import pytest
from uff_helpers import ort_run

from trtpipe.backends.uff import format as fmt
from trtpipe.backends.uff.describe import describe_uff
from trtpipe.backends.uff.reader import uff_to_onnx
from trtpipe.errors import ConfigError, InvalidArtifact, UnsupportedOp

onnx = pytest.importorskip("onnx")
tf = pytest.importorskip("tensorflow")


def _tf_lenet(lenet_pb: bytes):  # type: ignore[no-untyped-def]
    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(lenet_pb)
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(gd, name=""), [])
    return wrapped.prune("input_1:0", "dense_1/Softmax:0")


@pytest.mark.parametrize("opset", [13, 17, 18])
def test_nvidia_lenet5_matches_tensorflow(lenet_uff: bytes, lenet_pb: bytes, opset: int) -> None:
    model = uff_to_onnx(lenet_uff, opset=opset, path="lenet5.uff")
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["input_1"]
    assert [o.name for o in model.graph.output] == ["dense_1/Softmax"]
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "N"
    run_tf = _tf_lenet(lenet_pb)
    rng = np.random.default_rng(opset)
    for batch in (1, 8):
        x = rng.random((batch, 28, 28, 1), dtype=np.float32)
        (got,) = ort_run(model, {"input_1": x})
        want = run_tf(tf.constant(x)).numpy()
        assert got.shape == want.shape == (batch, 10)
        assert np.abs(got - want).max() <= 1e-5


def test_fc_weights_are_relaid_out_from_declared_order(lenet_uff: bytes) -> None:
    """Declaring the kernel as KC (transposed) must change the result: orders are honoured."""
    meta = fmt.parse(lenet_uff)
    x = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)
    (base,) = ort_run(uff_to_onnx(lenet_uff), {"input_1": x})
    kernel = next(n for n in meta.graphs[0].nodes if n.id == "dense_1/kernel")
    arr = fmt.const_array(meta, kernel)
    meta.referenced_data["weights_dense_1/kernel"].blob = np.ascontiguousarray(arr.T).tobytes()
    kernel.fields["shape"].i_list.val[:] = [10, 512]
    meta.referenced_data["orders_NC_KC"].CopyFrom(fmt.orders_data(["NC", "KC"]))
    for n in meta.graphs[0].nodes:
        if n.id == "dense_1/MatMul":
            n.fields["inputs_orders"].ref = "orders_NC_KC"
    (relaid,) = ort_run(uff_to_onnx(fmt.serialize(meta)), {"input_1": x})
    np.testing.assert_allclose(relaid, base, rtol=1e-6, atol=1e-7)


def test_custom_node_without_mapping_is_unsupported(lenet_uff: bytes) -> None:
    meta = fmt.parse(lenet_uff)
    for n in meta.graphs[0].nodes:
        if n.id == "dense/Relu":
            n.operation = "_GridAnchor_TRT"
    with pytest.raises(UnsupportedOp) as info:
        uff_to_onnx(fmt.serialize(meta), path="ssd.uff")
    assert "'dense/Relu'" in info.value.message and "_GridAnchor_TRT" in info.value.message
    assert info.value.node == "dense/Relu" and "custom_ops" in info.value.hint


def test_bad_field_values_are_invalid_artifacts(lenet_uff: bytes) -> None:
    meta = fmt.parse(lenet_uff)
    for n in meta.graphs[0].nodes:
        if n.id == "dense/Relu":
            n.fields["func"].s = "swish"
    with pytest.raises(InvalidArtifact, match="'dense/Relu'.*swish"):
        uff_to_onnx(fmt.serialize(meta))
    with pytest.raises(ConfigError, match="opset"):
        uff_to_onnx(lenet_uff, opset=9)


def test_describe_lists_nodes_fields_and_keys(lenet_uff: bytes) -> None:
    text = describe_uff(lenet_uff)
    meta = fmt.parse(lenet_uff)
    for index, node in enumerate(meta.graphs[0].nodes):
        assert f"[{index}] {node.id}  op={node.operation}" in text
    for key in meta.referenced_data:
        assert repr(key) in text
    assert "dim_orders_list=[N+C]" in text
    assert "values: ref->'weights_dense/kernel' => blob[1605632 bytes] float32[784, 512]" in text
    assert "func: s='relu'" in text
