"""INT8 calibration on ONNX Runtime, the trtpipe calibration table, and TensorRT's legacy cache text.

``calibrate`` runs ``onnxruntime.quantization``'s calibrators over the fp32 ONNX model and returns
the **calibration table** (a plain dict, written as JSON by the caller)::

    {"format": "trtpipe-calibration/1", "algorithm": "entropy", "params": {...},
     "tensors": {"<onnx tensor name>": {"min": -1.5, "max": 2.0, "scale": 0.015748...}},
     "samples": 64}

``scale`` is the symmetric int8 scale ``amax / 127`` (``amax = max(|min|, |max|)``), computed in
float32 so that it survives the trip through TensorRT's hex cache bit-exactly.

``to_trt_cache`` / ``parse_trt_cache`` write and read TensorRT's (<= 10.x) calibration cache
text: a ``TRT-<version>-<Algo>`` header line, then ``<tensor>: <8 hex digits>`` lines where the
hex digits are the big-endian IEEE-754 float32 bits of the scale.

Heavy frameworks (onnx, onnxruntime) are imported inside functions only.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import re
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from trtpipe.backends._imports import require
from trtpipe.errors import ConfigError, InvalidArtifact

log = logging.getLogger(__name__)

TABLE_FORMAT = "trtpipe-calibration/1"
ALGORITHMS = ("entropy", "minmax", "percentile")

#: trtpipe algorithm -> TensorRT calibrator name used in the cache header. "percentile" maps to
#: the legacy calibrator because that is TensorRT's quantile-based one (IInt8LegacyCalibrator).
TRT_ALGORITHMS = {
    "entropy": "EntropyCalibration2",
    "minmax": "MinMaxCalibration",
    "percentile": "LegacyCalibration",
}
_TRT_TO_ALGO = {v: k for k, v in TRT_ALGORITHMS.items()}
# The first-generation entropy calibrator writes its own header; accept it when reading.
_TRT_TO_ALGO["EntropyCalibration"] = "entropy"

_HEADER_RE = re.compile(r"^TRT-(?P<version>[0-9A-Za-z.]+)-(?P<algo>[A-Za-z0-9]+)$")
_LINE_RE = re.compile(r"^(?P<name>.+): (?P<hex>[0-9A-Fa-f]{8})$")


def int8_scale(lo: float, hi: float) -> float:
    """Symmetric int8 scale ``max(|lo|, |hi|) / 127``, rounded to float32 (TensorRT stores fp32)."""
    amax = np.float32(max(abs(lo), abs(hi)))
    return float(np.float32(amax / np.float32(127.0)))


def calibrate(onnx_path: Path, data: dict[str, np.ndarray], *, algorithm: str,
              batch_size: int = 8, max_batches: int | None = None, percentile: float = 99.999,
              num_bins: int | None = None) -> dict[str, Any]:
    """Calibrate every float activation tensor of ``onnx_path`` on ``data``; return the table.

    ``data`` maps each model input name to a stacked array (samples first). Batches are taken
    in order (no shuffling) so the same data always gives the same table; shuffle upstream.
    ``num_bins`` (histogram methods) defaults to ONNX Runtime's: 128 for entropy, 2048 for
    percentile. ``percentile`` is used by the percentile algorithm only.
    """
    onnx_path = Path(onnx_path)
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"unknown calibration algorithm {algorithm!r}",
                          hint=f"use one of: {', '.join(ALGORITHMS)}")
    if batch_size < 1:
        raise ConfigError(f"calibration batch_size must be >= 1, got {batch_size}")
    if max_batches is not None and max_batches < 1:
        raise ConfigError(f"calibration max_batches must be >= 1 or null, got {max_batches}")
    if algorithm == "percentile" and not 0.0 < percentile <= 100.0:
        raise ConfigError(f"calibration percentile must be in (0, 100], got {percentile}")
    if num_bins is not None and num_bins < 2:
        raise ConfigError(f"calibration num_bins must be >= 2, got {num_bins}")

    inputs = _model_inputs(onnx_path)
    feed, n_samples, batch = _check_data(onnx_path, inputs, data, batch_size)
    n_batches = math.ceil(n_samples / batch)
    if max_batches is not None:
        n_batches = min(n_batches, max_batches)
    used = min(n_samples, n_batches * batch)

    q = require("onnxruntime.quantization")
    method, extra, params = _method(q, algorithm, percentile, num_bins)
    params.update({"batch_size": batch, "max_batches": max_batches})

    with tempfile.TemporaryDirectory(prefix="trtpipe-calib-") as tmp, _quiet():
        try:
            calibrator = q.create_calibrator(
                onnx_path, None, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                calibrate_method=method, extra_options=extra)
        except Exception as exc:  # ORT raises bare exceptions for unusable models
            raise InvalidArtifact(f"{onnx_path}: ONNX Runtime cannot prepare this model for "
                                  f"calibration: {_first_line(exc)}",
                                  hint="check that the model runs on ONNX Runtime CPU first",
                                  path=str(onnx_path)) from exc
        try:
            # One collect_data call per batch: histogram calibrators otherwise hold every
            # intermediate tensor of every batch in memory at once.
            for start in range(0, used, batch):
                one = {k: v[start:start + batch] for k, v in feed.items()}
                calibrator.collect_data(_Reader([one]))
            ranges = calibrator.compute_data()
        except Exception as exc:
            raise InvalidArtifact(f"{onnx_path}: calibration run failed: {_first_line(exc)}",
                                  hint="check the calibration data matches the model inputs "
                                       "(shape, dtype, preprocessing)",
                                  path=str(onnx_path)) from exc
        finally:
            calibrator = None  # release the ORT session before the temp dir goes away

    tensors: dict[str, dict[str, float]] = {}
    for name in sorted(ranges.keys()):
        lo_arr, hi_arr = ranges[name].range_value
        # Per-tensor calibration: ORT returns scalars or 1-element arrays.
        lo = float(np.min(np.asarray(lo_arr, dtype=np.float32)))
        hi = float(np.max(np.asarray(hi_arr, dtype=np.float32)))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise InvalidArtifact(f"{onnx_path}: tensor {name!r} has a non-finite calibrated "
                                  f"range [{lo}, {hi}]",
                                  hint="the model produces inf/NaN on the calibration data",
                                  path=str(onnx_path), node=name)
        tensors[name] = {"min": lo, "max": hi, "scale": int8_scale(lo, hi)}
    zero = [n for n, t in tensors.items() if t["scale"] == 0.0]
    if zero:
        # Constant-zero tensors get scale 0, which TensorRT builds reject; usually bad data.
        log.warning("%s: %d of %d tensors were all-zero during calibration (scale 0), e.g. %s",
                    onnx_path, len(zero), len(tensors), zero[:3])
    return {"format": TABLE_FORMAT, "algorithm": algorithm, "params": params,
            "tensors": tensors, "samples": used}


def check_table(table: Any, where: str = "calibration table") -> dict[str, Any]:
    """Validate a calibration table dict; raise ``InvalidArtifact`` naming the first problem."""
    if not isinstance(table, dict) or table.get("format") != TABLE_FORMAT:
        found = table.get("format") if isinstance(table, dict) else type(table).__name__
        raise InvalidArtifact(f"{where}: expected format {TABLE_FORMAT!r}, found {found!r}",
                              hint="regenerate it with trtpipe's calibrate step")
    tensors = table.get("tensors")
    if not isinstance(tensors, dict) or not tensors:
        raise InvalidArtifact(f"{where}: 'tensors' must be a non-empty mapping",
                              hint="regenerate it with trtpipe's calibrate step")
    for name, entry in tensors.items():
        ok = isinstance(entry, dict) and all(
            isinstance(entry.get(k), (int, float)) and math.isfinite(entry[k])
            for k in ("min", "max", "scale"))
        if not ok or entry["min"] > entry["max"]:
            raise InvalidArtifact(f"{where}: tensor {name!r}: expected finite numbers min <= max "
                                  f"and scale, found {entry!r}",
                                  hint="regenerate it with trtpipe's calibrate step", node=name)
    return table


def to_trt_cache(table: dict[str, Any], *, trt_version: str = "8600",
                 algorithm: str | None = None) -> bytes:
    """Render ``table`` as TensorRT legacy calibration-cache bytes (header + one line per tensor).

    ``algorithm`` overrides the table's algorithm for the header (``entropy`` ->
    ``EntropyCalibration2``, ``minmax`` -> ``MinMaxCalibration``, ``percentile`` ->
    ``LegacyCalibration``). Tensor names must be those of the fp32 ONNX model TensorRT parses.
    """
    check_table(table)
    algo = algorithm or table.get("algorithm")
    if algo not in TRT_ALGORITHMS:
        raise ConfigError(f"no TensorRT calibrator for algorithm {algo!r}",
                          hint=f"use one of: {', '.join(TRT_ALGORITHMS)}")
    if not re.fullmatch(r"[0-9A-Za-z.]+", trt_version):
        raise ConfigError(f"invalid TensorRT version tag {trt_version!r} for the cache header",
                          hint="use TensorRT's numeric version, e.g. 8600 for 8.6.0")
    lines = [f"TRT-{trt_version}-{TRT_ALGORITHMS[algo]}"]
    for name, entry in table["tensors"].items():
        if "\n" in name or "\r" in name:
            raise InvalidArtifact(f"tensor name {name!r} contains a line break; it cannot be "
                                  "written to a TensorRT cache", node=name)
        bits = struct.pack(">f", float(entry["scale"])).hex()
        lines.append(f"{name}: {bits}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def parse_trt_cache(data: bytes, *, source: str = "calibration cache") -> dict[str, Any]:
    """Parse TensorRT legacy calibration-cache bytes into ``{"version", "algorithm", "scales"}``.

    ``algorithm`` is trtpipe's name (``entropy``/``minmax``/``percentile``) when the header's
    calibrator is known, otherwise TensorRT's name as written.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArtifact(f"{source}: not a text calibration cache ({exc})",
                              hint="TensorRT's legacy cache is UTF-8 text starting with TRT-",
                              path=source) from exc
    lines = text.splitlines()
    if not lines:
        raise InvalidArtifact(f"{source}: empty calibration cache", path=source,
                              hint="expected a 'TRT-<version>-<Calibrator>' header line")
    m = _HEADER_RE.match(lines[0].strip())
    if not m:
        raise InvalidArtifact(f"{source}:1: expected header 'TRT-<version>-<Calibrator>', "
                              f"found {lines[0][:80]!r}", path=source,
                              hint="is this a TensorRT calibration cache (legacy text format)?")
    scales: dict[str, float] = {}
    for lineno, raw in enumerate(lines[1:], start=2):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        lm = _LINE_RE.match(line)
        if not lm:
            raise InvalidArtifact(f"{source}:{lineno}: expected '<tensor>: <8 hex digits>', "
                                  f"found {line[:80]!r}", path=source,
                                  hint="the cache is corrupt or truncated; regenerate it")
        name = lm.group("name")
        if name in scales:
            raise InvalidArtifact(f"{source}:{lineno}: tensor {name!r} listed twice", path=source,
                                  node=name, hint="the cache is corrupt; regenerate it")
        value = struct.unpack(">f", bytes.fromhex(lm.group("hex")))[0]
        if not math.isfinite(value) or value < 0:
            raise InvalidArtifact(f"{source}:{lineno}: tensor {name!r} has invalid scale {value}",
                                  path=source, node=name, hint="scales must be finite and >= 0")
        scales[name] = value
    algo = m.group("algo")
    return {"version": m.group("version"), "algorithm": _TRT_TO_ALGO.get(algo, algo),
            "scales": scales}


# --- helpers ---------------------------------------------------------------------------------


class _Reader:
    """Minimal ``CalibrationDataReader`` (duck-typed: ORT only calls ``get_next``)."""

    def __init__(self, batches: list[dict[str, np.ndarray]]) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def _method(q: Any, algorithm: str, percentile: float,
            num_bins: int | None) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """ORT calibration method, its extra_options and the params recorded in the table."""
    cm = q.CalibrationMethod
    if algorithm == "minmax":
        return cm.MinMax, {"symmetric": False}, {"symmetric": False}
    if algorithm == "entropy":
        bins = num_bins or 128
        return (cm.Entropy, {"num_bins": bins, "num_quantized_bins": 128},
                {"num_bins": bins, "num_quantized_bins": 128})
    bins = num_bins or 2048
    # Symmetric (|x| histogram) percentile matches TensorRT's amax-based int8 scales.
    return (cm.Percentile, {"num_bins": bins, "percentile": percentile, "symmetric": True},
            {"num_bins": bins, "percentile": percentile, "symmetric": True})


def _model_inputs(onnx_path: Path) -> list[tuple[str, Any, list[int | None]]]:
    """(name, numpy dtype, dims) of the real graph inputs (initializers excluded)."""
    onnx = require("onnx")
    if not onnx_path.is_file():
        raise InvalidArtifact(f"{onnx_path}: ONNX model not found", path=str(onnx_path),
                              hint="run the onnx stage first or fix the path")
    try:
        model = onnx.load_model(str(onnx_path), load_external_data=False)
    except Exception as exc:
        raise InvalidArtifact(f"{onnx_path}: not a readable ONNX model ({_first_line(exc)})",
                              path=str(onnx_path), hint="re-export the model") from exc
    from trtpipe.backends.onnx import graph_inputs

    return [(i["name"], np.dtype(i["dtype"]).type, i["shape"]) for i in graph_inputs(model)]


def _check_data(onnx_path: Path, inputs: list[tuple[str, Any, list[int | None]]],
                data: dict[str, np.ndarray], batch_size: int) -> tuple[dict[str, np.ndarray], int, int]:
    """Validate ``data`` against the model inputs; return (feed, sample count, batch size)."""
    names = [n for n, _, _ in inputs]
    missing = [n for n in names if n not in data]
    extra = [n for n in data if n not in names]
    if missing or extra:
        raise InvalidArtifact(f"{onnx_path}: calibration data inputs {sorted(data)} do not match "
                              f"model inputs {names}"
                              + (f" (missing {missing})" if missing else "")
                              + (f" (unexpected {extra})" if extra else ""),
                              path=str(onnx_path), hint="name calibration arrays after the "
                              "model's input names (see the signature JSON)")
    feed: dict[str, np.ndarray] = {}
    counts = set()
    batch = batch_size
    for name, dtype, dims in inputs:
        arr = np.asarray(data[name])
        if arr.ndim != len(dims) or any(d is not None and d != s
                                        for d, s in zip(dims[1:], arr.shape[1:], strict=False)):
            shown = ["N" if d is None else d for d in dims]
            raise InvalidArtifact(f"{onnx_path}: calibration input {name!r}: expected shape "
                                  f"{shown} (samples first), found {list(arr.shape)}",
                                  path=str(onnx_path), node=name,
                                  hint="preprocess calibration data exactly like inference data")
        if dtype is not None and arr.dtype != dtype:
            same_kind = np.issubdtype(arr.dtype, np.floating) == np.issubdtype(dtype, np.floating)
            if not same_kind:
                raise InvalidArtifact(f"{onnx_path}: calibration input {name!r}: expected dtype "
                                      f"{np.dtype(dtype).name}, found {arr.dtype.name}",
                                      path=str(onnx_path), node=name,
                                      hint="convert the data to the model's input dtype")
            arr = arr.astype(dtype)
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            raise InvalidArtifact(f"{onnx_path}: calibration input {name!r} contains NaN/inf",
                                  path=str(onnx_path), node=name, hint="clean the calibration data")
        if dims and dims[0] is not None:
            batch = min(batch, dims[0])  # a fixed batch dimension caps the calibration batch
        counts.add(arr.shape[0] if arr.ndim else 1)
        feed[name] = np.ascontiguousarray(arr)
    if len(counts) != 1:
        raise InvalidArtifact(f"{onnx_path}: calibration inputs have different sample counts "
                              f"{ {n: feed[n].shape[0] for n in feed} }", path=str(onnx_path),
                              hint="every input array needs the same number of samples")
    n = counts.pop()
    if n < 1:
        raise InvalidArtifact(f"{onnx_path}: calibration data is empty", path=str(onnx_path),
                              hint="provide at least one calibration sample")
    for name, _, dims in inputs:
        if dims and dims[0] is not None and n % dims[0]:
            raise InvalidArtifact(f"{onnx_path}: input {name!r} has fixed batch {dims[0]} but "
                                  f"{n} calibration samples are not a multiple of it",
                                  path=str(onnx_path), node=name,
                                  hint=f"use a multiple of {dims[0]} samples")
    return feed, n, batch


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Send ORT's calibration ``print`` chatter to the log instead of the console."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield
    if buf.getvalue().strip():
        log.debug("onnxruntime calibration output:\n%s", buf.getvalue().rstrip())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
