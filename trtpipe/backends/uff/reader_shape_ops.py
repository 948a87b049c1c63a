"""UFF -> ONNX handlers for shape and tensor-manipulation ops (layout-free: they act on the tensor
as the UFF file lays it out, exactly like the TF op did)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from trtpipe.backends.uff.reader import ReaderContext, Shape

_INT32, _INT64 = 6, 7


def _int64_operand(ctx: ReaderContext, name: str) -> str:
    value = ctx.const(name)
    if value is not None:
        return ctx.int64s(np.ravel(value), "shape")
    return ctx.add("Cast", [name], to=_INT64)


def reshape(ctx: ReaderContext, node: Any) -> None:
    x, s = ctx.input(node, 0), ctx.input(node, 1)
    ctx.add("Reshape", [x, _int64_operand(ctx, s)], node.id)
    value = ctx.const(s)
    ctx.set_info(node.id, None if value is None else
                 [None if int(v) < 0 else int(v) for v in np.ravel(value)], ctx.dtypes.get(x))


def flatten(ctx: ReaderContext, node: Any) -> None:
    x = ctx.input(node, 0)
    ctx.add("Flatten", [x], node.id, axis=1)
    s = ctx.shapes.get(x)
    known = [int(d) for d in (s or [])[1:] if d is not None]
    rest = math.prod(known) if s is not None and len(known) == len(s) - 1 else None
    ctx.set_info(node.id, [None if s is None else s[0], rest], ctx.dtypes.get(x))


def _norm_axis(ctx: ReaderContext, node: Any, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ctx.error(node, f"axis {axis} out of range for rank {rank}")
    return axis % rank


def squeeze(ctx: ReaderContext, node: Any) -> None:
    x = ctx.input(node, 0)
    axes = [int(a) for a in ctx.field(node, "axes", [])]
    s = ctx.shapes.get(x)
    if axes:
        rank = ctx.rank(node, x)
        axes = [_norm_axis(ctx, node, a, rank) for a in axes]
        ctx.add("Squeeze", [x, ctx.int64s(axes, "axes")], node.id)
        out = None if s is None else [d for i, d in enumerate(s) if i not in axes]
    else:
        ctx.add("Squeeze", [x], node.id)
        out = None if s is None or None in s else [d for d in s if d != 1]
    ctx.set_info(node.id, out, ctx.dtypes.get(x))


def expand_dims(ctx: ReaderContext, node: Any) -> None:
    x = ctx.input(node, 0)
    s = ctx.shapes.get(x)
    axis = int(ctx.field(node, "axis", required=True))
    rank = ctx.rank(node, x) + 1
    axis = _norm_axis(ctx, node, axis, rank)
    ctx.add("Unsqueeze", [x, ctx.int64s([axis], "axes")], node.id)
    ctx.set_info(node.id, None if s is None else s[:axis] + [1] + s[axis:], ctx.dtypes.get(x))


def concat(ctx: ReaderContext, node: Any) -> None:
    ins = list(node.inputs)
    if not ins:
        raise ctx.error(node, "Concat has no inputs")
    rank = ctx.rank(node, ins[0])
    axis = _norm_axis(ctx, node, int(ctx.field(node, "axis", required=True)), rank)
    ctx.add("Concat", ins, node.id, axis=axis)
    shapes = [ctx.shapes.get(i) for i in ins]
    out = None
    if all(s is not None and len(s) == rank for s in shapes):
        out = list(shapes[0])  # type: ignore[arg-type]
        dims = [s[axis] for s in shapes]  # type: ignore[index]
        out[axis] = None if None in dims else sum(dims)  # type: ignore[arg-type]
    ctx.set_info(node.id, out, ctx.dtypes.get(ins[0]))


def stack(ctx: ReaderContext, node: Any) -> None:
    ins = list(node.inputs)
    if not ins:
        raise ctx.error(node, "Stack has no inputs")
    rank = ctx.rank(node, ins[0]) + 1
    axis = _norm_axis(ctx, node, int(ctx.field(node, "axis", 0)), rank)
    parts = [ctx.add("Unsqueeze", [i, ctx.int64s([axis], "axes")]) for i in ins]
    ctx.add("Concat", parts, node.id, axis=axis)
    s = ctx.shapes.get(ins[0])
    ctx.set_info(node.id, None if s is None else s[:axis] + [len(ins)] + s[axis:],
                 ctx.dtypes.get(ins[0]))


def pad(ctx: ReaderContext, node: Any) -> None:
    x = ctx.input(node, 0)
    p = ctx.need_const(node, 1, "the paddings").astype(np.int64)
    rank = ctx.rank(node, x)
    if p.shape != (rank, 2):
        raise ctx.error(node, f"paddings shape {list(p.shape)}, expected [{rank}, 2]")
    ctx.add("Pad", [x, ctx.int64s(list(p[:, 0]) + list(p[:, 1]), "pads")], node.id)
    s = ctx.shapes.get(x)
    ctx.set_info(node.id, None if s is None else
                 [None if d is None else d + int(a) + int(b) for d, (a, b) in zip(s, p, strict=True)],
                 ctx.dtypes.get(x))


def transpose(ctx: ReaderContext, node: Any) -> None:
    x = ctx.input(node, 0)
    perm = [int(v) for v in ctx.field(node, "permutation", required=True)]
    if sorted(perm) != list(range(ctx.rank(node, x))):
        raise ctx.error(node, f"permutation {perm} does not fit the input rank")
    ctx.add("Transpose", [x], node.id, perm=perm)
    s = ctx.shapes.get(x)
    ctx.set_info(node.id, None if s is None else [s[p] for p in perm], ctx.dtypes.get(x))


_REDUCE = {"sum": "ReduceSum", "prod": "ReduceProd", "max": "ReduceMax", "min": "ReduceMin",
           "mean": "ReduceMean"}


def reduce(ctx: ReaderContext, node: Any) -> None:
    x = ctx.input(node, 0)
    func = ctx.field(node, "func", required=True)
    if func not in _REDUCE:
        raise ctx.error(node, f"reduce func {func!r} unknown")
    rank = ctx.rank(node, x)
    axes = sorted({_norm_axis(ctx, node, int(a), rank) for a in ctx.field(node, "axes", [])})
    keep = int(bool(ctx.field(node, "keepdims", False)))
    op = _REDUCE[func]
    if not axes:
        ctx.add("Identity", [x], node.id)
    elif op == "ReduceSum" or ctx.opset >= 18:
        ctx.add(op, [x, ctx.int64s(axes, "axes")], node.id, keepdims=keep)
    else:
        ctx.add(op, [x], node.id, axes=axes, keepdims=keep)
    s = ctx.shapes.get(x)
    out = None if s is None else [1 if i in axes else d for i, d in enumerate(s)
                                  if keep or i not in axes]
    ctx.set_info(node.id, out, ctx.dtypes.get(x))


def strided_slice(ctx: ReaderContext, node: Any) -> None:
    x = ctx.input(node, 0)
    begin, end, strides = (np.ravel(ctx.need_const(node, i, w)).astype(np.int64).tolist()
                           for i, w in ((1, "begin"), (2, "end"), (3, "strides")))
    bm, em, sm = (int(ctx.field(node, k, 0)) for k in ("begin_mask", "end_mask", "shrink_axis_mask"))
    n = len(begin)
    if len(end) != n or len(strides) != n or 0 in strides or n > ctx.rank(node, x):
        raise ctx.error(node, f"begin/end/strides {begin}/{end}/{strides} are inconsistent")
    big = np.iinfo(np.int64).max
    starts, ends, shrink = [], [], []
    for i in range(n):
        st, b, e = strides[i], begin[i], end[i]
        if sm >> i & 1:
            starts.append(b)
            ends.append(big if b == -1 else b + 1)
            strides[i] = 1
            shrink.append(i)
            continue
        starts.append((0 if st > 0 else -1) if bm >> i & 1 else b)
        ends.append((big if st > 0 else -big) if em >> i & 1 else e)
    sliced = ctx.add("Slice", [x, ctx.int64s(starts, "starts"), ctx.int64s(ends, "ends"),
                               ctx.int64s(range(n), "axes"), ctx.int64s(strides, "steps")])
    s = ctx.shapes.get(x)
    out: Shape = None
    if s is not None:
        out = list(s)
        for i in range(n):
            dim = s[i]
            if dim is not None:
                stop = ends[i] if abs(ends[i]) < big else None
                out[i] = len(range(*slice(starts[i], stop, strides[i]).indices(dim)))
        out = [d for i, d in enumerate(out) if i not in shrink]
    if shrink:
        ctx.add("Squeeze", [sliced, ctx.int64s(shrink, "axes")], node.id)
    else:
        ctx.add("Identity", [sliced], node.id)
    ctx.set_info(node.id, out, ctx.dtypes.get(x))


def shape(ctx: ReaderContext, node: Any) -> None:
    x = ctx.input(node, 0)
    ctx.add("Cast", [ctx.add("Shape", [x])], node.id, to=_INT32)  # TF's Shape is int32
    s = ctx.shapes.get(x)
    ctx.set_info(node.id, None if s is None else [len(s)], _INT32)


def gather(ctx: ReaderContext, node: Any) -> None:
    params, idx = ctx.input(node, 0), ctx.input(node, 1)
    rank = ctx.rank(node, params)
    axis = _norm_axis(ctx, node, int(ctx.field(node, "axis", 0)), rank)
    ctx.add("Gather", [params, idx], node.id, axis=axis)
    sp, si = ctx.shapes.get(params), ctx.shapes.get(idx)
    ctx.set_info(node.id, None if sp is None or si is None else sp[:axis] + si + sp[axis + 1:],
                 ctx.dtypes.get(params))


def argminmax(ctx: ReaderContext, node: Any) -> None:
    x = ctx.input(node, 0)
    rank = ctx.rank(node, x)
    axis = _norm_axis(ctx, node, int(ctx.field(node, "axis", required=True)), rank)
    ctx.add(node.operation, [x], node.id, axis=axis, keepdims=0)
    s = ctx.shapes.get(x)
    ctx.set_info(node.id, None if s is None else s[:axis] + s[axis + 1:], _INT64)
