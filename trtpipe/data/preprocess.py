"""Declarative, deterministic, pure-numpy image preprocessing.

A spec (one per model input, from the pipeline file) is applied in this fixed order::

    resize {height, width, method: bilinear|nearest}   half-pixel centres, like tf.image.resize
    crop {height, width}                               centred
    channel_order: RGB | BGR                           decoded images are RGB; BGR reverses them
    dtype                                              arithmetic is done in float32 ...
    scale                                              x * scale
    mean / std                                         (x - mean) / std, per channel (output order)
    layout: NHWC | NCHW                                HWC or CHW per image
    ... and the result is cast to ``dtype`` last (float32 unless told otherwise; integer dtypes
    are rounded to nearest and must fit, e.g. ``uint8`` for detectors that take raw pixels).

Every key is optional; an empty spec only converts to float32. No TensorFlow is involved, so the
same bytes come out on every machine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trtpipe.errors import ConfigError

__all__ = ["PREPROCESS_KEYS", "preprocess", "resize"]

#: Keys a preprocess spec may contain.
PREPROCESS_KEYS: frozenset[str] = frozenset(
    {"resize", "crop", "channel_order", "dtype", "scale", "mean", "std", "layout"})
_RESIZE_METHODS = ("bilinear", "nearest")
_HINT = "see the `preprocess` section of the pipeline schema"


def preprocess(image_hwc: np.ndarray, spec: Mapping[str, Any] | None, *,
               where: str | None = None) -> np.ndarray:
    """Apply ``spec`` to one ``(H, W, C)`` (or ``(H, W)``) image; return HWC or CHW per ``layout``.

    ``where`` (e.g. the image's file name) prefixes error messages. Raises ``ConfigError`` for an
    invalid spec or one that does not fit the image (crop larger than the image, BGR on a gray
    image, mean with the wrong number of channels, values that overflow an integer ``dtype``).
    """
    spec = dict(spec or {})
    prefix = f"{where}: " if where else ""
    unknown = sorted(set(spec) - PREPROCESS_KEYS)
    if unknown:
        raise ConfigError(f"{prefix}unknown preprocess key(s) {unknown}",
                          hint=f"allowed keys: {sorted(PREPROCESS_KEYS)}")
    img = np.asarray(image_hwc)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or 0 in img.shape:
        raise ConfigError(f"{prefix}preprocess expects an (H, W, C) image, got shape {img.shape}")
    if not (np.issubdtype(img.dtype, np.integer) or np.issubdtype(img.dtype, np.floating)):
        raise ConfigError(f"{prefix}preprocess expects numeric pixels, got dtype {img.dtype}")

    if spec.get("resize") is not None:
        height, width = _size(spec["resize"], "resize", prefix)
        method = spec["resize"].get("method", "bilinear")
        if method not in _RESIZE_METHODS:
            raise ConfigError(f"{prefix}preprocess.resize.method must be one of "
                              f"{list(_RESIZE_METHODS)}, got {method!r}", hint=_HINT)
        img = resize(img, height, width, method)
    if spec.get("crop") is not None:
        img = _center_crop(img, *_size(spec["crop"], "crop", prefix), prefix)
    img = _channel_order(img, spec.get("channel_order", "RGB"), prefix)

    target = _dtype(spec.get("dtype") or "float32", prefix)
    out = img.astype(np.float32)
    scale = spec.get("scale")
    if scale is not None:
        out *= np.float32(_number(scale, "scale", prefix))
    channels = out.shape[2]
    if spec.get("mean") is not None:
        out -= _per_channel(spec["mean"], "mean", channels, prefix)
    if spec.get("std") is not None:
        std = _per_channel(spec["std"], "std", channels, prefix)
        if np.any(std == 0):
            raise ConfigError(f"{prefix}preprocess.std contains 0", hint="std divides the pixels")
        out /= std

    layout = spec.get("layout", "NHWC")
    if layout == "NCHW":
        out = out.transpose(2, 0, 1)
    elif layout != "NHWC":
        raise ConfigError(f"{prefix}preprocess.layout must be NHWC or NCHW, got {layout!r}",
                          hint=_HINT)
    return np.ascontiguousarray(_cast(out, target, prefix))


def resize(image: np.ndarray, height: int, width: int, method: str = "bilinear") -> np.ndarray:
    """Resize an ``(H, W, C)`` image with half-pixel centres (TensorFlow 2 / OpenCV convention).

    Bilinear returns float32 (no antialiasing, like ``tf.image.resize`` by default); nearest keeps
    the input dtype. Resizing to the current size returns the image unchanged.
    """
    in_h, in_w = image.shape[:2]
    if (in_h, in_w) == (height, width):
        return image
    if method == "nearest":
        return image[_nearest_index(in_h, height)][:, _nearest_index(in_w, width)]
    src = image.astype(np.float32, copy=False)
    x0, x1, fx = _linear_index(in_w, width)
    y0, y1, fy = _linear_index(in_h, height)
    # Horizontal then vertical interpolation, the same operation order as TensorFlow's kernel.
    left, right = src[:, x0], src[:, x1]
    rows = left + (right - left) * fx[None, :, None]
    top, bottom = rows[y0], rows[y1]
    return top + (bottom - top) * fy[:, None, None]


def _linear_index(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    centre = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    centre = np.clip(centre, 0.0, n_in - 1)
    lo = np.floor(centre).astype(np.intp)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (centre - lo).astype(np.float32)


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    centre = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out)
    return np.minimum(np.floor(centre).astype(np.intp), n_in - 1)


def _center_crop(img: np.ndarray, height: int, width: int, prefix: str) -> np.ndarray:
    in_h, in_w = img.shape[:2]
    if height > in_h or width > in_w:
        raise ConfigError(f"{prefix}preprocess.crop {height}x{width} is larger than the "
                          f"{in_h}x{in_w} image", hint="add or enlarge preprocess.resize, "
                          "which runs before crop")
    top, left = (in_h - height) // 2, (in_w - width) // 2
    return img[top:top + height, left:left + width]


def _channel_order(img: np.ndarray, order: Any, prefix: str) -> np.ndarray:
    if order == "RGB":
        return img
    if order != "BGR":
        raise ConfigError(f"{prefix}preprocess.channel_order must be RGB or BGR, got {order!r}",
                          hint=_HINT)
    if img.shape[2] not in (3, 4):
        raise ConfigError(f"{prefix}preprocess.channel_order BGR needs a colour image, this one "
                          f"has {img.shape[2]} channel(s)", hint="drop channel_order for gray "
                          "images, or use RGB (PPM) images")
    order_idx = [2, 1, 0] + ([3] if img.shape[2] == 4 else [])  # alpha stays last
    return img[:, :, order_idx]


def _size(value: Any, key: str, prefix: str) -> tuple[int, int]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{prefix}preprocess.{key} must be a mapping with height and width, "
                          f"got {value!r}", hint=_HINT)
    dims = []
    for name in ("height", "width"):
        dim = value.get(name)
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ConfigError(f"{prefix}preprocess.{key}.{name} must be a positive integer, "
                              f"got {dim!r}", hint=_HINT)
        dims.append(int(dim))
    return dims[0], dims[1]


def _number(value: Any, key: str, prefix: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ConfigError(f"{prefix}preprocess.{key} must be a number, got {value!r}", hint=_HINT)
    if not np.isfinite(value):
        raise ConfigError(f"{prefix}preprocess.{key} must be finite, got {value!r}", hint=_HINT)
    return float(value)


def _per_channel(value: Any, key: str, channels: int, prefix: str) -> np.ndarray:
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    numbers = [_number(v, key, prefix) for v in items]
    if len(numbers) not in (1, channels):
        raise ConfigError(f"{prefix}preprocess.{key} has {len(numbers)} values but the image has "
                          f"{channels} channel(s)", hint=f"give one {key} value or one per channel")
    return np.asarray(numbers, dtype=np.float32)


def _dtype(value: Any, prefix: str) -> np.dtype:
    try:
        dtype = np.dtype(value)
    except TypeError:
        dtype = None
    if dtype is None or not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise ConfigError(f"{prefix}preprocess.dtype must be a numeric dtype name such as "
                          f"float32, float16 or uint8, got {value!r}", hint=_HINT)
    return dtype


def _cast(out: np.ndarray, dtype: np.dtype, prefix: str) -> np.ndarray:
    if np.issubdtype(dtype, np.floating):
        return out.astype(dtype, copy=False)
    rounded = np.rint(out)
    info = np.iinfo(dtype)
    lo, hi = float(rounded.min()), float(rounded.max())
    if lo < info.min or hi > info.max:
        raise ConfigError(f"{prefix}preprocessed values span [{lo}, {hi}], outside {dtype} "
                          f"[{info.min}, {info.max}]", hint="remove scale/mean/std for integer "
                          "inputs, or use a float dtype")
    return rounded.astype(dtype)
