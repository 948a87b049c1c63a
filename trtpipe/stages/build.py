"""``build``: a model (ONNX, or UFF) -> an engine for ONNX Runtime or TensorRT, at a precision.

ONNX Runtime (runs everywhere): fp32 builds the model as is; fp16 first converts it to an fp16
model; int8/mixed quantize it to a Q/DQ model from the calibration table of the inserted
``<build>.calibrate`` stage. The engine is the ORT-optimized model with ``trtpipe.max_batch``
in its metadata. TensorRT: the YAML intent is mapped per API era by ``trt_plan.derive_plan``.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path
from typing import Any

from trtpipe.backends.fingerprint import framework_versions, hardware
from trtpipe.errors import BackendUnavailable, ConfigError
from trtpipe.fsutil import atomic_write_json
from trtpipe.stages.base import CALIBRATION, ENGINE, ONNX, REPORT, UFF, Role, Stage, StageContext, register
from trtpipe.stages.common import as_onnx, model_path, onnx_inputs, read_json

_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


def workspace_bytes(value: int | str) -> int:
    """``"1GiB"`` -> 1073741824 (ints are bytes already)."""
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*(B|KiB|MiB|GiB|KB|MB|GB)", value.strip())
    if not m:
        raise ConfigError(f"workspace {value!r}: expected a size like 512MiB or 1GiB")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def tensorrt_usable() -> bool:
    """Real TensorRT importable and a GPU visible, decided without importing TensorRT."""
    from importlib import metadata

    for dist in ("tensorrt", "tensorrt-cu12", "tensorrt-cu11", "tensorrt-libs", "tensorrt-cu13"):
        try:
            metadata.version(dist)
            break
        except metadata.PackageNotFoundError:
            continue
    else:  # JetPack installs TensorRT without pip metadata: look for a real module file
        spec = importlib.util.find_spec("tensorrt")
        if spec is None or spec.origin in (None, "namespace"):
            return False
    return shutil.which("nvidia-smi") is not None or Path("/dev/nvidia0").exists() or Path("/etc/nv_tegra_release").exists()


def trt_intent(params: dict[str, Any], model_artifact: str | None, calibration_cache: Path | None = None) -> dict[str, Any]:
    """The TensorRT build intent for ``trt_plan.derive_plan`` from a build stage's params (pure)."""
    intent = dict(params, workspace_bytes=workspace_bytes(params["workspace"]), input_format=model_artifact or "onnx")
    if calibration_cache is not None and "calibrator" in params:
        # Build from trtpipe's calibration, written in TensorRT's own cache format: no data needed.
        intent["calibrator"] = dict(params["calibrator"], cache=str(calibration_cache))
    return intent


def resolve_backend(params: dict[str, Any]) -> str:
    """``auto`` -> ``tensorrt`` when TensorRT and a GPU are here, else ``onnxruntime``."""
    backend = params["backend"]
    if backend == "auto":
        return "tensorrt" if tensorrt_usable() else "onnxruntime"
    return str(backend)


@register
class Build(Stage):
    kind = "build"
    VERSION = 2  # 2: reproducible ORT engine bytes (canonical names)
    roles = {"model": Role((ONNX, UFF)), "calibration": Role((CALIBRATION,))}  # wired by pipeline.build
    outputs = {"engine": ENGINE, "report": REPORT}

    def check(self, params: dict[str, Any]) -> list[tuple[tuple[str, ...], str]]:
        problems: list[tuple[tuple[str, ...], str]] = []
        if params.get("opt_batch") and params["opt_batch"] > params["max_batch"]:
            problems.append((("opt_batch",), f"opt_batch {params['opt_batch']} is larger than max_batch "
                                             f"{params['max_batch']}"))
        if params["precision"] in ("int8", "mixed") and "calibrator" not in params:
            problems.append((("precision",), f"precision {params['precision']} needs a calibrator: "
                                             "add `calibrator: {data: {source: ...}}` (images, .npz or random)"))
        if params["precision"] == "mixed" and not params["exclude"]:
            problems.append((("exclude",), "precision mixed needs `exclude:` node-name patterns to keep in fp32"))
        if params["precision"] != "mixed" and params["exclude"] and params["precision"] != "int8":
            problems.append((("exclude",), "exclude applies to precision int8/mixed only"))
        return problems

    def key_params(self, params: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in params.items() if k != "description"}
        out["backend"] = resolve_backend(params)  # `auto` must not hide which backend built it
        if out["backend"] == "onnxruntime":
            # TensorRT-only knobs do not change an ORT engine; keep them out of the key.
            for k in ("workspace", "plugins", "timing_cache", "error_on_timing_cache_miss",
                      "builder_optimization_level", "version_compatible", "hardware_compatibility_level",
                      "on_unsupported"):
                out.pop(k, None)
        # The calibration table is an input of its own (the inserted calibrate stage).
        out.pop("calibrator", None)
        return out

    def env_keys(self, params: dict[str, Any]) -> dict[str, Any]:
        if resolve_backend(params) == "tensorrt":
            from trtpipe.backends import tensorrt

            env = tensorrt.environment()
            return {k: env.get(k) for k in ("tensorrt", "cuda", "gpu", "compute_capability")}
        hw = hardware()
        # ORT_ENABLE_ALL output and int8 kernels are CPU-specific: the ISA is part of the key.
        return {**framework_versions("onnxruntime", "onnx", "onnxconverter-common"),
                "provider": "CPUExecutionProvider", "cpu": hw.get("cpu"), "isa": hw.get("isa")}

    def preflight(self, params: dict[str, Any]) -> None:
        from trtpipe.backends._imports import check_available

        check_available("onnx", why="trtpipe reads every model as ONNX")
        if params["precision"] == "fp16":
            check_available("onnxconverter_common", why="fp16 conversion")
        backend = resolve_backend(params)
        if backend == "tensorrt":
            from trtpipe.backends import tensorrt

            ok, why = tensorrt.available()
            if not ok:
                raise BackendUnavailable(f"backend: tensorrt was requested but TensorRT is not usable here: {why}",
                                         hint="install TensorRT with a GPU, run `trtpipe doctor`, or set "
                                              "backend: onnxruntime (or auto)")
        elif importlib.util.find_spec("onnxruntime") is None:
            raise BackendUnavailable("ONNX Runtime is not installed", hint="pip install 'trtpipe[ort]'")

    def run(self, ctx: StageContext) -> dict[str, Path]:
        p = ctx.params
        backend = resolve_backend(p)
        ctx.log.info("build: backend %s (requested %s), precision %s", backend, p["backend"], p["precision"])
        table = None
        if "calibration" in ctx.inputs:
            table = read_json(ctx.one("calibration").file("table"), "calibration table")
        if backend == "tensorrt":
            return self._tensorrt(ctx, table)
        return self._onnxruntime(ctx, table)

    # ------------------------------------------------------------------ ONNX Runtime

    def _precision_model(self, ctx: StageContext, onnx_path: Path, table: dict[str, Any] | None) -> tuple[Path, dict[str, Any]]:
        """The fp32 / fp16 / Q/DQ ONNX model this precision builds from, plus its report."""
        from trtpipe.backends import precision as prec

        p = ctx.params
        if p["precision"] == "fp32":
            return onnx_path, {"precision": "fp32", "nodes": prec.node_precisions(onnx_path)}
        if p["precision"] == "fp16":
            out = ctx.scratch.parent / "fp16.onnx"
            fp16 = p.get("fp16", {})
            rep = prec.to_fp16(onnx_path, out, keep_io_types=fp16.get("keep_io_types", True),
                               op_block_list=fp16.get("op_block_list"))
            return out, rep
        assert table is not None
        out = ctx.scratch.parent / "int8.onnx"
        q = {k: v for k, v in p.get("quantization", {}).items() if v != "auto"}  # schema enums = backend names
        rep = prec.quantize_int8(onnx_path, out, table, exclude=p["exclude"], settings=q or None)
        return out, rep

    def _onnxruntime(self, ctx: StageContext, table: dict[str, Any] | None) -> dict[str, Path]:
        from trtpipe.backends import onnxruntime as ort_backend

        p = ctx.params
        model_in = ctx.one("model")
        onnx_path = as_onnx(model_in, ctx.scratch.parent)
        model, prec_report = self._precision_model(ctx, onnx_path, table)
        engine = ctx.out("engine", ".onnx")
        meta = {"trtpipe.precision": p["precision"], "trtpipe.backend": "onnxruntime",
                "trtpipe.source_format": model_in.artifact or "onnx"}
        rep = ort_backend.build(model, engine, max_batch=p["max_batch"], optimization_level=p["optimization_level"],
                                metadata=meta)
        report = ctx.out("report", ".json")
        atomic_write_json(report, {
            "backend": "onnxruntime", "backend_requested": p["backend"], "precision": p["precision"],
            "max_batch": p["max_batch"], "params": self.key_params(p),
            "workspace": {"value": p["workspace"], "applies": False,
                          "note": "workspace is a TensorRT memory-pool limit; ONNX Runtime has no equivalent"},
            "inputs": onnx_inputs(onnx_path), "precision_report": prec_report, "ort": rep,
            "calibration": {k: table[k] for k in ("algorithm", "model_sha256", "data_sha256", "samples") if k in table}
            if table else None})
        return {"engine": engine, "report": report}

    # ------------------------------------------------------------------ TensorRT

    def _tensorrt(self, ctx: StageContext, table: dict[str, Any] | None) -> dict[str, Path]:
        from trtpipe.backends import tensorrt, trt_plan

        p = ctx.params
        model_in = ctx.one("model")
        trt = tensorrt.ensure_tensorrt()
        env = tensorrt.environment()
        cal_cache = ctx.one("calibration").file("trt_cache") if "calibration" in ctx.inputs else None
        intent = trt_intent(p, model_in.artifact, cal_cache)
        native_uff = model_in.artifact == "uff" and trt_plan.detect_era(str(trt.__version__)) == "8.6"
        model = model_path(model_in) if native_uff else as_onnx(model_in, ctx.scratch.parent)
        precision_models: dict[str, str] = {}
        if not native_uff and p["precision"] != "fp32" and trt_plan.detect_era(str(trt.__version__)) == "11":
            # TensorRT 11 is strongly typed: the precision lives in the model trtpipe converts.
            pm, _ = self._precision_model(ctx, Path(model), table)
            precision_models = {"int8" if p["precision"] in ("int8", "mixed") else "fp16": str(pm)}
        shapes = {i["name"]: i["shape"] for i in onnx_inputs(Path(model))} if not native_uff else {}
        cc = env.get("compute_capability")
        caps = {"compute_capability": tuple(int(x) for x in str(cc).split("."))} if cc else None
        plan = trt_plan.derive_plan(intent, trt_version=str(trt.__version__), input_shapes=shapes,
                                    capabilities=caps, precision_models=precision_models)
        calib_data = None
        if table is None and p["precision"] in ("int8", "mixed") and "calibrator" in p:
            from trtpipe.data.sources import load_inputs

            calib_data = load_inputs(p["calibrator"]["data"], onnx_inputs(Path(model)), base_dir=ctx.base_dir)
        engine = ctx.out("engine", ".plan")
        timing_out = ctx.out("timing_cache", ".cache") if p["timing_cache"] else None
        timing_in = _previous_timing_cache(ctx) if p["timing_cache"] else None
        report = tensorrt.build_engine(Path(model), plan, engine, calib_data=calib_data, timing_cache_in=timing_in,
                                       timing_cache_out=timing_out, log_path=ctx.scratch.parent / "log.txt")
        rep_path = ctx.out("report", ".json")
        atomic_write_json(rep_path, {"backend": "tensorrt", "precision": p["precision"], "max_batch": p["max_batch"],
                                     "params": self.key_params(p), "environment": env, **report})
        outs = {"engine": engine, "report": rep_path}
        if timing_out and timing_out.exists():
            outs["timing_cache"] = timing_out
        return outs


def _previous_timing_cache(ctx: StageContext) -> Path | None:
    """The timing cache this stage produced last time (per the lock file), fed back into the build.

    It is deliberately not part of the key: it only speeds up tactic selection (and, with
    ``error_on_timing_cache_miss``, pins it); TensorRT ignores a cache from another device/version.
    """
    digest = ctx.lock_digests.get(f"{ctx.name}.timing_cache")
    if not digest:
        return None
    path = ctx.store_root / "objects" / digest[:2] / digest[2:]
    return path if path.is_file() else None

