"""``calibrate``: int8 calibration of an ONNX (or UFF) model on a data source.

Usually not written by hand: every ``build`` with ``precision: int8 | mixed`` gets one inserted
(``<build>.calibrate``), so the table is cached on its own: a new ``max_batch`` or ``workspace``
reuses it, new data or a new algorithm recalibrates. Outputs the table (JSON: per-tensor ranges
and scales, model and data digests, algorithm) and the same scales in TensorRT's legacy
calibration-cache text format, for TensorRT 8.6/10 builds without the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trtpipe import hashing
from trtpipe.backends.fingerprint import framework_versions
from trtpipe.fsutil import atomic_write_bytes, atomic_write_json
from trtpipe.stages.base import CALIBRATION, ONNX, UFF, Role, Stage, StageContext, register
from trtpipe.stages.common import as_onnx, data_files, onnx_inputs


@register
class Calibrate(Stage):
    kind = "calibrate"
    VERSION = 1
    requires = ("onnx", "onnxruntime")
    roles = {"model": Role((ONNX, UFF))}
    outputs = {"table": CALIBRATION, "trt_cache": CALIBRATION}

    def env_keys(self, params: dict[str, Any]) -> dict[str, Any]:
        return framework_versions("onnxruntime", "onnx")

    def data_files(self, params: dict[str, Any], base_dir: Path) -> list[Path]:
        return data_files(params["calibrator"]["data"], base_dir)

    def run(self, ctx: StageContext) -> dict[str, Path]:
        from trtpipe.backends import calibration
        from trtpipe.data.sources import load_inputs

        cal = ctx.params["calibrator"]
        model = as_onnx(ctx.one("model"), ctx.scratch)
        data = load_inputs(cal["data"], onnx_inputs(model), base_dir=ctx.base_dir)
        table = calibration.calibrate(model, data, algorithm=cal["algorithm"], batch_size=cal["batch_size"],
                                      max_batches=cal["max_batches"], percentile=cal["percentile"])
        table["model_sha256"] = hashing.file_digest(model)
        table["data_sha256"] = hashing.bytes_digest(b"".join(
            hashing.canonical_json([k, list(v.shape), str(v.dtype)]) + v.tobytes() for k, v in sorted(data.items())))
        out = ctx.out("table", ".json")
        atomic_write_json(out, table)
        cache = ctx.out("trt_cache", ".cache")
        atomic_write_bytes(cache, calibration.to_trt_cache(table, algorithm=cal["algorithm"]))
        ctx.log.info("calibrated %d tensors on %d samples (%s)", len(table["tensors"]), table.get("samples", 0),
                     cal["algorithm"])
        return {"table": out, "trt_cache": cache}
