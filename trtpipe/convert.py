"""``trtpipe convert SRC -o DST``: one-file conversions, by extension, outside a pipeline.

``.pb`` / ``.keras`` / ``.h5`` / SavedModel dir / ``builder.py:function`` -> ``.uff`` or ``.onnx``;
``.uff`` -> ``.onnx`` (trtpipe's UFF reader). The destination is written atomically.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from trtpipe.errors import ConfigError, InvalidArtifact
from trtpipe.fsutil import atomic_write_bytes


def parse_inputs(spec: str | None) -> list[tuple[str, tuple[int, ...] | None]]:
    """``"input_1:28x28x1,mask"`` -> ``[("input_1", (-1, 28, 28, 1)), ("mask", None)]``.

    Shapes are given without the batch dimension (as TensorRT's UffParser takes them); the
    batch dimension is added as dynamic.
    """
    out: list[tuple[str, tuple[int, ...] | None]] = []
    for item in filter(None, (s.strip() for s in (spec or "").split(","))):
        name, _, shape = item.partition(":")
        if shape:
            if not re.fullmatch(r"\d+(x\d+)*", shape):
                raise ConfigError(f"--inputs {item!r}: shape must look like 28x28x1 (no batch dimension)")
            out.append((name, (-1, *(int(d) for d in shape.split("x")))))
        else:
            out.append((name, None))
    return out


def convert(src: str, dst: Path, *, inputs: str | None = None, outputs: str | None = None, opset: int = 17,
            allow_custom: bool = False) -> str:
    """Convert ``src`` to ``dst``; returns a one-line summary."""
    dst = Path(dst)
    out_kind = dst.suffix.lower()
    if out_kind not in (".uff", ".onnx"):
        raise ConfigError(f"-o {dst}: the destination must end in .uff or .onnx")
    file_part = src.split(":", 1)[0] if src.split(":", 1)[0].endswith(".py") else src
    src_path = Path(file_part)
    if not src_path.exists():
        raise InvalidArtifact(f"{src_path}: no such file or directory", path=str(src_path))
    in_list = parse_inputs(inputs)
    out_list = [o.strip() for o in (outputs or "").split(",") if o.strip()] or None
    if src_path.suffix.lower() == ".uff":
        if out_kind != ".onnx":
            raise ConfigError(f"{src} -> {dst}: a .uff file converts to .onnx only")
        from trtpipe.backends.uff import reader

        model = reader.uff_to_onnx(src_path.read_bytes(), opset=opset, path=str(src_path))
        atomic_write_bytes(dst, model.SerializeToString())
        return f"{len(model.graph.node)} ONNX nodes, opset {opset}"
    with tempfile.TemporaryDirectory(prefix="trtpipe-convert-") as tmp:
        pb, signature = _frozen(src, src_path, Path(tmp))
        if out_kind == ".uff":
            from trtpipe.backends.uff import writer

            uff_inputs = [writer.UffInput(n, s, "NHWC" if s is None or len(s) == 4 else "NC") for n, s in in_list] or None
            data = writer.graphdef_to_uff(pb.read_bytes(), inputs=uff_inputs, outputs=out_list,
                                          allow_custom=allow_custom)
            atomic_write_bytes(dst, data)
            return f"{len(data)} bytes of UFF"
        from trtpipe.backends import onnx as onnx_backend

        if in_list or out_list:
            signature = _narrow(signature, in_list, out_list)
        info: dict[str, Any] = onnx_backend.tf_to_onnx(pb, signature, dst, opset=opset)
        return f"{info.get('nodes', info.get('node_count', '?'))} ONNX nodes, opset {opset}"


def _frozen(src: str, src_path: Path, tmp: Path) -> tuple[Path, dict[str, Any]]:
    from trtpipe.backends import tf

    if src_path.suffix.lower() == ".pb":
        return src_path, tf.signature_of_pb(src_path.read_bytes())
    pb = tmp / "frozen.pb"
    signature = tf.freeze(src, pb, base_dir=Path.cwd())
    return pb, signature


def _narrow(signature: dict[str, Any], inputs: list[tuple[str, tuple[int, ...] | None]],
            outputs: list[str] | None) -> dict[str, Any]:
    sig = dict(signature)
    if inputs:
        known = {i["name"]: i for i in signature["inputs"]}
        sig["inputs"] = []
        for name, shape in inputs:
            base = dict(known.get(name, {"name": name, "dtype": "float32"}))
            if shape:
                base["shape"] = [None, *shape[1:]]
            sig["inputs"].append(base)
    if outputs:
        known_out = {o["name"]: o for o in signature["outputs"]}
        sig["outputs"] = [known_out.get(o, {"name": o, "dtype": "float32"}) for o in outputs]
    return sig
