"""The default model: a small, seeded SSD-style single-shot detector (no downloads).

Referenced by the default pipeline as ``configs/models/ssd.py:build_model``. It deliberately uses
only layer types that every trtpipe converter handles (the UFF writer included): Input, Conv2D,
BatchNormalization, ReLU(max_value=6), ZeroPadding2D, DepthwiseConv2D, Activation(sigmoid),
Reshape, Concatenate and Softmax. Boxes are decoded in the graph (sigmoid centre/size, then a
fixed 1x1 convolution to corners), so detection metrics (IoU) are meaningful on its outputs. It is kept tiny (~0.1 M parameters) so the whole default pipeline (fp32/fp16/int8 builds,
verification and benchmarks) runs in minutes on two CPU cores.

Shapes (batch N is dynamic)::

    image  [N, 300, 300, 3] float32
    scores [N, 1383, num_classes] float32  (softmax over classes)
    boxes  [N, 1383, 4] float32            (decoded corners x1, y1, x2, y2 in image units 0..1)

1383 = 19*19*3 anchors on the stride-16 feature map + 10*10*3 on the stride-32 one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # keras is imported lazily so that importing this module stays cheap
    import keras  # type: ignore[import-untyped]

INPUT_SIZE = 300
ANCHORS_PER_CELL = 3
#: (pointwise channels, stride, padding before the 3x3 depthwise conv) for each backbone block.
#: Explicit ZeroPadding2D + "valid" depthwise conv gives the exact SSD feature map sizes.
_BLOCKS: tuple[tuple[int, int, tuple[tuple[int, int], tuple[int, int]]], ...] = (
    (16, 2, ((0, 1), (0, 1))),  # 150 -> 75
    (32, 2, ((1, 1), (1, 1))),  # 75 -> 38
    (48, 2, ((0, 1), (0, 1))),  # 38 -> 19
    (64, 1, ((1, 1), (1, 1))),  # 19 -> 19   (feature map 1)
    (96, 2, ((1, 1), (1, 1))),  # 19 -> 10   (feature map 2)
)


def build_model(num_classes: int = 21, seed: int = 0) -> keras.Model:
    """Build the seeded SSD-style detector (inputs ``image``; outputs ``scores``, ``boxes``).

    The same ``(num_classes, seed)`` always gives the same weights. BatchNormalization layers get
    non-trivial moving statistics drawn from a seeded RNG, so freezing really has to fold them.
    """
    import keras  # type: ignore[import-untyped]
    import numpy as np

    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (background + at least one class), got {num_classes}")
    keras.utils.set_random_seed(seed)
    layers = keras.layers

    image = keras.Input(shape=(INPUT_SIZE, INPUT_SIZE, 3), dtype="float32", name="image")
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(image)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(max_value=6.0, name="stem_relu")(x)

    features = []
    for i, (channels, stride, pad) in enumerate(_BLOCKS):
        x = layers.ZeroPadding2D(pad, name=f"b{i}_pad")(x)
        x = layers.DepthwiseConv2D(3, strides=stride, padding="valid", use_bias=False, name=f"b{i}_dw")(x)
        x = layers.BatchNormalization(name=f"b{i}_dw_bn")(x)
        x = layers.ReLU(max_value=6.0, name=f"b{i}_dw_relu")(x)
        x = layers.Conv2D(channels, 1, use_bias=False, name=f"b{i}_pw")(x)
        x = layers.BatchNormalization(name=f"b{i}_pw_bn")(x)
        x = layers.ReLU(max_value=6.0, name=f"b{i}_pw_relu")(x)
        if i >= len(_BLOCKS) - 2:
            features.append(x)

    class_maps, box_maps = [], []
    for j, fmap in enumerate(features):
        cls = layers.Conv2D(ANCHORS_PER_CELL * num_classes, 3, padding="same", name=f"head{j}_cls")(fmap)
        box = layers.Conv2D(ANCHORS_PER_CELL * 4, 3, padding="same", name=f"head{j}_box")(fmap)
        box = layers.Activation("sigmoid", name=f"head{j}_box_sigmoid")(box)  # (cx, cy, w, h) in 0..1
        box = layers.Conv2D(ANCHORS_PER_CELL * 4, 1, name=f"head{j}_box_decode", trainable=False)(box)
        class_maps.append(layers.Reshape((-1, num_classes), name=f"head{j}_cls_reshape")(cls))
        box_maps.append(layers.Reshape((-1, 4), name=f"head{j}_box_reshape")(box))

    logits = layers.Concatenate(axis=1, name="cls_concat")(class_maps)
    scores = layers.Softmax(axis=-1, name="scores")(logits)
    boxes = layers.Concatenate(axis=1, name="boxes")(box_maps)
    model = keras.Model(inputs=image, outputs=[scores, boxes], name="ssd_tiny")

    _randomize_batchnorm(model, np.random.default_rng(seed))
    for j in range(len(features)):
        _set_corner_decoder(model.get_layer(f"head{j}_box_decode"))
    return model


def _set_corner_decoder(layer: Any) -> None:
    """Fixed 1x1 conv weights mapping each anchor's (cx, cy, w, h) to (x1, y1, x2, y2)."""
    import numpy as np

    per_anchor = np.array([[1, 0, 1, 0],          # rows: cx, cy, w, h; columns: x1, y1, x2, y2
                           [0, 1, 0, 1],
                           [-0.5, 0, 0.5, 0],
                           [0, -0.5, 0, 0.5]], dtype="float32")
    kernel = np.kron(np.eye(ANCHORS_PER_CELL, dtype="float32"), per_anchor)[None, None]
    layer.set_weights([kernel, np.zeros(kernel.shape[-1], dtype="float32")])


def _randomize_batchnorm(model: Any, rng: Any) -> None:
    """Give every BatchNormalization layer plausible, non-identity statistics (seeded)."""
    import keras  # type: ignore[import-untyped]

    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        (channels,) = layer.gamma.shape
        layer.gamma.assign(rng.uniform(0.8, 1.2, channels).astype("float32"))
        layer.beta.assign(rng.normal(0.0, 0.1, channels).astype("float32"))
        layer.moving_mean.assign(rng.normal(0.0, 0.2, channels).astype("float32"))
        layer.moving_variance.assign(rng.uniform(0.5, 1.5, channels).astype("float32"))
