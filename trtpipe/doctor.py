"""``trtpipe doctor``: what this machine offers -- frameworks, GPU, CPU ISA, buildable precisions.

Versions come from package metadata (``importlib.metadata``), so the report never imports
TensorFlow. ONNX Runtime is imported only to list its execution providers, and TensorRT only
to tell a real install from the ``tensorrt-stubs`` namespace package. Every missing piece is
reported with the command that installs it; nothing here raises for a missing framework.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import importlib.util
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import trtpipe
from trtpipe.backends import tensorrt as trt_backend

#: backend key -> (human name, distributions that provide it, import name, pip extra)
_BACKENDS: dict[str, tuple[str, tuple[str, ...], str, str]] = {
    "tensorflow": ("TensorFlow", ("tensorflow", "tensorflow-cpu", "tensorflow-macos",
                                  "tensorflow-intel", "tf-nightly"), "tensorflow", "tf"),
    "tf2onnx": ("tf2onnx", ("tf2onnx",), "tf2onnx", "tf"),
    "onnx": ("ONNX", ("onnx",), "onnx", "ort"),
    "onnxconverter_common": ("onnxconverter-common", ("onnxconverter-common",),
                             "onnxconverter_common", "ort"),
    "onnxruntime": ("ONNX Runtime", ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino",
                                     "onnxruntime-directml", "ort-nightly"), "onnxruntime", "ort"),
    "polygraphy": ("Polygraphy", ("polygraphy",), "polygraphy", "trt"),
}
#: CPU flags (Linux /proc/cpuinfo names) that matter for ORT kernels and int8 quantization
_ISA_FLAGS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
              "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16",
              "asimd", "asimddp", "sve", "i8mm")
_TRT_HINT = ("install TensorRT for your CUDA version (NVIDIA's wheels or JetPack) on a machine with "
             "an NVIDIA GPU, then pip install 'trtpipe[trt]'; or use backend: onnxruntime")


def _version(dists: tuple[str, ...]) -> tuple[str | None, str | None]:
    for dist in dists:
        with contextlib.suppress(md.PackageNotFoundError):
            return md.version(dist), dist
    return None, None


def _backend(key: str) -> dict[str, Any]:
    human, dists, module, extra = _BACKENDS[key]
    version, dist = _version(dists)
    # A module importable without metadata (vendored, system package) still counts.
    found = version is not None or importlib.util.find_spec(module) is not None
    entry: dict[str, Any] = {"name": human, "installed": found, "version": version,
                             "distribution": dist}
    if not found:
        entry["hint"] = f"pip install 'trtpipe[{extra}]'"
    return entry


def _ort_providers() -> list[str] | None:
    try:
        import onnxruntime
    except Exception:  # missing or broken: reported through the version entry
        return None
    return list(onnxruntime.get_available_providers())


def _tensorrt() -> dict[str, Any]:
    ok, info = trt_backend.available()
    stubs, _ = _version(("tensorrt-stubs",))
    version, dist = _version(trt_backend.TRT_DISTRIBUTIONS)
    entry: dict[str, Any] = {"name": "TensorRT", "installed": ok,
                             "version": info if ok else version, "distribution": dist,
                             "stubs_only": (not ok) and stubs is not None, "stubs_version": stubs}
    if not ok:
        entry["reason"] = info
        entry["hint"] = _TRT_HINT
    return entry


def cpu_info() -> dict[str, Any]:
    """CPU model, logical core count and the ISA extensions relevant to inference."""
    flags: set[str] = set()
    model = platform.processor() or None
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        with open(cpuinfo, "rb") as fh:
            for raw in fh:
                key, _, value = raw.decode(errors="replace").partition(":")
                key = key.strip().lower()
                if key in ("flags", "features") and not flags:
                    flags = set(value.split())
                elif key == "model name" and model in (None, "", platform.machine()):
                    model = value.strip()
    return {"machine": platform.machine(), "model": model, "logical_cores": os.cpu_count(),
            "isa": [f for f in _ISA_FLAGS if f in flags]}


def _cc(text: str | None) -> tuple[int, int] | None:
    with contextlib.suppress(ValueError, AttributeError):
        major, minor = str(text).split(".")[:2]
        return int(major), int(minor)
    return None


def _precisions(backends: dict[str, dict[str, Any]], gpus: list[dict[str, Any]]) -> dict[str, Any]:
    """Which precisions each engine backend can build on this machine (and why not)."""
    ort = backends["onnxruntime"]["installed"] and backends["onnx"]["installed"]
    ort_prec = []
    if ort:
        ort_prec.append("fp32")
        if backends["onnxconverter_common"]["installed"]:
            ort_prec.append("fp16")
        ort_prec += ["int8", "mixed"]  # onnxruntime.quantization ships with ONNX Runtime
    trt_prec: list[str] = []
    why = None
    if not backends["tensorrt"]["installed"]:
        why = "TensorRT is not installed"
    elif not gpus:
        why = "no NVIDIA GPU found (nvidia-smi)"
    else:
        cc = _cc(gpus[0].get("compute_capability"))
        trt_prec = ["fp32"]
        if cc is None or cc >= (5, 3):
            trt_prec.append("fp16")
        if cc is None or cc >= (6, 1):
            trt_prec.append("int8")
        if {"fp16", "int8"} <= set(trt_prec):
            trt_prec.append("mixed")
    out: dict[str, Any] = {"onnxruntime": ort_prec, "tensorrt": trt_prec}
    if why:
        out["tensorrt_reason"] = why
    return out


def doctor_report() -> dict[str, Any]:
    """Everything ``trtpipe doctor`` shows, as a JSON-ready dict. Never imports TensorFlow."""
    backends = {key: _backend(key) for key in _BACKENDS}
    if backends["onnxruntime"]["installed"]:
        backends["onnxruntime"]["providers"] = _ort_providers()
    backends["tensorrt"] = _tensorrt()
    gpus = trt_backend.nvidia_smi()
    missing = [{"name": b["name"], "hint": b["hint"]} for b in backends.values() if "hint" in b]
    return {
        "python": {"version": platform.python_version(), "implementation":
                   platform.python_implementation(), "executable": sys.executable},
        "trtpipe": {"version": trtpipe.__version__},
        "platform": {"system": platform.system(), "release": platform.release()},
        "backends": backends,
        "gpu": {"nvidia_smi": shutil.which("nvidia-smi") is not None, "gpus": gpus},
        "cpu": cpu_info(),
        "precisions": _precisions(backends, gpus),
        "missing": missing,
    }


def format_doctor(report: dict[str, Any]) -> str:
    """Plain-text rendering of ``doctor_report()`` for the console."""
    py, lines = report["python"], []
    lines.append(f"trtpipe {report['trtpipe']['version']} on Python {py['version']} "
                 f"({report['platform']['system']} {report['platform']['release']})")
    lines.append("backends:")
    for entry in report["backends"].values():
        if entry["installed"]:
            extra = ""
            if entry.get("providers"):
                extra = f"  providers: {', '.join(entry['providers'])}"
            lines.append(f"  ok       {entry['name']} {entry.get('version') or '?'}{extra}")
        else:
            note = " (type stubs only)" if entry.get("stubs_only") else ""
            lines.append(f"  missing  {entry['name']}{note}  -> {entry['hint']}")
    gpus = report["gpu"]["gpus"]
    if gpus:
        for g in gpus:
            lines.append(f"gpu: {g.get('name')} (compute capability {g.get('compute_capability')}, "
                         f"driver {g.get('driver')})")
    else:
        lines.append("gpu: none found" + ("" if report["gpu"]["nvidia_smi"] else " (no nvidia-smi)"))
    cpu = report["cpu"]
    lines.append(f"cpu: {cpu.get('model') or cpu['machine']}, {cpu['logical_cores']} logical cores, "
                 f"isa: {' '.join(cpu['isa']) or 'baseline'}")
    prec = report["precisions"]
    lines.append("precisions buildable here:")
    lines.append(f"  onnxruntime: {', '.join(prec['onnxruntime']) or 'none'}")
    trt_line = ", ".join(prec["tensorrt"]) or "none"
    if prec.get("tensorrt_reason"):
        trt_line += f" ({prec['tensorrt_reason']})"
    lines.append(f"  tensorrt:    {trt_line}")
    return "\n".join(lines) + "\n"
