"""TensorFlow backend: freeze a Keras/SavedModel/builder/.pb source to a frozen GraphDef, and run it.

Everything TensorFlow-related is imported inside functions (via ``require``) so that importing this
module is cheap. The frozen graph uses meaningful node names: placeholders are named after the
model's inputs and the final ``Identity`` nodes after its outputs, so the same feed dict and output
names work on TensorFlow, ONNX Runtime and TensorRT (see the signature contract).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from trtpipe.backends._imports import require
from trtpipe.errors import ConfigError, InvalidArtifact
from trtpipe.fsutil import atomic_write_bytes

Signature = dict[str, Any]

#: Ops that hold state: a frozen graph must not contain any of them.
_VARIABLE_OPS = frozenset({
    "Variable", "VariableV2", "VarHandleOp", "ReadVariableOp", "AssignVariableOp",
    "AssignAddVariableOp", "AssignSubVariableOp", "Assign", "AssignAdd", "AssignSub",
    "ResourceGather", "VarIsInitializedOp", "TemporaryVariable",
})
#: Ops that never carry a model output even when nothing consumes them.
_NON_OUTPUT_OPS = frozenset({"NoOp", "Const", "Placeholder", "PlaceholderWithDefault", "Assert",
                             "SaveV2", "RestoreV2"})
_TF_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\-/]*$")


def version() -> str:
    """Installed TensorFlow version (imports TensorFlow)."""
    return str(require("tensorflow").__version__)


# --------------------------------------------------------------------------------------------------
# freeze


def freeze(source: str, out_pb: Path, *, base_dir: Path, seed: int = 0) -> Signature:
    """Freeze ``source`` into a GraphDef at ``out_pb`` (atomic) and return its signature.

    ``source`` (relative paths resolve against ``base_dir``) is a ``.keras``/``.h5`` Keras file, a
    SavedModel directory, a builder ``file.py:function`` (seeded with ``seed``; ``seed`` is also
    passed as a keyword if the function takes one), or an already frozen ``.pb`` (validated and
    copied byte for byte).
    """
    out_pb = Path(out_pb)
    builder = _parse_builder(source)
    if builder is not None:
        model = _run_builder(builder[0], builder[1], Path(base_dir), seed)
        return _freeze_keras(model, out_pb, origin=source)
    path = _resolve(source, Path(base_dir))
    if path.is_dir():
        if not (path / "saved_model.pb").is_file() and not (path / "saved_model.pbtxt").is_file():
            raise InvalidArtifact(
                f"{path}: directory is not a SavedModel (no saved_model.pb inside)",
                hint="point `source` at a SavedModel directory, a .keras/.h5 file, a frozen .pb "
                     "or a builder 'file.py:function'", path=str(path))
        return _freeze_saved_model(path, out_pb)
    suffix = path.suffix.lower()
    if suffix in (".keras", ".h5", ".hdf5"):
        return _freeze_keras(_load_keras(path), out_pb, origin=str(path))
    if suffix == ".pb":
        data = path.read_bytes()
        signature = _validate_frozen(data, str(path))
        atomic_write_bytes(out_pb, data)
        return signature
    raise InvalidArtifact(
        f"{path}: unknown model file type {suffix or '(no extension)'!r}",
        hint="supported sources: .keras, .h5, a SavedModel directory, a frozen .pb, "
             "or a Python builder 'path/to/file.py:function'", path=str(path))


def _parse_builder(source: str) -> tuple[str, str] | None:
    """Split ``file.py:function``; None when ``source`` is not a builder reference."""
    file_part, sep, func = source.rpartition(":")
    if sep and file_part.endswith(".py"):
        if not func.isidentifier():
            raise ConfigError(f"builder {source!r}: {func!r} is not a Python function name",
                              hint="write the builder as 'path/to/file.py:function_name'")
        return file_part, func
    if source.endswith(".py"):
        raise ConfigError(f"builder {source!r} names no function",
                          hint=f"write it as '{source}:build_model' (the function returning a Keras model)")
    return None


def _resolve(source: str, base_dir: Path) -> Path:
    path = Path(source)
    if not path.is_absolute():
        path = base_dir / path
    if not path.exists():
        raise InvalidArtifact(f"{path}: model source not found",
                              hint=f"paths are relative to {base_dir}; check the `source` value",
                              path=str(path))
    return path


def _run_builder(file_part: str, func_name: str, base_dir: Path, seed: int) -> Any:
    """Import the builder file by path, seed python/numpy/TF, call the function, check the result."""
    require("tensorflow")  # first: quiets TF's C++ logs and gives the right install hint
    keras = require("keras")
    path = _resolve(file_part, base_dir)
    # A unique module name per file keeps two builder files with the same name apart.
    mod_name = "trtpipe_builder_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"builder {path}: cannot be imported as a Python file",
                          hint="the builder must be a .py file")
    module = importlib.util.module_from_spec(spec)
    # Let the builder import modules that sit next to it.
    sys.path.insert(0, str(path.parent))
    try:
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code may raise anything
        raise ConfigError(f"builder {path}: importing it failed: {type(exc).__name__}: {exc}",
                          hint="fix the error in the builder file") from exc
    finally:
        sys.path.remove(str(path.parent))
        sys.modules.pop(mod_name, None)
    func = getattr(module, func_name, None)
    if not callable(func):
        available = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                           and getattr(v, "__module__", None) == mod_name)
        raise ConfigError(f"builder {path}: no function {func_name!r}",
                          hint=f"functions defined there: {', '.join(available) or 'none'}")
    kwargs: dict[str, Any] = {}
    try:
        if "seed" in inspect.signature(func).parameters:
            kwargs["seed"] = seed
    except (TypeError, ValueError):
        pass
    # Reset Keras' global name counters so auto-named layers ("conv2d_3") get the same names on
    # every build in this process: node names end up in the .pb bytes.
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    try:
        model = func(**kwargs)
    except Exception as exc:
        raise ConfigError(f"builder {path}:{func_name} raised {type(exc).__name__}: {exc}",
                          hint="fix the builder function; it is called without arguments "
                               "(plus seed= when it accepts one)") from exc
    if not isinstance(model, keras.Model):
        raise ConfigError(f"builder {path}:{func_name} returned {type(model).__name__}, not a Keras model",
                          hint="the builder function must return a keras.Model")
    return model


def _load_keras(path: Path) -> Any:
    require("tensorflow")
    keras = require("keras")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        text = str(exc)
        if "safe_mode" in text:  # Keras refuses Python lambdas unless safe_mode=False
            raise InvalidArtifact(
                f"{path}: refused to load: the model contains a Python lambda, which could run "
                "arbitrary code when deserialized",
                hint="replace the Lambda layer with a built-in or registered custom layer and "
                     "re-save the model", path=str(path)) from exc
        raise InvalidArtifact(f"{path}: cannot load Keras model: {type(exc).__name__}: {text}",
                              hint="check that the file is a complete Keras .keras/.h5 model "
                                   "saved with a compatible Keras version", path=str(path)) from exc


def _freeze_keras(model: Any, out_pb: Path, *, origin: str) -> Signature:
    """Trace ``model`` in inference mode, fold variables into constants and name I/O nodes."""
    tf = require("tensorflow")
    try:
        inputs = list(model.inputs)
        output_names = list(model.output_names)
    except (AttributeError, ValueError) as exc:
        raise InvalidArtifact(f"{origin}: the Keras model has no defined inputs/outputs",
                              hint="build the model functionally with keras.Input(...) or call it "
                                   "once on data before saving") from exc
    input_names = [_keras_tensor_name(t) for t in inputs]
    for name in input_names + output_names:
        _check_node_name(name, origin)
    if len(set(input_names + output_names)) != len(input_names) + len(output_names):
        raise InvalidArtifact(f"{origin}: input/output names are not unique: {input_names + output_names}",
                              hint="give every keras.Input and output layer a distinct name")
    specs = [tf.TensorSpec(tuple(t.shape), tf.as_dtype(t.dtype), name=n) for t, n in zip(inputs, input_names, strict=True)]

    def call(*args: Any) -> Any:
        outs = model(list(args) if len(args) > 1 else args[0], training=False)
        if isinstance(outs, dict):
            outs = [outs[n] for n in output_names]
        elif not isinstance(outs, (list, tuple)):
            outs = [outs]
        return list(outs)

    concrete = tf.function(call, autograph=False).get_concrete_function(*specs)
    return _freeze_concrete(concrete, input_names, output_names, out_pb)


def _keras_tensor_name(tensor: Any) -> str:
    # Keras 3 KerasTensor.name is the Input layer name; strip any ":0" left by older formats.
    return str(tensor.name).split(":")[0]


def _freeze_saved_model(path: Path, out_pb: Path) -> Signature:
    tf = require("tensorflow")
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise InvalidArtifact(f"{path}: cannot load SavedModel: {type(exc).__name__}: {exc}",
                              hint="re-export it with tf.saved_model.save or model.export()",
                              path=str(path)) from exc
    signatures = dict(loaded.signatures)
    if not signatures:
        raise InvalidArtifact(f"{path}: SavedModel has no serving signatures",
                              hint="export it with a signature (model.export() adds 'serving_default')",
                              path=str(path))
    key = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
    concrete = signatures[key]
    # Signature functions take keyword arguments and return a dict; their flat inputs/outputs
    # follow the sorted keys (tf.nest order), which is how the tensors are matched to names here.
    input_names = sorted(concrete.structured_input_signature[1])
    output_names = sorted(concrete.structured_outputs)
    for name in input_names + output_names:
        _check_node_name(name, str(path))
    placeholders = [t for t in concrete.inputs if t.dtype != tf.resource]
    if len(placeholders) != len(input_names) or len(concrete.outputs) != len(output_names):
        raise InvalidArtifact(f"{path}: signature {key!r} has nested or composite inputs/outputs",
                              hint="export a signature taking and returning flat dicts of tensors",
                              path=str(path))
    return _freeze_concrete(concrete, input_names, output_names, out_pb,
                            input_tensors=placeholders, output_tensors=list(concrete.outputs))


def _freeze_concrete(concrete: Any, input_names: list[str], output_names: list[str], out_pb: Path,
                     *, input_tensors: list[Any] | None = None,
                     output_tensors: list[Any] | None = None) -> Signature:
    """Constant-fold a concrete function, rename its I/O nodes, prune, write, describe."""
    tf = require("tensorflow")
    from tensorflow.python.framework.convert_to_constants import (  # type: ignore[import-untyped]
        convert_variables_to_constants_v2,
    )

    input_tensors = input_tensors or [t for t in concrete.inputs if t.dtype != tf.resource][:len(input_names)]
    output_tensors = output_tensors or list(concrete.outputs)
    frozen = convert_variables_to_constants_v2(concrete)
    # convert_variables_to_constants_v2 keeps the tensor names of the function graph, so the
    # tensors recorded above identify the same placeholders/outputs in the frozen graph.
    graph_def = _attach_io(frozen.graph.as_graph_def(), input_tensors, input_names,
                           output_tensors, output_names)
    graph_def = _canonicalize(graph_def, output_names)
    data = graph_def.SerializeToString(deterministic=True)
    signature = _describe(graph_def, input_names, output_names)
    _check_no_variables(graph_def, str(out_pb))
    atomic_write_bytes(out_pb, data)
    return signature


def _node(tensor_name: str) -> str:
    return tensor_name.lstrip("^").split(":")[0]


def _attach_io(graph_def: Any, in_tensors: list[Any], input_names: list[str],
               out_tensors: list[Any], output_names: list[str]) -> Any:
    """Rename the input placeholders and add one ``Identity`` per output, named as wanted."""
    names = {n.name for n in graph_def.node}
    renames = {_node(t.name): new for t, new in zip(in_tensors, input_names, strict=True)}
    for wanted in set(input_names + output_names) & names - set(renames):
        # An internal node already has a wanted I/O name: move it out of the way.
        i = 1
        while f"{wanted}_{i}" in names:
            i += 1
        renames[wanted] = f"{wanted}_{i}"
        names.add(renames[wanted])
    for node in graph_def.node:  # simultaneous rename: each name is looked up once
        node.name = renames.get(node.name, node.name)
        for i, inp in enumerate(node.input):
            ctrl, (name, sep, port) = inp.startswith("^"), inp.lstrip("^").partition(":")
            if name in renames:
                node.input[i] = ("^" if ctrl else "") + renames[name] + sep + port
    for tensor, name in zip(out_tensors, output_names, strict=True):
        src, sep, port = tensor.name.partition(":")
        node = graph_def.node.add(name=name, op="Identity",
                                  input=[renames.get(src, src) + (sep + port if port != "0" else "")])
        node.attr["T"].type = tensor.dtype.as_datatype_enum
    return graph_def


def _canonicalize(graph_def: Any, output_names: list[str]) -> Any:
    """Bypass internal Identity/NoOp nodes, prune to ``output_names``, order nodes canonically.

    The result depends only on the graph's structure and names (not on the order TensorFlow
    happened to emit nodes in), so freezing the same model twice gives byte-identical files.
    """
    nodes = {n.name: n for n in graph_def.node}
    protected = set(output_names) | {n.name for n in graph_def.node if n.op == "Placeholder"}

    def source(inp: str) -> str | None:
        """Follow ``inp`` through bypassable Identity nodes; None for control deps on NoOps."""
        ctrl = inp.startswith("^")
        name, _, port = inp.lstrip("^").partition(":")
        node = nodes.get(name)
        while (node is not None and node.op == "Identity" and node.name not in protected
               and (port in ("", "0")) and len(node.input) == 1 and not node.input[0].startswith("^")):
            name, _, port = node.input[0].partition(":")
            node = nodes.get(name)
        if ctrl:
            return None if node is None or node.op == "NoOp" else "^" + name
        return name + (f":{port}" if port not in ("", "0") else "")

    out = type(graph_def)()
    out.versions.CopyFrom(graph_def.versions)
    seen: set[str] = set()

    def visit(name: str) -> None:
        # Iterative post-order DFS: deep graphs must not hit Python's recursion limit.
        stack: list[tuple[str, bool]] = [(name, False)]
        while stack:
            cur, expanded = stack.pop()
            if cur in seen:
                continue
            node = nodes[cur]
            new_inputs = [s for s in (source(i) for i in node.input) if s is not None]
            if expanded:
                seen.add(cur)
                copy = out.node.add()
                copy.CopyFrom(node)
                del copy.input[:]
                copy.input.extend(new_inputs)
                continue
            stack.append((cur, True))
            for inp in reversed(new_inputs):
                if _node(inp) not in seen:
                    stack.append((_node(inp), False))

    for name in output_names:
        visit(name)
    return out


def _check_node_name(name: str, origin: str) -> None:
    if not _TF_NAME.match(name):
        raise InvalidArtifact(f"{origin}: {name!r} is not usable as a graph node name",
                              hint="rename the Keras input/output layer to letters, digits, '_', '-', '.'")


def _check_no_variables(graph_def: Any, where: str) -> None:
    for node in graph_def.node:
        if node.op in _VARIABLE_OPS:
            raise InvalidArtifact(f"{where}: node {node.name!r} is a variable op ({node.op}); "
                                  "the graph is not frozen",
                                  hint="freeze it first (convert_variables_to_constants_v2) or give "
                                       "trtpipe the Keras/SavedModel source instead", node=node.name)


# --------------------------------------------------------------------------------------------------
# signatures


def _parse_graph_def(data: bytes, where: str) -> Any:
    tf = require("tensorflow")
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(data)
    except Exception as exc:  # protobuf DecodeError
        raise InvalidArtifact(f"{where}: not a TensorFlow GraphDef ({exc})",
                              hint="the file must be a binary frozen GraphDef (.pb)", path=where) from exc
    if not graph_def.node:
        raise InvalidArtifact(f"{where}: GraphDef has no nodes",
                              hint="the file is empty or not a binary frozen GraphDef", path=where)
    return graph_def


def _validate_frozen(data: bytes, where: str) -> Signature:
    graph_def = _parse_graph_def(data, where)
    if not any(n.op == "Placeholder" for n in graph_def.node):
        raise InvalidArtifact(f"{where}: frozen graph has no Placeholder (no inputs)",
                              hint="the graph must take its inputs through Placeholder nodes", path=where)
    _check_no_variables(graph_def, where)
    return _signature_of(graph_def, where)


def signature_of_pb(pb_bytes: bytes) -> Signature:
    """Signature of a frozen GraphDef: Placeholders are the inputs, sink nodes the outputs."""
    return _signature_of(_parse_graph_def(pb_bytes, "<frozen graph>"), "<frozen graph>")


def _signature_of(graph_def: Any, where: str) -> Signature:
    consumed = {_node(i) for n in graph_def.node for i in n.input}
    inputs = [n.name for n in graph_def.node if n.op == "Placeholder"]
    outputs = [n.name for n in graph_def.node if n.name not in consumed and n.op not in _NON_OUTPUT_OPS]
    if not outputs:
        raise InvalidArtifact(f"{where}: no output nodes found", hint="the graph computes nothing", path=where)
    return _describe(graph_def, inputs, outputs)


def _describe(graph_def: Any, inputs: list[str], outputs: list[str]) -> Signature:
    """Import the graph (no session) to read dtypes and inferred shapes of the named nodes."""
    tf = require("tensorflow")
    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.compat.v1.import_graph_def(graph_def, name="")
        except Exception as exc:
            raise InvalidArtifact(f"frozen graph does not import: {type(exc).__name__}: {exc}",
                                  hint="the GraphDef is inconsistent or uses ops unknown to this "
                                       f"TensorFlow {tf.__version__}") from exc

    def spec(name: str) -> dict[str, Any]:
        t = graph.get_tensor_by_name(f"{name}:0")
        shape = None if t.shape.rank is None else [d for d in t.shape.as_list()]
        return {"name": name, "dtype": t.dtype.name, "shape": shape}

    return {"inputs": [spec(n) for n in inputs], "outputs": [spec(n) for n in outputs],
            "tensorflow": str(tf.__version__)}


# --------------------------------------------------------------------------------------------------
# running


class TFRunner:
    """Run a frozen graph repeatedly on CPU with one reused ``tf.compat.v1.Session``."""

    def __init__(self, pb_path: Path, outputs: list[str]) -> None:
        tf = require("tensorflow")
        self.path = Path(pb_path)
        graph_def = _parse_graph_def(self.path.read_bytes(), str(self.path))
        self._graph = tf.Graph()
        with self._graph.as_default():
            tf.compat.v1.import_graph_def(graph_def, name="")
        self.inputs = [n.name for n in graph_def.node if n.op == "Placeholder"]
        self.outputs = list(outputs)
        names = {n.name for n in graph_def.node}
        for name in self.outputs:
            if _node(name) not in names:
                raise InvalidArtifact(f"{self.path}: output {name!r} is not a node of the graph",
                                      hint=f"graph sinks: {signature_of_pb(self.path.read_bytes())['outputs']}",
                                      path=str(self.path), node=name)
        self._fetches = [self._graph.get_tensor_by_name(_tensor(n)) for n in self.outputs]
        config = tf.compat.v1.ConfigProto(device_count={"GPU": 0})
        self._session = tf.compat.v1.Session(graph=self._graph, config=config)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Feed ``feeds`` (by input name) and return every requested output by name."""
        unknown = sorted(set(feeds) - set(self.inputs))
        missing = sorted(set(self.inputs) - set(feeds))
        if unknown or missing:
            raise InvalidArtifact(f"{self.path}: feeds do not match graph inputs {self.inputs} "
                                  f"(missing: {missing}, unknown: {unknown})",
                                  hint="feed exactly the signature's input names", path=str(self.path))
        feed_dict = {self._graph.get_tensor_by_name(_tensor(k)): v for k, v in feeds.items()}
        try:
            values = self._session.run(self._fetches, feed_dict=feed_dict)
        except Exception as exc:
            raise InvalidArtifact(f"{self.path}: TensorFlow run failed: {type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''}",
                                  hint="check feed shapes and dtypes against the signature",
                                  path=str(self.path)) from exc
        return {n: np.asarray(v) for n, v in zip(self.outputs, values, strict=True)}

    def close(self) -> None:
        """Release the session."""
        self._session.close()

    def __enter__(self) -> TFRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tensor(name: str) -> str:
    return name if ":" in name else f"{name}:0"


def run_frozen(pb_path: Path, feeds: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    """Run the frozen graph at ``pb_path`` once on CPU and return ``outputs`` by name."""
    with TFRunner(pb_path, outputs) as runner:
        return runner.run(feeds)
