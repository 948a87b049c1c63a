#!/usr/bin/env python3
"""Train the example digit classifier and write its artifacts next to this script.

Data: scikit-learn's bundled ``load_digits`` (1797 8x8 gray digits, 0..16; no download).
A stratified, seeded 75/25 split gives the training set and the held-out set.

Outputs (committed):

* ``model.keras``  -- Keras model, input ``image`` float32 ``(N, 8, 8, 1)`` in [0, 1],
  output ``probs`` float32 ``(N, 10)`` (softmax).
* ``heldout.npz``  -- ``image`` (held-out inputs, model-ready) and ``labels`` (int64).
* ``calib.npz``    -- ``image``: 64 training samples for INT8 calibration (never held-out ones).

    .venv/bin/python configs/examples/classifier/train.py     # ~10 s on 2 CPU cores
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 0
INPUT_NAME = "image"
OUTPUT_NAME = "probs"
CALIB_SAMPLES = 64
EPOCHS = 40


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(x_train, y_train, x_heldout, y_heldout)``; images scaled to [0, 1], NHWC."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    labels = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(images, labels, test_size=0.25,
                                              random_state=SEED, stratify=labels)
    return x_tr, y_tr, x_te, y_te


def build_model():  # -> keras.Model (keras imported lazily)
    """A small conv net: ~10k parameters, about 98 % on the held-out digits."""
    import keras

    inputs = keras.Input(shape=(8, 8, 1), name=INPUT_NAME)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(10)(x)
    outputs = keras.layers.Softmax(name=OUTPUT_NAME)(x)
    return keras.Model(inputs, outputs, name="digits")


def _save_npz(path: Path, **arrays: Any) -> None:
    sys.path.insert(0, str(HERE.parents[2]))
    from trtpipe.fsutil import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def main() -> int:
    """Train, evaluate, save; print the held-out accuracy."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    x_tr, y_tr, x_te, y_te = load_split()
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"])
    model.fit(x_tr, y_tr, batch_size=32, epochs=EPOCHS, verbose=0, shuffle=True)
    probs = model.predict(x_te, batch_size=256, verbose=0)
    accuracy = float((probs.argmax(axis=1) == y_te).mean())

    tmp = HERE / ".model.keras.tmp.keras"  # keras insists on the suffix; rename makes it atomic
    model.save(tmp)
    os.replace(tmp, HERE / "model.keras")
    _save_npz(HERE / "heldout.npz", **{INPUT_NAME: x_te, "labels": y_te})
    rng = np.random.default_rng(SEED)
    calib = x_tr[np.sort(rng.choice(len(x_tr), CALIB_SAMPLES, replace=False))]
    _save_npz(HERE / "calib.npz", **{INPUT_NAME: calib})
    print(f"held-out accuracy (fp32, Keras): {accuracy:.4f} on {len(y_te)} samples; "
          f"{model.count_params()} parameters")
    return 0 if accuracy >= 0.95 else 1


if __name__ == "__main__":
    raise SystemExit(main())
