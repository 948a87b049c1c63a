"""Lazy imports of heavy frameworks. A missing framework becomes ``BackendUnavailable`` naming the extra."""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

from trtpipe.errors import BackendUnavailable

#: module name -> (pip extra that provides it, human name)
_EXTRAS = {
    "tensorflow": ("tf", "TensorFlow"),
    "tf2onnx": ("tf", "tf2onnx"),
    "onnx": ("ort", "ONNX"),
    "onnxruntime": ("ort", "ONNX Runtime"),
    "onnxconverter_common": ("ort", "onnxconverter-common"),
    "polygraphy": ("trt", "Polygraphy"),
    "tensorrt": ("trt", "TensorRT"),
    "matplotlib": ("report", "matplotlib"),
    "PIL": ("images", "Pillow"),
}


def check_available(*modules: str, why: str = "") -> None:
    """Raise ``BackendUnavailable`` (exit 3) for the first module that is not installed.

    Uses ``importlib.util.find_spec``: nothing is imported, so this is cheap enough for preflight
    checks that run before any work starts.
    """
    for module in modules:
        top = module.split(".")[0]
        if importlib.util.find_spec(top) is None:
            extra, human = _EXTRAS.get(top, (None, top))
            hint = f"pip install 'trtpipe[{extra}]'" if extra else f"pip install {top}"
            raise BackendUnavailable(f"{human} is not installed{f' ({why})' if why else ''}", hint=hint)


def require(module: str) -> ModuleType:
    """Import ``module`` or raise ``BackendUnavailable`` with the install hint for its extra."""
    if module in ("tensorflow", "tf2onnx"):
        # Keep TensorFlow's C++ logging off the console; trtpipe captures framework logs per stage.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra, human = _EXTRAS.get(top, (None, top))
        hint = f"pip install 'trtpipe[{extra}]'" if extra else f"pip install {top}"
        if top == "tensorrt":
            hint = ("install TensorRT for your CUDA version (NVIDIA's wheels or JetPack), "
                    "then pip install 'trtpipe[trt]'; or use backend: onnxruntime")
        raise BackendUnavailable(f"{human} is not installed ({exc})", hint=hint) from exc
