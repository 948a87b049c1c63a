"""TensorRT backend: build, load, inspect and run engines from a ``BuildPlan`` (8.6, 10.x, 11.x).

Everything here that touches TensorRT imports it lazily through ``ensure_tensorrt()``, which
also tells real TensorRT apart from the ``tensorrt-stubs`` type stubs (with only the stubs
installed ``import tensorrt`` succeeds as an empty namespace package). ONNX networks, builder
configs and engine builds go through Polygraphy's loaders; the UFF parser (8.6 only) and the
bits Polygraphy does not cover (max_batch_size, calibration profile, inspector, timing cache
bytes) use the TensorRT API directly. What to build is decided by ``trt_plan.derive_plan``;
this module only carries the plan out.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata as md
import io
import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from trtpipe.backends._imports import require
from trtpipe.backends.trt_plan import BuildPlan, detect_era
from trtpipe.errors import BackendUnavailable, ConfigError, InvalidArtifact, StageFailed
from trtpipe.fsutil import atomic_write_bytes

if TYPE_CHECKING:
    import numpy as np
    import tensorrt as trt

TRT_DISTRIBUTIONS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11", "tensorrt-libs",
              "tensorrt-cu12-bindings", "tensorrt-cu13-bindings")
_STUB_HINT = ("only the tensorrt-stubs type stubs are installed; install TensorRT itself "
              "(NVIDIA's wheels for your CUDA version, or JetPack) on a machine with an NVIDIA "
              "GPU, or use backend: onnxruntime")


def ensure_tensorrt() -> ModuleType:
    """Import real TensorRT or raise ``BackendUnavailable`` (missing, or stubs only)."""
    mod = require("tensorrt")
    if not getattr(mod, "__version__", None) or not hasattr(mod, "Builder"):
        raise BackendUnavailable("TensorRT is not installed (the 'tensorrt' module found is "
                                 "an empty namespace package)", hint=_STUB_HINT)
    return mod


def available() -> tuple[bool, str]:
    """``(True, version)`` when real TensorRT imports here, else ``(False, why + hint)``."""
    try:
        mod = ensure_tensorrt()
    except BackendUnavailable as exc:
        return False, f"{exc.message}; {exc.hint}" if exc.hint else exc.message
    except Exception as exc:  # a broken install (missing libnvinfer.so...) must not crash callers
        return False, f"TensorRT failed to import: {type(exc).__name__}: {exc}"
    return True, str(mod.__version__)


def _dist_version(names: tuple[str, ...]) -> str | None:
    for name in names:
        with contextlib.suppress(md.PackageNotFoundError):
            return md.version(name)
    return None


def nvidia_smi() -> list[dict[str, str]]:
    """GPUs as reported by ``nvidia-smi`` (name, compute_cap, driver, memory); [] when absent."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    query = "name,compute_cap,driver_version,memory.total"
    try:
        proc = subprocess.run([exe, f"--query-gpu={query}", "--format=csv,noheader"],
                              capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    if proc.returncode != 0:
        return []
    gpus = []
    for line in proc.stdout.decode(errors="replace").splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 4:
            gpus.append(dict(zip(("name", "compute_capability", "driver", "memory"), fields,
                                 strict=True)))
    return gpus


def _cuda_version() -> str | None:
    """CUDA runtime version: cuda-python / NVIDIA runtime wheels, else the driver's (nvidia-smi)."""
    found = _dist_version(("nvidia-cuda-runtime-cu12", "nvidia-cuda-runtime", "cuda-bindings",
                           "cuda-python"))
    if found:
        return found
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([exe], capture_output=True, timeout=20, check=False).stdout
        match = re.search(rb"CUDA Version:\s*([\d.]+)", out)
        if match:
            return match.group(1).decode()
    return None


def environment() -> dict[str, Any]:
    """Toolchain facts a TensorRT engine depends on (cache-key material); never raises.

    Versions come from package metadata first so that computing a cache key does not import
    TensorRT; TensorRT is imported only when no distribution records its version (JetPack).
    """
    version = _dist_version(TRT_DISTRIBUTIONS)
    if version is None:
        ok, info = available()
        version = info if ok else None
    gpus = nvidia_smi()
    gpu = gpus[0] if gpus else {}
    cc = gpu.get("compute_capability")
    return {
        "tensorrt": version,
        "tensorrt_stubs_only": version is None and _dist_version(("tensorrt-stubs",)) is not None,
        "cuda": _cuda_version(),
        "gpu": gpu.get("name"),
        "compute_capability": cc,
        "driver": gpu.get("driver"),
        "gpu_count": len(gpus),
    }


@contextlib.contextmanager
def _polygraphy_log(log_path: Path) -> Iterator[Any]:
    """Send Polygraphy's (and through it TensorRT's) log to ``log_path``, not the console.

    Polygraphy writes every message to its log file AND prints it; the prints are swallowed
    here (the stage log has them) so the console shows only trtpipe's own progress. Critical
    messages raise ``PolygraphyException``, which the callers turn into trtpipe errors.
    """
    from polygraphy.logger import G_LOGGER

    log_path.parent.mkdir(parents=True, exist_ok=True)
    old_file, old_sev = G_LOGGER.log_file, G_LOGGER.module_severity
    G_LOGGER.log_file = str(log_path)
    G_LOGGER.module_severity = G_LOGGER.INFO
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield G_LOGGER
    finally:
        handle = getattr(G_LOGGER, "_log_file", None)  # the setter does not close the old file
        if handle is not None:
            with contextlib.suppress(Exception):
                handle.close()
        G_LOGGER.log_file = old_file
        G_LOGGER.module_severity = old_sev


def load_plugins(paths: tuple[str, ...] | list[str]) -> list[str]:
    """Load plugin libraries then register TensorRT's own; return registered plugin names."""
    ensure_tensorrt()
    import tensorrt as trt
    from polygraphy.backend.trt import util as trt_util

    for path in paths:
        if not Path(path).is_file():
            raise InvalidArtifact(f"plugin library {path} does not exist", path=str(path),
                                  hint="fix the path under build.plugins")
        try:
            ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)  # its creators self-register
        except OSError as exc:
            raise InvalidArtifact(f"plugin library {path} failed to load: {exc}", path=str(path),
                                  hint="build the plugin for this TensorRT/CUDA version") from exc
    trt.init_libnvinfer_plugins(trt_util.get_trt_logger(), "")
    registry = trt.get_plugin_registry()
    creators = list(getattr(registry, "all_creators", None) or registry.plugin_creator_list)
    return sorted({f"{c.name}/{c.plugin_version}" for c in creators})


def _uff_network(model_path: Path, plan: BuildPlan) -> tuple[Any, Any, Any]:
    """UFF -> implicit-batch network (TensorRT 8.6 only; these names are absent from 10.x stubs)."""
    import tensorrt as trt
    from polygraphy.backend.trt import util as trt_util

    builder = trt.Builder(trt_util.get_trt_logger())
    network = builder.create_network(0)  # 0 = implicit batch, what UFF requires
    legacy_builder: Any = builder  # max_batch_size is 8.x API, absent from the 10.x stubs
    legacy_builder.max_batch_size = plan.max_batch_size
    legacy: Any = trt  # UffParser/UffInputOrder exist only in <= 8.x, not in the 10.x stubs
    parser = legacy.UffParser()
    orders = legacy.UffInputOrder
    for u in plan.uff_inputs:
        parser.register_input(u.name, tuple(u.shape),
                              orders.NHWC if u.order == "NHWC" else orders.NCHW)
    for name in plan.uff_outputs:
        parser.register_output(name)
    if not parser.parse(str(model_path), network, trt.float32):
        raise InvalidArtifact(f"TensorRT's UFF parser rejected {model_path}", path=str(model_path),
                              hint="see the stage log; check uff_inputs/uff_outputs names and "
                                   "that the UFF's ops have TensorRT layers or plugins")
    return builder, network, parser


def _np_dtype(dtype: trt.DataType) -> Any:
    import tensorrt as trt

    to_np: Any = trt.nptype  # untyped in the stubs
    return to_np(dtype)


def _profile(shapes: Any) -> Any:
    from polygraphy.backend.trt import Profile

    prof = Profile()
    for p in shapes:
        prof.add(p.input, min=p.min, opt=p.opt, max=p.max)
    return prof


def _implicit_batch_config(builder: Any, plan: BuildPlan, calibrator: Any,
                           timing_bytes: bytes | None) -> Any:
    """Builder config for an implicit-batch (UFF, 8.6) network, via the TensorRT API.

    Polygraphy's CreateConfig always adds an optimization profile, which implicit-batch
    networks do not take, so this path configures the builder directly.
    """
    import tensorrt as trt

    config = builder.create_builder_config()
    config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32 (matches the ONNX path)
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if calibrator is not None:
        config.int8_calibrator = calibrator
    if plan.workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    config.builder_optimization_level = plan.builder_optimization_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    config.set_timing_cache(config.create_timing_cache(timing_bytes or b""), False)
    return config


def build_engine(model_path: Path, plan: BuildPlan, out_path: Path, *,
                 calib_data: Mapping[str, np.ndarray] | None = None,
                 timing_cache_in: Path | None = None, timing_cache_out: Path | None = None,
                 log_path: Path) -> dict[str, Any]:
    """Build the engine ``plan`` describes from ``model_path``; write it to ``out_path``.

    ``calib_data`` (``{input: samples}``) feeds the plan's calibrator; ``timing_cache_in`` is
    loaded when it exists, ``timing_cache_out`` receives the updated cache. Framework logs go
    to ``log_path``. Returns the build report (plan, plugins, I/O tensors, layer info).
    """
    trt_mod = ensure_tensorrt()
    import tensorrt as trt
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath
    from polygraphy.exception import PolygraphyException

    installed = str(trt_mod.__version__)
    if detect_era(installed) != plan.era:
        raise ConfigError(f"the build plan is for TensorRT {plan.trt_version} (era {plan.era}) "
                          f"but TensorRT {installed} is installed",
                          hint="derive the plan with trt_version=<installed version>")
    model_path = Path(plan.model_path) if plan.model_path else Path(model_path)
    if not model_path.is_file():
        raise InvalidArtifact(f"model file {model_path} does not exist", path=str(model_path))
    from trtpipe.backends.trt_calibrator import CalibrationBatches, make_calibrator

    with _polygraphy_log(Path(log_path)):
        plugin_names = load_plugins(plan.plugins)
        try:
            if plan.parser == "uff":
                builder, network, parser = _uff_network(model_path, plan)
            else:
                builder, network, parser = NetworkFromOnnxPath(str(model_path))()
        except PolygraphyException as exc:
            raise InvalidArtifact(f"TensorRT could not parse {model_path}: {exc}",
                                  path=str(model_path), hint=f"see {log_path}") from exc
        calibrator = None
        if plan.calibrator is not None:
            if not calib_data:
                raise ConfigError(f"precision {plan.precision} with a {plan.calibrator.kind} needs "
                                  "calibration data and none was given",
                                  hint="add calibration samples to the build stage")
            inputs = [network.get_input(i) for i in range(network.num_inputs)]
            batches = CalibrationBatches(
                calib_data, plan.calibrator.batch_size, [t.name for t in inputs],
                dtypes={t.name: _np_dtype(t.dtype) for t in inputs},
                max_batches=plan.calibrator.max_batches)
            calibrator = make_calibrator(
                plan.calibrator.kind, batches,
                Path(plan.calibrator.cache) if plan.calibrator.cache else None,
                implicit_batch=plan.implicit_batch, quantile=plan.calibrator.quantile,
                regression_cutoff=plan.calibrator.regression_cutoff)
        timing_bytes = None
        if timing_cache_in is not None and Path(timing_cache_in).is_file():
            with open(timing_cache_in, "rb") as fh:
                timing_bytes = fh.read()
        kwargs: dict[str, Any] = {
            "tf32": plan.tf32, "fp16": "FP16" in plan.builder_flags,
            "int8": "INT8" in plan.builder_flags, "calibrator": calibrator,
            "profiles": [_profile(plan.profiles)] if plan.profiles else None,
            "builder_optimization_level": plan.builder_optimization_level,
            "profiling_verbosity": trt.ProfilingVerbosity.DETAILED,  # layer info for the report
            "load_timing_cache": io.BytesIO(timing_bytes) if timing_bytes else None,
        }
        if plan.workspace_bytes is not None:
            kwargs["memory_pool_limits"] = {trt.MemoryPoolType.WORKSPACE: plan.workspace_bytes}
        if plan.error_on_timing_cache_miss:
            kwargs["error_on_timing_cache_miss"] = True
        if plan.version_compatible:
            kwargs["version_compatible"] = True
        if plan.hardware_compatibility_level != "NONE":
            kwargs["hardware_compatibility_level"] = getattr(
                trt.HardwareCompatibilityLevel, plan.hardware_compatibility_level)
        try:
            if plan.implicit_batch:
                config = _implicit_batch_config(builder, plan, calibrator, timing_bytes)
            else:
                config = CreateConfig(**kwargs)(builder, network)
            if calibrator is not None and plan.calibrator and plan.calibrator.profile:
                calib_profile = builder.create_optimization_profile()
                for p in plan.calibrator.profile:
                    calib_profile.set_shape(p.input, p.min, p.opt, p.max)
                config.set_calibration_profile(calib_profile)
            engine_bytes = EngineBytesFromNetwork((builder, network, parser), config=config)()
        except PolygraphyException as exc:
            raise StageFailed(f"TensorRT engine build failed for {model_path}: {exc}",
                              hint=f"see the build log {log_path}") from exc
        finally:
            if calibrator is not None:
                ours: Any = calibrator  # free() is trtpipe's, not in IInt8Calibrator
                ours.free()
        blob = bytes(engine_bytes)
        atomic_write_bytes(out_path, blob)
        if timing_cache_out is not None:
            cache = config.get_timing_cache()
            if cache is not None:
                atomic_write_bytes(timing_cache_out, bytes(cache.serialize()))
        engine = load_engine(out_path, allow_host_code=plan.version_compatible)
        return {
            "tensorrt": installed, "plan": plan.to_dict(), "plugins": plugin_names,
            "engine_bytes": len(blob), "model": str(model_path),
            "calibration_batches": getattr(calibrator, "batches_fed", None),
            **engine_metadata(engine),
        }


def load_engine(path: Path, *, allow_host_code: bool = False) -> trt.ICudaEngine:
    """Deserialize the engine at ``path`` with a fresh runtime (``InvalidArtifact`` if rejected).

    ``allow_host_code`` must be True for version-compatible engines (they embed a lean runtime).
    """
    ensure_tensorrt()
    import tensorrt as trt
    from polygraphy.backend.trt import util as trt_util

    with open(path, "rb") as fh:
        data = fh.read()
    runtime = trt.Runtime(trt_util.get_trt_logger())
    if allow_host_code:
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise InvalidArtifact(f"TensorRT could not deserialize the engine {path}", path=str(path),
                              hint="engines only load on the TensorRT version and GPU they were "
                                   "built for (unless version/hardware compatible); rebuild it")
    return engine


def _dims(dims: trt.Dims) -> list[int]:
    # Dims is indexable but (per the stubs) not iterable; -1 marks a dynamic dim.
    return [int(dims[i]) for i in range(len(dims))]


def engine_metadata(engine: trt.ICudaEngine) -> dict[str, Any]:
    """I/O tensors (name, mode, dtype, shape, per-profile min/opt/max) and inspector layer info."""
    import tensorrt as trt

    tensors = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = engine.get_tensor_mode(name)
        entry: dict[str, Any] = {"name": name, "mode": mode.name,
                                 "dtype": engine.get_tensor_dtype(name).name,
                                 "shape": _dims(engine.get_tensor_shape(name))}
        if mode == trt.TensorIOMode.INPUT:
            ranges = []
            for prof in range(engine.num_optimization_profiles):
                with contextlib.suppress(Exception):  # implicit-batch (UFF) engines have none
                    lo, mid, hi = engine.get_tensor_profile_shape(name, prof)
                    ranges.append({"min": _dims(lo), "opt": _dims(mid), "max": _dims(hi)})
            entry["profiles"] = ranges
        tensors.append(entry)
    layers: Any = None
    with contextlib.suppress(Exception):  # inspector output is best effort, never fatal
        inspector = engine.create_engine_inspector()
        raw = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
        layers = json.loads(raw)
    # Activation memory the engine needs on the device (10.x: *_v2; 8.6: device_memory_size).
    device_memory = getattr(engine, "device_memory_size_v2", None) or getattr(engine, "device_memory_size", None)
    return {"io_tensors": tensors, "num_profiles": engine.num_optimization_profiles,
            "device_memory_bytes": int(device_memory) if device_memory else None, "layers": layers}


def run_engine(path: Path, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run the engine at ``path`` once on ``feeds``.

    Explicit-batch engines run through Polygraphy's ``TrtRunner``; implicit-batch engines
    (UFF on 8.6), which Polygraphy >= 0.48 no longer runs, through the 8.6 bindings API.
    """
    ensure_tensorrt()
    import numpy as np
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    engine = load_engine(path)
    if getattr(engine, "has_implicit_batch_dimension", False):
        return _run_implicit_batch(engine, feeds, path)
    with open(path, "rb") as fh:
        data = fh.read()
    with TrtRunner(EngineFromBytes(data)) as runner:
        outputs = runner.infer(feed_dict=dict(feeds))
        return {name: np.array(value) for name, value in outputs.items()}


def _run_implicit_batch(engine: Any, feeds: Mapping[str, np.ndarray],
                        path: Path) -> dict[str, np.ndarray]:
    """Synchronous implicit-batch execution (TensorRT 8.6 bindings API, absent from 10.x stubs)."""
    import numpy as np
    from polygraphy import cuda

    batch = int(next(iter(feeds.values())).shape[0]) if feeds else 0
    if not 1 <= batch <= engine.max_batch_size:
        raise ConfigError(f"engine {path}: batch {batch} is outside 1..{engine.max_batch_size}",
                          hint="feed between 1 and max_batch samples")
    context = engine.create_execution_context()
    devices: list[Any] = []
    outputs: dict[str, np.ndarray] = {}
    out_index: dict[str, int] = {}
    try:
        for i in range(engine.num_bindings):
            name = engine.get_binding_name(i)
            dtype = _np_dtype(engine.get_binding_dtype(i))
            shape = (batch, *[int(d) for d in engine.get_binding_shape(i)])
            dev = cuda.DeviceArray(shape=shape, dtype=dtype)
            devices.append(dev)
            if engine.binding_is_input(i):
                if name not in feeds:
                    raise InvalidArtifact(f"engine {path} needs input {name!r}; feeds have "
                                          f"{sorted(feeds)}", path=str(path), node=name)
                host = np.ascontiguousarray(feeds[name], dtype=dtype)
                if host.shape != shape:
                    raise InvalidArtifact(f"engine {path}: input {name!r} expected shape "
                                          f"{list(shape)}, found {list(host.shape)}",
                                          path=str(path), node=name)
                dev.copy_from(host)
            else:
                outputs[name] = np.empty(shape, dtype=dtype)
                out_index[name] = i
        if not context.execute(batch, [int(d.ptr) for d in devices]):
            raise StageFailed(f"TensorRT execution of {path} failed", hint="see the stage log")
        for name, i in out_index.items():
            devices[i].copy_to(outputs[name])
    finally:
        for dev in devices:
            dev.free()
    return outputs
