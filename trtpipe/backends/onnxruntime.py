"""ONNX Runtime backend: the "engine" is an ORT-optimized ONNX model with trtpipe metadata.

``build`` lets ORT apply its graph optimizations and save the result
(``SessionOptions.optimized_model_filepath``), then stamps ``metadata_props`` (``trtpipe.max_batch``
plus caller metadata). ``Engine`` loads such a file and validates every feed *before* running, so a
wrong batch/dtype/shape is a clear trtpipe error rather than a crash inside the runtime.

Note: "extended"/"all" levels may apply CPU-specific layout rewrites, so an engine is tied to the
CPU ISA it was built on (the build stage puts the ISA in its cache key via ``fingerprint``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from trtpipe.backends._imports import require
from trtpipe.errors import InvalidArtifact
from trtpipe.fsutil import atomic_write_bytes

#: Metadata key holding the largest batch the engine accepts.
MAX_BATCH_KEY = "trtpipe.max_batch"
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
DEFAULT_PROVIDERS = ("CPUExecutionProvider",)

_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16",
               "tensor(uint16)": "uint16", "tensor(int32)": "int32", "tensor(uint32)": "uint32",
               "tensor(int64)": "int64", "tensor(uint64)": "uint64", "tensor(bool)": "bool",
               "tensor(bfloat16)": "bfloat16", "tensor(string)": "str"}


class InvalidFeed(InvalidArtifact, ValueError):
    """A feed does not match the engine's inputs (name, dtype, rank, dims or batch > max_batch)."""


def version() -> str:
    """Installed ONNX Runtime version."""
    return str(require("onnxruntime").__version__)


def _level(ort: Any, name: str) -> Any:
    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    if name not in levels:
        raise InvalidArtifact(f"unknown ONNX Runtime optimization level {name!r}",
                              hint=f"use one of: {', '.join(OPTIMIZATION_LEVELS)}")
    return levels[name]


def _session(ort: Any, data: bytes, where: str, options: Any, providers: Any) -> Any:
    try:
        return ort.InferenceSession(data, sess_options=options, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/InvalidProtobuf types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidArtifact(f"{where}: ONNX Runtime cannot load the model: {first}",
                              hint="the file is corrupt, truncated or not an ONNX model/engine; rebuild it",
                              path=where) from exc


def build(onnx_path: Path, out_path: Path, *, max_batch: int,
          optimization_level: str = "all", metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """Optimize ``onnx_path`` with ORT and write the engine to ``out_path`` (atomic); return a report."""
    ort = require("onnxruntime")
    onnx = require("onnx")
    from trtpipe.backends.onnx import canonicalize_names, load_model, op_histogram

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if not isinstance(max_batch, int) or isinstance(max_batch, bool) or max_batch < 1:
        raise InvalidArtifact(f"max_batch must be a positive integer, got {max_batch!r}",
                              hint="set the build stage's max_batch to 1 or more")
    before = load_model(onnx_path)
    _check_batch_dims(before, onnx_path, max_batch)
    options = ort.SessionOptions()
    options.graph_optimization_level = _level(ort, optimization_level)
    options.log_severity_level = 3  # errors only; warnings would go to the console
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{out_path.name}.", suffix=".onnx",
                               dir=out_path.parent if out_path.parent.exists() else None)
    os.close(fd)
    try:
        options.optimized_model_filepath = tmp
        session = _session(ort, onnx_path.read_bytes(), str(onnx_path), options, DEFAULT_PROVIDERS)
        with open(tmp, "rb") as fh:
            optimized = onnx.load_model_from_string(fh.read())
    finally:
        os.unlink(tmp)
    canonicalize_names(optimized, all_nodes=True)  # ORT's optimizers name nodes from counters: same input, same bytes
    props = {MAX_BATCH_KEY: str(max_batch), "trtpipe.optimization_level": optimization_level,
             "trtpipe.onnxruntime": str(ort.__version__), **(metadata or {})}
    existing = {p.key: p for p in optimized.metadata_props}
    for key, value in sorted(props.items()):
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidArtifact(f"engine metadata must map str to str, got {key!r}: {value!r}",
                                  hint="convert metadata values to strings")
        prop = existing.get(key) or optimized.metadata_props.add(key=key)
        prop.value = value
    atomic_write_bytes(out_path, optimized.SerializeToString(deterministic=True))
    return {
        "onnxruntime": str(ort.__version__),
        "provider": session.get_providers()[0],
        "optimization_level": optimization_level,
        "max_batch": max_batch,
        "inputs": _specs(session.get_inputs()),
        "outputs": _specs(session.get_outputs()),
        "ops_before": op_histogram(before),
        "ops_after": op_histogram(optimized),
        "nodes_before": len(before.graph.node),
        "nodes_after": len(optimized.graph.node),
    }


def _check_batch_dims(model: Any, path: Path, max_batch: int) -> None:
    """A fixed batch dim smaller than ``max_batch`` can never hold ``max_batch`` samples."""
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and 0 < dims[0].dim_value < max_batch:
            raise InvalidArtifact(
                f"{path}: input {value.name!r} has a fixed batch of {dims[0].dim_value}, "
                f"but max_batch is {max_batch}",
                hint="convert with a dynamic batch dimension, or lower max_batch", path=str(path),
                node=value.name)


def _specs(args: Any) -> list[dict[str, Any]]:
    return [{"name": a.name, "dtype": _ORT_DTYPES.get(a.type, a.type),
             "shape": [d if isinstance(d, int) and d >= 0 else None for d in a.shape]} for a in args]


class Engine:
    """A fresh ``InferenceSession`` over an engine file, with feed validation."""

    def __init__(self, path: Path, *, providers: list[str] | None = None,
                 intra_op_threads: int | None = None) -> None:
        ort = require("onnxruntime")
        self.path = Path(path)
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise InvalidArtifact(f"{self.path}: cannot read engine: {exc.strerror or exc}",
                                  hint="check the path; rebuild the engine", path=str(self.path)) from exc
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if intra_op_threads is not None:
            options.intra_op_num_threads = int(intra_op_threads)
        self._session = _session(ort, data, str(self.path), options, providers or DEFAULT_PROVIDERS)
        self.inputs: list[dict[str, Any]] = _specs(self._session.get_inputs())
        self.outputs: list[dict[str, Any]] = _specs(self._session.get_outputs())
        self.metadata: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)
        raw = self.metadata.get(MAX_BATCH_KEY)
        try:
            self.max_batch: int | None = int(raw) if raw is not None else None
        except ValueError as exc:
            raise InvalidArtifact(f"{self.path}: metadata {MAX_BATCH_KEY}={raw!r} is not an integer",
                                  hint="rebuild the engine", path=str(self.path)) from exc
        self.providers: list[str] = list(self._session.get_providers())
        self._output_names = [o["name"] for o in self.outputs]

    def validate(self, feeds: dict[str, np.ndarray]) -> None:
        """Raise ``InvalidFeed`` unless ``feeds`` match the inputs exactly (names, dtypes, shapes)."""
        expected = [i["name"] for i in self.inputs]
        missing = [n for n in expected if n not in feeds]
        unknown = sorted(set(feeds) - set(expected))
        if missing or unknown:
            parts = ([f"missing input(s) {', '.join(map(repr, missing))}"] if missing else []) + \
                    ([f"unknown input(s) {', '.join(map(repr, unknown))}"] if unknown else [])
            raise InvalidFeed(f"{self.path}: {'; '.join(parts)}",
                              hint=f"the engine takes exactly: {', '.join(expected)}", path=str(self.path))
        for spec in self.inputs:
            value = feeds[spec["name"]]
            if not isinstance(value, np.ndarray):
                raise InvalidFeed(f"input {spec['name']!r}: expected a numpy array, got {type(value).__name__}",
                                  hint="pass numpy arrays as feeds", path=str(self.path), node=spec["name"])
            if not self._matches(spec, value):
                raise InvalidFeed(
                    f"input {spec['name']!r}: expected {self._expected(spec)} {spec['dtype']}, "
                    f"got [{', '.join(map(str, value.shape))}] {value.dtype}",
                    hint="preprocess the data to the engine's input shape and dtype"
                         + (f"; split batches larger than {self.max_batch}" if self.max_batch else ""),
                    path=str(self.path), node=spec["name"])

    def _matches(self, spec: dict[str, Any], value: np.ndarray) -> bool:
        if str(value.dtype) != spec["dtype"] or value.ndim != len(spec["shape"]):
            return False
        for i, (want, got) in enumerate(zip(spec["shape"], value.shape, strict=True)):
            if want is not None and want != got:
                return False
            if i == 0 and want is None and (got < 1 or (self.max_batch is not None and got > self.max_batch)):
                return False
        return True

    def _expected(self, spec: dict[str, Any]) -> str:
        dims = []
        for i, d in enumerate(spec["shape"]):
            if d is not None:
                dims.append(str(d))
            elif i == 0:
                dims.append(f"N≤{self.max_batch}" if self.max_batch is not None else "N")
            else:
                dims.append("?")
        return f"[{', '.join(dims)}]"

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate ``feeds`` then run; returns every output by name."""
        self.validate(feeds)
        try:
            values = self._session.run(self._output_names, feeds)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidArtifact(f"{self.path}: ONNX Runtime run failed: {first}",
                                  hint="the engine and the feeds disagree; rebuild the engine",
                                  path=str(self.path)) from exc
        return dict(zip(self._output_names, values, strict=True))


def describe_engine(path: Path) -> str:
    """Human-readable summary of an ORT engine: provider, max batch, I/O, metadata, ops."""
    from trtpipe.backends.onnx import load_model, op_histogram

    engine = Engine(Path(path))
    model = load_model(Path(path))
    lines = [f"ONNX Runtime engine {Path(path).name}",
             f"  providers: {', '.join(engine.providers)}",
             f"  max batch: {engine.max_batch if engine.max_batch is not None else 'unset'}"]
    for title, specs in (("inputs", engine.inputs), ("outputs", engine.outputs)):
        lines.append(f"  {title}:")
        for s in specs:
            lines.append(f"    {s['name']}: {s['dtype']} {engine._expected(s)}")
    if engine.metadata:
        lines.append("  metadata:")
        lines.extend(f"    {k}: {v}" for k, v in sorted(engine.metadata.items()))
    lines.append(f"  nodes: {len(model.graph.node)}")
    lines.extend(f"    {op}: {n}" for op, n in op_histogram(model).items())
    return "\n".join(lines)
