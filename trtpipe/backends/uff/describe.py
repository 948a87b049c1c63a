"""Human-readable dump of a UFF file: header, every node with its fields, referenced_data keys."""

from __future__ import annotations

from typing import Any

import numpy as np

from trtpipe.backends.uff import format as fmt

_DT_NAMES = {v: k[3:].lower() for k, v in fmt.DATA_TYPES.items()}


def _orders_text(entries: Any) -> str:
    out = []
    for e in entries.val:
        vals = list(e.orders[fmt.OE_SPECIAL].val) if fmt.OE_SPECIAL in e.orders else []
        try:
            out.append(fmt.decode_order(vals))
        except ValueError:
            out.append(str(vals))
    return "[" + ", ".join(out) + "]"


def _data_text(meta: Any, data: Any, dtype: int | None = None, shape: list[int] | None = None,
               depth: int = 0) -> str:
    kind = data.WhichOneof("data_oneof")
    if kind is None:
        return "(empty)"
    if kind == "ref":
        target = meta.referenced_data.get(data.ref) if data.ref in meta.referenced_data else None
        if target is None or depth > 8:
            return f"ref->{data.ref!r} (missing)"
        return f"ref->{data.ref!r} => {_data_text(meta, target, dtype, shape, depth + 1)}"
    if kind == "blob":
        text = f"blob[{len(data.blob)} bytes]"
        dt = fmt.NUMPY_OF.get(dtype or 0)
        if dt is not None and shape is not None:
            text += f" {dt.name}{shape}"
            if len(data.blob) == int(np.prod(shape, dtype=np.int64)) * dt.itemsize and data.blob:
                arr = np.frombuffer(data.blob, dtype=dt)
                text += f" first={arr[:4].tolist()}"
        return text
    if kind == "dtype":
        return f"dtype={_DT_NAMES.get(data.dtype, '?')}({data.dtype})"
    if kind == "dim_orders_list":
        return f"dim_orders_list={_orders_text(data.dim_orders_list)}"
    if kind == "dim_orders":
        return f"dim_orders={dict((k, list(v.val)) for k, v in data.dim_orders.orders.items())}"
    if kind == "dtype_list":
        return f"dtype_list={[_DT_NAMES.get(v, '?') for v in data.dtype_list.val]}"
    if kind.endswith("_list"):
        return f"{kind}={list(getattr(data, kind).val)}"
    return f"{kind}={getattr(data, kind)!r}"


def describe_uff(data: bytes) -> str:
    """Parse (with validation) and describe a UFF file: every node, then the referenced_data keys."""
    meta = fmt.parse(data)
    lines = [f"UFF version {meta.version}, core descriptor {meta.descriptor_core_version}, "
             f"{len(data)} bytes",
             "descriptors: " + ", ".join(f"{d.id} v{d.version}" + (" (optional)" if d.optional else "")
                                         for d in meta.descriptors)]
    graph = meta.graphs[0]
    lines.append(f"graph {graph.id!r}: {len(graph.nodes)} nodes")
    for index, node in enumerate(graph.nodes):
        lines.append(f"  [{index}] {node.id}  op={node.operation}")
        if node.inputs:
            lines.append(f"      inputs: {list(node.inputs)}")
        dtype = node.fields["dtype"].dtype if "dtype" in node.fields else None
        shape = list(node.fields["shape"].i_list.val) if "shape" in node.fields else None
        for key in sorted(node.fields):
            lines.append(f"      {key}: {_data_text(meta, node.fields[key], dtype, shape)}")
    lines.append(f"referenced_data ({len(meta.referenced_data)} entries):")
    for key in sorted(meta.referenced_data):
        value = meta.referenced_data[key]
        kind = value.WhichOneof("data_oneof")
        detail = f"blob[{len(value.blob)} bytes]" if kind == "blob" else _data_text(meta, value)
        lines.append(f"  {key!r}: {detail}")
    return "\n".join(lines) + "\n"
