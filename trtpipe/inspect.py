"""``trtpipe inspect FILE``: a readable summary of any artifact trtpipe reads or writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trtpipe import hashing
from trtpipe.errors import InvalidArtifact


def describe(path: Path) -> str:
    """Summary text for ``path``, chosen by content and extension."""
    path = Path(path)
    if not path.exists():
        raise InvalidArtifact(f"{path}: no such file or directory", path=str(path))
    if path.is_dir():
        if (path / "saved_model.pb").exists():
            return f"{path}: TensorFlow SavedModel directory (freeze it with a `freeze` stage or `trtpipe convert`)"
        raise InvalidArtifact(f"{path}: is a directory, not an artifact", path=str(path))
    head = f"{path}\n  size {path.stat().st_size} bytes, sha256 {hashing.file_digest(path)}\n"
    suffix = path.suffix.lower()
    if suffix == ".uff":
        from trtpipe.backends.uff.describe import describe_uff

        return head + describe_uff(path.read_bytes())
    if suffix == ".onnx":
        from trtpipe.backends import onnx as onnx_backend

        text = onnx_backend.describe_onnx(path)
        return head + text
    if suffix == ".pb":
        return head + _describe_pb(path)
    if suffix in (".plan", ".engine"):
        return head + _describe_plan(path)
    if suffix == ".cache":
        from trtpipe.backends.calibration import parse_trt_cache

        cache = parse_trt_cache(path.read_bytes(), source=str(path))
        lines = [f"  TensorRT calibration cache: version {cache['version']}, algorithm {cache['algorithm']}, "
                 f"{len(cache['scales'])} tensors"]
        lines += [f"    {name}: scale {scale:.6g}" for name, scale in list(cache["scales"].items())[:40]]
        return head + "\n".join(lines)
    if suffix in (".json", ".lock"):
        return head + _describe_json(path)
    if suffix in (".txt", ".log", ".csv", ".html"):
        return head + f"  text file; first lines:\n{_first_lines(path)}"
    raise InvalidArtifact(f"{path}: unrecognised artifact type '{suffix or '(none)'}'",
                          hint="inspect knows .pb .onnx .uff .plan/.engine .json .lock .cache files", path=str(path))


def _first_lines(path: Path, n: int = 20) -> str:
    text = path.read_bytes()[:8192].decode("utf-8", "replace")
    return "\n".join("    " + line for line in text.splitlines()[:n])


def _describe_pb(path: Path) -> str:
    from trtpipe.backends import tf

    sig = tf.signature_of_pb(path.read_bytes())
    lines = ["  frozen TensorFlow GraphDef"]
    for role in ("inputs", "outputs"):
        for t in sig[role]:
            shape = ["N" if d is None else d for d in (t.get("shape") or [])]
            lines.append(f"  {role[:-1]:<6} {t['name']}: {t.get('dtype')} {shape}")
    for k, v in sig.items():
        if k not in ("inputs", "outputs"):
            lines.append(f"  {k}: {v}")
    return "\n".join(lines)


def _describe_plan(path: Path) -> str:
    sidecars = sorted(path.parent.glob("metadata-*.json"))
    lines = ["  TensorRT engine plan (serialized ICudaEngine)"]
    from trtpipe.backends import tensorrt

    ok, why = tensorrt.available()
    if ok:
        meta = tensorrt.engine_metadata(tensorrt.load_engine(path))
        lines.append(json.dumps(meta, indent=2, default=str))
    else:
        lines.append(f"  (TensorRT is not available here, so the plan cannot be opened: {why})")
    if sidecars:
        lines.append(f"  metadata sidecar {sidecars[-1].name}:")
        lines.append(_describe_json(sidecars[-1]))
    return "\n".join(lines)


def _describe_json(path: Path) -> str:
    try:
        data: Any = json.loads(path.read_bytes())
    except ValueError as exc:
        raise InvalidArtifact(f"{path}: not valid JSON ({exc})", path=str(path)) from None
    if not isinstance(data, dict):
        return "  JSON " + type(data).__name__
    if "stages" in data and data.get("format") == 1 and "pipeline" in data:  # a lock file
        lines = [f"  lock file of pipeline '{data['pipeline']}' ({len(data['stages'])} stages)"]
        for name, st in data["stages"].items():
            outs = ", ".join(f"{n}={o['sha256'][:12]}" for n, o in st.get("outputs", {}).items() if n != "log")
            lines.append(f"    {name:<24} {st['kind']:<17} key {st['key'][:12]}  {outs}")
        return "\n".join(lines)
    if data.get("format") == "trtpipe-engine-metadata/1":
        lines = [f"  engine metadata: backend {data.get('backend')}, precision {data.get('precision')}, "
                 f"batch {data.get('batch_range')}, engine sha256 {str(data.get('engine_sha256'))[:12]}"]
        for role in ("inputs", "outputs"):
            for t in data.get(role, []):
                lines.append(f"    {role[:-1]:<6} {t.get('name')}: {t.get('dtype')} {t.get('shape')}")
        lines.append(f"    versions: {data.get('versions')}")
        return "\n".join(lines)
    if "tensors" in data and "algorithm" in data:
        return (f"  calibration table: algorithm {data['algorithm']}, {len(data['tensors'])} tensors, "
                f"{data.get('samples')} samples, model {str(data.get('model_sha256'))[:12]}, "
                f"data {str(data.get('data_sha256'))[:12]}")
    if "rows" in data and "ok" in data:
        bad = [r for r in data["rows"] if not r.get("ok")]
        return (f"  verification report: {'PASSED' if data['ok'] else 'FAILED'} ({data.get('precision')}, "
                f"{len(data['rows'])} comparisons, {len(bad)} failing)")
    text = json.dumps(data, indent=2, default=str)
    return "  JSON:\n" + "\n".join("    " + line for line in text.splitlines()[:60])
