"""UFF container: schema agrees with schemas/uff.proto, parse/validate errors, orders, fuzzing."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from trtpipe.backends.uff import format as fmt
from trtpipe.errors import InvalidArtifact, TrtpipeError

PROTO = Path(__file__).resolve().parents[3] / "schemas" / "uff.proto"


def _proto_fields() -> dict[str, dict[str, int]]:
    text = re.sub(r"//[^\n]*", "", PROTO.read_text())
    out: dict[str, dict[str, int]] = {}
    for m in re.finditer(r"message (\w+)\s*\{(.*?)\n?\}\s*(?=message|\Z)", text, re.S):
        body = m.group(2)
        out[m.group(1)] = {f: int(n) for f, n in re.findall(r"(\w+)\s*=\s*(\d+);", body)}
    return out


def test_descriptors_match_the_proto_file() -> None:
    want = _proto_fields()
    got = {msg.name: {f.name: f.number for f in msg.field} for msg in fmt.FILE_DESCRIPTOR.message_type}
    assert set(got) == set(want)
    for name, fields in want.items():
        assert got[name] == fields, name
    enum = {v.name: v.number for e in fmt.FILE_DESCRIPTOR.enum_type for v in e.value}
    text = PROTO.read_text()
    for vname, number in enum.items():
        assert re.search(rf"\b{vname} = {number};", text), vname


def test_parse_lenet5_and_reserialise_same_size(lenet_uff: bytes) -> None:
    meta = fmt.parse(lenet_uff, "lenet5.uff")
    assert meta.version == 1 and meta.descriptor_core_version == 1
    assert [d.id for d in meta.descriptors] == ["tensorflow_extension"]
    assert len(meta.graphs[0].nodes) == 13
    out = fmt.serialize(meta)
    assert len(out) == len(lenet_uff)
    assert fmt.serialize(fmt.parse(out)) == out  # deterministic


@pytest.mark.parametrize("order, encoded", [
    ("NC+", [0, 1, 2, fmt.OE_INCREMENT]), ("N+C", [0, 2, fmt.OE_INCREMENT, 1]),
    ("NC", [0, 1]), ("CN", [1, 0]), ("KC", [0, 1]), ("CK", [1, 0]),
    ("+CK", [2, fmt.OE_INCREMENT, 1, 0]), ("+KC", [2, fmt.OE_INCREMENT, 0, 1]),
    ("KC+", [0, 1, 2, fmt.OE_INCREMENT]), ("N-C", [0, fmt.OE_DECREMENT, 2, 1]),
])
def test_orders_encoding(order: str, encoded: list[int]) -> None:
    assert fmt.encode_order(order) == encoded
    assert fmt.decode_order(encoded, weights="K" in order) == order


def test_orders_wire_bytes_match_lenet5(lenet_uff: bytes) -> None:
    meta = fmt.parse(lenet_uff)
    assert meta.referenced_data["orders_N+C"] == fmt.orders_data(["N+C"])
    assert meta.referenced_data["orders_NC_CK"] == fmt.orders_data(["NC", "CK"])


def _error(data: bytes) -> str:
    with pytest.raises(InvalidArtifact) as info:
        fmt.parse(data, "model.uff")
    assert "model.uff" in str(info.value)
    return str(info.value)


def test_truncated_and_garbage_files(lenet_uff: bytes) -> None:
    assert "empty" in _error(b"")
    assert "truncated" in (_error(lenet_uff[:5000]) + str(
        pytest.raises(InvalidArtifact, fmt.parse, lenet_uff[:5000]).value.hint))
    msg = _error(np.random.default_rng(0).bytes(4096))
    assert "UFF" in msg


def test_foreign_files_are_named(lenet_pb: bytes) -> None:
    assert "TensorFlow GraphDef" in _error(lenet_pb)
    onnx = pytest.importorskip("onnx")
    model = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", 1, [1])],
        [onnx.helper.make_tensor_value_info("y", 1, [1])]))
    assert "ONNX model" in _error(model.SerializeToString())
    assert "HDF5" in _error(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)


def _mutated(lenet_uff: bytes, edit) -> bytes:  # type: ignore[no-untyped-def]
    meta = fmt.parse(lenet_uff)
    edit(meta)
    return meta.SerializeToString()


def test_semantic_validation_names_the_node(lenet_uff: bytes) -> None:
    def bad_input(m):  # type: ignore[no-untyped-def]
        m.graphs[0].nodes[5].inputs[0] = "nope"
    assert "'dense/Relu'" in _error(_mutated(lenet_uff, bad_input))

    def bad_ref(m):  # type: ignore[no-untyped-def]
        del m.referenced_data["weights_dense/bias"]
    assert "weights_dense/bias" in _error(_mutated(lenet_uff, bad_ref))

    def bad_shape(m):  # type: ignore[no-untyped-def]
        m.graphs[0].nodes[1].fields["shape"].i_list.val[0] = 11
    msg = _error(_mutated(lenet_uff, bad_shape))
    assert "'dense_1/bias'" in msg and "expected 44" in msg

    def two_graphs(m):  # type: ignore[no-untyped-def]
        m.graphs.add(id="other")
    assert "2 graphs" in _error(_mutated(lenet_uff, two_graphs))

    def no_output(m):  # type: ignore[no-untyped-def]
        del m.graphs[0].nodes[12]
    assert "MarkOutput" in _error(_mutated(lenet_uff, no_output))


def test_fuzzed_lenet5_never_crashes(lenet_uff: bytes) -> None:
    """600 seeded bit flips, truncations and splices: parse + read either work or raise TrtpipeError."""
    pytest.importorskip("onnx")
    from trtpipe.backends.uff.reader import uff_to_onnx

    rng = np.random.default_rng(1234)
    head = 4096  # the structure (nodes, fields) sits around the big blobs; aim there too
    outcomes = {"ok": 0, "error": 0}
    base = np.frombuffer(lenet_uff, dtype=np.uint8)
    for i in range(600):
        data = base.copy()
        kind = i % 3
        if kind == 0:
            for _ in range(int(rng.integers(1, 4))):
                pos = int(rng.integers(0, head)) if rng.random() < 0.7 else int(rng.integers(0, len(data)))
                data[pos] ^= np.uint8(1 << int(rng.integers(0, 8)))
            blob = data.tobytes()
        elif kind == 1:
            blob = data[: int(rng.integers(0, len(data)))].tobytes()
        else:
            a, b = sorted(int(v) for v in rng.integers(0, len(data), 2))
            dst = int(rng.integers(0, len(data)))
            chunk = data[a: min(b, a + 512)].tobytes()
            blob = data[:dst].tobytes() + chunk + data[dst:].tobytes()
        try:
            uff_to_onnx(blob, path=f"fuzz{i}.uff")
            outcomes["ok"] += 1
        except TrtpipeError as exc:
            assert exc.message
            outcomes["error"] += 1
    assert outcomes["ok"] > 0 and outcomes["error"] > 0 and sum(outcomes.values()) == 600
