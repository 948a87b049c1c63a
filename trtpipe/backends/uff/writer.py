"""TF GraphDef -> UFF, following NVIDIA's ``convert-to-uff`` conventions (doc ``uff-format.md`` §5-§15).

Conventions reproduced: header values and descriptors, reverse-DFS node order from the outputs
(last output first, last input first), Identity bypass, ``MarkOutput_k`` markers, Const weights as
TF's own bytes in ``referenced_data["weights_<id>"]`` with layouts declared by shared
``orders_<...>`` entries, graphsurgeon-style plugin nodes with ``_u_*`` typed fields.

Deliberate differences from NVIDIA's converter (each fixes a converter defect):
control inputs (``^name``) are dropped instead of being kept as data inputs; int64 constants keep
their values (the converter wrote empty blobs); TF ``Pow`` becomes ``Binary pow`` (the converter
wrote an invalid ``Unary pow``); ``Shape -> StridedSlice -> Pack`` shape computations that feed a
Reshape or a transposed convolution are folded into a Const with ``-1`` for the batch dimension.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trtpipe.backends._imports import require
from trtpipe.backends.uff import format as fmt
from trtpipe.errors import ConfigError, InvalidArtifact, UnsupportedOp

_ORDERS = ("NHWC", "NCHW", "NC")


@dataclass(frozen=True)
class UffInput:
    """A network input: TF node ``name``, full TF-layout ``shape`` (batch included, -1/None =
    dynamic; None = take it from the Placeholder) and the ``order`` TensorRT's UffParser is told."""

    name: str
    shape: tuple[int | None, ...] | None = None
    order: str = "NHWC"

    def trt_dims(self) -> tuple[int, ...]:
        """Dims for ``UffParser.register_input``: the shape without the batch dimension."""
        if self.shape is None:
            raise ValueError(f"input {self.name!r} has no shape")
        return tuple(-1 if d is None else int(d) for d in self.shape[1:])


@dataclass(frozen=True)
class PluginSpec:
    """Replace a TF op type or name scope by one TensorRT plugin node ``_<op>`` (graphsurgeon's
    ``create_plugin_node``): ``name`` defaults to the scope (or the matched node's name),
    ``fields`` become ``_u_int/_u_float/_u_ilist/_u_flist/_u_str`` typed fields, ``inputs``
    defaults to the inputs the replaced nodes took from outside."""

    op: str
    name: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] | None = None


def plugins_from_yaml(d: dict[str, Any]) -> dict[str, PluginSpec]:
    """Build plugin specs from ``{scope_or_op: {op: NMS_TRT, name: ..., fields: {...}, inputs: [...]}}``."""
    if not isinstance(d, dict):
        raise ConfigError(f"plugins: expected a mapping of op type or scope to a plugin, got "
                          f"{type(d).__name__}", hint="plugins: {NMS: {op: NMS_TRT, fields: {...}}}")
    out: dict[str, PluginSpec] = {}
    for key, spec in d.items():
        where = f"plugins.{key}"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: expected a mapping with 'op', got {type(spec).__name__}")
        unknown = set(spec) - {"op", "name", "fields", "inputs"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}",
                              hint="allowed keys: op, name, fields, inputs")
        op = spec.get("op")
        if not isinstance(op, str) or not op:
            raise ConfigError(f"{where}.op: expected the plugin name (e.g. NMS_TRT), got {op!r}")
        name = spec.get("name")
        if name is not None and not isinstance(name, str):
            raise ConfigError(f"{where}.name: expected a string, got {name!r}")
        fields = spec.get("fields") or {}
        if not isinstance(fields, dict):
            raise ConfigError(f"{where}.fields: expected a mapping, got {type(fields).__name__}")
        for fname, value in fields.items():
            try:
                plugin_field(str(fname), value)
            except ValueError as exc:
                raise ConfigError(f"{where}.fields.{fname}: {exc}") from None
        inputs = spec.get("inputs")
        if inputs is not None and (not isinstance(inputs, list)
                                   or not all(isinstance(i, str) for i in inputs)):
            raise ConfigError(f"{where}.inputs: expected a list of node names, got {inputs!r}")
        out[str(key)] = PluginSpec(op=op.lstrip("_"), name=name, fields=dict(fields), inputs=inputs)
    return out


# ----------------------------------------------------------------------------- Data helpers

def d_i(v: int) -> Any:
    """``Data{i}`` (set even when 0: every Data member is in a oneof, doc §4)."""
    return fmt.Data(i=int(v))


def d_d(v: Any) -> Any:
    """``Data{d}`` holding a float32 attribute widened to double, as the converter wrote it."""
    return fmt.Data(d=float(np.float32(v)))


def d_s(v: str) -> Any:
    """``Data{s}``."""
    return fmt.Data(s=v)


def d_b(v: bool) -> Any:
    """``Data{b}``."""
    return fmt.Data(b=bool(v))


def d_ilist(vals: Any) -> Any:
    """``Data{i_list}`` (an empty list is still written: ``42 00``)."""
    d = fmt.Data()
    d.i_list.SetInParent()
    d.i_list.val.extend(int(v) for v in vals)
    return d


def d_dlist(vals: Any) -> Any:
    """``Data{d_list}`` of float32-rounded values."""
    d = fmt.Data()
    d.d_list.SetInParent()
    d.d_list.val.extend(float(np.float32(v)) for v in vals)
    return d


def d_dtype(np_dtype: Any) -> Any:
    """``Data{dtype}`` for a numpy dtype; 7 (what NVIDIA writes) when UFF has no such type."""
    return fmt.Data(dtype=fmt.UFF_OF.get(np.dtype(np_dtype).name, 7))


def plugin_field(key: str, value: Any) -> tuple[str, Any]:
    """graphsurgeon's field typing (doc §14): returns the suffixed field name and its Data."""
    if key == "dtype":
        return key, d_dtype(value)
    if key == "shape":
        return key, d_ilist(value)
    if "_u_" in key:  # already typed by the caller: trust the suffix
        suffix = key.rsplit("_u_", 1)[1]
        kinds = {"int": lambda v: d_i(int(v)), "float": d_d, "str": lambda v: d_s(str(v)),
                 "ilist": d_ilist, "flist": d_dlist, "bool": lambda v: d_i(int(bool(v)))}
        if suffix not in kinds:
            raise ValueError(f"unknown plugin field suffix _u_{suffix}")
        return key, kinds[suffix](value)
    # NVIDIA's copy tests int before bool, so True/False become _u_int 1/0.
    if isinstance(value, (bool, int, np.integer)):
        return f"{key}_u_int", d_i(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{key}_u_float", d_d(value)
    if isinstance(value, str):
        return f"{key}_u_str", d_s(value)
    if isinstance(value, (list, tuple)):
        if any(isinstance(v, (float, np.floating)) for v in value):
            return f"{key}_u_flist", d_dlist(value)
        if all(isinstance(v, (bool, int, np.integer)) for v in value):
            return f"{key}_u_ilist", d_ilist(value)
    raise ValueError(f"cannot type plugin field value {value!r} (int, float, str, list of numbers)")


def strip_port(name: str) -> str:
    """TF input reference -> node name (drops ``^`` and ``:k``)."""
    name = name.lstrip("^")
    base, _, port = name.rpartition(":")
    return base if base and port.isdigit() else name


# ----------------------------------------------------------------------------- the converter

class Converter:
    """State of one GraphDef -> UFF conversion (used by ``writer_ops`` handlers)."""

    def __init__(self, tf: Any, nodes: dict[str, Any], plugin_specs: dict[str, PluginSpec],
                 input_specs: dict[str, UffInput], allow_custom: bool) -> None:
        self.tf = tf
        self.nodes = nodes
        self.plugin_specs = plugin_specs
        self.input_specs = input_specs
        self.allow_custom = allow_custom
        self.meta = fmt.MetaGraph(version=1, descriptor_core_version=1)
        self.meta.descriptors.add(id="tensorflow_extension", version=1, optional=False)
        self.graph = self.meta.graphs.add(id="main")
        self.emitted: set[str] = set()
        self.visited: set[str] = set()
        self.forced_const: dict[str, np.ndarray] = {}
        self._const_cache: dict[str, np.ndarray | None] = {}

    # -- graph access
    def node(self, name: str) -> Any:
        """The TF NodeDef called ``name`` (error naming it if absent)."""
        if name not in self.nodes:
            raise InvalidArtifact(f"graph references node {name!r}, which does not exist",
                                  node=name, hint="the GraphDef is incomplete")
        return self.nodes[name]

    def data_inputs(self, node: Any) -> list[str]:
        """Data inputs of ``node`` with Identity bypass applied (control inputs dropped)."""
        return [self.bypass(strip_port(i)) for i in node.input if not i.startswith("^")]

    def bypass(self, name: str) -> str:
        """Follow TF ``Identity`` chains to the real producer (doc §6)."""
        seen = 0
        while (name in self.nodes and self.nodes[name].op == "Identity"
               and name not in self.input_specs and name not in self.plugin_specs and seen < 1000):
            ins = [i for i in self.nodes[name].input if not i.startswith("^")]
            if not ins:
                break
            name, seen = strip_port(ins[0]), seen + 1
        return name

    def attr(self, node: Any, key: str, default: Any = None) -> Any:
        """A NodeDef attribute as a Python value (``s`` decoded, lists as lists)."""
        if key not in node.attr:
            return default
        a = node.attr[key]
        kind = a.WhichOneof("value")
        if kind == "s":
            return a.s.decode("utf-8", "replace")
        if kind == "list":
            for sub in ("i", "f", "s", "b", "type"):
                vals = list(getattr(a.list, sub))
                if vals:
                    return vals
            return []
        return getattr(a, kind) if kind else default

    def const_value(self, name: str) -> np.ndarray | None:
        """Value of ``name`` if it is a constant (or a foldable constant expression), else None."""
        if name in self.forced_const:
            return self.forced_const[name]
        if name not in self._const_cache:
            self._const_cache[name] = None  # guards against cycles
            self._const_cache[name] = self._fold(name)
        return self._const_cache[name]

    def _fold(self, name: str) -> np.ndarray | None:
        node = self.nodes.get(name)
        if node is None or name in self.input_specs or name in self.plugin_specs:
            return None
        if node.op == "Const":
            return np.asarray(self.tf.make_ndarray(node.attr["value"].tensor))
        ins = self.data_inputs(node)
        if node.op == "StridedSlice" and len(ins) == 4:
            # Shape(x)[0] with x's batch dimension dynamic: the -1 of a static reshape.
            src = self.nodes.get(ins[0])
            b, e, s = (self.const_value(i) for i in ins[1:])
            if (src is not None and src.op == "Shape" and b is not None and e is not None
                    and s is not None and b.tolist() == [0] and e.tolist() == [1]
                    and s.tolist() == [1] and self.attr(node, "shrink_axis_mask", 0) == 1):
                return np.array(-1, dtype=np.int32)
            return None
        maybe = [self.const_value(i) for i in ins]
        vals = [v for v in maybe if v is not None]
        if len(vals) != len(maybe):
            return None
        try:
            if node.op == "Identity":
                return vals[0]
            if node.op == "Pack":
                return np.stack(vals, axis=int(self.attr(node, "axis", 0)))
            if node.op == "Reshape":
                return np.reshape(vals[0], [int(v) for v in np.ravel(vals[1])])
            if node.op == "Squeeze":
                axes = self.attr(node, "squeeze_dims", []) or None
                return np.squeeze(vals[0], axis=tuple(axes) if axes else None)
            if node.op == "ExpandDims":
                return np.expand_dims(vals[0], int(np.ravel(vals[1])[0]))
            if node.op == "Cast":
                return vals[0].astype(self.tf.as_dtype(self.attr(node, "DstT")).as_numpy_dtype)
            if node.op == "ConcatV2":
                return np.concatenate(vals[:-1], axis=int(np.ravel(vals[-1])[0]))
        except (ValueError, TypeError, IndexError):
            return None
        return None

    # -- emission
    def add_node(self, node_id: str, op: str, inputs: list[str] | None = None,
                 fields: dict[str, Any] | None = None) -> None:
        """Append one UFF node."""
        n = self.graph.nodes.add(id=node_id, operation=op)
        n.inputs.extend(inputs or [])
        for key, value in (fields or {}).items():
            n.fields[key].CopyFrom(value)
        self.emitted.add(node_id)
        if op.startswith("_") and not any(d.id == "custom" for d in self.meta.descriptors):
            self.meta.descriptors.add(id="custom", version=1, optional=False)

    def orders_ref(self, orders: list[str]) -> Any:
        """``Data{ref}`` to the shared ``orders_<...>`` entry, creating it on first use."""
        key = fmt.orders_key(orders)
        if key not in self.meta.referenced_data:
            self.meta.referenced_data[key].CopyFrom(fmt.orders_data(orders))
        return fmt.Data(ref=key)

    def add_const(self, node_id: str, arr: np.ndarray) -> None:
        """Emit ``Const`` with its blob in ``referenced_data["weights_<id>"]`` (doc §7)."""
        arr = np.asarray(arr)
        code = fmt.UFF_OF.get(arr.dtype.name)
        if code is None:
            raise UnsupportedOp(f"node {node_id!r}: constant of dtype {arr.dtype.name} cannot be "
                                "stored in UFF (int8/16/32/64, float16/32 only)", node=node_id,
                                hint="cast it in the model, or use the ONNX route")
        key = f"weights_{node_id}"
        k = 0
        while key in self.meta.referenced_data:
            key, k = f"weights_{node_id}_{k}", k + 1
        blob = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        self.meta.referenced_data[key].CopyFrom(fmt.Data(blob=blob))
        self.add_node(node_id, "Const", [], {"dtype": fmt.Data(dtype=code),
                                             "shape": d_ilist(arr.shape),
                                             "values": fmt.Data(ref=key)})
        self.visited.add(node_id)

    def unsupported(self, node: Any, why: str) -> UnsupportedOp:
        """The error for a node this writer cannot express in UFF."""
        return UnsupportedOp(
            f"node {node.name!r} (TF op {node.op}): {why}", node=node.name,
            hint="use the ONNX route for this model, or map the op/scope to a TensorRT plugin "
                 "with a `plugins:` entry (e.g. {" + node.op + ": {op: <Name>_TRT}})")


def _collapse_plugins(nodes: dict[str, Any], plugins: dict[str, PluginSpec], tf: Any
                      ) -> tuple[dict[str, Any], dict[str, PluginSpec]]:
    """Apply graphsurgeon-style replacement: each op type / scope key becomes plugin node(s)."""
    by_node: dict[str, PluginSpec] = {}
    for key, spec in plugins.items():
        matched = [n for n in nodes.values() if n.op == key]
        if matched:
            for n in matched:
                by_node[n.name] = spec
                if spec.inputs is not None:
                    del n.input[:]
                    n.input.extend(spec.inputs)
            continue
        members = {n for n in nodes if n == key or n.startswith(key + "/")}
        if not members:
            raise ConfigError(f"plugins: {key!r} matches no op type and no name scope of the graph",
                              hint="use a TF op type (e.g. NonMaxSuppressionV3) or a name scope")
        new_name = spec.name or key
        if new_name in nodes and new_name not in members:
            raise ConfigError(f"plugins.{key}.name: {new_name!r} is already a node of the graph")
        ext: list[str] = []
        for m in nodes:  # graph order keeps the external inputs in a stable order
            if m in members:
                for i in nodes[m].input:
                    base = strip_port(i)
                    if not i.startswith("^") and base not in members and base not in ext:
                        ext.append(base)
        new = tf.compat.v1.NodeDef(name=new_name, op=spec.op)
        new.input.extend(spec.inputs if spec.inputs is not None else ext)
        nodes = {n: v for n, v in nodes.items() if n not in members}
        for n in nodes.values():
            rewired = [new_name if strip_port(i) in members and not i.startswith("^") else i
                       for i in n.input]
            del n.input[:]
            n.input.extend(rewired)
        nodes[new_name] = new
        by_node[new_name] = spec
    return nodes, by_node


def _default_outputs(nodes: dict[str, Any]) -> list[str]:
    consumed = {strip_port(i) for n in nodes.values() for i in n.input}
    # Unused constants, NoOps and placeholders are sinks too, but never meaningful outputs.
    return [n for n, v in nodes.items()
            if n not in consumed and v.op not in ("Const", "NoOp", "Placeholder")]


def _check_name(nodes: dict[str, Any], name: str, what: str) -> str:
    base = strip_port(name)
    if base not in nodes:
        close = difflib.get_close_matches(base, list(nodes), n=3)
        raise InvalidArtifact(f"{what} {name!r} is not a node of the graph", node=base,
                              hint=f"did you mean {', '.join(map(repr, close))}?" if close
                              else "list the graph's nodes (trtpipe inspect) and pick one")
    return base


def graphdef_to_uff(graph_def: bytes, inputs: list[UffInput] | None = None,
                    outputs: list[str] | None = None, plugins: dict[str, PluginSpec] | None = None,
                    *, allow_custom: bool = False) -> bytes:
    """Convert a frozen TF GraphDef (serialised bytes) to UFF bytes.

    ``inputs`` default to the graph's Placeholders (as reached from the outputs), ``outputs`` to its
    sinks. Ops with no UFF equivalent raise ``UnsupportedOp`` unless ``allow_custom`` (then they
    become custom ``_<Op>`` nodes) or ``plugins`` maps them.
    """
    from trtpipe.backends.uff import writer_ops

    tf = require("tensorflow")
    gd = tf.compat.v1.GraphDef()
    try:
        gd.ParseFromString(bytes(graph_def))
    except Exception as exc:  # protobuf's DecodeError type differs between implementations
        raise InvalidArtifact(f"not a TensorFlow GraphDef: {exc}",
                              hint="give the frozen .pb written by the freeze stage") from None
    if not gd.node:
        raise InvalidArtifact("the GraphDef has no nodes", hint="give a frozen graph")
    nodes: dict[str, Any] = {n.name: n for n in gd.node if n.op != "Assert"}
    nodes, plugin_specs = _collapse_plugins(nodes, plugins or {}, tf)

    input_specs: dict[str, UffInput] = {}
    for spec in inputs or []:
        if spec.order not in _ORDERS:
            raise ConfigError(f"input {spec.name!r}: order {spec.order!r} is not one of {_ORDERS}")
        input_specs[_check_name(nodes, spec.name, "input")] = spec
    out_names = [_check_name(nodes, o, "output") for o in (outputs or _default_outputs(nodes))]
    if not out_names:
        raise InvalidArtifact("the graph has no outputs", hint="name the outputs explicitly")

    cv = Converter(tf, nodes, plugin_specs, input_specs, allow_custom)
    stack = list(out_names)
    while stack:
        name = stack.pop()
        if name in cv.visited:
            continue
        cv.visited.add(name)
        try:
            stack.extend(writer_ops.convert_node(cv, name))
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            op = nodes[name].op if name in nodes else "?"
            raise InvalidArtifact(f"node {name!r} (TF op {op}): malformed node ({exc})", node=name,
                                  hint="the GraphDef is not a valid frozen graph") from None
    for name in input_specs:
        if name not in cv.emitted:
            raise InvalidArtifact(f"input {name!r} does not feed any of the outputs {out_names}",
                                  node=name, hint="check the input and output names")
    taken = set(cv.emitted)
    k = 0
    for out in out_names:
        while f"MarkOutput_{k}" in taken:
            k += 1
        cv.add_node(f"MarkOutput_{k}", "MarkOutput", [out])
        taken.add(f"MarkOutput_{k}")
    return fmt.serialize(cv.meta)
