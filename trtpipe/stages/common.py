"""Small helpers shared by stage modules (no framework imports)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trtpipe.errors import InvalidArtifact
from trtpipe.stages.base import Input


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON artifact, with a clear error when it is damaged."""
    try:
        return json.loads(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise InvalidArtifact(f"{path}: cannot read {what} ({exc})", path=str(path),
                              hint="rebuild it: trtpipe run --force <stage>") from None


def graph_and_signature(inp: Input) -> tuple[Path, dict[str, Any]]:
    """The frozen graph of an input (freeze stage or external .pb) and its I/O signature."""
    if inp.stage:
        return inp.file("graph"), read_json(inp.file("signature"), "signature")
    from trtpipe.backends import tf

    assert inp.path is not None
    return inp.path, tf.signature_of_pb(inp.path.read_bytes())


def model_path(inp: Input, output: str = "model") -> Path:
    """The model file of an input: an upstream stage's ``output``, or the external file."""
    if inp.stage:
        return inp.file(output)
    assert inp.path is not None
    return inp.path


def as_onnx(inp: Input, scratch: Path, opset: int = 17) -> Path:
    """An ONNX file for a model input: the file itself, or UFF read back into ONNX by trtpipe's reader."""
    path = model_path(inp)
    if inp.artifact != "uff":
        return path
    from trtpipe.backends.uff import reader
    from trtpipe.fsutil import atomic_write_bytes

    model = reader.uff_to_onnx(path.read_bytes(), opset=opset, path=str(path))
    out = scratch / "from-uff.onnx"
    atomic_write_bytes(out, model.SerializeToString())
    return out


def onnx_inputs(path: Path) -> list[dict[str, Any]]:
    """The graph inputs of an ONNX model as signature entries (name, dtype, shape; None = dynamic)."""
    from trtpipe.backends.onnx import graph_inputs

    return graph_inputs(path)


def data_files(spec: dict[str, Any] | None, base_dir: Path) -> list[Path]:
    """Files a data spec reads (for the cache key); [] for random data."""
    if not spec:
        return []
    from trtpipe.data.files import source_files

    return source_files(spec, base_dir)
