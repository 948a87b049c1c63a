"""Reduced-precision ONNX models: fp16 conversion and int8 Q/DQ quantization driven by a table.

* ``to_fp16`` -- ``onnxconverter_common.float16`` conversion, checked to load on ORT CPU.
* ``quantize_int8`` -- ``onnxruntime.quantization.quantize_static`` fed with the ranges of a
  trtpipe calibration table (no re-calibration); ``exclude`` keeps matching nodes fp32 (mixed).
* ``default_int8_settings`` -- quantization format/types chosen from the CPU's instruction set.
* ``node_precisions`` -- which precision each node of a model computes in (for reports).

The models produced here are also what TensorRT >= 11 (strongly typed) needs: precision
expressed in the model (fp16 tensors, Q/DQ nodes) rather than in builder flags.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trtpipe.backends._imports import require
from trtpipe.backends.calibration import check_table
from trtpipe.errors import ConfigError, InvalidArtifact
from trtpipe.fsutil import atomic_write_bytes

log = logging.getLogger(__name__)

_FLOAT, _FLOAT16 = 1, 10  # onnx.TensorProto.FLOAT / FLOAT16
_QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}
_INT8_OPS = {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul"}

SETTING_KEYS = ("format", "activation_type", "weight_type", "per_channel", "reduce_range",
                "activation_symmetric")


# --- precision report ------------------------------------------------------------------------


def node_precisions(onnx_path: Path | Any) -> dict[str, str]:
    """Map each node name to the precision it computes in: int8, fp16, fp32, qdq or none.

    ``qdq`` marks QuantizeLinear/DequantizeLinear themselves; ``int8`` a node whose float inputs
    all come from DequantizeLinear (ORT and TensorRT fuse these into int8 kernels) or a
    QLinear*/…Integer op; ``fp16``/``fp32`` by its float tensors; ``none`` for nodes that touch no
    float tensor (shape arithmetic). Unnamed nodes are reported as ``<op_type>_<index>``.
    """
    onnx = require("onnx")
    model = onnx_path if hasattr(onnx_path, "graph") else _load(Path(onnx_path))
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is best effort here; fall back to declared types
        inferred = model
    g = inferred.graph
    types: dict[str, int] = {}
    for vi in [*g.input, *g.output, *g.value_info]:
        types[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        types[init.name] = init.data_type
    producer = {o: n.op_type for n in g.node for o in n.output}

    out: dict[str, str] = {}
    for i, node in enumerate(g.node):
        name = node.name or f"{node.op_type}_{i}"
        op = node.op_type
        if op in _QDQ_OPS:
            out[name] = "qdq"
            continue
        if op in ("Shape", "Size"):  # reads metadata only, never the values
            out[name] = "none"
            continue
        if op.startswith("QLinear") or op in _INT8_OPS:
            out[name] = "int8"
            continue
        ins = [t for t in node.input if t]
        from_dq = [t for t in ins if producer.get(t) == "DequantizeLinear"]
        float_ins = [t for t in ins if types.get(t) in (_FLOAT, _FLOAT16) and t not in from_dq]
        if from_dq and not float_ins:
            out[name] = "int8"
            continue
        kinds = {types.get(t) for t in [*float_ins, *node.output]} & {_FLOAT, _FLOAT16}
        if _FLOAT16 in kinds and op != "Cast":
            out[name] = "fp16"
        elif kinds:
            # A Cast between fp32 and fp16 is a conversion, counted with fp32 (the boundary).
            out[name] = "fp32"
        else:
            out[name] = "none"
    return out


def _by_precision(prec: dict[str, str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for name, p in prec.items():
        groups.setdefault(p, []).append(name)
    return groups


# --- fp16 --------------------------------------------------------------------------------------


def default_fp16_block_list() -> list[str]:
    """Op types kept fp32 by default: onnxconverter-common's own default list.

    Checked on ORT 1.32 CPU one op at a time (~45 common ops): only ``Resize`` fails once
    converted (its ``scales`` input must stay float32); ORT's CPU provider inserts casts around
    the other ops that lack fp16 kernels. The library list contains Resize/Upsample plus
    index-producing and ML ops (TopK, NonMaxSuppression, Range, ...), a sound superset.
    """
    float16 = require("onnxconverter_common.float16")
    return list(float16.DEFAULT_OP_BLOCK_LIST)


def to_fp16(onnx_path: Path, out_path: Path, *, keep_io_types: bool = True,
            op_block_list: list[str] | None = None) -> dict[str, Any]:
    """Convert ``onnx_path`` to fp16 (weights and activations) and write ``out_path`` atomically.

    ``keep_io_types`` keeps graph inputs/outputs float32 (casts inside), so the same feed dict
    works on fp32 and fp16 models. ``op_block_list`` (op types kept fp32) defaults to
    ``default_fp16_block_list()``. The result is loaded on ORT CPU before it is written.
    Returns ``{"precision": "fp16", "keep_io_types", "op_block_list", "nodes": {"fp16": [...],
    "fp32": [...], "none": [...]}, "initializers": {dtype: count}}``.
    """
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    float16 = require("onnxconverter_common.float16")
    block = default_fp16_block_list() if op_block_list is None else list(op_block_list)
    model = _load(onnx_path)
    try:
        converted = float16.convert_float_to_float16(model, keep_io_types=keep_io_types,
                                                     op_block_list=block)
    except Exception as exc:
        raise InvalidArtifact(f"{onnx_path}: fp16 conversion failed: {_first_line(exc)}",
                              path=str(onnx_path),
                              hint="add the failing op type to op_block_list") from exc
    data = converted.SerializeToString()
    _check_loads(data, onnx_path, "fp16", "add the op type named above to op_block_list "
                 "so it stays fp32")
    atomic_write_bytes(out_path, data)
    onnx = require("onnx")
    inits = Counter(onnx.TensorProto.DataType.Name(i.data_type).lower()
                    for i in converted.graph.initializer)
    groups = _by_precision(node_precisions(converted))
    return {"precision": "fp16", "keep_io_types": keep_io_types, "op_block_list": block,
            "nodes": {k: groups.get(k, []) for k in ("fp16", "fp32", "none")},
            "initializers": dict(sorted(inits.items()))}


# --- int8 --------------------------------------------------------------------------------------


def read_cpu_flags() -> set[str]:
    """The CPU feature flags of this machine (Linux ``/proc/cpuinfo``); empty set if unknown."""
    try:
        with open("/proc/cpuinfo", "rb") as fh:
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 / ARM
            return set(value.split())
    return set()


def default_int8_settings(cpu_flags: set[str]) -> dict[str, Any]:
    """Choose int8 quantization settings for a CPU described by its feature flags.

    Returns the ``SETTING_KEYS`` plus ``isa`` (what was detected) and ``reason`` (why).
    """
    flags = {f.lower() for f in cpu_flags}
    vnni = {"avx512_vnni", "avx_vnni", "avx512vnni", "amx_int8", "amx_tile"} & flags
    if vnni:
        isa = "amx" if {"amx_int8", "amx_tile"} & flags else "avx-vnni"
        return {"format": "qdq", "activation_type": "int8", "weight_type": "int8",
                "per_channel": True, "reduce_range": False, "activation_symmetric": True,
                "isa": isa,
                "reason": "VNNI/AMX dot-product instructions accumulate 8-bit products without "
                          "saturation, so symmetric int8 x int8 (the TensorRT convention, zero "
                          "point 0, same scales as the calibration table) loses no speed; "
                          "per-channel weights for accuracy"}
    if {"asimddp", "i8mm"} & flags:
        return {"format": "qdq", "activation_type": "int8", "weight_type": "int8",
                "per_channel": True, "reduce_range": False, "activation_symmetric": True,
                "isa": "arm-dotprod",
                "reason": "ARM int8 dot-product kernels favour symmetric int8 x int8"}
    if "avx2" in flags:
        return {"format": "qdq", "activation_type": "uint8", "weight_type": "uint8",
                "per_channel": True, "reduce_range": False, "activation_symmetric": False,
                "isa": "avx2",
                "reason": "measured on AVX2 without VNNI (perf-notes): QDQ uint8 x uint8 "
                          "per-channel ran 0.83x of fp32 latency, while int8 x int8 ran 1.40x "
                          "and the library default uint8 x int8 per-tensor 1.52x"}
    return {"format": "qdq", "activation_type": "uint8", "weight_type": "int8",
            "per_channel": False, "reduce_range": True, "activation_symmetric": False,
            "isa": "generic",
            "reason": "no AVX2/VNNI detected: ONNX Runtime's documented choice for x86 without "
                      "VNNI (uint8 activations, int8 weights, 7-bit reduce_range to avoid "
                      "saturation), per-tensor for throughput"}


def quantize_int8(onnx_path: Path, out_path: Path, table: dict[str, Any], *,
                  exclude: Sequence[str] = (), settings: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """Write a static int8 (Q/DQ by default) model of ``onnx_path`` using ``table``'s ranges.

    The table's per-tensor min/max drive the quantization parameters directly (no calibration
    run here). ``exclude`` holds fnmatch patterns of node names kept fp32 (mixed precision);
    a pattern matching no node is an error (likely a typo). ``settings`` overrides keys of
    ``default_int8_settings(read_cpu_flags())``. Returns a report with the settings used, the
    nodes per precision and the QuantizeLinear/DequantizeLinear counts.
    """
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    check_table(table)
    chosen = default_int8_settings(read_cpu_flags())
    if settings:
        unknown = sorted(set(settings) - set(SETTING_KEYS) - {"isa", "reason"})
        if unknown:
            raise ConfigError(f"unknown int8 setting(s) {unknown}",
                              hint=f"allowed: {', '.join(SETTING_KEYS)}")
        chosen = {**chosen, **settings}
        if set(settings) - {"isa", "reason"}:
            chosen["reason"] = f"user settings over defaults ({chosen['reason']})"
    q = require("onnxruntime.quantization")
    fmt, act, wt = _settings_to_ort(q, chosen)

    model = _load(onnx_path)
    node_names = [n.name for n in model.graph.node]
    excluded = _match_nodes(exclude, node_names, onnx_path)

    with tempfile.TemporaryDirectory(prefix="trtpipe-int8-") as tmp:
        pre, cache, out_tmp = Path(tmp) / "pre.onnx", Path(tmp) / "ranges.json", Path(tmp) / "q.onnx"
        try:
            # Shape inference only: ORT graph optimization would rename/fuse tensors and the
            # table's names (those of the fp32 model, as TensorRT sees them) would stop matching.
            q.quant_pre_process(str(onnx_path), str(pre), skip_optimization=True,
                                skip_symbolic_shape=True)
        except Exception as exc:
            raise InvalidArtifact(f"{onnx_path}: shape inference before quantization failed: "
                                  f"{_first_line(exc)}", path=str(onnx_path),
                                  hint="check the model with onnx.checker") from exc
        ranges = _ranges_for(q, _load(pre), table, onnx_path)
        require("onnxruntime.quantization.calibrate").save_tensors_data(ranges, cache)
        # Weight symmetry stays at ORT's default (what perf-notes measured).
        extra = {"ActivationSymmetric": bool(chosen["activation_symmetric"])}
        try:
            with _drop_root_warning("Please consider"):
                q.quantize_static(str(pre), str(out_tmp), None, quant_format=fmt,
                                  per_channel=bool(chosen["per_channel"]),
                                  reduce_range=bool(chosen["reduce_range"]),
                                  activation_type=act, weight_type=wt,
                                  nodes_to_exclude=excluded,
                                  calibrate_method=q.CalibrationMethod.MinMax,
                                  extra_options=extra, calibration_cache_path=str(cache))
        except Exception as exc:
            raise InvalidArtifact(f"{onnx_path}: int8 quantization failed: {_first_line(exc)}",
                                  path=str(onnx_path),
                                  hint="exclude the failing node (precision exclude) or try "
                                       "other int8 settings") from exc
        data = out_tmp.read_bytes()
    _check_loads(data, onnx_path, "int8", "exclude the node named above so it stays fp32")
    atomic_write_bytes(out_path, data)

    onnx = require("onnx")
    qmodel = onnx.load_model_from_string(data)
    groups = _by_precision(node_precisions(qmodel))
    ops = Counter(n.op_type for n in qmodel.graph.node)
    return {"precision": "int8", "settings": chosen, "table_algorithm": table.get("algorithm"),
            "exclude": list(exclude), "excluded_nodes": excluded,
            "nodes": {k: groups.get(k, []) for k in ("int8", "fp32", "none")},
            "counts": {"QuantizeLinear": ops.get("QuantizeLinear", 0),
                       "DequantizeLinear": ops.get("DequantizeLinear", 0)}}


# --- helpers -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _drop_root_warning(prefix: str) -> Iterator[None]:
    """Silence ORT's advice to run pre-processing (logged on the root logger; we did run it)."""
    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(prefix)

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _settings_to_ort(q: Any, s: dict[str, Any]) -> tuple[Any, Any, Any]:
    formats = {"qdq": q.QuantFormat.QDQ, "qoperator": q.QuantFormat.QOperator}
    types = {"uint8": q.QuantType.QUInt8, "int8": q.QuantType.QInt8}
    for key, allowed in (("format", formats), ("activation_type", types), ("weight_type", types)):
        if s.get(key) not in allowed:
            raise ConfigError(f"int8 setting {key}={s.get(key)!r} is not supported",
                              hint=f"use one of: {', '.join(allowed)}")
    return formats[s["format"]], types[s["activation_type"]], types[s["weight_type"]]


def _match_nodes(patterns: Sequence[str], names: list[str], onnx_path: Path) -> list[str]:
    if isinstance(patterns, str):  # a bare string would be matched character by character
        patterns = [patterns]
    matched: list[str] = []
    for pat in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pat)]
        if not hits:
            sample = ", ".join(names[:8])
            raise ConfigError(f"{onnx_path}: exclude pattern {pat!r} matches no node",
                              hint=f"node names look like: {sample} …")
        matched.extend(h for h in hits if h not in matched)
    return matched


def _ranges_for(q: Any, model: Any, table: dict[str, Any], onnx_path: Path) -> Any:
    """ORT ``TensorsData`` for the model's float activations, taken from the table."""
    g = model.graph
    vis = {vi.name: vi for vi in [*g.value_info, *g.output, *g.input]}
    inits = {i.name for i in g.initializer}
    wanted = set()
    for node in g.node:
        for t in [*node.input, *node.output]:
            vi = vis.get(t)
            if (vi is not None and t not in inits
                    and vi.type.tensor_type.elem_type in (_FLOAT, _FLOAT16)):
                wanted.add(t)
    tensors = table["tensors"]
    missing = sorted(wanted - set(tensors))
    if missing:
        which = "none of" if len(missing) == len(wanted) else f"{len(missing)} of {len(wanted)}"
        raise InvalidArtifact(f"{onnx_path}: calibration table covers {which} the model's float "
                              f"tensors (missing e.g. {missing[:5]})", path=str(onnx_path),
                              node=missing[0],
                              hint="calibrate this exact fp32 model; tables are tied to tensor names")
    cal = require("onnxruntime.quantization.calibrate")
    data = {t: cal.TensorData(lowest=np.float32(tensors[t]["min"]),
                                      highest=np.float32(tensors[t]["max"]))
            for t in sorted(wanted)}
    return cal.TensorsData(q.CalibrationMethod.MinMax, data)


def _load(path: Path) -> Any:
    onnx = require("onnx")
    if not path.is_file():
        raise InvalidArtifact(f"{path}: ONNX model not found", path=str(path),
                              hint="run the onnx stage first or fix the path")
    try:
        return onnx.load_model(str(path))
    except Exception as exc:
        raise InvalidArtifact(f"{path}: not a readable ONNX model ({_first_line(exc)})",
                              path=str(path), hint="re-export the model") from exc


def _check_loads(data: bytes, source: Path, what: str, hint: str) -> None:
    """Fail early (with the node ORT names) if ORT CPU cannot load the converted model."""
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise InvalidArtifact(f"{source}: the {what} model does not load on ONNX Runtime CPU: "
                              f"{_first_line(exc)}", path=str(source), hint=hint) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
