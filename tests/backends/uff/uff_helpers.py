"""Helpers for the UFF tests: freeze tiny Keras models, run TF and ONNX Runtime.

(A plain module, not conftest.py: several test folders have a conftest, so importing helpers
from "conftest" by name would be ambiguous.)"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclass
class Frozen:
    """A frozen Keras model: GraphDef bytes, the TF function to compare with, names."""

    graph_def: bytes
    func: Any
    input_name: str
    output_names: list[str]
    input_shape: tuple[int, ...]

    def tf_run(self, x: np.ndarray) -> list[np.ndarray]:
        import tensorflow as tf

        out = self.func(tf.constant(x))
        out = out if isinstance(out, (list, tuple)) else [out]
        return [np.asarray(o) for o in out]


def freeze(model: Any, input_name: str = "image") -> Frozen:
    """Freeze ``model`` the way the freeze stage does (convert_variables_to_constants_v2)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    shape = tuple(model.inputs[0].shape)
    fn = tf.function(lambda t: model(t, training=False)).get_concrete_function(
        tf.TensorSpec((None,) + shape[1:], tf.float32, name=input_name))
    frozen = convert_variables_to_constants_v2(fn)
    gd = frozen.graph.as_graph_def()
    outs = [t.name.split(":")[0] for t in frozen.outputs]
    return Frozen(gd.SerializeToString(), frozen, input_name, outs, shape[1:])


def ort_run(model_proto: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model_proto.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def randomize_bn(model: Any, seed: int = 0) -> None:
    """Give BatchNormalization layers non-trivial statistics so the test can see them."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.3, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.2, n).astype("float32"))
