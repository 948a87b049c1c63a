"""Fixtures for the TF / tf2onnx / ONNX Runtime backend tests: tiny real models made on the fly.

The tiny CNN is written as a builder file (the same text is exec'd here to get the reference Keras
model), frozen once per session, converted once and built once, so each test file stays fast.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[2]

#: A builder with every layer type the SSD model uses, but 16x16 input and two small outputs.
TINY_BUILDER = '''
def build(seed=0):
    import keras  # type: ignore[import-untyped]
    import numpy as np
    L = keras.layers
    image = keras.Input((16, 16, 3), name="image")
    x = L.Conv2D(4, 3, strides=2, padding="same", use_bias=False)(image)
    x = L.BatchNormalization()(x)
    x = L.ReLU(max_value=6.0)(x)
    x = L.ZeroPadding2D(((0, 1), (0, 1)))(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="valid")(x)
    x = L.Conv2D(6, 1)(x)
    cls = L.Reshape((-1, 3))(L.Conv2D(6, 1)(x))
    scores = L.Softmax(name="scores")(cls)
    boxes = L.Reshape((-1, 4), name="boxes")(L.Conv2D(8, 1)(x))
    model = keras.Model(image, [scores, boxes])
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.3, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype("float32"))
    return model


def not_a_model():
    return 42
'''


def make_tiny_model(seed: int = 0) -> Any:
    """The Keras model the tiny builder returns for ``seed`` (reference for numeric checks)."""
    import keras  # type: ignore[import-untyped]

    namespace: dict[str, Any] = {}
    exec(compile(TINY_BUILDER, "tiny_builder.py", "exec"), namespace)  # noqa: S102 - our own text
    keras.utils.set_random_seed(seed)
    return namespace["build"](seed=seed)


def images(batch: int, size: int = 16, seed: int = 1) -> np.ndarray:
    """Deterministic float32 NHWC test images in [0, 1)."""
    return np.random.default_rng(seed).random((batch, size, size, 3), dtype=np.float32)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A base_dir holding ``builders/tiny.py``."""
    base = tmp_path_factory.mktemp("tiny")
    (base / "builders").mkdir()
    (base / "builders" / "tiny.py").write_bytes(TINY_BUILDER.encode())
    return base


@pytest.fixture(scope="session")
def tiny_frozen(tiny_dir: Path) -> tuple[Path, dict[str, Any]]:
    """(frozen .pb, signature) of the tiny builder with seed 0."""
    from trtpipe.backends import tf as tfb

    pb = tiny_dir / "tiny.pb"
    signature = tfb.freeze("builders/tiny.py:build", pb, base_dir=tiny_dir, seed=0)
    return pb, signature


@pytest.fixture(scope="session")
def tiny_onnx(tiny_frozen: tuple[Path, dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    """(ONNX path, conversion info) of the tiny frozen graph."""
    from trtpipe.backends import onnx as onnxb

    pb, signature = tiny_frozen
    out = pb.with_suffix(".onnx")
    info = onnxb.tf_to_onnx(pb, signature, out, opset=17)
    return out, info


@pytest.fixture(scope="session")
def tiny_engine(tiny_onnx: tuple[Path, dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    """(engine path, build report) for the tiny model, max_batch 8."""
    from trtpipe.backends import onnxruntime as ortb

    onnx_path, _ = tiny_onnx
    out = onnx_path.with_suffix(".engine")
    report = ortb.build(onnx_path, out, max_batch=8, metadata={"trtpipe.precision": "fp32"})
    return out, report


@pytest.fixture(scope="session")
def tf_reference(tiny_frozen: tuple[Path, dict[str, Any]]) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """Run the tiny frozen graph on TensorFlow: the reference every other backend must match."""
    from trtpipe.backends import tf as tfb

    pb, signature = tiny_frozen
    runner = tfb.TFRunner(pb, [o["name"] for o in signature["outputs"]])
    return lambda x: runner.run({"image": x})


@pytest.fixture(scope="session")
def helpers() -> Any:
    """Module-level helpers of this conftest for the test files (conftest is not importable)."""
    import types

    return types.SimpleNamespace(make_tiny_model=make_tiny_model, images=images, repo=REPO)
