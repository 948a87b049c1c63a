"""ONNX backend: frozen TensorFlow graph -> ONNX via tf2onnx, plus loading and describing models.

Every ONNX model produced here names its graph inputs/outputs exactly like the signature (TF node
names without ``:0``) and keeps the batch dimension symbolic (``N``), so the same feeds work on
TensorFlow, ONNX Runtime and TensorRT. tf2onnx logs through Python ``logging`` (logger
``tf2onnx``); callers capture it, nothing is printed here.
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trtpipe.backends._imports import require
from trtpipe.errors import InvalidArtifact, UnsupportedOp
from trtpipe.fsutil import atomic_write_bytes

log = logging.getLogger(__name__)

#: Symbolic name given to every dynamic (``null``) dimension of the signature.
BATCH_DIM = "N"

_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
                9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}


def version() -> str:
    """Installed onnx package version."""
    return str(require("onnx").__version__)


def tf_to_onnx(pb_path: Path, signature: dict[str, Any], out_path: Path, *, opset: int = 17) -> dict[str, Any]:
    """Convert the frozen graph at ``pb_path`` to ONNX at ``out_path`` (atomic); return an info dict.

    Graph inputs/outputs are renamed to the signature names, dynamic signature dims become the
    symbolic dim ``N``, and the result must pass ``onnx.checker.check_model(full_check=True)``.
    Ops tf2onnx cannot map raise ``UnsupportedOp`` naming the op and node.
    """
    tf = require("tensorflow")
    tf2onnx = require("tf2onnx")
    onnx = require("onnx")
    pb_path, out_path = Path(pb_path), Path(out_path)
    in_names = [i["name"] for i in signature.get("inputs", [])]
    out_names = [o["name"] for o in signature.get("outputs", [])]
    if not in_names or not out_names:
        raise InvalidArtifact(f"{pb_path}: signature lists no inputs or no outputs",
                              hint="the freeze stage writes the signature; re-run it", path=str(pb_path))
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(pb_path.read_bytes())
    except Exception as exc:
        raise InvalidArtifact(f"{pb_path}: not a TensorFlow GraphDef ({exc})",
                              hint="the input must be the frozen .pb written by the freeze stage",
                              path=str(pb_path)) from exc
    node_names = {n.name for n in graph_def.node}
    for name in in_names + out_names:
        if name not in node_names:
            raise InvalidArtifact(f"{pb_path}: signature names {name!r}, which is not a node of the graph",
                                  hint="the signature and the .pb do not belong together; re-run freeze",
                                  path=str(pb_path), node=name)

    rename = {f"{n}:0": n for n in in_names + out_names}
    errors: list[str] = []
    with _capture_errors("tf2onnx", errors), _quiet_stdout(), _tf_deprecations_silenced():
        try:
            model, _ = tf2onnx.convert.from_graph_def(
                graph_def, name=pb_path.stem, input_names=[f"{n}:0" for n in in_names],
                output_names=[f"{n}:0" for n in out_names], opset=opset, tensors_to_rename=rename)
        except Exception as exc:
            detail = "; ".join(errors[-3:]) or f"{type(exc).__name__}: {exc}"
            raise InvalidArtifact(f"{pb_path}: tf2onnx conversion (opset {opset}) failed: {detail}",
                                  hint="check the tf2onnx log; try another opset, or replace the "
                                       "failing op in the model", path=str(pb_path)) from exc
    _check_supported(model, pb_path, errors)
    _set_dynamic_dims(model, signature)
    canonicalize_names(model)
    model.producer_name = "trtpipe+tf2onnx"
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # ValidationError / InferenceError
        raise InvalidArtifact(f"{pb_path}: converted ONNX model fails the ONNX checker: {exc}",
                              hint="report this with the tf2onnx log; try another opset",
                              path=str(pb_path)) from exc
    atomic_write_bytes(out_path, model.SerializeToString(deterministic=True))
    hist = op_histogram(model)
    return {"opset": _main_opset(model), "nodes": len(model.graph.node), "ops": hist,
            "tf2onnx": str(tf2onnx.__version__), "onnx": str(onnx.__version__),
            "inputs": _value_infos(model.graph.input), "outputs": _value_infos(model.graph.output)}


_COUNTER = re.compile(r"^(?P<base>.*?)(?P<sep>__|_token_)\d+(?P<port>:\d+)?$")


def canonicalize_names(model: Any, *, all_nodes: bool = False) -> None:
    """Make a converter's or optimizer's output byte-reproducible: stable names and order.

    tf2onnx numbers the nodes and constants it creates from a process-wide counter, deduplicates
    equal constants keeping an arbitrary copy's name and emits initializers in a varying order;
    ONNX Runtime's layout optimizer names its nodes ``..._token_<n>`` the same way. So the same
    input gave different bytes (and every downstream stage a new key). Counter-numbered nodes and
    tensors are renumbered by their position in the (stable) node list, each initializer is
    renamed ``<first consumer node>/in<slot>``, and initializers are emitted in order of first use.
    Graph input and output names are never changed. ``all_nodes`` numbers every node (ONNX
    Runtime sometimes gives an inserted node a bare name, sometimes a counter-suffixed one).
    """
    graph_io = {v.name for v in model.graph.input} | {v.name for v in model.graph.output}
    tensor_rename: dict[str, str] = {}
    for index, node in enumerate(model.graph.node):
        m = _COUNTER.match(node.name)
        if all_nodes:
            node.name = f"{m.group('base') if m else node.name}__n{index}"
        elif m:
            node.name = f"{m.group('base')}{m.group('sep')}n{index}"
        for j, out in enumerate(node.output):
            mo = _COUNTER.match(out)
            if mo and out not in graph_io:
                tensor_rename[out] = f"{mo.group('base')}{mo.group('sep')}t{index}.{j}{mo.group('port') or ''}"
                node.output[j] = tensor_rename[out]

    # Initializers feed nodes but are never node outputs, so their names are independent of the
    # tensor renames above; both maps are applied to node inputs and value_info in one pass below.
    inits = {i.name: i for i in model.graph.initializer}
    order: list[str] = []
    first_use: dict[str, str] = {}
    for node in model.graph.node:
        for slot, name in enumerate(node.input):
            if name in inits and name not in first_use:
                order.append(name)
                first_use[name] = f"{node.name}/in{slot}"
    order += sorted(n for n in inits if n not in first_use)
    taken = set(inits) | {o for n in model.graph.node for o in n.output} | graph_io
    init_rename: dict[str, str] = {}
    for name in order:
        if name in first_use and first_use[name] not in taken:
            init_rename[name] = first_use[name]
            taken.add(first_use[name])
    rename = {**tensor_rename, **init_rename}
    for node in model.graph.node:
        for j, name in enumerate(node.input):
            if name in rename:
                node.input[j] = rename[name]
    for vi in model.graph.value_info:
        vi.name = rename.get(vi.name, vi.name)
    ordered = [inits[n] for n in order]
    for init in ordered:
        init.name = init_rename.get(init.name, init.name)
    del model.graph.initializer[:]
    model.graph.initializer.extend(ordered)


@contextlib.contextmanager
def _capture_errors(logger_name: str, sink: list[str]) -> Iterator[None]:
    """Collect ERROR records of ``logger_name`` (they name unsupported ops/nodes) while converting."""

    class _Collector(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            sink.append(record.getMessage().splitlines()[0])

    handler = _Collector(level=logging.ERROR)
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Route stray prints of the converter to the log instead of the console."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield
    if buf.getvalue().strip():
        log.info("tf2onnx stdout: %s", buf.getvalue().strip())


@contextlib.contextmanager
def _tf_deprecations_silenced() -> Iterator[None]:
    """tf2onnx calls TF1 APIs that log deprecation warnings on every conversion: pure noise here."""
    try:
        from tensorflow.python.util import deprecation  # type: ignore[import-untyped]
    except ImportError:  # private module moved: conversion still works, just noisier
        yield
        return
    with deprecation.silence():
        yield


def _check_supported(model: Any, pb_path: Path, errors: list[str]) -> None:
    """tf2onnx leaves unmappable TF ops in the graph (and only logs): turn that into an error."""
    defs = require("onnx").defs
    for node in model.graph.node:
        domain = node.domain or ""
        if domain in ("", "ai.onnx") and not defs.has(node.op_type, domain):
            raise UnsupportedOp(
                f"{pb_path}: TensorFlow op {node.op_type!r} (node {node.name!r}) has no ONNX conversion",
                hint="replace the op in the model with supported ones, or use a different opset"
                     + (f" (tf2onnx: {errors[0]})" if errors else ""),
                path=str(pb_path), node=node.name)


def _set_dynamic_dims(model: Any, signature: dict[str, Any]) -> None:
    """Name every dynamic dim of the graph I/O ``N`` (tf2onnx invents ``unk__12``-style names)."""
    specs = {s["name"]: s for s in signature.get("inputs", []) + signature.get("outputs", [])}
    for value in list(model.graph.input) + list(model.graph.output):
        spec = specs.get(value.name)
        if spec is None or spec.get("shape") is None:
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(spec["shape"]):
            continue
        for dim, want in zip(dims, spec["shape"], strict=True):
            if want is None:
                dim.ClearField("dim_value")
                dim.dim_param = BATCH_DIM


def _main_opset(model: Any) -> int:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def op_histogram(model: Any) -> dict[str, int]:
    """Count of nodes per op type (domain-qualified for non-default domains), sorted by name."""
    counts = collections.Counter(
        (f"{n.domain}.{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type) for n in model.graph.node)
    return dict(sorted(counts.items()))


def _value_infos(values: Any) -> list[dict[str, Any]]:
    out = []
    for v in values:
        tt = v.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim] \
            if tt.HasField("shape") else None
        out.append({"name": v.name, "dtype": _ONNX_DTYPES.get(tt.elem_type, str(tt.elem_type)),
                    "shape": shape,
                    # display form: symbolic name, size, or "?" for an unknown dim
                    "dims": [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?")
                             for d in tt.shape.dim]})
    return out


def load_model(path: Path) -> Any:
    """Parse ``path`` as an ONNX ``ModelProto``; ``InvalidArtifact`` when it is corrupt or not ONNX."""
    onnx = require("onnx")
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidArtifact(f"{path}: cannot read ONNX model: {exc.strerror or exc}",
                              hint="check the path", path=str(path)) from exc
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf DecodeError and friends
        raise InvalidArtifact(f"{path}: not an ONNX model (protobuf parse failed: {exc})",
                              hint="the file is truncated or not ONNX; rebuild it", path=str(path)) from exc
    # Random bytes sometimes parse as an (empty) protobuf: require the essentials of a model.
    if not model.graph.node or not model.opset_import or not model.graph.output:
        raise InvalidArtifact(f"{path}: not an ONNX model (no graph nodes, outputs or opset)",
                              hint="the file is truncated or not ONNX; rebuild it", path=str(path))
    return model


def graph_inputs(model: Any) -> list[dict[str, Any]]:
    """Real graph inputs of a model (initializers excluded) as signature entries.

    ``{"name", "dtype" (numpy name), "shape"}`` with ``None`` for dynamic or symbolic dims.
    ``model`` is a ``ModelProto`` or a path.
    """
    if not hasattr(model, "graph"):
        model = load_model(Path(model))
    inits = {i.name for i in model.graph.initializer}
    return [{"name": v["name"], "dtype": v["dtype"], "shape": [d if d else None for d in v["shape"] or []]}
            for v in _value_infos(i for i in model.graph.input if i.name not in inits)]


def describe_onnx(path: Path) -> str:
    """Human-readable summary: I/O with shapes and dtypes, opsets, op histogram, metadata."""
    model = load_model(path)
    lines = [f"ONNX model {Path(path).name}",
             f"  producer: {model.producer_name} {model.producer_version}".rstrip(),
             "  opsets: " + ", ".join(f"{o.domain or 'ai.onnx'}={o.version}" for o in model.opset_import),
             f"  nodes: {len(model.graph.node)}"]
    initializer_names = {i.name for i in model.graph.initializer}
    for title, values in (("inputs", [v for v in model.graph.input if v.name not in initializer_names]),
                          ("outputs", model.graph.output)):
        lines.append(f"  {title}:")
        for info in _value_infos(values):
            dims = ", ".join(str(d) for d in info["dims"])
            lines.append(f"    {info['name']}: {info['dtype']} [{dims}]")
    lines.append("  ops:")
    lines.extend(f"    {op}: {count}" for op, count in op_histogram(model).items())
    if model.metadata_props:
        lines.append("  metadata:")
        lines.extend(f"    {p.key}: {p.value}" for p in sorted(model.metadata_props, key=lambda p: p.key))
    return "\n".join(lines)
