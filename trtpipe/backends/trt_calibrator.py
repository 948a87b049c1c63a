"""Calibration data feeding for TensorRT implicit-quantization calibrators (8.6 / 10.x).

Two layers, so that what can be checked without a GPU is checked everywhere:

* ``CalibrationBatches`` -- pure numpy: slices a calibration set into batches of the right
  size, in the network's input order, layout and dtype, as C-contiguous host buffers, with a
  batch-count limit and an explicit policy for the last partial batch.
* ``make_calibrator`` -- wraps it into ``trt.IInt8EntropyCalibrator2`` / ``IInt8MinMaxCalibrator``
  / ``IInt8LegacyCalibrator`` (constructed only where TensorRT exists), copying each batch to
  the GPU with Polygraphy's CUDA wrapper and reading/writing the calibration cache file in
  binary mode, atomically.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from trtpipe.errors import ConfigError, InvalidArtifact
from trtpipe.fsutil import atomic_write_bytes

if TYPE_CHECKING:
    import tensorrt as trt

Partial = Literal["drop", "wrap", "keep"]


def layout_permutation(source: str, target: str) -> tuple[int, ...]:
    """Axis permutation turning an array in ``source`` layout into ``target`` (e.g. NHWC->NCHW)."""
    src, dst = source.upper(), target.upper()
    if sorted(src) != sorted(dst) or len(set(src)) != len(src):
        raise ConfigError(f"calibration layout {source!r} -> {target!r}: not a permutation of the "
                          "same axes", hint="use layouts like ('NHWC', 'NCHW')")
    return tuple(src.index(axis) for axis in dst)


class CalibrationBatches:
    """Batches of calibration data ready for a TensorRT calibrator, as numpy host buffers.

    ``data`` maps each network input name to an array of samples along axis 0 (all inputs
    have the same number of samples). ``input_order`` is the order TensorRT asks for inputs
    (every name must be in ``data``; extra names in ``data`` are an error, since they suggest
    the wrong data set). ``layouts`` maps an input to ``(data_layout, network_layout)`` such
    as ``("NHWC", "NCHW")``; ``dtypes`` maps an input to the network dtype (cast per batch).
    ``max_batches`` limits how many batches are produced. ``partial`` decides the last,
    incomplete batch: ``"drop"`` it (default: explicit-batch calibration runs at one fixed
    shape), ``"wrap"`` it around with samples from the start, or ``"keep"`` it short.
    """

    def __init__(self, data: Mapping[str, np.ndarray], batch_size: int, input_order: Sequence[str],
                 *, layouts: Mapping[str, tuple[str, str]] | None = None,
                 dtypes: Mapping[str, Any] | None = None, max_batches: int | None = None,
                 partial: Partial = "drop") -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"calibration batch_size must be a positive integer, found {batch_size!r}")
        if max_batches is not None and (not isinstance(max_batches, int) or max_batches < 1):
            raise ConfigError(f"calibration max_batches must be a positive integer, found {max_batches!r}")
        if partial not in ("drop", "wrap", "keep"):
            raise ConfigError(f"calibration partial={partial!r} is not drop, wrap or keep")
        order = list(input_order)
        missing = [n for n in order if n not in data]
        extra = [n for n in data if n not in order]
        if missing or extra:
            raise InvalidArtifact(
                f"calibration data inputs {sorted(data)} do not match the network inputs {order}"
                + (f": missing {missing}" if missing else "") + (f": unexpected {extra}" if extra else ""),
                hint="the calibration set must hold exactly one array per network input")
        self.batch_size = batch_size
        self.input_order = order
        self.partial: Partial = partial
        self._arrays: dict[str, np.ndarray] = {}
        self._perms: dict[str, tuple[int, ...]] = {}
        self._dtypes: dict[str, np.dtype[Any]] = {}
        counts = set()
        for name in order:
            arr = np.asarray(data[name])
            if arr.ndim < 1:
                raise InvalidArtifact(f"calibration input {name!r} is a scalar; expected samples "
                                      "along axis 0")
            counts.add(arr.shape[0])
            self._arrays[name] = arr
            src_dst = (layouts or {}).get(name)
            if src_dst is not None:
                perm = layout_permutation(*src_dst)
                if len(perm) != arr.ndim:
                    raise InvalidArtifact(f"calibration input {name!r} has {arr.ndim} dims but layout "
                                          f"{src_dst[0]} has {len(perm)}")
                self._perms[name] = perm
            self._dtypes[name] = np.dtype((dtypes or {}).get(name, arr.dtype))
        if len(counts) != 1:
            sizes = {n: int(a.shape[0]) for n, a in self._arrays.items()}
            raise InvalidArtifact(f"calibration inputs have different sample counts: {sizes}",
                                  hint="every input needs one entry per calibration sample")
        self.num_samples = int(counts.pop())
        full, rest = divmod(self.num_samples, batch_size)
        count = full + (1 if rest and partial != "drop" else 0)
        if max_batches is not None:
            count = min(count, max_batches)
        if count == 0:
            raise InvalidArtifact(
                f"calibration set has {self.num_samples} samples, fewer than one batch of {batch_size}",
                hint="add calibration samples, lower calibrator.batch_size, or use partial='wrap'")
        self.num_batches = count

    def __len__(self) -> int:
        return self.num_batches

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Network-layout shape of a full batch of each input."""
        out = {}
        for name in self.input_order:
            shape = (self.batch_size, *self._arrays[name].shape[1:])
            perm = self._perms.get(name)
            out[name] = tuple(shape[i] for i in perm) if perm else shape
        return out

    def batch(self, index: int) -> dict[str, np.ndarray]:
        """Batch ``index`` as ``{input: C-contiguous array}`` in network layout and dtype."""
        if not 0 <= index < self.num_batches:
            raise IndexError(f"calibration batch {index} out of range 0..{self.num_batches - 1}")
        start = index * self.batch_size
        stop = start + self.batch_size
        idx = np.arange(start, stop)
        if stop > self.num_samples:
            if self.partial == "keep":
                idx = np.arange(start, self.num_samples)
            else:  # wrap: reuse samples from the start rather than zero padding (which skews ranges)
                idx = idx % self.num_samples
        out: dict[str, np.ndarray] = {}
        for name in self.input_order:
            part = self._arrays[name][idx]
            perm = self._perms.get(name)
            if perm:
                part = part.transpose(perm)
            # TensorRT reads raw device memory: the host buffer must be dense, C-ordered, exact dtype.
            out[name] = np.ascontiguousarray(part, dtype=self._dtypes[name])
        return out

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(self.num_batches):
            yield self.batch(i)


def read_cache_file(path: Path | None) -> bytes | None:
    """Bytes of the calibration cache at ``path``, or ``None`` when unset, missing or empty."""
    if path is None or not Path(path).is_file():
        return None
    with open(path, "rb") as fh:
        data = fh.read()
    return data or None


def write_cache_file(path: Path | None, data: bytes) -> None:
    """Write the calibration cache atomically (no reader ever sees half a table)."""
    if path is not None:
        atomic_write_bytes(path, bytes(data))


def make_calibrator(kind: str, batches: CalibrationBatches, cache_path: Path | None, *,
                    implicit_batch: bool = False, quantile: float | None = None,
                    regression_cutoff: float | None = None) -> trt.IInt8Calibrator:
    """Build a TensorRT calibrator of ``kind`` (EntropyCalibrator2|MinMaxCalibrator|LegacyCalibrator).

    Requires real TensorRT (``BackendUnavailable`` otherwise) and a CUDA device. If the cache
    file exists and is non-empty TensorRT skips calibration and uses it, so the caller (the
    stage) must key the cache by network and calibration data.
    """
    from trtpipe.backends.tensorrt import ensure_tensorrt

    ensure_tensorrt()
    import tensorrt as trt
    from polygraphy import cuda

    bases: dict[str, type[trt.IInt8Calibrator]] = {
        "EntropyCalibrator2": trt.IInt8EntropyCalibrator2,
        "MinMaxCalibrator": trt.IInt8MinMaxCalibrator,
        "LegacyCalibrator": trt.IInt8LegacyCalibrator,
    }
    if kind not in bases:
        raise ConfigError(f"calibrator kind {kind!r} is not one of {', '.join(bases)}")
    base = bases[kind]
    cache_file = None if cache_path is None else Path(cache_path)

    class _Calibrator(base):  # type: ignore[valid-type,misc]  # base chosen at run time
        def __init__(self) -> None:
            base.__init__(self)  # pybind11 trampolines need the base constructed explicitly
            self._iter = iter(batches)
            self._device: dict[str, Any] = {}
            self.batches_fed = 0

        def get_batch_size(self) -> int:
            # Explicit-batch networks take the batch from the data shape; TRT expects 1 then.
            return batches.batch_size if implicit_batch else 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            try:
                host = next(self._iter)
            except StopIteration:
                return None  # no more data: TensorRT finishes calibration
            ptrs = []
            for name in names:
                if name not in host:
                    raise InvalidArtifact(f"TensorRT asked for calibration input {name!r}, the "
                                          f"calibration data has {sorted(host)}")
                arr = host[name]
                dev = self._device.get(name)
                if dev is None:
                    dev = self._device[name] = cuda.DeviceArray(shape=arr.shape, dtype=arr.dtype)
                dev.resize(arr.shape)
                dev.copy_from(arr)
                ptrs.append(int(dev.ptr))
            self.batches_fed += 1
            return ptrs

        def read_calibration_cache(self) -> bytes | None:
            return read_cache_file(cache_file)

        def write_calibration_cache(self, cache: Any) -> None:
            write_cache_file(cache_file, bytes(memoryview(cache)))

        # LegacyCalibrator only: the quantile / regression parameters TRT asks for.
        def get_quantile(self) -> float:
            return 0.9999 if quantile is None else quantile

        def get_regression_cutoff(self) -> float:
            return 1.0 if regression_cutoff is None else regression_cutoff

        def read_histogram_cache(self, length: int) -> None:
            return None

        def write_histogram_cache(self, ptr: int, length: int) -> None:
            return None

        def free(self) -> None:
            for dev in self._device.values():
                dev.free()
            self._device.clear()

    calibrator: trt.IInt8Calibrator = _Calibrator()
    return calibrator
