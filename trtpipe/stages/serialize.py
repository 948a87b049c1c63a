"""``serialize``: the release artifact -- the engine file plus a metadata sidecar (JSON).

The sidecar holds what a deployment needs without the pipeline file: I/O names, dtypes and
shapes with the batch range, precision, backend and version, hardware fingerprint, the
digests of the sources it was built from, and the build params.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from trtpipe import __version__, hashing
from trtpipe.backends.fingerprint import hardware
from trtpipe.errors import InvalidArtifact
from trtpipe.fsutil import atomic_write_json
from trtpipe.stages.base import ENGINE, RELEASE, Role, Stage, StageContext, register
from trtpipe.stages.common import read_json


@register
class Serialize(Stage):
    kind = "serialize"
    VERSION = 2  # 2: release file named .onnx/.plan by backend
    roles = {"engine": Role((ENGINE,))}
    outputs = {"engine": RELEASE, "metadata": RELEASE}

    def run(self, ctx: StageContext) -> dict[str, Path]:
        inp = ctx.one("engine")
        if not inp.stage:
            raise InvalidArtifact(f"{inp.ref}: serialize takes the output of a build stage",
                                  hint="add a build stage and point serialize at it")
        src = inp.file("engine")
        report = read_json(inp.file("report"), "build report")
        # Objects in the store carry no extension: name the release file by what it is.
        ext = ".plan" if report.get("backend") == "tensorrt" else ".onnx"
        out = ctx.out("engine", ext)
        # Binary copy, then re-hash: the file we ship is byte-for-byte the one that was built.
        with open(src, "rb") as fin, open(out, "wb") as fout:
            shutil.copyfileobj(fin, fout, hashing.CHUNK)
        digest = hashing.file_digest(out)
        if digest != hashing.file_digest(src):
            raise InvalidArtifact(f"{out}: copy of the engine does not match its source", path=str(out))
        io = _io_specs(out, report)
        meta: dict[str, Any] = {
            "format": "trtpipe-engine-metadata/1",
            "engine_file": f"engine-{digest[:12]}{ext}",
            "engine_sha256": digest,
            "backend": report.get("backend"),
            "precision": report.get("precision"),
            "max_batch": report.get("max_batch"),
            "batch_range": [1, report.get("max_batch")],
            "inputs": io["inputs"], "outputs": io["outputs"],
            "versions": io["versions"],
            **{k: io[k] for k in ("layers", "plugins", "num_profiles", "device_memory_bytes") if k in io},
            "hardware": hardware() if report.get("backend") == "onnxruntime" else report.get("environment"),
            "build_params": report.get("params"),
            "sources": {"build_report_sha256": hashing.file_digest(inp.file("report")),
                        "calibration": report.get("calibration")},
            "trtpipe": __version__,
        }
        meta_path = ctx.out("metadata", ".json")
        atomic_write_json(meta_path, meta)
        return {"engine": out, "metadata": meta_path}


def _io_specs(engine: Path, report: dict[str, Any]) -> dict[str, Any]:
    if report.get("backend") == "tensorrt":
        tensors = report.get("io_tensors") or []
        env = report.get("environment") or {}
        return {"inputs": [t for t in tensors if t.get("mode") == "INPUT"],
                "outputs": [t for t in tensors if t.get("mode") == "OUTPUT"],
                "versions": {"tensorrt": env.get("tensorrt"), "cuda": env.get("cuda")},
                "layers": report.get("layers"), "plugins": report.get("plugins"),
                "num_profiles": report.get("num_profiles"),
                "device_memory_bytes": report.get("device_memory_bytes")}
    from trtpipe.backends import onnxruntime as ort_backend

    eng = ort_backend.Engine(engine)
    return {"inputs": eng.inputs, "outputs": eng.outputs, "versions": {"onnxruntime": ort_backend.version()}}
