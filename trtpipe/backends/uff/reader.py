"""UFF -> ONNX. The ONNX graph computes what the TF graph computed, in TF's layouts.

Tensors keep the layout the UFF file declares (TF's NHWC for TF-converted files); ops whose ONNX
form is channel-first (Conv, ConvTranspose, pooling, BatchNormalization) get Transposes around
them, and their weights are re-laid-out on the host from the declared orders (``+CK`` -> OIHW...).
ONNX Runtime's layout optimizer removes the back-to-back transposes. Graph inputs are the Input
node ids (a ``-1`` batch dimension becomes the symbolic ``N``); graph outputs are the ids of the
nodes feeding ``MarkOutput``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from trtpipe.backends._imports import require
from trtpipe.backends.uff import format as fmt
from trtpipe.errors import ConfigError, InvalidArtifact, TrtpipeError, UnsupportedOp

Shape = list[int | None] | None
CustomOp = Callable[["ReaderContext", Any], None]


def _pyvalue(data: Any) -> Any:
    kind = data.WhichOneof("data_oneof")
    if kind is None:
        return None
    value = getattr(data, kind)
    if kind in ("s_list", "d_list", "b_list", "i_list", "dtype_list"):
        return list(value.val)
    if kind == "dim_orders_list":
        return [list(v.orders[fmt.OE_SPECIAL].val) for v in value.val]
    if kind == "dim_orders":
        return list(value.orders[fmt.OE_SPECIAL].val)
    return value


class ReaderContext:
    """What an op handler (built-in or ``custom_ops``) uses to emit ONNX nodes for one UFF node."""

    def __init__(self, onnx: Any, meta: Any, opset: int, path: str | None) -> None:
        self.onnx = onnx
        self.meta = meta
        self.opset = opset
        self.path = path
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.consts: dict[str, np.ndarray] = {}
        self.shapes: dict[str, Shape] = {}
        self.dtypes: dict[str, int] = {}
        self._counter = itertools.count()
        self._transposed: dict[tuple[str, tuple[int, ...]], str] = {}

    # -- fields and inputs
    def fields(self, node: Any) -> dict[str, Any]:
        """The node's fields as Python values, refs resolved (orders as encoded int lists)."""
        return {k: _pyvalue(fmt.resolve(self.meta, v, f"node {node.id!r}"))
                for k, v in node.fields.items()}

    def field(self, node: Any, key: str, default: Any = None, required: bool = False) -> Any:
        """One field as a Python value; a missing required field is an ``InvalidArtifact``."""
        if key not in node.fields:
            if required:
                raise self.error(node, f"field {key!r} is missing")
            return default
        value = _pyvalue(fmt.resolve(self.meta, node.fields[key], f"node {node.id!r}"))
        return default if value is None else value

    def orders(self, node: Any, count: int) -> list[list[int]]:
        """The node's ``inputs_orders`` (``count`` encoded entries)."""
        value = self.field(node, "inputs_orders", required=True)
        if not isinstance(value, list) or len(value) < count:
            raise self.error(node, f"inputs_orders has {len(value) if isinstance(value, list) else 0} "
                                   f"entries, expected {count}")
        return value

    def input(self, node: Any, index: int) -> str:
        """ONNX tensor name of the node's ``index``-th input."""
        if index >= len(node.inputs):
            raise self.error(node, f"needs at least {index + 1} inputs, has {len(node.inputs)}")
        return str(node.inputs[index])

    def const(self, name: str) -> np.ndarray | None:
        """The value of tensor ``name`` if it is a constant."""
        return self.consts.get(name)

    def need_const(self, node: Any, index: int, what: str) -> np.ndarray:
        """The constant value of an input that must be a constant."""
        value = self.const(self.input(node, index))
        if value is None:
            raise UnsupportedOp(f"{self.where(node)}: {what} (input {index}) must be a Const",
                                node=node.id, path=self.path)
        return value

    # -- emission
    def fresh(self, base: str) -> str:
        """A tensor name that cannot collide with a UFF node id."""
        return f"{base}::{next(self._counter)}"

    def add(self, op_type: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        """Append an ONNX node with one output (named ``output`` or fresh); return the output."""
        out = output or self.fresh(op_type)
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [out],
                                                     name=self.fresh(op_type), **attrs))
        return out

    def constant(self, value: np.ndarray, base: str = "const", name: str | None = None) -> str:
        """Add an initializer and return its name."""
        value = np.ascontiguousarray(value)
        name = name or self.fresh(base)
        self.initializers.append(self.onnx.numpy_helper.from_array(value, name))
        self.consts[name] = value
        self.set_info(name, list(value.shape), self.onnx.helper.np_dtype_to_tensor_dtype(value.dtype))
        return name

    def int64s(self, values: Any, base: str = "ints") -> str:
        """An int64 1-D initializer (shape/axes/pads operands)."""
        return self.constant(np.asarray(list(values), dtype=np.int64).reshape(-1), base)

    def set_info(self, name: str, shape: Shape, dtype: int | None = None) -> None:
        """Record the (partly) known shape and ONNX element type of a tensor."""
        self.shapes[name] = shape
        if dtype is not None:
            self.dtypes[name] = dtype

    def rank(self, node: Any, name: str) -> int:
        """Rank of ``name`` (needed to interpret orders); an error if unknown."""
        shape = self.shapes.get(name)
        if shape is None:
            raise UnsupportedOp(f"{self.where(node)}: the rank of input {name!r} is unknown",
                                node=node.id, path=self.path,
                                hint="give the UFF Input nodes full shapes")
        return len(shape)

    def transpose(self, name: str, perm: list[int]) -> str:
        """``name`` transposed by ``perm`` (constants folded, repeats and inverses reused)."""
        if perm == sorted(perm):
            return name
        key = (name, tuple(perm))
        if key in self._transposed:
            return self._transposed[key]
        value = self.const(name)
        if value is not None:
            out = self.constant(np.transpose(value, perm), "relayout")
        else:
            out = self.add("Transpose", [name], perm=perm)
            shape = self.shapes.get(name)
            self.set_info(out, None if shape is None else [shape[p] for p in perm],
                          self.dtypes.get(name))
        self._transposed[key] = out
        inverse = [int(i) for i in np.argsort(perm)]
        self._transposed[(out, tuple(inverse))] = name
        return out

    # -- errors
    def where(self, node: Any) -> str:
        """``file: node 'id' (Op)`` for messages."""
        return f"{self.path or '<uff bytes>'}: node {node.id!r} ({node.operation})"

    def error(self, node: Any, message: str) -> InvalidArtifact:
        """An ``InvalidArtifact`` about ``node``."""
        return InvalidArtifact(f"{self.where(node)}: {message}", node=node.id, path=self.path)


def _order(ctx: ReaderContext, meta_nodes: dict[str, Any], outputs: list[str]) -> list[Any]:
    """Producers before consumers, only nodes the outputs need (iterative DFS, cycles rejected)."""
    done: set[str] = set()
    active: set[str] = set()
    result: list[Any] = []
    for out in outputs:
        stack: list[tuple[str, bool]] = [(out, False)]
        while stack:
            name, expanded = stack.pop()
            if expanded:
                active.discard(name)
                done.add(name)
                result.append(meta_nodes[name])
                continue
            if name in done:
                continue
            if name in active:
                raise InvalidArtifact(f"{ctx.path or '<uff bytes>'}: node {name!r} is part of a "
                                      "cycle", node=name, path=ctx.path)
            active.add(name)
            stack.append((name, True))
            for inp in reversed(meta_nodes[name].inputs):
                if inp not in done:
                    stack.append((inp, False))
    return result


def _value_info(ctx: ReaderContext, name: str) -> Any:
    """Graph input/output type: known dims as ints, the batch as ``N``, others symbolic."""
    shape = ctx.shapes.get(name)
    dims = None if shape is None else [
        d if d is not None else ("N" if i == 0 else f"{name}_d{i}") for i, d in enumerate(shape)]
    info = ctx.onnx.helper.make_tensor_value_info(name, ctx.dtypes.get(name, 1), dims)
    return info


def uff_to_onnx(data: bytes, *, opset: int = 17, custom_ops: dict[str, CustomOp] | None = None,
                path: str | None = None) -> Any:
    """Convert UFF bytes to an ``onnx.ModelProto`` that passes ``onnx.checker.check_model``.

    ``custom_ops`` maps a custom op (``_NMS_TRT`` or ``NMS_TRT``) to ``fn(ctx, node)`` which must
    emit ONNX nodes producing a tensor named ``node.id`` (see ``ReaderContext``).
    """
    from trtpipe.backends.uff import reader_ops

    if not 13 <= opset <= 21:
        raise ConfigError(f"opset {opset} is not supported by the UFF reader (13..21)",
                          hint="use opset: 17")
    meta = fmt.parse(data, path)
    onnx = require("onnx")
    ctx = ReaderContext(onnx, meta, opset, path)
    graph = meta.graphs[0]
    by_id = {n.id: n for n in graph.nodes}
    outputs = [str(n.inputs[0]) for n in graph.nodes if n.operation == "MarkOutput"]
    customs = {("_" + k.lstrip("_")): v for k, v in (custom_ops or {}).items()}
    graph_inputs: list[Any] = []
    for node in _order(ctx, by_id, outputs):
        handler = customs.get(node.operation) or reader_ops.HANDLERS.get(node.operation)
        if handler is None:
            kind = "custom/plugin op" if node.operation.startswith("_") else "op"
            raise UnsupportedOp(
                f"{ctx.where(node)}: {kind} {node.operation!r} has no ONNX mapping", node=node.id,
                path=path, hint="register one with custom_ops={'" + node.operation + "': fn}, "
                                "or convert the TF model with the ONNX route")
        try:
            handler(ctx, node)
        except TrtpipeError:
            raise
        except (ValueError, IndexError, KeyError, TypeError, ZeroDivisionError, OverflowError,
                AttributeError, MemoryError) as exc:
            raise ctx.error(node, f"cannot convert ({type(exc).__name__}: {exc})") from None
        if node.operation == "Input":
            graph_inputs.append(_value_info(ctx, node.id))
    seen: set[str] = set()
    graph_outputs = []
    for out in outputs:
        if out in seen:
            continue
        seen.add(out)
        if by_id[out].operation in ("Input", "Const"):
            raise UnsupportedOp(f"{path or '<uff bytes>'}: output {out!r} is an {by_id[out].operation} "
                                "node; ONNX outputs must be computed", node=out, path=path)
        graph_outputs.append(_value_info(ctx, out))
    onnx_graph = onnx.helper.make_graph(ctx.nodes, graph.id or "main", graph_inputs, graph_outputs,
                                        ctx.initializers)
    opsets = [onnx.helper.make_opsetid("", opset)]
    model = onnx.helper.make_model(onnx_graph, opset_imports=opsets, producer_name="trtpipe-uff",
                                   ir_version=onnx.helper.find_min_ir_version_for(opsets))
    if any(not o.type.tensor_type.HasField("shape") for o in model.graph.output):
        # A custom-op handler did not say what it produces: let ONNX infer the output shapes.
        try:
            model = onnx.shape_inference.infer_shapes(model)
        except Exception:  # noqa: BLE001 - inference is best effort; the checker reports the rest
            pass
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise InvalidArtifact(f"{path or '<uff bytes>'}: the ONNX model made from this UFF file is "
                              f"invalid: {str(exc).splitlines()[0]}", path=path,
                              hint="the UFF file has values the ONNX ops cannot take") from None
    return model
