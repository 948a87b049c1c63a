"""Per-op TF -> UFF conversion (doc ``uff-format.md`` §12). Each handler emits UFF node(s) for one
TF node and returns the TF names still to visit (pushed on the DFS stack: last one first)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from trtpipe.backends.uff import format as fmt
from trtpipe.backends.uff.writer import Converter, d_b, d_d, d_dtype, d_i, d_ilist, d_s, plugin_field

BINARY = {"Add": "add", "AddV2": "add", "Sub": "sub", "Mul": "mul", "RealDiv": "div",
          "Div": "div", "Minimum": "min", "Maximum": "max", "Pow": "pow"}
ACTIVATION = {"Relu": "relu", "Relu6": "relu6", "Sigmoid": "sigmoid", "Tanh": "tanh",
              "Elu": "elu", "Selu": "selu", "Softsign": "softsign", "Softplus": "softplus"}
UNARY = {"Neg": "neg", "Negative": "neg", "Abs": "abs", "Sqrt": "sqrt", "Rsqrt": "rsqrt",
         "Square": "square", "Exp": "exp", "Log": "log", "Sin": "sin", "Cos": "cos", "Tan": "tan",
         "Sinh": "sinh", "Cosh": "cosh", "Asin": "asin", "Acos": "acos", "Atan": "atan",
         "Asinh": "asinh", "Acosh": "acosh", "Atanh": "atanh", "Ceil": "ceil", "Floor": "floor"}
REDUCE = {"Mean": "mean", "Sum": "sum", "Max": "max", "Min": "min", "Prod": "prod"}

Handler = Callable[[Converter, Any], list[str]]


def _act_order(cv: Converter, node: Any) -> str:
    return "NC+" if cv.attr(node, "data_format", "NHWC").startswith("NC") else "N+C"


def _spatial(cv: Converter, node: Any, key: str) -> list[int]:
    """Spatial part of a 4-entry NHWC/NCHW attribute (strides, dilations, ksize)."""
    vals = [int(v) for v in cv.attr(node, key, [1, 1, 1, 1])]
    if len(vals) != 4:
        raise cv.unsupported(node, f"{key} {vals} is not a 4-entry list")
    return vals[2:] if _act_order(cv, node) == "NC+" else vals[1:3]


def _need_const(cv: Converter, node: Any, name: str, what: str) -> np.ndarray:
    value = cv.const_value(name)
    if value is None:
        raise cv.unsupported(node, f"{what} (input {name!r}) must be a constant")
    return value


def _fused_pad(cv: Converter, node: Any, x: str) -> tuple[str, list[int] | None]:
    """A symmetric spatial zero ``Pad`` feeding a VALID conv/pool is folded into ``padding``."""
    pad = cv.nodes.get(x)
    if pad is None or pad.op != "Pad" or cv.attr(node, "padding") != "VALID":
        return x, None
    ins = cv.data_inputs(pad)
    p = cv.const_value(ins[1]) if len(ins) == 2 else None
    if p is None or p.shape != (4, 2):
        return x, None
    rows = p.tolist()
    n, c = (0, 1) if _act_order(cv, node) == "NC+" else (0, 3)
    spatial = [r for i, r in enumerate(rows) if i not in (n, c)]
    if rows[n] != [0, 0] or rows[c] != [0, 0] or any(a != b for a, b in spatial):
        return x, None
    return ins[0], [a for a, _ in spatial]


def _conv_padding(cv: Converter, node: Any, fields: dict[str, Any], pad: list[int] | None) -> None:
    padding = cv.attr(node, "padding", "VALID")
    if padding == "SAME":
        fields["implicit_padding"] = d_s("same")
    elif padding == "EXPLICIT":
        ex = [int(v) for v in cv.attr(node, "explicit_paddings", [])]
        pairs = [ex[i:i + 2] for i in range(0, len(ex), 2)]
        sp = pairs[2:] if _act_order(cv, node) == "NC+" else pairs[1:3]
        if len(sp) != 2 or any(a != b for a, b in sp):
            raise cv.unsupported(node, f"asymmetric explicit padding {ex}")
        pad = [a for a, _ in sp]
    if pad is not None:
        fields["padding"] = d_ilist(pad)


def conv(cv: Converter, node: Any) -> list[str]:
    x, w = cv.data_inputs(node)[:2]
    x, pad = _fused_pad(cv, node, x)
    act = _act_order(cv, node)
    fields = {"inputs_orders": cv.orders_ref([act, "+CK"]),
              "strides": d_ilist(_spatial(cv, node, "strides")),
              "dilation": d_ilist(_spatial(cv, node, "dilations"))}
    if node.op == "DepthwiseConv2dNative":
        wv = _need_const(cv, node, w, "depthwise weights")
        if wv.ndim != 4:
            raise cv.unsupported(node, f"depthwise weights have shape {list(wv.shape)}, expected 4-D")
        fields["number_groups"] = d_i(wv.shape[2])
    _conv_padding(cv, node, fields, pad)
    cv.add_node(node.name, "Conv", [x, w], fields)
    return [x, w]


def conv_transpose(cv: Converter, node: Any) -> list[str]:
    out_shape, w, x = cv.data_inputs(node)[:3]
    if any(d != 1 for d in _spatial(cv, node, "dilations")):
        raise cv.unsupported(node, "dilated transposed convolution")
    value = _need_const(cv, node, out_shape, "the output shape")
    if cv.nodes[out_shape].op != "Const":
        cv.forced_const[out_shape] = value.astype(np.int32)
    fields = {"inputs_orders": cv.orders_ref([_act_order(cv, node), "+KC"]),
              "strides": d_ilist(_spatial(cv, node, "strides"))}
    _conv_padding(cv, node, fields, None)
    cv.add_node(node.name, "ConvTranspose", [x, w, out_shape], fields)
    return [x, w, out_shape]


def pool(cv: Converter, node: Any) -> list[str]:
    x, pad = _fused_pad(cv, node, cv.data_inputs(node)[0])
    fields = {"func": d_s("max" if node.op == "MaxPool" else "avg"),
              "kernel": d_ilist(_spatial(cv, node, "ksize")),
              "strides": d_ilist(_spatial(cv, node, "strides")),
              "inputs_orders": cv.orders_ref([_act_order(cv, node)])}
    _conv_padding(cv, node, fields, pad)
    cv.add_node(node.name, "Pool", [x], fields)
    return [x]


def matmul(cv: Converter, node: Any) -> list[str]:
    a, b = cv.data_inputs(node)[:2]
    orders = ["CN" if cv.attr(node, "transpose_a", False) else "NC",
              "KC" if cv.attr(node, "transpose_b", False) else "CK"]
    cv.add_node(node.name, "FullyConnected", [a, b], {"inputs_orders": cv.orders_ref(orders)})
    return [a, b]


def bias_add(cv: Converter, node: Any) -> list[str]:
    x, bias = cv.data_inputs(node)[:2]
    value = cv.const_value(bias)
    if value is None:  # not a constant: a plain elementwise add of two tensors
        cv.add_node(node.name, "Binary", [x, bias], {"func": d_s("add")})
        return [x, bias]
    # The converter re-emits the bias Const under its own name, before the Binary node.
    if bias not in cv.emitted:
        if _act_order(cv, node) == "NC+":
            value = value.reshape(-1, 1, 1)
        cv.add_const(bias, value)
    cv.add_node(node.name, "Binary", [x, bias], {"func": d_s("add")})
    return [x]


def binary(cv: Converter, node: Any) -> list[str]:
    a, b = cv.data_inputs(node)[:2]
    cv.add_node(node.name, "Binary", [a, b], {"func": d_s(BINARY[node.op])})
    return [a, b]


def softmax(cv: Converter, node: Any) -> list[str]:
    ins = cv.data_inputs(node)
    axis = 0
    if len(ins) > 1:
        axis = int(np.ravel(_need_const(cv, node, ins[1], "the softmax axis"))[0])
    order = "NC+" if "data_format" in node.attr and _act_order(cv, node) == "NC+" else "N+C"
    cv.add_node(node.name, "Softmax", [ins[0]], {"axis": d_i(axis),
                                                  "inputs_orders": cv.orders_ref([order])})
    return [ins[0]]


def batch_norm(cv: Converter, node: Any) -> list[str]:
    if cv.attr(node, "is_training", False):
        raise cv.unsupported(node, "batch norm in training mode (freeze with training=False)")
    ins = cv.data_inputs(node)[:5]
    cv.add_node(node.name, "BatchNorm", ins, {
        "epsilon": d_d(cv.attr(node, "epsilon", 1e-4)),
        "inputs_orders": cv.orders_ref([_act_order(cv, node)])})
    return ins


def reshape(cv: Converter, node: Any) -> list[str]:
    x, shape = cv.data_inputs(node)[:2]
    parts = node.name.split("/")
    if len(parts) >= 2 and "flatten" in parts[-2].lower():
        cv.add_node(node.name, "Flatten", [x])
        return [x]
    value = cv.const_value(shape)
    if value is not None and cv.nodes[shape].op != "Const":
        cv.forced_const[shape] = value.astype(np.int32)
    cv.add_node(node.name, "Reshape", [x, shape])
    return [x, shape]


def _axis_op(uff_op: str, what: str) -> Handler:
    """Ops whose trailing Const input becomes an ``axis`` field and is dropped."""
    def handler(cv: Converter, node: Any) -> list[str]:
        ins = cv.data_inputs(node)
        axis = int(np.ravel(_need_const(cv, node, ins[-1], what))[0])
        cv.add_node(node.name, uff_op, ins[:-1], {"axis": d_i(axis)})
        return ins[:-1]
    return handler


def concat_v1(cv: Converter, node: Any) -> list[str]:
    ins = cv.data_inputs(node)
    axis = int(np.ravel(_need_const(cv, node, ins[0], "the concat axis"))[0])
    cv.add_node(node.name, "Concat", ins[1:], {"axis": d_i(axis)})
    return ins[1:]


def pack(cv: Converter, node: Any) -> list[str]:
    ins = cv.data_inputs(node)
    cv.add_node(node.name, "Stack", ins, {"axis": d_i(cv.attr(node, "axis", 0))})
    return ins


def reduce(cv: Converter, node: Any) -> list[str]:
    x, axes = cv.data_inputs(node)[:2]
    value = np.ravel(_need_const(cv, node, axes, "the reduction axes"))
    cv.add_node(node.name, "Reduce", [x], {"func": d_s(REDUCE[node.op]), "axes": d_ilist(value),
                                            "keepdims": d_b(cv.attr(node, "keep_dims", False))})
    return [x]


def transpose(cv: Converter, node: Any) -> list[str]:
    x, perm = cv.data_inputs(node)[:2]
    value = np.ravel(_need_const(cv, node, perm, "the permutation"))
    cv.add_node(node.name, "Transpose", [x], {"permutation": d_ilist(value)})
    return [x]


def strided_slice(cv: Converter, node: Any) -> list[str]:
    for key in ("ellipsis_mask", "new_axis_mask"):
        if cv.attr(node, key, 0):
            raise cv.unsupported(node, f"{key} must be 0 in UFF")
    ins = cv.data_inputs(node)[:4]
    cv.add_node(node.name, "StridedSlice", ins, {
        k: d_i(cv.attr(node, k, 0)) for k in ("begin_mask", "end_mask", "shrink_axis_mask")})
    return ins


def squeeze(cv: Converter, node: Any) -> list[str]:
    x = cv.data_inputs(node)[0]
    cv.add_node(node.name, "Squeeze", [x], {"axes": d_ilist(cv.attr(node, "squeeze_dims", []))})
    return [x]


def gather(cv: Converter, node: Any) -> list[str]:
    ins = cv.data_inputs(node)
    fields = {"indices_dtype": d_dtype(cv.tf.as_dtype(cv.attr(node, "Tindices")).as_numpy_dtype),
              "params_dtype": d_dtype(cv.tf.as_dtype(cv.attr(node, "Tparams")).as_numpy_dtype)}
    if node.op == "Gather":
        fields["validate_indices"] = d_b(cv.attr(node, "validate_indices", True))
        cv.add_node(node.name, "Gather", ins[:2], fields)
        return ins[:2]
    if cv.attr(node, "batch_dims", 0):
        raise cv.unsupported(node, "GatherV2 with batch_dims != 0")
    fields["axis"] = d_i(int(np.ravel(_need_const(cv, node, ins[2], "the gather axis"))[0]))
    cv.add_node(node.name, "GatherV2", ins[:2], fields)
    return ins[:2]


def _simple(uff_op: str, table: dict[str, str] | None = None, key: str = "func") -> Handler:
    def handler(cv: Converter, node: Any) -> list[str]:
        x = cv.data_inputs(node)[0]
        fields = {key: d_s(table[node.op])} if table else {}
        if node.op == "LeakyRelu":
            fields = {"alpha": d_d(cv.attr(node, "alpha", 0.2))}
        cv.add_node(node.name, uff_op, [x], fields)
        return [x]
    return handler


def _pad(cv: Converter, node: Any) -> list[str]:
    ins = cv.data_inputs(node)
    if node.op == "PadV2":
        cval = cv.const_value(ins[2])
        if cval is None or np.any(cval != 0):
            raise cv.unsupported(node, "padding with a non-zero constant")
    cv.add_node(node.name, "Pad", ins[:2])
    return ins[:2]


HANDLERS: dict[str, Handler] = {
    "Conv2D": conv, "DepthwiseConv2dNative": conv, "Conv2DBackpropInput": conv_transpose,
    "MaxPool": pool, "AvgPool": pool, "MatMul": matmul, "BiasAdd": bias_add,
    "Softmax": softmax, "FusedBatchNorm": batch_norm, "FusedBatchNormV3": batch_norm,
    "Reshape": reshape, "ExpandDims": _axis_op("ExpandDims", "the expand axis"),
    "ConcatV2": _axis_op("Concat", "the concat axis"), "Concat": concat_v1, "Pack": pack,
    "Transpose": transpose, "StridedSlice": strided_slice, "Squeeze": squeeze,
    "Gather": gather, "GatherV2": gather, "Pad": _pad, "PadV2": _pad,
    "ArgMax": _axis_op("ArgMax", "the argmax axis"), "ArgMin": _axis_op("ArgMin", "the argmin axis"),
    "Shape": _simple("Shape"), "LeakyRelu": _simple("LeakyRelu"),
    **{op: binary for op in BINARY}, **{op: reduce for op in REDUCE},
    **{op: _simple("Activation", ACTIVATION) for op in ACTIVATION},
    **{op: _simple("Unary", UNARY) for op in UNARY},
}


def _custom_fields(cv: Converter, node: Any) -> dict[str, Any]:
    """TF attributes -> fields of a custom node, typed as the converter did (doc §14)."""
    out: dict[str, Any] = {}
    for key in sorted(node.attr):
        a = node.attr[key]
        kind = a.WhichOneof("value")
        d = fmt.Data()
        try:
            if kind == "i":
                d = d_i(a.i)
            elif kind == "f":
                d = d_d(a.f)
            elif kind == "b":
                d = d_b(a.b)
            elif kind == "s":
                d = d_s(a.s.decode("utf-8", "replace"))
            elif kind == "type":
                d = d_dtype(cv.tf.as_dtype(a.type).as_numpy_dtype)
            elif kind == "shape":
                d = d_ilist([] if a.shape.unknown_rank else [x.size for x in a.shape.dim])
            elif kind == "list" and a.list.i:
                d = d_ilist(a.list.i)
            elif kind == "list" and a.list.f:
                d = fmt.Data()
                d.d_list.val.extend(float(v) for v in a.list.f)
            elif kind == "list" and a.list.s:
                d = fmt.Data()
                d.s_list.val.extend(v.decode("utf-8", "replace") for v in a.list.s)
            elif kind == "list" and a.list.b:
                d = fmt.Data()
                d.b_list.val.extend(a.list.b)
            elif kind == "list" and a.list.type:
                d = fmt.Data()
                d.dtype_list.val.extend(fmt.UFF_OF.get(
                    np.dtype(cv.tf.as_dtype(t).as_numpy_dtype).name, 7) for t in a.list.type)
        except (TypeError, ValueError):
            d = fmt.Data()  # unconvertible: an empty Data, as the converter wrote
        out[key] = d
    return out


def _input(cv: Converter, node: Any) -> list[str]:
    spec = cv.input_specs.get(node.name)
    dtype_attr = cv.attr(node, "dtype") or cv.attr(node, "T") or 1
    np_dtype = cv.tf.as_dtype(dtype_attr).as_numpy_dtype
    if spec is not None and spec.shape is not None:
        shape = [-1 if d is None else int(d) for d in spec.shape]
    else:
        s = node.attr["shape"].shape if "shape" in node.attr else None
        if s is None or s.unknown_rank:
            raise cv.unsupported(node, "placeholder has unknown rank; UFF inputs need a shape")
        shape = [int(d.size) for d in s.dim]
    if spec is not None and spec.order == "NC" and len(shape) != 2:
        raise cv.unsupported(node, f"input order NC needs a 2-D shape, got {shape}")
    if spec is not None and spec.order in ("NHWC", "NCHW") and len(shape) < 3:
        raise cv.unsupported(node, f"input order {spec.order} needs >= 3 dims, got {shape}")
    cv.add_node(node.name, "Input", [], {"dtype": d_dtype(np_dtype), "shape": d_ilist(shape)})
    return []


def convert_node(cv: Converter, name: str) -> list[str]:
    """Convert the TF node ``name``; return the TF names to visit next."""
    if name in cv.forced_const:
        cv.add_const(name, cv.forced_const[name])
        return []
    node = cv.node(name)
    if name in cv.input_specs or node.op in ("Placeholder", "PlaceholderWithDefault"):
        return _input(cv, node)
    spec = cv.plugin_specs.get(name)
    if spec is not None:
        ins = cv.data_inputs(node)
        fields = dict(plugin_field(k, v) for k, v in spec.fields.items())
        cv.add_node(name, "_" + spec.op, ins, fields)
        return ins
    if node.op == "Const":
        value = cv.const_value(name)
        if value is None:
            raise cv.unsupported(node, "Const without a readable value")
        cv.add_const(name, value)
        return []
    if node.op == "Identity":
        x = cv.data_inputs(node)[0]
        cv.add_node(name, "Identity", [x])
        return [x]
    handler = HANDLERS.get(node.op)
    if handler is not None:
        return handler(cv, node)
    if not cv.allow_custom:
        raise cv.unsupported(node, "no UFF equivalent and no plugin mapping")
    ins = cv.data_inputs(node)
    cv.add_node(name, "_" + node.op, ins, _custom_fields(cv, node))
    return ins
