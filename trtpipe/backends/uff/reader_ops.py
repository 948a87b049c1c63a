"""Per-op UFF -> ONNX handlers. Each one emits ONNX nodes whose final output is named ``node.id``
and records that tensor's shape/dtype in the context (ranks are needed to interpret orders)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from trtpipe.backends.uff import format as fmt
from trtpipe.backends.uff.reader import ReaderContext, Shape
from trtpipe.backends.uff.reader_shape_ops import (
    argminmax,
    concat,
    expand_dims,
    flatten,
    gather,
    pad,
    reduce,
    reshape,
    shape,
    squeeze,
    stack,
    strided_slice,
    transpose,
)
from trtpipe.errors import UnsupportedOp

Handler = Callable[[ReaderContext, Any], None]
_ONNX_OF_UFF = {fmt.DT_INT8: 3, fmt.DT_INT16: 5, fmt.DT_INT32: 6, fmt.DT_INT64: 7,
                fmt.DT_FLOAT16: 10, fmt.DT_FLOAT32: 1}


def canonical_perm(ctx: ReaderContext, node: Any, encoded: list[int], rank: int) -> list[int]:
    """Permutation taking a tensor in the declared order to canonical ``NC+``/``KC+`` layout."""
    tokens: list[Any] = []
    i = 0
    while i < len(encoded):
        if encoded[i] == fmt.OE_DECREMENT:
            tokens.append("-")
            i += 2
        elif i + 1 < len(encoded) and encoded[i + 1] == fmt.OE_INCREMENT:
            tokens.append("+")
            i += 2
        else:
            tokens.append(int(encoded[i]))
            i += 1
    letters = [t for t in tokens if isinstance(t, int)]
    runs = len(tokens) - len(letters)
    spatial = rank - len(letters)
    if sorted(letters) != list(range(len(letters))) or runs > 1 or spatial < 0 \
            or (runs == 0 and spatial != 0):
        raise ctx.error(node, f"order {encoded} does not fit a rank-{rank} tensor")
    perm = [0] * rank
    axis = 0
    for t in tokens:
        if isinstance(t, int):
            perm[t] = axis
            axis += 1
        else:
            for s in range(spatial):
                perm[len(letters) + s] = axis + (s if t == "+" else spatial - 1 - s)
            axis += spatial
    return perm


def _same(ctx: ReaderContext, node: Any, src: str) -> None:
    ctx.set_info(node.id, ctx.shapes.get(src), ctx.dtypes.get(src))


def _spatial_out(size: int | None, k: int, s: int, d: int, pad: int, same: bool) -> int | None:
    if size is None:
        return None
    if same:
        return -(-size // s)
    return (size + 2 * pad - ((k - 1) * d + 1)) // s + 1


def _to_cf(ctx: ReaderContext, node: Any, name: str, encoded: list[int]) -> tuple[str, list[int]]:
    """Activation -> channel-first (NC+) view; returns the tensor and the perm used."""
    perm = canonical_perm(ctx, node, encoded, ctx.rank(node, name))
    return ctx.transpose(name, perm), perm


def _from_cf(ctx: ReaderContext, node: Any, name: str, perm: list[int], shape_cf: Shape,
             dtype: int | None) -> None:
    """Channel-first result -> the declared layout, as tensor ``node.id``."""
    inverse = [int(i) for i in np.argsort(perm)]
    ctx.set_info(name, shape_cf, dtype)
    if inverse == sorted(inverse):
        ctx.add("Identity", [name], node.id)
    else:
        out = ctx.transpose(name, inverse)
        ctx.add("Identity", [out], node.id)
    ctx.set_info(node.id, None if shape_cf is None else [shape_cf[p] for p in inverse], dtype)


def _window_attrs(ctx: ReaderContext, node: Any, nsp: int) -> tuple[dict[str, Any], list[int]]:
    strides = [int(v) for v in ctx.field(node, "strides", [1] * nsp)]
    pad = [int(v) for v in ctx.field(node, "padding", [0] * nsp)]
    if len(strides) != nsp or len(pad) != nsp or min(strides) < 1 or min(pad) < 0:
        raise ctx.error(node, f"strides {strides} / padding {pad} do not fit {nsp} spatial dims")
    attrs: dict[str, Any] = {"strides": strides}
    if ctx.field(node, "implicit_padding") == "same":
        attrs["auto_pad"] = "SAME_UPPER"  # TF SAME puts the odd pixel at the end
    elif any(pad):
        attrs["pads"] = pad + pad
    return attrs, pad


def conv(ctx: ReaderContext, node: Any) -> None:
    x, w = ctx.input(node, 0), ctx.input(node, 1)
    orders = ctx.orders(node, 2)
    xc, perm = _to_cf(ctx, node, x, orders[0])
    wv = ctx.const(w)
    if wv is None or wv.ndim < 3:
        raise UnsupportedOp(f"{ctx.where(node)}: weights must be a constant of rank >= 3",
                            node=node.id, path=ctx.path)
    wc = np.transpose(wv, canonical_perm(ctx, node, orders[1], wv.ndim))  # K, C, spatial
    groups = int(ctx.field(node, "number_groups", 1))
    if groups > 1 and wc.shape[1] == groups:  # depthwise: [mult, C_in, ...] -> [C_in*mult, 1, ...]
        wc = np.swapaxes(wc, 0, 1).reshape((-1, 1) + wc.shape[2:])
    nsp = wv.ndim - 2
    attrs, pad = _window_attrs(ctx, node, nsp)
    dil = [int(v) for v in ctx.field(node, "dilation", [1] * nsp)]
    if len(dil) != nsp or min(dil) < 1 or groups < 1:
        raise ctx.error(node, f"dilation {dil} / number_groups {groups} invalid")
    wname = ctx.constant(np.ascontiguousarray(wc), "kernel")
    y = ctx.add("Conv", [xc, wname], dilations=dil, group=groups, **attrs)
    sc = ctx.shapes.get(xc)
    out_shape = None if sc is None else [sc[0], int(wc.shape[0])] + [
        _spatial_out(sc[2 + i], wc.shape[2 + i], attrs["strides"][i], dil[i], pad[i],
                     "auto_pad" in attrs) for i in range(nsp)]
    _from_cf(ctx, node, y, perm, out_shape, ctx.dtypes.get(x))


def conv_transpose(ctx: ReaderContext, node: Any) -> None:
    x, w = ctx.input(node, 0), ctx.input(node, 1)
    orders = ctx.orders(node, 2)
    target = [int(v) for v in np.ravel(ctx.need_const(node, 2, "the output shape"))]
    xc, perm = _to_cf(ctx, node, x, orders[0])
    wv = ctx.const(w)
    if wv is None or wv.ndim < 3:
        raise UnsupportedOp(f"{ctx.where(node)}: weights must be a constant of rank >= 3",
                            node=node.id, path=ctx.path)
    wc = np.transpose(wv, canonical_perm(ctx, node, orders[1], wv.ndim))  # K_out, C_in, spatial
    nsp = wv.ndim - 2
    if len(target) != nsp + 2:
        raise ctx.error(node, f"output shape {target} does not have rank {nsp + 2}")
    target_cf = [target[p] for p in perm]
    sc = ctx.shapes.get(xc)
    if sc is None or any(d is None for d in sc[2:]):
        raise UnsupportedOp(f"{ctx.where(node)}: input spatial size must be static", node=node.id,
                            path=ctx.path)
    in_sp = [int(d) for d in sc[2:] if d is not None]
    attrs, _ = _window_attrs(ctx, node, nsp)
    same = attrs.pop("auto_pad", None) is not None
    attrs.pop("pads", None)
    pads_b, pads_e, out_pad = [], [], []
    for i in range(nsp):
        full = (in_sp[i] - 1) * attrs["strides"][i] + wc.shape[2 + i]
        total = full - target_cf[2 + i]
        begin = max(total, 0) // 2 if same else 0
        pads_b.append(begin)
        pads_e.append(max(total, 0) - begin)
        out_pad.append(max(-total, 0))
    wname = ctx.constant(np.ascontiguousarray(np.swapaxes(wc, 0, 1)), "kernel")
    y = ctx.add("ConvTranspose", [xc, wname], pads=pads_b + pads_e, output_padding=out_pad,
                **attrs)
    out_shape: list[int | None] = [sc[0], int(wc.shape[0])]
    out_shape += target_cf[2:]
    _from_cf(ctx, node, y, perm, out_shape, ctx.dtypes.get(x))


def pool(ctx: ReaderContext, node: Any) -> None:
    x = ctx.input(node, 0)
    xc, perm = _to_cf(ctx, node, x, ctx.orders(node, 1)[0])
    kernel = [int(v) for v in ctx.field(node, "kernel", required=True)]
    nsp = len(kernel)
    attrs, pad = _window_attrs(ctx, node, nsp)
    if min(kernel, default=0) < 1 or ctx.rank(node, xc) != nsp + 2:
        raise ctx.error(node, f"kernel {kernel} does not fit the input")
    if "pads" in attrs:  # the converter folded an explicit zero Pad: keep TF's exact semantics
        zeros = np.zeros((), dtype=np.float32)
        xc = ctx.add("Pad", [xc, ctx.int64s([0, 0] + pad + [0, 0] + pad), ctx.constant(zeros)])
        del attrs["pads"]
    func = ctx.field(node, "func", required=True)
    if func not in ("max", "avg"):
        raise ctx.error(node, f"pool func {func!r} is not max/avg")
    y = ctx.add("MaxPool" if func == "max" else "AveragePool", [xc], kernel_shape=kernel, **attrs)
    sc = ctx.shapes.get(ctx.input(node, 0))
    sc = None if sc is None else [sc[p] for p in perm]
    out_shape = None if sc is None else sc[:2] + [
        _spatial_out(sc[2 + i], kernel[i], attrs["strides"][i], 1, pad[i], "auto_pad" in attrs)
        for i in range(nsp)]
    _from_cf(ctx, node, y, perm, out_shape, ctx.dtypes.get(x))


def fully_connected(ctx: ReaderContext, node: Any) -> None:
    a, w = ctx.input(node, 0), ctx.input(node, 1)
    orders = ctx.orders(node, 2)
    if ctx.rank(node, a) != 2:
        raise UnsupportedOp(f"{ctx.where(node)}: FullyConnected input must be 2-D",
                            node=node.id, path=ctx.path)
    a2 = ctx.transpose(a, canonical_perm(ctx, node, orders[0], 2))  # -> [N, C]
    pk = canonical_perm(ctx, node, orders[1], ctx.rank(node, w))  # -> [K, C]
    if len(pk) != 2:
        raise ctx.error(node, "FullyConnected weights must be 2-D")
    wck = ctx.transpose(w, [pk[1], pk[0]])  # MatMul wants [C, K]
    ctx.add("MatMul", [a2, wck], node.id)
    sa, sw = ctx.shapes.get(a2) or [None, None], ctx.shapes.get(wck) or [None, None]
    ctx.set_info(node.id, [sa[0], sw[1]], ctx.dtypes.get(a))


def _broadcast(a: Shape, b: Shape) -> Shape:
    if a is None or b is None:
        return None
    out: list[int | None] = []
    for x, y in zip([1] * (len(b) - len(a)) + list(a), [1] * (len(a) - len(b)) + list(b), strict=True):
        out.append(y if x == 1 else x if y == 1 else x if x is not None else y)
    return out


_BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "min": "Min", "max": "Max",
           "pow": "Pow"}
_UNARY = {"neg": "Neg", "exp": "Exp", "log": "Log", "abs": "Abs", "sqrt": "Sqrt", "sin": "Sin",
          "cos": "Cos", "tan": "Tan", "sinh": "Sinh", "cosh": "Cosh", "asin": "Asin",
          "acos": "Acos", "atan": "Atan", "asinh": "Asinh", "acosh": "Acosh", "atanh": "Atanh",
          "ceil": "Ceil", "floor": "Floor"}
_ACT = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "elu": "Elu", "selu": "Selu",
        "softsign": "Softsign", "softplus": "Softplus"}


def binary(ctx: ReaderContext, node: Any) -> None:
    a, b = ctx.input(node, 0), ctx.input(node, 1)
    func = ctx.field(node, "func", required=True)
    if func not in _BINARY:
        raise ctx.error(node, f"binary func {func!r} unknown")
    ctx.add(_BINARY[func], [a, b], node.id)
    ctx.set_info(node.id, _broadcast(ctx.shapes.get(a), ctx.shapes.get(b)), ctx.dtypes.get(a))


def unary(ctx: ReaderContext, node: Any) -> None:
    x = ctx.input(node, 0)
    func = ctx.field(node, "func", required=True)
    if func == "rsqrt":
        ctx.add("Reciprocal", [ctx.add("Sqrt", [x])], node.id)
    elif func == "square":
        ctx.add("Mul", [x, x], node.id)
    elif func in _UNARY:
        ctx.add(_UNARY[func], [x], node.id)
    else:
        raise ctx.error(node, f"unary func {func!r} unknown")
    _same(ctx, node, x)


def activation(ctx: ReaderContext, node: Any) -> None:
    x = ctx.input(node, 0)
    func = ctx.field(node, "func", required=True)
    if func == "relu6":
        lo, hi = ctx.constant(np.array(0.0, np.float32), "zero"), ctx.constant(np.array(6.0, np.float32), "six")
        ctx.add("Clip", [x, lo, hi], node.id)
    elif func in _ACT:
        ctx.add(_ACT[func], [x], node.id)
    else:
        raise ctx.error(node, f"activation func {func!r} unknown")
    _same(ctx, node, x)


def leaky_relu(ctx: ReaderContext, node: Any) -> None:
    x = ctx.input(node, 0)
    ctx.add("LeakyRelu", [x], node.id, alpha=float(ctx.field(node, "alpha", 0.01)))
    _same(ctx, node, x)


def softmax(ctx: ReaderContext, node: Any) -> None:
    x = ctx.input(node, 0)
    rank = ctx.rank(node, x)
    perm = canonical_perm(ctx, node, ctx.orders(node, 1)[0], rank)
    # ``axis`` counts in the canonical layout without the batch dim: 0 = C, the TF last axis
    # for N+C (the converter always writes 0 for TF's last-axis softmax).
    axis = int(ctx.field(node, "axis", 0))
    if not 0 <= axis + 1 < rank:
        raise ctx.error(node, f"softmax axis {axis} out of range for rank {rank}")
    ctx.add("Softmax", [x], node.id, axis=perm[axis + 1])
    _same(ctx, node, x)


def batch_norm(ctx: ReaderContext, node: Any) -> None:
    x = ctx.input(node, 0)
    xc, perm = _to_cf(ctx, node, x, ctx.orders(node, 1)[0])
    params = [ctx.input(node, i) for i in range(1, 5)]
    y = ctx.add("BatchNormalization", [xc] + params, epsilon=float(ctx.field(node, "epsilon", 1e-5)))
    _from_cf(ctx, node, y, perm, ctx.shapes.get(xc), ctx.dtypes.get(x))


def input_node(ctx: ReaderContext, node: Any) -> None:
    code = ctx.field(node, "dtype", fmt.DT_FLOAT32)
    if code not in _ONNX_OF_UFF:
        raise ctx.error(node, f"input dtype {code} is not a UFF DataType")
    dims = [int(d) for d in ctx.field(node, "shape", [])]
    if any(d < -1 for d in dims):
        raise ctx.error(node, f"input shape {dims} has negative dimensions")
    ctx.set_info(node.id, [None if d == -1 else d for d in dims], _ONNX_OF_UFF[code])


def const(ctx: ReaderContext, node: Any) -> None:
    ctx.constant(fmt.const_array(ctx.meta, node, ctx.path).copy(), name=node.id)


def identity(ctx: ReaderContext, node: Any) -> None:
    x = ctx.input(node, 0)
    ctx.add("Identity", [x], node.id)
    _same(ctx, node, x)


HANDLERS: dict[str, Handler] = {
    "Input": input_node, "Const": const, "Identity": identity, "MarkOutput": lambda c, n: None,
    "Conv": conv, "ConvTranspose": conv_transpose, "Pool": pool,
    "FullyConnected": fully_connected, "Binary": binary, "Unary": unary,
    "Activation": activation, "LeakyRelu": leaky_relu, "Softmax": softmax,
    "BatchNorm": batch_norm, "Reshape": reshape, "Flatten": flatten, "Squeeze": squeeze,
    "ExpandDims": expand_dims, "Concat": concat, "Stack": stack, "Pad": pad,
    "Transpose": transpose, "Reduce": reduce, "StridedSlice": strided_slice, "Shape": shape,
    "Gather": gather, "GatherV2": gather, "ArgMax": argminmax, "ArgMin": argminmax,
    # Older converters wrote these TF ops as custom nodes; their meaning is unambiguous.
    "_AddV2": lambda c, n: binary_add(c, n),
}


def binary_add(ctx: ReaderContext, node: Any) -> None:
    """``_AddV2`` from converters before AddV2 was mapped: a plain add."""
    a, b = ctx.input(node, 0), ctx.input(node, 1)
    ctx.add("Add", [a, b], node.id)
    ctx.set_info(node.id, _broadcast(ctx.shapes.get(a), ctx.shapes.get(b)), ctx.dtypes.get(a))
