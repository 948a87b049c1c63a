"""A tiny two-headed CNN exported to ONNX with tf2onnx, for the calibration and precision tests."""

from __future__ import annotations

from pathlib import Path

import pytest


def tiny_cnn_onnx(path: Path, *, extra_conv: bool = False) -> Path:
    """A 16x16x3 conv net with an SSD-like two-headed output (scores, boxes), via tf2onnx.

    Shared by the calibration and precision tests; ``extra_conv`` adds a 16-channel conv.
    """
    tf = pytest.importorskip("tensorflow")
    tf2onnx = pytest.importorskip("tf2onnx")
    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((16, 16, 3), name="image")
    x = tf.keras.layers.Conv2D(8, 3, padding="same")(inp)
    x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.ReLU(6.0)(x)
    x = tf.keras.layers.Add()([x, tf.keras.layers.DepthwiseConv2D(3, padding="same")(x)])
    x = tf.keras.layers.MaxPooling2D()(x)
    if extra_conv:
        x = tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    scores = tf.keras.layers.Softmax()(tf.keras.layers.Reshape((-1, 5))(
        tf.keras.layers.Conv2D(5, 1)(x)))
    boxes = tf.keras.layers.Reshape((-1, 4))(tf.keras.layers.Conv2D(4, 1)(x))
    model = tf.keras.Model(inp, [scores, boxes])
    spec = (tf.TensorSpec((None, 16, 16, 3), tf.float32, name="image"),)

    @tf.function(input_signature=spec)
    def fn(image: object) -> dict[str, object]:
        s, b = model(image, training=False)
        return {"scores": s, "boxes": b}

    tf2onnx.convert.from_function(fn, input_signature=spec, opset=17, output_path=str(path))
    return path
