"""Raw TF ops (beyond what Keras layers emit) through TF -> UFF -> ONNX -> ONNX Runtime vs TF."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from uff_helpers import ort_run

from trtpipe.backends.uff import format as fmt
from trtpipe.backends.uff.reader import uff_to_onnx
from trtpipe.backends.uff.writer import graphdef_to_uff

tf = pytest.importorskip("tensorflow")


def _freeze(fn: Any, shape: tuple[int | None, ...]) -> tuple[Any, bytes, list[str]]:
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    concrete = tf.function(fn).get_concrete_function(tf.TensorSpec(shape, tf.float32, name="x"))
    frozen = convert_variables_to_constants_v2(concrete)
    names = [t.name.split(":")[0] for t in frozen.outputs]
    return frozen, frozen.graph.as_graph_def().SerializeToString(), names


def _check(fn: Any, shape: tuple[int | None, ...], batch_shape: tuple[int, ...],
           expect_ops: set[str]) -> None:
    frozen, gd, names = _freeze(fn, shape)
    uff = graphdef_to_uff(gd)
    ops = {n.operation for n in fmt.parse(uff).graphs[0].nodes}
    assert expect_ops <= ops, expect_ops - ops
    model = uff_to_onnx(uff)
    assert [o.name for o in model.graph.output] == names
    x = np.random.default_rng(3).normal(size=batch_shape).astype(np.float32)
    want = [np.asarray(t) for t in frozen(tf.constant(x))]
    got = ort_run(model, {"x": x})
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_elementwise_unary_activation_ops() -> None:
    def fn(x: Any) -> Any:
        a = tf.nn.selu(x) + tf.nn.softplus(x) - tf.nn.softsign(x)
        b = tf.maximum(a, tf.nn.relu6(x)) / (tf.minimum(tf.abs(x), 2.0) + 1.0)
        c = tf.exp(-tf.square(x)) * tf.sqrt(tf.abs(x) + 1.0) + tf.math.rsqrt(x * x + 1.0)
        d = tf.math.log(tf.abs(x) + 1.0) + tf.sin(x) * tf.cos(x) + tf.floor(x) - tf.math.ceil(x)
        e = tf.nn.elu(x) + tf.sigmoid(x) * tf.tanh(x) + tf.pow(tf.abs(x) + 1.0, 2.0)
        return [b, c, d, e]
    _check(fn, (None, 5, 3), (2, 5, 3), {"Binary", "Unary", "Activation"})


def test_fused_batch_norm_matmul_and_reductions() -> None:
    rng = np.random.default_rng(0)
    scale, offset = (tf.constant(rng.normal(size=4).astype(np.float32)) for _ in range(2))
    mean = tf.constant(rng.normal(size=4).astype(np.float32))
    var = tf.constant(rng.uniform(0.5, 2, 4).astype(np.float32))
    w = tf.constant(rng.normal(size=(3, 4)).astype(np.float32))

    def fn(x: Any) -> Any:
        bn, _, _ = tf.compat.v1.nn.fused_batch_norm(x, scale, offset, mean, var, epsilon=1e-3,
                                                    is_training=False)
        r = [tf.reduce_mean(bn, axis=[1, 2]), tf.reduce_sum(bn, axis=1, keepdims=True),
             tf.reduce_max(bn, axis=-1), tf.reduce_min(bn, axis=2), tf.reduce_prod(bn, axis=3)]
        fc = tf.matmul(r[0], w, transpose_b=True)
        return r + [fc, tf.argmax(bn, axis=3)]
    _check(fn, (None, 6, 6, 4), (2, 6, 6, 4), {"BatchNorm", "Reduce", "FullyConnected", "ArgMax"})


def test_shape_ops() -> None:
    params = tf.constant(np.arange(40, dtype=np.float32).reshape(10, 4))

    def fn(x: Any) -> Any:
        t = tf.transpose(x, [0, 2, 1, 3])
        s = t[:, 1:7:2, ::-1, 1]
        sq = tf.squeeze(tf.expand_dims(s, 1), axis=[1])
        st = tf.stack([sq, sq * 2.0], axis=1)
        cat = tf.concat([st, st], axis=-1)
        padded = tf.pad(x, [[0, 0], [1, 2], [0, 1], [0, 0]])
        g = tf.gather(params, [3, 1, 1], axis=0) + tf.gather(params, [0, 2], axis=1)[0:3, 0:1]
        return [cat, padded, g, tf.identity(tf.reshape(x, [-1, 8, 12]), name="named_out"),
                tf.shape(x)]
    _check(fn, (None, 8, 6, 2), (3, 8, 6, 2),
           {"Transpose", "StridedSlice", "Squeeze", "ExpandDims", "Stack", "Concat", "Pad",
            "GatherV2", "Reshape", "Identity", "Shape"})
