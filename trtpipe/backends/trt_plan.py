"""Derive a TensorRT build plan from one YAML ``build`` intent, per TensorRT API era.

This module is PURE: it never imports TensorRT (nor any other framework) and touches no file.
It turns the validated, default-filled intent of a ``build`` stage into a frozen ``BuildPlan``
that says exactly what ``trtpipe.backends.tensorrt.build_engine`` will do on a given TensorRT
version. Because the plan is plain data it is tested everywhere, recorded beside the engine,
and explains every deprecation, fallback or ignored key in ``plan.warnings``.

The three eras (facts: ``shared/design/tensorrt-versions.md``):

* ``"8.6"`` -- UFF parser with implicit batch (``max_batch_size``); ONNX with EXPLICIT_BATCH;
  builder precision flags FP16/INT8 with implicit-quantization calibrators.
* ``"10"``  -- ONNX only, explicit batch is the only mode (no creation flag); a UFF model must
  first be converted to ONNX by trtpipe's UFF reader; calibrators deprecated from 10.1.
* ``"11"``  -- strongly typed only: no precision flags, no calibrators; fp16 / int8 come from
  models produced by trtpipe's precision stages (fp16-converted ONNX, Q/DQ ONNX).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from trtpipe.errors import BackendUnavailable, ConfigError

Era = Literal["8.6", "10", "11"]

#: calibrator algorithm (YAML) -> TensorRT calibrator class suffix (``trt.IInt8<kind>``)
CALIBRATOR_KINDS: dict[str, str] = {
    "entropy": "EntropyCalibrator2",
    "minmax": "MinMaxCalibrator",
    "percentile": "LegacyCalibrator",
}
HARDWARE_LEVELS: dict[str, str] = {
    "none": "NONE",
    "ampere_plus": "AMPERE_PLUS",
    "same_compute_capability": "SAME_COMPUTE_CAPABILITY",
}
PRECISIONS = ("fp32", "fp16", "int8", "mixed")
_FP16_MIN_CC = (5, 3)
_INT8_MIN_CC = (6, 1)


def version_tuple(version: str) -> tuple[int, ...]:
    """``"10.8.0.43"`` -> ``(10, 8, 0, 43)``; trailing non-numeric parts (``"8.6.1.post1"``) are dropped."""
    parts: list[int] = []
    for piece in str(version).strip().split("."):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
    if not parts:
        raise ConfigError(f"TensorRT version {version!r} is not a version number",
                          hint="expected something like '8.6.1', '10.8.0' or '11.1.0'")
    return tuple(parts)


def detect_era(version: str) -> Era:
    """Map a TensorRT version string to its API era: ``"8.6"``, ``"10"`` or ``"11"``.

    Versions below 8.6 (and the limited 9.x releases) are rejected with ``BackendUnavailable``.
    Majors above 11 are treated as the 11 API (strongly typed), the newest trtpipe knows.
    """
    vt = version_tuple(version) + (0,)
    major, minor = vt[0], vt[1]
    if (major, minor) < (8, 6):
        raise BackendUnavailable(
            f"TensorRT {version} is not supported (trtpipe supports 8.6, 10.x and 11.x)",
            hint="install TensorRT 8.6 (last release with UFF) or TensorRT >= 10; "
                 "or use backend: onnxruntime")
    if major == 8:
        return "8.6"
    if major == 9:
        raise BackendUnavailable(
            f"TensorRT {version} (9.x) was a limited release that trtpipe does not support",
            hint="install TensorRT 8.6 or TensorRT >= 10")
    if major == 10:
        return "10"
    return "11"


@dataclass(frozen=True)
class ProfileShape:
    """min/opt/max shapes of one network input in one optimization profile."""

    input: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class UffInput:
    """A UFF input registration: name, CHW/HWC shape WITHOUT the batch dim, and its order."""

    name: str
    shape: tuple[int, ...]
    order: Literal["NCHW", "NHWC"]


@dataclass(frozen=True)
class CalibratorPlan:
    """Implicit-quantization calibrator (8.6 / 10.x only)."""

    kind: str                      # EntropyCalibrator2 | MinMaxCalibrator | LegacyCalibrator
    algorithm: str                 # the YAML name
    batch_size: int
    max_batches: int | None  # None: every batch the data source yields
    cache: str | None              # calibration cache (TRT text table) path
    deprecated: bool               # True on 10.1+ (superseded by explicit Q/DQ quantization)
    quantile: float | None = None  # LegacyCalibrator only
    regression_cutoff: float | None = None
    #: explicit-batch networks calibrate with this profile (batch fixed to ``batch_size``)
    profile: tuple[ProfileShape, ...] = ()


@dataclass(frozen=True)
class Fallback:
    """Why the precision actually built differs from the one asked for."""

    requested: str
    used: str
    reason: str


@dataclass(frozen=True)
class BuildPlan:
    """Everything ``build_engine`` does, as data. ``to_dict()`` is JSON-serializable."""

    trt_version: str
    era: Era
    input_format: Literal["onnx", "uff"]
    #: which model file the builder parses: the given ONNX, the given UFF, the ONNX made from
    #: the UFF by trtpipe's UFF reader, or (11.x) a model from a precision stage
    model: Literal["onnx", "uff", "onnx-from-uff", "onnx-fp16", "onnx-qdq"]
    model_path: str | None          # set when the plan names a precision-stage model
    parser: Literal["onnx", "uff"]
    network_flags: tuple[str, ...]  # NetworkDefinitionCreationFlag names
    implicit_batch: bool
    max_batch_size: int | None      # builder.max_batch_size (implicit batch only)
    profiles: tuple[ProfileShape, ...]
    workspace_bytes: int | None
    workspace_api: str              # how the workspace limit is applied
    requested_precision: str
    precision: str                  # precision actually built (after any fallback)
    builder_flags: tuple[str, ...]  # BuilderFlag names to set
    strongly_typed: bool
    tf32: bool
    calibrator: CalibratorPlan | None
    plugins: tuple[str, ...]
    timing_cache: str | None
    error_on_timing_cache_miss: bool
    builder_optimization_level: int
    version_compatible: bool
    hardware_compatibility_level: str  # HardwareCompatibilityLevel member name
    uff_inputs: tuple[UffInput, ...] = ()
    uff_outputs: tuple[str, ...] = ()
    fallback: Fallback | None = None
    on_unsupported: str = "error"
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists)."""
        out: dict[str, Any] = _jsonable(dataclasses.asdict(self))
        return out


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------


def derive_plan(intent: dict[str, Any], *, trt_version: str,
                input_shapes: dict[str, list[int | None]],
                capabilities: dict[str, Any] | None = None,
                precision_models: dict[str, str] | None = None) -> BuildPlan:
    """Turn a validated ``build`` intent into the ``BuildPlan`` for TensorRT ``trt_version``.

    ``input_shapes`` maps each network input to its shape (``None`` = dynamic; only the leading
    batch dim may be dynamic). ``capabilities`` = ``{"fast_fp16", "fast_int8",
    "compute_capability": (major, minor)}`` of the target GPU, or ``None`` when unknown (then
    the check is left to build time). ``precision_models`` = ``{"fp16": path, "int8": path}``
    from trtpipe's precision stages (used on 11.x, and on 10.x for int8 without calibrator).
    Raises ``ConfigError`` for contradictory intents and ``BackendUnavailable`` when the GPU
    cannot do the precision and ``on_unsupported`` is ``error``.
    """
    era = detect_era(trt_version)
    vt = version_tuple(trt_version) + (0, 0)
    warnings: list[str] = []
    if vt[0] > 11:
        warnings.append(f"TensorRT {trt_version} is newer than trtpipe knows; using the 11.x API")
    precision_models = dict(precision_models or {})

    max_batch = _positive_int(intent.get("max_batch"), "max_batch")
    opt_batch = intent.get("opt_batch")
    opt_batch = max_batch if opt_batch is None else _positive_int(opt_batch, "opt_batch")
    if opt_batch > max_batch:
        raise ConfigError(f"build: opt_batch ({opt_batch}) is greater than max_batch ({max_batch})",
                          hint="opt_batch is the batch TensorRT tunes for; it must be <= max_batch")

    requested = str(intent.get("precision", "fp32"))
    if requested not in PRECISIONS:
        raise ConfigError(f"build: precision {requested!r} is not one of {', '.join(PRECISIONS)}")
    on_unsupported = str(intent.get("on_unsupported", "error"))
    precision, fallback = _check_capabilities(requested, era, capabilities, on_unsupported, warnings)

    input_format = str(intent.get("input_format", "onnx"))
    if input_format not in ("onnx", "uff"):
        raise ConfigError(f"build: input_format {input_format!r} is not 'onnx' or 'uff'")
    uff_inputs = tuple(UffInput(str(u["name"]), tuple(int(d) for d in u["shape"]),
                                str(u.get("order", "NCHW")).upper())  # type: ignore[arg-type]
                       for u in intent.get("uff_inputs") or [])
    uff_outputs = tuple(str(o) for o in intent.get("uff_outputs") or [])
    if input_format == "onnx" and (uff_inputs or uff_outputs):
        warnings.append("uff_inputs/uff_outputs are ignored for input_format: onnx")

    native_uff = input_format == "uff" and era == "8.6"
    if native_uff:
        _check_uff_io(uff_inputs, uff_outputs)
        model, parser = "uff", "uff"
        network_flags: tuple[str, ...] = ()
        implicit_batch, max_batch_size = True, max_batch
        profiles: tuple[ProfileShape, ...] = ()
        if opt_batch != max_batch:
            warnings.append("opt_batch is ignored for UFF on TensorRT 8.6: implicit batch tunes "
                            "for max_batch only")
    else:
        if input_format == "uff":
            # UFF and implicit batch were removed in 10.0: build from the ONNX that trtpipe's
            # UFF reader converts the UFF into (the build stage supplies that file).
            model, parser = "onnx-from-uff", "onnx"
            warnings.append(f"UFF is not supported by TensorRT {trt_version} (removed in 10.0); "
                            "building the ONNX converted from the UFF by trtpipe's UFF reader")
            shapes = input_shapes or {u.name: _uff_full_shape(u) for u in uff_inputs}
        else:
            model, parser = "onnx", "onnx"
            shapes = input_shapes
        network_flags = ("EXPLICIT_BATCH",) if era == "8.6" else ()
        implicit_batch, max_batch_size = False, None
        profiles = _profiles(shapes, 1, opt_batch, max_batch, warnings)

    model_path: str | None = None
    strongly_typed = era == "11"
    builder_flags: list[str] = []
    calibrator: CalibratorPlan | None = None
    calib_intent = intent.get("calibrator")
    wants_int8 = precision in ("int8", "mixed")
    if era == "11":
        # Strongly typed only: precision lives in the model, not in builder flags.
        model, model_path = _strongly_typed_model(precision, model, precision_models, warnings)
        if calib_intent:
            warnings.append("calibrator is ignored on TensorRT 11 (calibrators were removed); "
                            "int8 scales come from the Q/DQ model of trtpipe's precision stage")
    else:
        if precision in ("fp16", "mixed"):
            builder_flags.append("FP16")
        if wants_int8:
            builder_flags.append("INT8")
            if calib_intent:
                calibrator = _calibrator(calib_intent, era, vt, implicit_batch, max_batch,
                                         profiles, warnings)
            elif era == "10" and precision_models.get("int8") and not native_uff:
                model, model_path = "onnx-qdq", str(precision_models["int8"])
                warnings.append("no calibrator: building the Q/DQ model (explicit quantization)")
            else:
                raise ConfigError(
                    f"build: precision {precision} needs int8 scales but no calibrator is set",
                    hint="add calibrator: {algorithm: entropy, batch_size: 8, max_batches: 10} "
                         "with calibration data, or add an int8 (Q/DQ) precision stage")
        elif calib_intent:
            warnings.append(f"calibrator is ignored for precision {precision}")

    workspace = intent.get("workspace_bytes")
    workspace_bytes = None if workspace is None else _positive_int(workspace, "workspace_bytes")
    # max_workspace_size was deprecated in 8.3 and removed in 10.0; every supported era has
    # set_memory_pool_limit(WORKSPACE), which is what is used.
    workspace_api = "set_memory_pool_limit(WORKSPACE)"
    if era == "11" and workspace_bytes is not None:
        warnings.append("workspace on TensorRT 11 is still applied as the WORKSPACE memory pool "
                        "limit (an upper bound, not a reservation)")

    timing_cache = intent.get("timing_cache")
    error_on_miss = bool(intent.get("error_on_timing_cache_miss", False))
    if error_on_miss and era == "8.6":
        warnings.append("error_on_timing_cache_miss is ignored on TensorRT 8.6 "
                        "(ERROR_ON_TIMING_CACHE_MISS does not exist there)")
        error_on_miss = False
    if error_on_miss and not timing_cache:
        warnings.append("error_on_timing_cache_miss without a timing_cache: the build fails "
                        "unless a timing cache from an earlier build is fed in")

    level = intent.get("builder_optimization_level", 3)
    if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= 5:
        raise ConfigError(f"build: builder_optimization_level {level!r} is not an integer 0..5",
                          hint="3 is TensorRT's default; lower builds faster, higher may run faster")
    hw = str(intent.get("hardware_compatibility_level", "none"))
    if hw not in HARDWARE_LEVELS:
        raise ConfigError(f"build: hardware_compatibility_level {hw!r} is not one of "
                          f"{', '.join(HARDWARE_LEVELS)}")
    version_compatible = bool(intent.get("version_compatible", False))
    if native_uff and (version_compatible or hw != "none"):
        raise ConfigError("build: version_compatible / hardware_compatibility_level need an "
                          "explicit-batch network; a UFF model on TensorRT 8.6 is implicit batch",
                          hint="convert the UFF to ONNX (input_format: onnx) or drop these keys")
    if hw != "none":
        warnings.append(f"hardware_compatibility_level {hw} disables cuDNN/cuBLAS tactics and may "
                        "cost performance")
    plugins = tuple(str(p) for p in intent.get("plugins") or [])
    if plugins and version_compatible:
        warnings.append("version_compatible engines with plugins need the plugin libraries at "
                        "load time too (they are not embedded)")

    return BuildPlan(
        trt_version=str(trt_version), era=era, input_format=input_format,  # type: ignore[arg-type]
        model=model, model_path=model_path, parser=parser,  # type: ignore[arg-type]
        network_flags=network_flags, implicit_batch=implicit_batch,
        max_batch_size=max_batch_size, profiles=profiles, workspace_bytes=workspace_bytes,
        workspace_api=workspace_api, requested_precision=requested, precision=precision,
        builder_flags=tuple(builder_flags), strongly_typed=strongly_typed, tf32=False,
        calibrator=calibrator, plugins=plugins,
        timing_cache=None if timing_cache is None else str(timing_cache),
        error_on_timing_cache_miss=error_on_miss, builder_optimization_level=level,
        version_compatible=version_compatible, hardware_compatibility_level=HARDWARE_LEVELS[hw],
        uff_inputs=uff_inputs, uff_outputs=uff_outputs, fallback=fallback,
        on_unsupported=on_unsupported, warnings=tuple(warnings))


# ---------------------------------------------------------------------------------------------


def _positive_int(value: Any, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"build: {key} must be a positive integer, found {value!r}")
    return value


def _supports(prec: str, era: Era, caps: dict[str, Any]) -> tuple[bool, str]:
    """Whether the GPU described by ``caps`` runs ``prec`` (fp16/int8) fast; plus why not."""
    cc_raw = caps.get("compute_capability")
    cc = tuple(int(x) for x in cc_raw) if cc_raw is not None else None
    need = _FP16_MIN_CC if prec == "fp16" else _INT8_MIN_CC
    # On 11.x platformHasFast{Fp16,Int8} were removed: only the compute capability is asked.
    fast = False if era == "11" else bool(caps.get(f"fast_{prec}"))
    ok = fast or (cc is not None and cc >= need)
    cc_txt = "unknown" if cc is None else f"{cc[0]}.{cc[1]}"
    return ok, f"{prec} needs compute capability >= {need[0]}.{need[1]}" + (
        "" if era == "11" else f" or fast {prec}") + f"; this GPU has {cc_txt}"


def _check_capabilities(requested: str, era: Era, caps: dict[str, Any] | None,
                        on_unsupported: str, warnings: list[str]) -> tuple[str, Fallback | None]:
    if requested == "fp32":
        return "fp32", None
    if caps is None:
        warnings.append(f"GPU capabilities unknown: {requested} support is checked at build time")
        return requested, None
    needs = {"fp16": ["fp16"], "int8": ["int8"], "mixed": ["fp16", "int8"]}[requested]
    missing = [(p, why) for p in needs for ok, why in [_supports(p, era, caps)] if not ok]
    if not missing:
        return requested, None
    reason = "; ".join(why for _, why in missing)
    if on_unsupported != "fallback":
        raise BackendUnavailable(
            f"build: precision {requested} is not supported on this GPU ({reason})",
            hint="set on_unsupported: fallback to build fp32 instead, choose precision: fp32, "
                 "or build on a GPU that supports it")
    lacking = {p for p, _ in missing}
    used = "fp16" if requested == "mixed" and lacking == {"int8"} else "fp32"
    warnings.append(f"precision {requested} unsupported on this GPU ({reason}); "
                    f"falling back to {used}")
    return used, Fallback(requested=requested, used=used, reason=reason)


def _strongly_typed_model(precision: str, model: str, precision_models: dict[str, str],
                          warnings: list[str]) -> tuple[Any, str | None]:
    if precision == "fp32":
        return model, None
    keys = {"fp16": ["fp16"], "int8": ["int8"], "mixed": ["mixed", "int8"]}[precision]
    for key in keys:
        if precision_models.get(key):
            if precision == "mixed" and key == "int8":
                warnings.append("precision mixed on TensorRT 11 builds the Q/DQ model: layers "
                                "without Q/DQ run in that model's float type")
            return ("onnx-fp16" if key == "fp16" else "onnx-qdq"), str(precision_models[key])
    stage = "fp16 conversion" if precision == "fp16" else "int8 Q/DQ calibration"
    raise ConfigError(
        f"build: precision {precision} on TensorRT 11 needs the {stage} model, none was given",
        hint="TensorRT 11 is strongly typed: add the precision stage that produces "
             f"precision_models[{keys[0]!r}] before this build, or use precision: fp32")


def _calibrator(calib: dict[str, Any], era: Era, vt: tuple[int, ...], implicit_batch: bool,
                max_batch: int, profiles: tuple[ProfileShape, ...],
                warnings: list[str]) -> CalibratorPlan:
    algorithm = str(calib.get("algorithm", "entropy"))
    if algorithm not in CALIBRATOR_KINDS:
        raise ConfigError(f"build: calibrator.algorithm {algorithm!r} is not one of "
                          f"{', '.join(CALIBRATOR_KINDS)}")
    batch_size = _positive_int(calib.get("batch_size", 8), "calibrator.batch_size")
    raw_max = calib.get("max_batches")
    max_batches = None if raw_max is None else _positive_int(raw_max, "calibrator.max_batches")
    if implicit_batch and batch_size > max_batch:
        raise ConfigError(f"build: calibrator.batch_size ({batch_size}) exceeds max_batch "
                          f"({max_batch}) of an implicit-batch (UFF) network",
                          hint="lower calibrator.batch_size or raise max_batch")
    deprecated = (vt[0], vt[1]) >= (10, 1)
    if deprecated:
        warnings.append("implicit-quantization calibrators are deprecated since TensorRT 10.1 "
                        "(superseded by explicit Q/DQ quantization)")
    quantile = cutoff = None
    if algorithm == "percentile":
        quantile = float(calib.get("percentile", 99.99)) / 100.0
        cutoff = float(calib.get("regression_cutoff", 1.0))
    # Explicit batch calibrates at the calibration profile's OPT shape: pin batch to batch_size.
    calib_profile = []
    for p in profiles:
        if p.min[0] != p.max[0]:
            shape = (batch_size, *p.opt[1:])
            calib_profile.append(ProfileShape(p.input, shape, shape, shape))
        else:  # fixed batch: calibration batches must have exactly that batch
            calib_profile.append(p)
            if p.opt[0] != batch_size:
                raise ConfigError(f"build: input {p.input!r} has a fixed batch of {p.opt[0]} but "
                                  f"calibrator.batch_size is {batch_size}",
                                  hint=f"set calibrator.batch_size: {p.opt[0]}")
    cache = calib.get("cache")
    return CalibratorPlan(kind=CALIBRATOR_KINDS[algorithm], algorithm=algorithm,
                          batch_size=batch_size, max_batches=max_batches,
                          cache=None if cache is None else str(cache), deprecated=deprecated,
                          quantile=quantile, regression_cutoff=cutoff,
                          profile=() if implicit_batch else tuple(calib_profile))


def _check_uff_io(inputs: tuple[UffInput, ...], outputs: tuple[str, ...]) -> None:
    if not inputs or not outputs:
        raise ConfigError("build: input_format uff needs uff_inputs and uff_outputs",
                          hint="list each input as {name, shape (no batch), order} and the "
                               "output node names")
    for u in inputs:
        if u.order not in ("NCHW", "NHWC"):
            raise ConfigError(f"build: uff_inputs {u.name!r}: order {u.order!r} is not NCHW or NHWC")
        if not u.shape or any(d < 1 for d in u.shape):
            raise ConfigError(f"build: uff_inputs {u.name!r}: shape {list(u.shape)} must be "
                              "positive dims without the batch dim")


def _uff_full_shape(u: UffInput) -> list[int | None]:
    return [None, *u.shape]


def _profiles(shapes: dict[str, list[int | None]], min_batch: int, opt_batch: int,
              max_batch: int, warnings: list[str]) -> tuple[ProfileShape, ...]:
    if not shapes:
        raise ConfigError("build: no input shapes known for the model",
                          hint="the upstream stage's signature must list the model inputs")
    out = []
    for name, shape in shapes.items():
        if not shape:
            raise ConfigError(f"build: input {name!r} has no shape (scalar); expected a batch dim")
        rest = list(shape[1:])
        dyn = [i + 1 for i, d in enumerate(rest) if d is None or d < 0]
        if dyn:
            raise ConfigError(f"build: input {name!r} shape {shape}: dims {dyn} are dynamic; only "
                              "the leading batch dim may be",
                              hint="export the model with fixed non-batch dims")
        fixed = tuple(int(d) for d in rest)  # type: ignore[arg-type]
        batch = shape[0]
        if batch is None or batch < 0:
            lo, mid, hi = min_batch, opt_batch, max_batch
        else:
            lo = mid = hi = int(batch)
            if batch != max_batch:
                warnings.append(f"input {name!r} has a fixed batch of {batch}; max_batch "
                                f"{max_batch} does not apply to it")
        out.append(ProfileShape(name, (lo, *fixed), (mid, *fixed), (hi, *fixed)))
    return tuple(out)
