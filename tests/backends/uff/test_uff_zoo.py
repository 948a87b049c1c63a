"""A zoo of tiny Keras models: freeze -> UFF (our writer) -> ONNX (our reader) -> ONNX Runtime == TF."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from uff_helpers import freeze, ort_run, randomize_bn

from trtpipe.backends.uff import format as fmt
from trtpipe.backends.uff.reader import uff_to_onnx
from trtpipe.backends.uff.writer import graphdef_to_uff

keras = pytest.importorskip("keras")
L = keras.layers


def mlp() -> Any:
    x = keras.Input((20,), name="image")
    h = L.Dense(16, activation="tanh")(x)
    h = L.Dense(8, activation="sigmoid")(h)
    return keras.Model(x, L.Dense(4, activation="softmax")(h))


def cnn() -> Any:
    x = keras.Input((32, 32, 3), name="image")
    h = L.Conv2D(8, 3, padding="same")(x)
    h = L.BatchNormalization()(h)
    h = L.ReLU()(h)
    h = L.MaxPooling2D()(h)
    h = L.Conv2D(8, 3, strides=2, padding="valid", activation="elu")(h)
    h = L.AveragePooling2D(3, strides=2, padding="same")(h)
    h = L.Flatten()(h)
    return keras.Model(x, L.Dense(5)(h))


def mobilenet_block() -> Any:
    x = keras.Input((32, 32, 3), name="image")
    h = L.ZeroPadding2D(((0, 1), (0, 1)))(x)
    h = L.Conv2D(8, 3, strides=2, use_bias=False)(h)
    h = L.BatchNormalization()(h)
    h = L.ReLU(6.0)(h)
    h = L.ZeroPadding2D(((1, 1), (1, 1)))(h)
    h = L.DepthwiseConv2D(3, use_bias=False)(h)
    h = L.BatchNormalization()(h)
    h = L.ReLU(6.0)(h)
    h = L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2)(h)
    h = L.Conv2D(12, 1)(h)
    return keras.Model(x, L.ReLU(6.0)(h))


def conv_transpose() -> Any:
    x = keras.Input((16, 16, 3), name="image")
    h = L.Conv2D(4, 3, strides=2, padding="same", activation="relu")(x)
    a = L.Conv2DTranspose(6, 3, strides=2, padding="same")(h)
    b = L.Conv2DTranspose(2, 2, strides=2, padding="valid")(h)
    return keras.Model(x, [a, b])


def ssd_heads() -> Any:
    x = keras.Input((32, 32, 3), name="image")
    f1 = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    f2 = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(f1)
    classes, anchors = 3, 2
    cls = [L.Reshape((-1, classes))(L.Conv2D(anchors * classes, 3, padding="same")(f))
           for f in (f1, f2)]
    box = [L.Reshape((-1, 4))(L.Conv2D(anchors * 4, 3, padding="same")(f)) for f in (f1, f2)]
    scores = L.Softmax(name="scores")(L.Concatenate(axis=1)(cls))
    boxes = L.Concatenate(axis=1, name="boxes")(box)
    return keras.Model(x, [scores, boxes])


def leaky() -> Any:
    x = keras.Input((16, 16, 3), name="image")
    h = L.Conv2D(4, 3, padding="same")(x)
    h = L.LeakyReLU(negative_slope=0.2)(h)
    return keras.Model(x, L.Dense(3)(L.Flatten()(h)))


def gap() -> Any:
    x = keras.Input((16, 16, 3), name="image")
    h = L.Conv2D(6, 3, padding="same", activation="relu")(x)
    return keras.Model(x, L.GlobalAveragePooling2D()(h))


ZOO: dict[str, Callable[[], Any]] = {
    "mlp": mlp, "cnn": cnn, "mobilenet_block": mobilenet_block, "conv_transpose": conv_transpose,
    "ssd_heads": ssd_heads, "leaky_relu": leaky, "global_avg_pool": gap,
}


@pytest.mark.parametrize("name", list(ZOO))
def test_tf_uff_onnx_matches_tensorflow(name: str) -> None:
    keras.utils.set_random_seed(1)
    model = ZOO[name]()
    randomize_bn(model)
    frozen = freeze(model)
    uff = graphdef_to_uff(frozen.graph_def)
    meta = fmt.parse(uff)
    ops = {n.operation for n in meta.graphs[0].nodes}
    assert not any(op.startswith("_") for op in ops), ops  # all core ops, no custom nodes
    onnx_model = uff_to_onnx(uff, path=f"{name}.uff")
    assert [i.name for i in onnx_model.graph.input] == ["image"]
    assert [o.name for o in onnx_model.graph.output] == frozen.output_names
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        x = rng.normal(size=(batch,) + frozen.input_shape).astype(np.float32)
        want = frozen.tf_run(x)
        got = ort_run(onnx_model, {"image": x})
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_mobilenet_block_uses_nvidia_conventions() -> None:
    """Depthwise conv: Conv + number_groups; symmetric Pad folded into VALID conv padding."""
    keras.utils.set_random_seed(2)
    frozen = freeze(mobilenet_block())
    meta = fmt.parse(graphdef_to_uff(frozen.graph_def))
    convs = [n for n in meta.graphs[0].nodes if n.operation == "Conv"]
    groups = sorted(n.fields["number_groups"].i for n in convs if "number_groups" in n.fields)
    assert groups == [8, 8]
    assert any(list(n.fields["padding"].i_list.val) == [1, 1] for n in convs if "padding" in n.fields)
    pads = [n for n in meta.graphs[0].nodes if n.operation == "Pad"]
    assert len(pads) == 1  # the asymmetric ZeroPadding2D stays a Pad node
    assert all(n.fields["inputs_orders"].ref == "orders_N+C_+CK" for n in convs)
    assert "orders_N+C_+CK" in meta.referenced_data
