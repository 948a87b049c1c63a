"""The UFF container: message classes, parsing with validation, deterministic serialisation.

The schema (``schemas/uff.proto``, doc ``uff-format.md`` §3) is built here from descriptors at import
time, in a private descriptor pool, so no ``protoc`` is needed and no other ``uff`` schema loaded
in the same process (e.g. NVIDIA's package) can clash with ours.

``parse`` turns bytes into a ``MetaGraph`` and checks everything a reader relies on: exactly one
graph, unique node ids, inputs that resolve, refs that exist, Const blobs whose size matches
their shape and dtype. Every problem is an ``InvalidArtifact`` naming the file and node.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from trtpipe.errors import BackendUnavailable, InvalidArtifact

try:  # protobuf is light and comes with onnx/tensorflow; it is not a core dependency
    from google.protobuf import (  # type: ignore[import-untyped,unused-ignore]
        descriptor_pb2,
        descriptor_pool,
        message_factory,
    )
    from google.protobuf.message import (  # type: ignore[import-untyped,unused-ignore]
        DecodeError,
        Message,
    )
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise BackendUnavailable(f"protobuf is not installed ({_exc}); it is needed to read/write UFF",
                             hint="pip install 'trtpipe[ort]' (or pip install protobuf)") from _exc

# ----------------------------------------------------------------------------- schema

_FD = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _FD.LABEL_OPTIONAL, _FD.LABEL_REPEATED
_T = {
    "string": _FD.TYPE_STRING, "double": _FD.TYPE_DOUBLE, "bool": _FD.TYPE_BOOL,
    "int64": _FD.TYPE_INT64, "int32": _FD.TYPE_INT32, "uint32": _FD.TYPE_UINT32,
    "bytes": _FD.TYPE_BYTES,
}

#: DataType enum (doc §3.2): value = (kind << 16) | bit width.
DATA_TYPES: dict[str, int] = {
    "DT_INVALID": 0, "DT_INT8": 65544, "DT_INT16": 65552, "DT_INT32": 65568,
    "DT_INT64": 65600, "DT_FLOAT16": 131088, "DT_FLOAT32": 131104,
}
_ORDER_ENUM = {"OE_ZERO": 0, "OE_SPECIAL": -1, "OE_INCREMENT": 2147483647,
               "OE_DECREMENT": -2147483648}
OE_SPECIAL, OE_INCREMENT, OE_DECREMENT = -1, 2147483647, -2147483648

DT_INT8, DT_INT16, DT_INT32, DT_INT64 = 65544, 65552, 65568, 65600
DT_FLOAT16, DT_FLOAT32 = 131088, 131104
#: UFF DataType value -> numpy dtype (little-endian, as every converter wrote it).
NUMPY_OF: dict[int, np.dtype[Any]] = {
    DT_INT8: np.dtype("<i1"), DT_INT16: np.dtype("<i2"), DT_INT32: np.dtype("<i4"),
    DT_INT64: np.dtype("<i8"), DT_FLOAT16: np.dtype("<f2"), DT_FLOAT32: np.dtype("<f4"),
}
#: numpy dtype name -> UFF DataType value.
UFF_OF: dict[str, int] = {np.dtype(v).name: k for k, v in NUMPY_OF.items()}


def _field(msg: descriptor_pb2.DescriptorProto, name: str, number: int, ftype: str,
           label: int = _OPTIONAL, oneof: int | None = None) -> None:
    f = msg.field.add(name=name, number=number, label=label)
    if ftype in _T:
        f.type = _T[ftype]
    elif ftype in ("DataType", "OrderEnum"):
        f.type, f.type_name = _FD.TYPE_ENUM, f".uff.{ftype}"
    else:
        f.type, f.type_name = _FD.TYPE_MESSAGE, f".uff.{ftype}"
    if oneof is not None:
        f.oneof_index = oneof


def _map(msg: descriptor_pb2.DescriptorProto, name: str, number: int, key: str, value: str) -> None:
    entry_name = "".join(p.capitalize() for p in name.split("_")) + "Entry"
    entry = msg.nested_type.add(name=entry_name)
    entry.options.map_entry = True
    _field(entry, "key", 1, key)
    _field(entry, "value", 2, value)
    _field(msg, name, number, f"{msg.name}.{entry_name}", _REPEATED)


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(name="uff.proto", package="uff", syntax="proto3")
    for ename, values in (("DataType", DATA_TYPES), ("OrderEnum", _ORDER_ENUM)):
        enum = fdp.enum_type.add(name=ename)
        for vname, number in values.items():
            enum.value.add(name=vname, number=number)
    data = fdp.message_type.add(name="Data")
    data.oneof_decl.add(name="data_oneof")
    for name, number, ftype in (
            ("s", 1, "string"), ("s_list", 2, "ListString"), ("d", 3, "double"),
            ("d_list", 4, "ListDouble"), ("b", 5, "bool"), ("b_list", 6, "ListBool"),
            ("i", 7, "int64"), ("i_list", 8, "ListINT64"), ("blob", 9, "bytes"),
            ("ref", 100, "string"), ("dtype", 101, "DataType"), ("dtype_list", 102, "ListDataType"),
            ("dim_orders", 103, "DimensionOrders"),
            ("dim_orders_list", 104, "ListDimensionOrders")):
        _field(data, name, number, ftype, oneof=0)
    for lname, vtype in (("ListString", "string"), ("ListBool", "bool"), ("ListINT64", "int64"),
                         ("ListDouble", "double"), ("ListDataType", "DataType"),
                         ("ListDimensionOrders", "DimensionOrders")):
        _field(fdp.message_type.add(name=lname), "val", 1, vtype, _REPEATED)
    _map(fdp.message_type.add(name="DimensionOrders"), "orders", 1, "int32", "ListINT64")
    desc = fdp.message_type.add(name="Descriptor")
    _field(desc, "id", 1, "string")
    _field(desc, "version", 2, "uint32")
    _field(desc, "optional", 3, "bool")
    node = fdp.message_type.add(name="Node")
    _field(node, "id", 1, "string")
    _field(node, "inputs", 2, "string", _REPEATED)
    _field(node, "operation", 3, "string")
    _map(node, "fields", 4, "string", "Data")
    _map(node, "extra_fields", 100, "string", "Data")
    graph = fdp.message_type.add(name="Graph")
    _field(graph, "id", 1, "string")
    _field(graph, "nodes", 2, "Node", _REPEATED)
    _map(graph, "extra_fields", 100, "string", "Data")
    meta = fdp.message_type.add(name="MetaGraph")
    _field(meta, "version", 1, "uint32")
    _field(meta, "descriptor_core_version", 2, "uint32")
    _field(meta, "descriptors", 3, "Descriptor", _REPEATED)
    _field(meta, "graphs", 4, "Graph", _REPEATED)
    _map(meta, "referenced_data", 5, "string", "Data")
    _map(meta, "extra_fields", 100, "string", "Data")
    return fdp


FILE_DESCRIPTOR = _file_descriptor()
_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(FILE_DESCRIPTOR)


def _cls(name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"uff.{name}"))


MetaGraph: Any = _cls("MetaGraph")
Graph: Any = _cls("Graph")
Node: Any = _cls("Node")
Data: Any = _cls("Data")
Descriptor: Any = _cls("Descriptor")
ListINT64: Any = _cls("ListINT64")
DimensionOrders: Any = _cls("DimensionOrders")
ListDimensionOrders: Any = _cls("ListDimensionOrders")

# ----------------------------------------------------------------------------- orders (doc §9)

_CANONICAL = ("NC+", "KC+", "NC", "KC")


def encode_order(order: str) -> list[int]:
    """Encode an order string such as ``N+C`` or ``+CK`` as the int list UFF stores (doc §9)."""
    letters = set(order.replace("-", "+"))
    canon = next((c for c in _CANONICAL if set(c) == letters), None)
    if canon is None or len(set(order)) != len(order):
        raise ValueError(f"not a UFF order string: {order!r}")
    out: list[int] = []
    for ch in order:
        if ch == "+":
            out += [canon.index("+"), OE_INCREMENT]
        elif ch == "-":
            out += [OE_DECREMENT, canon.index("+")]
        else:
            idx = canon.index(ch)
            plus = canon.find("+")
            out.append(idx - len(canon) if plus >= 0 and idx > plus else idx)
    return out


def decode_order(values: list[int], weights: bool = False) -> str:
    """Turn an encoded order back into its string (``weights`` picks ``K`` over ``N``)."""
    letters = ("KC" if weights else "NC")
    canon = letters + ("+" if (OE_INCREMENT in values or OE_DECREMENT in values) else "")
    out, i = "", 0
    while i < len(values):
        v = values[i]
        if v == OE_DECREMENT and i + 1 < len(values):
            out, i = out + "-", i + 2
        elif i + 1 < len(values) and values[i + 1] == OE_INCREMENT:
            out, i = out + "+", i + 2
        elif -len(canon) <= v < len(canon) and canon[v] != "+":
            out, i = out + canon[v], i + 1
        else:
            raise ValueError(f"bad encoded order {values}")
    if sorted(out.replace("-", "+")) != sorted(canon):
        raise ValueError(f"bad encoded order {values}")
    return out


def orders_data(orders: list[str]) -> Any:
    """``Data{dim_orders_list}`` for a list of order strings (what ``orders_<...>`` keys hold)."""
    d = Data()
    d.dim_orders_list.SetInParent()
    for o in orders:
        entry = d.dim_orders_list.val.add()
        entry.orders[OE_SPECIAL].val.extend(encode_order(o))
    return d


def orders_key(orders: list[str]) -> str:
    """The ``referenced_data`` key NVIDIA's converter uses for an order combination."""
    return "orders_" + "_".join(orders)


# ----------------------------------------------------------------------------- parse / serialise

def serialize(msg: Message) -> bytes:
    """Serialise deterministically (map entries sorted by key) so equal graphs give equal bytes."""
    return bytes(msg.SerializeToString(deterministic=True))


def _where(path: str | None) -> str:
    return path or "<uff bytes>"


def _sniff_foreign(data: bytes) -> str | None:
    """Name the format of a file that is clearly not UFF (to say so in the error)."""
    if data[:4] == b"\x89HDF":
        return "an HDF5 file (a Keras .h5 model?)"
    if data[:4] == b"PK\x03\x04":
        return "a zip archive (a .keras model?)"
    fields = _top_level_fields(data)
    if fields is None:
        return None
    wire = {num: wt for num, wt in fields}
    # ONNX ModelProto: ir_version (1, varint), producer_name (2, bytes), graph (7), opset_import (8).
    if wire.get(1) == 0 and (wire.get(7) == 2 or wire.get(8) == 2):
        return "an ONNX model"
    # TF GraphDef: node (1, bytes, repeated), versions (4, bytes), library (2).
    if wire.get(1) == 2 and (wire.get(4) == 2 or sum(1 for n, _ in fields if n == 1) > 1):
        return "a TensorFlow GraphDef (.pb)"
    return None


def _top_level_fields(data: bytes, limit: int = 64) -> list[tuple[int, int]] | None:
    """(field number, wire type) of the first top-level fields, or None if not protobuf-shaped."""
    out: list[tuple[int, int]] = []
    pos, n = 0, len(data)

    def varint(p: int) -> tuple[int, int]:
        shift = value = 0
        while p < n and shift < 70:
            b = data[p]
            value |= (b & 0x7F) << shift
            p += 1
            if not b & 0x80:
                return value, p
            shift += 7
        raise ValueError("bad varint")

    try:
        while pos < n and len(out) < limit:
            key, pos = varint(pos)
            num, wt = key >> 3, key & 7
            if num == 0:
                return None
            if wt == 0:
                _, pos = varint(pos)
            elif wt == 1:
                pos += 8
            elif wt == 2:
                length, pos = varint(pos)
                pos += length
            elif wt == 5:
                pos += 4
            else:
                return None
            if pos > n:
                return None
            out.append((num, wt))
    except ValueError:
        return None
    return out


def parse(data: bytes, path: str | None = None) -> Any:
    """Parse and validate a ``.uff`` file's bytes; ``path`` is only used in error messages.

    Raises ``InvalidArtifact`` for truncated, corrupt or foreign files and for graphs that break
    the format's rules (see ``validate``).
    """
    where = _where(path)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidArtifact(f"{where}: expected the bytes of a .uff file, got {type(data).__name__}",
                              path=path)
    data = bytes(data)
    if not data:
        raise InvalidArtifact(f"{where}: file is empty, expected a UFF MetaGraph", path=path,
                              hint="re-run the uff stage; the file was probably not written")
    foreign = _sniff_foreign(data)
    if foreign:
        raise InvalidArtifact(f"{where}: this is {foreign}, not a UFF file", path=path,
                              hint="give the .uff written by the uff stage (or use the onnx route)")
    msg = MetaGraph()
    try:
        msg.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise InvalidArtifact(
            f"{where}: not a valid UFF file ({len(data)} bytes): protobuf decoding failed ({exc})",
            path=path, hint="the file is truncated or corrupt; regenerate it") from None
    stripped = MetaGraph()
    stripped.CopyFrom(msg)
    stripped.DiscardUnknownFields()
    if stripped.ByteSize() != msg.ByteSize():
        raise InvalidArtifact(
            f"{where}: not a UFF file: it decodes with fields the UFF schema does not have",
            path=path, hint="the file is corrupt or in another format (ONNX, GraphDef, engine?)")
    validate(msg, path)
    return msg


def resolve(meta: Any, data: Any, where: str = "", depth: int = 0) -> Any:
    """Follow ``ref`` indirections into ``meta.referenced_data`` and return the final ``Data``."""
    while data.WhichOneof("data_oneof") == "ref":
        key = data.ref
        if key not in meta.referenced_data:
            raise InvalidArtifact(f"{where}: ref {key!r} is not in referenced_data",
                                  hint="the file is corrupt or was written by a broken tool")
        depth += 1
        if depth > 16:
            raise InvalidArtifact(f"{where}: ref {key!r} is part of a reference cycle")
        data = meta.referenced_data[key]
    return data


def const_array(meta: Any, node: Any, path: str | None = None) -> np.ndarray:
    """The value of a ``Const`` node as a numpy array (C order, the dtype/shape it declares)."""
    where = f"{_where(path)}: node {node.id!r}"
    for key in ("dtype", "shape", "values"):
        if key not in node.fields:
            raise InvalidArtifact(f"{where}: Const has no {key!r} field", path=path, node=node.id)
    dtype_code = node.fields["dtype"].dtype
    if dtype_code not in NUMPY_OF:
        raise InvalidArtifact(f"{where}: Const dtype {dtype_code} is not a UFF DataType",
                              path=path, node=node.id,
                              hint="NVIDIA's converter writes 7 for dtypes it cannot map (float64, bool...)")
    shape = list(node.fields["shape"].i_list.val)
    if any(d < 0 for d in shape) or len(shape) > 16:
        raise InvalidArtifact(f"{where}: Const shape {shape} is not a valid shape", path=path,
                              node=node.id)
    values = resolve(meta, node.fields["values"], where)
    kind = values.WhichOneof("data_oneof")
    if kind != "blob":
        raise InvalidArtifact(f"{where}: Const values is {kind or 'empty'}, expected a blob",
                              path=path, node=node.id)
    dt = NUMPY_OF[dtype_code]
    count = math.prod(shape)
    if len(values.blob) != count * dt.itemsize:
        raise InvalidArtifact(
            f"{where}: Const blob has {len(values.blob)} bytes, expected {count * dt.itemsize} "
            f"(shape {shape} x {dt.itemsize}-byte {dt.name})", path=path, node=node.id)
    return np.frombuffer(values.blob, dtype=dt).reshape(shape)


def validate(msg: Any, path: str | None = None) -> None:
    """Check the rules every reader relies on; raise ``InvalidArtifact`` on the first violation."""
    where = _where(path)
    if msg.version != 1 or msg.descriptor_core_version != 1:
        raise InvalidArtifact(
            f"{where}: UFF version {msg.version}/core descriptor {msg.descriptor_core_version}, "
            "expected 1/1 (every NVIDIA converter release wrote 1/1)", path=path,
            hint="the file is corrupt or not a UFF file")
    if len(msg.graphs) != 1:
        raise InvalidArtifact(f"{where}: UFF file has {len(msg.graphs)} graphs, expected exactly 1",
                              path=path, hint="the file is truncated, empty or not a UFF file")
    graph = msg.graphs[0]
    ids: set[str] = set()
    for node in graph.nodes:
        if not node.id or not node.operation:
            raise InvalidArtifact(f"{where}: a node has an empty id or operation "
                                  f"(id={node.id!r}, operation={node.operation!r})", path=path)
        if node.id in ids:
            raise InvalidArtifact(f"{where}: node id {node.id!r} appears twice", path=path,
                                  node=node.id)
        ids.add(node.id)
    outputs = 0
    for node in graph.nodes:
        nwhere = f"{where}: node {node.id!r} ({node.operation})"
        for inp in node.inputs:
            if inp not in ids:
                raise InvalidArtifact(f"{nwhere}: input {inp!r} is not a node of the graph",
                                      path=path, node=node.id)
        for key, value in node.fields.items():
            resolve(msg, value, f"{nwhere} field {key!r}")
        if node.operation == "Const":
            const_array(msg, node, path)
        elif node.operation == "MarkOutput":
            outputs += 1
            if not node.inputs:
                raise InvalidArtifact(f"{nwhere}: MarkOutput has no input", path=path, node=node.id)
    if outputs == 0:
        raise InvalidArtifact(f"{where}: graph has no MarkOutput node, so no outputs", path=path,
                              hint="write the file with at least one output")
