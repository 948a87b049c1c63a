"""Environment facts for cache keys: CPU/OS identity and framework versions.

Deliberately free of heavy imports: versions come from package metadata
(``importlib.metadata``), never from importing the framework, so a fully cached run stays fast.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import sys
from pathlib import Path
from typing import Any

#: CPU feature flags that change which kernels an inference runtime picks (and so its results or
#: the optimized graph it saves). Names as in Linux /proc/cpuinfo.
INFERENCE_FLAGS = (
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c",
    "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16",
    "asimd", "asimddp", "asimdhp", "sve", "sve2", "i8mm", "bf16",  # aarch64 (Features: line)
)

#: Distribution names for the module names callers naturally use.
_DISTRIBUTIONS = {
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-macos",
                   "tensorflow-intel", "tf-nightly"),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu11", "tensorrt-cu13", "tensorrt-libs"),
    "onnxconverter_common": ("onnxconverter-common",),
}


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str | None, set[str]]:
    """(model name, flags) of the first CPU listed in ``path``; (None, set()) when unreadable."""
    try:
        text = path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return None, set()
    model: str | None = None
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and model is None:
            model = value.strip() or None
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, flags


def hardware() -> dict[str, Any]:
    """CPU model, inference-relevant ISA flags, machine, OS, Python version and core count."""
    return dict(_hardware())


@functools.lru_cache(maxsize=1)
def _hardware() -> dict[str, Any]:
    model, flags = _cpuinfo()
    return {
        "cpu": model or platform.processor() or platform.machine() or "unknown",
        "isa": sorted(f for f in INFERENCE_FLAGS if f in flags),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}".strip(),
        "python": platform.python_version(),
        "cores": os.cpu_count() or 1,
        "byteorder": sys.byteorder,
    }


def framework_versions(*names: str) -> dict[str, str | None]:
    """Installed version of each named framework (None when absent), without importing it."""
    return {name: _version_of(name) for name in names}


@functools.cache
def _version_of(name: str) -> str | None:
    # Each metadata lookup scans site-packages; every stage asks, so remember the answer.
    for dist in _DISTRIBUTIONS.get(name, (name,)):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None
