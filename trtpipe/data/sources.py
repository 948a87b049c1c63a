"""Sample sets for calibration, verification and benchmarking: one stacked array per model input.

A data spec (already schema-validated by the caller) names a ``source``:

* ``random`` -- uniform samples in ``[low, high)`` for every model input, from ``seed``;
* a glob (``configs/data/calib/*.ppm``), a directory (its ``.ppm .pgm .pnm .png .jpg .jpeg``
  files) or a single image -- decoded, preprocessed (``preprocess``) and stacked for one input
  (``input``, or the model's only input);
* ``samples.npz`` -- arrays keyed by model input name, fed as they are (model-ready tensors;
  ``preprocess`` does not apply); extra arrays such as ``labels`` are ignored;
* ``samples.npy`` -- one array for the model's single input, fed as it is.

Relative paths are resolved against ``base_dir`` (the pipeline file's directory). Files are taken
in sorted path order; ``shuffle: true`` permutes them (or the npz/npy rows) with ``seed``; then at
most ``count`` samples are kept. Before anything is returned, every array is checked against the
model signature (rank, static dims, channels, dtype) so a wrong shape never reaches an engine.
Axis 0 is the sample axis; consumers split it into the engine's batch size.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trtpipe.data.files import _kind, source_files
from trtpipe.data.images import read_image
from trtpipe.data.preprocess import preprocess
from trtpipe.errors import ConfigError, InvalidArtifact

__all__ = ["check_inputs", "describe_source", "load_inputs", "source_files"]

_DEFAULT_RANDOM_COUNT = 8


def load_inputs(data_spec: Mapping[str, Any], inputs: Sequence[Mapping[str, Any]], *,
                base_dir: Path) -> dict[str, np.ndarray]:
    """Load the samples ``data_spec`` describes as ``{input name: (N, ...) array}``.

    ``inputs`` is the model signature's input list (``{"name", "dtype", "shape"}``, ``None`` for
    dynamic dims). Raises ``ConfigError`` when the data does not fit the signature or the source
    does not exist, and ``InvalidArtifact`` for a corrupt file; both name the file and the input.
    """
    if not inputs:
        raise ConfigError("the model signature has no inputs; nothing to feed")
    source = data_spec.get("source", "random")
    count = _count(data_spec)
    if source == "random":
        return _random(data_spec, inputs, count or _DEFAULT_RANDOM_COUNT)
    files = source_files(data_spec, base_dir)
    base_dir = Path(base_dir)
    if _kind(str(source), base_dir) in ("npz", "npy"):
        arrays = _load_array_file(files[0], inputs, data_spec, base_dir)
        shown = _show(files[0], base_dir)
        checked = check_inputs(arrays, inputs, origin=shown)  # also proves equal sample counts
        keep = _order(len(next(iter(checked.values()))), data_spec)[:count]
        return {name: np.ascontiguousarray(arr[keep]) for name, arr in checked.items()}
    chosen = [files[i] for i in _order(len(files), data_spec)[:count]]
    return _load_images(chosen, data_spec, inputs, base_dir)


def describe_source(data_spec: Mapping[str, Any], base_dir: Path | None = None) -> str:
    """One human-readable line about the source, e.g. ``8 of 14 images from configs/...``."""
    source = data_spec.get("source", "random")
    count = data_spec.get("count")
    if source == "random":
        return (f"random uniform [{data_spec.get('low', 0.0)}, {data_spec.get('high', 1.0)}), "
                f"seed {data_spec.get('seed', 0)}, {count or _DEFAULT_RANDOM_COUNT} samples")
    order = f", shuffled with seed {data_spec.get('seed', 0)}" if data_spec.get("shuffle") else ""
    if base_dir is None:
        return f"{'up to ' + str(count) if count else 'all'} samples from {source}{order}"
    try:
        files = source_files(data_spec, base_dir)
    except ConfigError:
        return f"{source} (missing)"
    if _kind(str(source), Path(base_dir)) in ("npz", "npy"):
        return f"{'up to ' + str(count) if count else 'all'} samples from {source}{order}"
    used = min(count, len(files)) if count else len(files)
    return f"{used} of {len(files)} image(s) from {source}{order}"


def check_inputs(arrays: Mapping[str, np.ndarray], inputs: Sequence[Mapping[str, Any]], *,
                 origin: str) -> dict[str, np.ndarray]:
    """Check ``arrays`` against the signature ``inputs`` and cast them to its dtypes.

    Checks presence, a common sample count, rank, every static dim after the sample axis, dtype
    castability (same kind, integers within range) and finiteness. ``origin`` names the data
    (file or ``random``) in errors. Returns the arrays in signature order.
    """
    missing = [inp["name"] for inp in inputs if inp["name"] not in arrays]
    if missing:
        raise ConfigError(f"{origin}: no data for model input(s) {missing} "
                          f"(has: {sorted(arrays)})", hint="provide one array per model input, "
                          "keyed by the input name from the signature (.npz)")
    out: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for inp in inputs:
        name, shape = inp["name"], list(inp["shape"])
        arr = np.asarray(arrays[name])
        what = f"{origin}: input '{name}'"
        if arr.ndim != len(shape) or arr.ndim == 0:
            raise ConfigError(f"{what} expects rank {len(shape)} (shape {_fmt(shape)}), "
                              f"got shape {tuple(arr.shape)}",
                              hint="axis 0 is the sample axis; reshape the data to the model input")
        for axis, (want, got) in enumerate(zip(shape, arr.shape, strict=True)):
            if axis and want is not None and want != got:
                raise ConfigError(f"{what} expects shape {_fmt(shape)}, got {tuple(arr.shape)} "
                                  f"(axis {axis}: expected {want}, found {got})",
                                  hint=_shape_hint(shape, axis))
        counts[name] = arr.shape[0]
        out[name] = _cast(arr, inp.get("dtype", "float32"), what)
    if len(set(counts.values())) > 1:
        raise ConfigError(f"{origin}: inputs have different sample counts {counts}",
                          hint="every input needs the same number of samples along axis 0")
    if 0 in counts.values():
        raise ConfigError(f"{origin}: no samples (axis 0 has length 0)")
    return out


# --------------------------------------------------------------------------- helpers


def _count(data_spec: Mapping[str, Any]) -> int | None:
    count = data_spec.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ConfigError(f"data count must be a positive integer, got {count!r}")
    return count


def _order(n: int, data_spec: Mapping[str, Any]) -> list[int]:
    if data_spec.get("shuffle"):
        return [int(i) for i in np.random.default_rng(data_spec.get("seed", 0)).permutation(n)]
    return list(range(n))


def _show(path: Path, base_dir: Path) -> str:
    """The path as the user wrote it (relative to the pipeline's directory) when possible."""
    try:
        return path.relative_to(base_dir).as_posix()
    except ValueError:
        return str(path)


def _fmt(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"


def _first_mismatch(want: Sequence[int | None], got: Sequence[int]) -> int | None:
    """Index of the first static dim of ``want`` that ``got`` does not match (rank counts too)."""
    if len(want) != len(got):
        return min(len(want), len(got))
    return next((i for i, (w, g) in enumerate(zip(want, got, strict=True))
                 if w is not None and w != g), None)


def _shape_hint(shape: Sequence[int | None], axis: int) -> str:
    if len(shape) == 4 and axis in (1, 2, 3):
        nhwc = shape[3] in (1, 3, 4)
        h, w = (shape[1], shape[2]) if nhwc else (shape[2], shape[3])
        if h is not None and w is not None:
            return (f"add preprocess.resize {{height: {h}, width: {w}}} (and layout: "
                    f"{'NHWC' if nhwc else 'NCHW'}), or regenerate the data at that size")
    return "regenerate the data with the model's input shape"


def _cast(arr: np.ndarray, dtype_name: str, what: str) -> np.ndarray:
    try:
        target = np.dtype(dtype_name)
    except TypeError:
        raise ConfigError(f"{what}: signature dtype {dtype_name!r} is not a numpy dtype") from None
    if arr.dtype == target:
        result = arr
    elif np.can_cast(arr.dtype, target, "same_kind") or (arr.dtype.kind in "iu"
                                                          and target.kind in "iu"):
        # Integer to integer (signed or not) is fine as long as every value fits.
        if target.kind in "iu" and arr.size:
            info = np.iinfo(target)
            if arr.min() < info.min or arr.max() > info.max:
                raise ConfigError(f"{what} expects {target}, values span "
                                  f"[{arr.min()}, {arr.max()}] which do not fit",
                                  hint=f"write the data as {target}")
        result = arr.astype(target)
    else:
        hint = (f"set preprocess.dtype: {target}" if arr.dtype.kind == "f" and target.kind in "iu"
                else f"write the data as {target}")
        raise ConfigError(f"{what} expects dtype {target}, got {arr.dtype} (not safely castable)",
                          hint=hint)
    if result.dtype.kind == "f" and result.size and not np.isfinite(result).all():
        bad = int(np.size(result) - np.count_nonzero(np.isfinite(result)))
        raise InvalidArtifact(f"{what}: {bad} value(s) are NaN or infinite",
                              hint="clean the sample data; non-finite inputs make calibration and "
                              "comparisons meaningless")
    return np.ascontiguousarray(result)


def _random(data_spec: Mapping[str, Any], inputs: Sequence[Mapping[str, Any]],
            count: int) -> dict[str, np.ndarray]:
    low, high = float(data_spec.get("low", 0.0)), float(data_spec.get("high", 1.0))
    if not low <= high:
        raise ConfigError(f"random data: low ({low}) must not exceed high ({high})")
    rng = np.random.default_rng(data_spec.get("seed", 0))
    arrays: dict[str, np.ndarray] = {}
    for inp in inputs:  # signature order, so a seed always yields the same arrays
        shape = list(inp["shape"])
        dynamic = [axis for axis, d in enumerate(shape) if d is None and axis]
        if not shape or dynamic:
            raise ConfigError(f"random data: input '{inp['name']}' has shape {_fmt(shape)}; "
                              f"random samples need static dims after the sample axis",
                              hint="use image files or an .npz of real samples for this input")
        size = (count, *shape[1:])
        dtype = np.dtype(inp.get("dtype", "float32"))
        if dtype.kind == "b":
            arrays[inp["name"]] = rng.random(size) < 0.5
        elif dtype.kind in "iu":
            arrays[inp["name"]] = rng.integers(int(np.ceil(low)), int(np.floor(high)), size,
                                               endpoint=True).astype(dtype)
        else:
            arrays[inp["name"]] = rng.uniform(low, high, size).astype(dtype)
    return check_inputs(arrays, inputs, origin="random data")


def _load_array_file(path: Path, inputs: Sequence[Mapping[str, Any]],
                     data_spec: Mapping[str, Any], base_dir: Path) -> dict[str, np.ndarray]:
    shown = _show(path, base_dir)
    try:
        with open(path, "rb") as fh:
            loaded = np.load(fh, allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                with loaded:
                    arrays = {key: loaded[key] for key in loaded.files}
            else:
                arrays = {"": loaded}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise InvalidArtifact(f"{shown}: not a readable {path.suffix} file ({exc})",
                              hint="write it with numpy.save/numpy.savez (no pickled objects)",
                              path=str(path)) from None
    if "" in arrays:  # .npy: one array for the single input
        wanted = data_spec.get("input")
        names = [inp["name"] for inp in inputs]
        if len(names) != 1:
            raise ConfigError(f"{shown}: an .npy file feeds one input, the model has {names}",
                              hint="use an .npz with one array per input name")
        if wanted not in (None, names[0]):
            raise ConfigError(f"{shown}: data input {wanted!r} is not a model input {names}")
        arrays = {names[0]: arrays[""]}
    if not arrays:
        raise InvalidArtifact(f"{shown}: the archive holds no arrays", path=str(path))
    for name, arr in arrays.items():
        if arr.ndim == 0:
            raise ConfigError(f"{shown}: array {name!r} is a scalar; axis 0 must be the samples")
    return arrays


def _image_target(data_spec: Mapping[str, Any], inputs: Sequence[Mapping[str, Any]],
                  origin: str) -> Mapping[str, Any]:
    names = [inp["name"] for inp in inputs]
    wanted = data_spec.get("input")
    if wanted is None:
        if len(names) != 1:
            raise ConfigError(f"{origin}: the model has inputs {names}; images feed only one",
                              hint="set data.input to the image input, and use an .npz for "
                              "models with several inputs")
        wanted = names[0]
    if wanted not in names:
        raise ConfigError(f"{origin}: data input {wanted!r} is not a model input {names}",
                          hint="set data.input to one of the signature's input names")
    if len(names) != 1:
        others = [n for n in names if n != wanted]
        raise ConfigError(f"{origin}: images feed input {wanted!r} only; model inputs {others} "
                          "would get no data", hint="use an .npz with one array per input name")
    return inputs[0]


def _expected_channels(shape: Sequence[int | None], layout: str) -> int | None:
    if len(shape) == 3:  # (N, H, W): a gray image with its channel axis dropped
        return 1
    if len(shape) == 4:
        return shape[1] if layout == "NCHW" else shape[3]
    return None


def _load_images(files: list[Path], data_spec: Mapping[str, Any],
                 inputs: Sequence[Mapping[str, Any]], base_dir: Path) -> dict[str, np.ndarray]:
    target = _image_target(data_spec, inputs, _show(files[0], base_dir))
    name, shape = target["name"], list(target["shape"])
    spec = dict(data_spec.get("preprocess") or {})
    layout = spec.get("layout", "NHWC")
    if len(shape) not in (3, 4):
        raise ConfigError(f"{_show(files[0], base_dir)}: input '{name}' has shape {_fmt(shape)}; "
                          "images feed rank-4 (N,H,W,C or N,C,H,W) or rank-3 (N,H,W) inputs",
                          hint="use an .npz of model-ready samples for this input")
    channels = _expected_channels(shape, layout)
    samples: list[np.ndarray] = []
    for path in files:
        shown = _show(path, base_dir)
        image = read_image(path)
        if channels is not None and image.shape[2] != channels:
            kind = {1: " (gray)", 3: " (RGB)", 4: " (RGBA)"}.get(channels, "")
            raise ConfigError(f"{shown}: input '{name}' expects {channels} channels{kind}, "
                              f"image has {image.shape[2]}",
                              hint="convert the images (P6 PPM for RGB, P5 PGM for gray), or "
                              f"check preprocess.layout ({layout})")
        sample = preprocess(image, spec, where=shown)
        if len(shape) == 3:
            sample = sample[0] if layout == "NCHW" else sample[:, :, 0]
        want = tuple(shape[1:])
        bad_axis = _first_mismatch(want, sample.shape)
        if bad_axis is not None:
            raise ConfigError(f"{shown}: input '{name}' expects per-sample shape {_fmt(want)}, "
                              f"the preprocessed image has {tuple(sample.shape)}",
                              hint=_shape_hint(shape, bad_axis + 1))
        if samples and sample.shape != samples[0].shape:
            raise ConfigError(f"{shown}: preprocessed shape {sample.shape} differs from "
                              f"{_show(files[0], base_dir)}'s {samples[0].shape}",
                              hint="add preprocess.resize so every image has the same size")
        samples.append(sample)
    return check_inputs({name: np.stack(samples)}, [target], origin=_show(files[0], base_dir)
                        if len(files) == 1 else f"{data_spec.get('source')}")
