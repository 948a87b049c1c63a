"""TF GraphDef -> UFF: NVIDIA conformance on lenet5, determinism, plugins, custom ops, errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from uff_helpers import ort_run

from trtpipe.backends.uff import format as fmt
from trtpipe.backends.uff.reader import uff_to_onnx
from trtpipe.backends.uff.writer import PluginSpec, UffInput, graphdef_to_uff, plugins_from_yaml
from trtpipe.errors import ConfigError, InvalidArtifact, UnsupportedOp

tf = pytest.importorskip("tensorflow")


def _node_view(node: Any) -> tuple[Any, ...]:
    return (node.id, node.operation, list(node.inputs),
            sorted((k, v.SerializeToString(deterministic=True)) for k, v in node.fields.items()))


def test_lenet5_reproduces_nvidia_converter_output(lenet_pb: bytes, lenet_uff: bytes) -> None:
    ours = graphdef_to_uff(lenet_pb, outputs=["dense_1/Softmax"])
    ref, got = fmt.parse(lenet_uff), fmt.parse(ours)
    assert [(d.id, d.version, d.optional) for d in got.descriptors] == \
        [(d.id, d.version, d.optional) for d in ref.descriptors]
    assert [_node_view(n) for n in got.graphs[0].nodes] == [_node_view(n) for n in ref.graphs[0].nodes]
    assert sorted(got.referenced_data) == sorted(ref.referenced_data)
    for key in ref.referenced_data:
        assert got.referenced_data[key] == ref.referenced_data[key], key
    # Byte level: same size, and identical once NVIDIA's hash-ordered map entries are sorted.
    assert len(ours) == len(lenet_uff)
    assert ours == fmt.serialize(ref)


def test_write_read_write_is_stable(lenet_pb: bytes) -> None:
    first = graphdef_to_uff(lenet_pb, outputs=["dense_1/Softmax"])
    assert fmt.serialize(fmt.parse(first)) == first
    assert graphdef_to_uff(lenet_pb, outputs=["dense_1/Softmax"]) == first


def test_default_inputs_and_outputs(lenet_pb: bytes) -> None:
    meta = fmt.parse(graphdef_to_uff(lenet_pb))
    nodes = meta.graphs[0].nodes
    assert [n.id for n in nodes if n.operation == "Input"] == ["input_1"]
    assert [list(n.inputs) for n in nodes if n.operation == "MarkOutput"] == [["dense_1/Softmax"]]


def test_missing_output_is_named_with_suggestion(lenet_pb: bytes) -> None:
    with pytest.raises(InvalidArtifact) as info:
        graphdef_to_uff(lenet_pb, outputs=["dense_1/Softmaxx"])
    assert "'dense_1/Softmaxx'" in info.value.message and "dense_1/Softmax" in info.value.hint


def _graph(build: Any) -> bytes:
    g = tf.Graph()
    with g.as_default():
        build()
    return g.as_graph_def().SerializeToString()


def _cumsum_graph() -> bytes:
    def build() -> None:
        x = tf.compat.v1.placeholder(tf.float32, (None, 6), name="x")
        c = tf.math.cumsum(tf.nn.relu(x, name="relu"), axis=1, name="post/cumsum")
        tf.identity(c * 2.0, name="out")
    return _graph(build)


def test_unknown_op_is_unsupported_by_default() -> None:
    with pytest.raises(UnsupportedOp) as info:
        graphdef_to_uff(_cumsum_graph(), outputs=["out"])
    assert "'post/cumsum'" in info.value.message and "Cumsum" in info.value.message
    assert "plugins" in info.value.hint and "ONNX" in info.value.hint


def test_allow_custom_writes_typed_custom_node() -> None:
    meta = fmt.parse(graphdef_to_uff(_cumsum_graph(), outputs=["out"], allow_custom=True))
    assert [d.id for d in meta.descriptors] == ["tensorflow_extension", "custom"]
    node = next(n for n in meta.graphs[0].nodes if n.id == "post/cumsum")
    assert node.operation == "_Cumsum"
    assert node.fields["exclusive"].WhichOneof("data_oneof") == "b"
    assert node.fields["T"].dtype == fmt.DT_FLOAT32
    assert list(node.inputs) == ["relu", "post/cumsum/axis"]


def test_plugin_by_op_type_types_fields_and_reads_with_custom_op() -> None:
    spec = PluginSpec(op="CumSum_TRT", fields={"axis": 1, "flag": True, "scale": 0.1,
                                               "dims": [1, 2], "ratios": [1, 0.33], "mode": "x"},
                      inputs=["relu"])
    uff = graphdef_to_uff(_cumsum_graph(), outputs=["out"], plugins={"Cumsum": spec})
    meta = fmt.parse(uff)
    node = next(n for n in meta.graphs[0].nodes if n.id == "post/cumsum")
    assert node.operation == "_CumSum_TRT" and list(node.inputs) == ["relu"]
    f = node.fields
    assert (f["axis_u_int"].i, f["flag_u_int"].i, f["mode_u_str"].s) == (1, 1, "x")
    assert f["scale_u_float"].d == float(np.float32(0.1))
    assert list(f["dims_u_ilist"].i_list.val) == [1, 2]
    assert list(f["ratios_u_flist"].d_list.val) == [1.0, float(np.float32(0.33))]
    with pytest.raises(UnsupportedOp) as info:
        uff_to_onnx(uff, path="p.uff")
    assert "'post/cumsum'" in info.value.message and "_CumSum_TRT" in info.value.message

    def cumsum(ctx: Any, n: Any) -> None:  # no set_info: the reader infers the shape
        axis = ctx.constant(np.array(ctx.field(n, "axis_u_int"), np.int64))
        ctx.add("CumSum", [ctx.input(n, 0), axis], n.id)

    model = uff_to_onnx(uff, custom_ops={"CumSum_TRT": cumsum})
    x = np.random.default_rng(0).normal(size=(2, 6)).astype(np.float32)
    (got,) = ort_run(model, {"x": x})
    np.testing.assert_allclose(got, np.cumsum(np.maximum(x, 0), axis=1) * 2, rtol=1e-6)


def test_plugin_by_scope_collapses_subgraph() -> None:
    def build() -> None:
        x = tf.compat.v1.placeholder(tf.float32, (None, 4), name="x")
        y = tf.compat.v1.placeholder(tf.float32, (None, 4), name="y")
        with tf.name_scope("nms"):
            s = tf.math.cumsum(x * y, axis=1)
            t = tf.math.top_k(s, k=2).values
        tf.identity(t + 1.0, name="out")
    plugins = plugins_from_yaml({"nms": {"op": "NMS_TRT", "name": "NMS",
                                         "fields": {"topK": 2, "nmsThreshold": 0.5}}})
    meta = fmt.parse(graphdef_to_uff(_graph(build), outputs=["out"], plugins=plugins))
    ids = [n.id for n in meta.graphs[0].nodes]
    assert not any(i.startswith("nms/") for i in ids)
    nms = next(n for n in meta.graphs[0].nodes if n.id == "NMS")
    assert nms.operation == "_NMS_TRT" and list(nms.inputs) == ["x", "y"]
    assert nms.fields["nmsThreshold_u_float"].d == float(np.float32(0.5))
    add = next(n for n in meta.graphs[0].nodes if n.operation == "Binary")
    assert add.inputs[0] == "NMS"


def test_plugins_from_yaml_rejects_bad_entries() -> None:
    with pytest.raises(ConfigError, match="op"):
        plugins_from_yaml({"nms": {"name": "NMS"}})
    with pytest.raises(ConfigError, match="unknown key"):
        plugins_from_yaml({"nms": {"op": "NMS_TRT", "feilds": {}}})
    with pytest.raises(ConfigError, match="fields.bad"):
        plugins_from_yaml({"nms": {"op": "NMS_TRT", "fields": {"bad": {"a": 1}}}})
    with pytest.raises(ConfigError, match="matches no op"):
        graphdef_to_uff(_cumsum_graph(), outputs=["out"],
                        plugins={"nothing_here": PluginSpec(op="X_TRT")})


def test_placeholder_of_unknown_rank() -> None:
    def build() -> None:
        x = tf.compat.v1.placeholder(tf.float32, None, name="x")
        tf.nn.relu(x, name="y")
    gd = _graph(build)
    with pytest.raises(UnsupportedOp) as info:
        graphdef_to_uff(gd, outputs=["y"])
    assert "'x'" in info.value.message and "unknown rank" in info.value.message
    meta = fmt.parse(graphdef_to_uff(gd, inputs=[UffInput("x", (None, 5), "NC")], outputs=["y"]))
    inp = next(n for n in meta.graphs[0].nodes if n.operation == "Input")
    assert list(inp.fields["shape"].i_list.val) == [-1, 5]
    assert UffInput("x", (None, 5), "NC").trt_dims() == (5,)


def test_bad_input_specs(lenet_pb: bytes) -> None:
    with pytest.raises(InvalidArtifact, match="'nope'"):
        graphdef_to_uff(lenet_pb, inputs=[UffInput("nope")], outputs=["dense_1/Softmax"])
    with pytest.raises(ConfigError, match="order"):
        graphdef_to_uff(lenet_pb, inputs=[UffInput("input_1", order="HWC")])
    with pytest.raises(InvalidArtifact, match="does not feed"):
        graphdef_to_uff(lenet_pb, inputs=[UffInput("input_1")], outputs=["dense/kernel"])
    with pytest.raises(InvalidArtifact, match="GraphDef"):
        graphdef_to_uff(b"\xff\xff\xff garbage")
