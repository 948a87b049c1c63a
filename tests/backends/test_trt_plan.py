"""The TensorRT build plan per API era (8.6 / 10.x / 11.x), derived from YAML without TensorRT."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from typing import Any

import pytest
import yaml

from trtpipe.backends.trt_plan import BuildPlan, derive_plan, detect_era
from trtpipe.errors import BackendUnavailable, ConfigError

ERAS = {"8.6": "8.6.1.6", "10": "10.8.0", "11": "11.1.0"}
SHAPES = {"image": [None, 300, 300, 3]}
AMPERE = {"fast_fp16": True, "fast_int8": True, "compute_capability": (8, 6)}

BASE_YAML = """
backend: tensorrt
max_batch: 8
opt_batch: 4
workspace_bytes: 1073741824
precision: fp32
calibrator: null
on_unsupported: error
plugins: []
timing_cache: null
error_on_timing_cache_miss: false
builder_optimization_level: 3
version_compatible: false
hardware_compatibility_level: none
input_format: onnx
"""

UFF_YAML = """
input_format: uff
uff_inputs: [{name: image, shape: [3, 300, 300], order: NCHW}]
uff_outputs: [scores, boxes]
"""


def intent(extra: str = "", **overrides: Any) -> dict[str, Any]:
    doc = yaml.safe_load(BASE_YAML)
    doc.update(yaml.safe_load(extra) or {})
    doc.update(overrides)
    return doc


def plan_for(era: str, extra: str = "", *, shapes: dict[str, Any] | None = None,
             caps: dict[str, Any] | None = AMPERE, models: dict[str, str] | None = None,
             **overrides: Any) -> BuildPlan:
    return derive_plan(intent(extra, **overrides), trt_version=ERAS[era],
                       input_shapes=SHAPES if shapes is None else shapes,
                       capabilities=caps, precision_models=models)


INT8_YAML = """
precision: int8
calibrator: {algorithm: entropy, batch_size: 8, max_batches: 10, cache: /store/calib.cache}
"""
QDQ = {"fp16": "/store/model.fp16.onnx", "int8": "/store/model.qdq.onnx"}


# --- era detection ----------------------------------------------------------------------------

@pytest.mark.parametrize(("version", "era"), [
    ("8.6.1.6", "8.6"), ("8.6.1", "8.6"), ("10.0.1.6", "10"), ("10.8.0", "10"),
    ("10.14.1.48.post1", "10"), ("11.1.0", "11"), ("12.0.0", "11"),
])
def test_detect_era(version: str, era: str) -> None:
    assert detect_era(version) == era


@pytest.mark.parametrize("version", ["8.5.3.1", "8.2.1", "7.2.3", "9.2.0"])
def test_old_or_limited_versions_are_rejected_with_a_hint(version: str) -> None:
    with pytest.raises(BackendUnavailable) as info:
        detect_era(version)
    assert version in info.value.message
    assert info.value.hint and "8.6" in info.value.hint


def test_garbage_version_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        detect_era("latest")


def test_deriving_a_plan_does_not_import_tensorrt_or_frameworks() -> None:
    code = ("import sys, trtpipe.backends.trt_plan as p; "
            "p.derive_plan({'max_batch': 2, 'precision': 'fp16'}, trt_version='10.8.0', "
            "input_shapes={'x': [None, 3]}); "
            "print(sorted(m for m in ('tensorrt', 'polygraphy', 'tensorflow', 'onnxruntime', 'numpy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True)
    assert out.stdout.strip() == "[]"


# --- network creation and profiles ------------------------------------------------------------

@pytest.mark.parametrize(("era", "flags"), [("8.6", ("EXPLICIT_BATCH",)), ("10", ()), ("11", ())])
def test_onnx_network_flags_and_profile(era: str, flags: tuple[str, ...]) -> None:
    plan = plan_for(era)
    assert plan.parser == "onnx" and plan.model == "onnx"
    assert plan.network_flags == flags
    assert plan.implicit_batch is False and plan.max_batch_size is None
    (prof,) = plan.profiles
    assert prof.input == "image"
    assert (prof.min, prof.opt, prof.max) == ((1, 300, 300, 3), (4, 300, 300, 3), (8, 300, 300, 3))


def test_opt_batch_defaults_to_max_batch_and_every_input_gets_a_profile() -> None:
    shapes = {"image": [None, 3, 32, 32], "scale": [None, 1]}
    plan = plan_for("10", shapes=shapes, opt_batch=None)
    assert [(p.input, p.opt[0], p.max[0]) for p in plan.profiles] == [("image", 8, 8), ("scale", 8, 8)]


def test_opt_batch_above_max_batch_is_an_error() -> None:
    with pytest.raises(ConfigError, match="opt_batch"):
        plan_for("10", opt_batch=16)


def test_dynamic_non_batch_dim_is_rejected_naming_the_input() -> None:
    with pytest.raises(ConfigError, match="'image'.*dynamic"):
        plan_for("10", shapes={"image": [None, None, 300, 3]})


def test_fixed_batch_input_keeps_its_batch_with_a_warning() -> None:
    plan = plan_for("10", shapes={"image": [1, 300, 300, 3]})
    assert plan.profiles[0].min == plan.profiles[0].max == (1, 300, 300, 3)
    assert any("fixed batch of 1" in w for w in plan.warnings)


# --- workspace --------------------------------------------------------------------------------

@pytest.mark.parametrize("era", ERAS)
def test_workspace_is_a_memory_pool_limit(era: str) -> None:
    plan = plan_for(era)
    assert plan.workspace_bytes == 1 << 30
    assert plan.workspace_api == "set_memory_pool_limit(WORKSPACE)"
    pool_warning = any("memory pool" in w for w in plan.warnings)
    assert pool_warning is (era == "11")


def test_workspace_absent_means_no_limit() -> None:
    plan = plan_for("10", workspace_bytes=None)
    assert plan.workspace_bytes is None


# --- precision: builder flags vs strongly typed models ----------------------------------------

@pytest.mark.parametrize(("precision", "flags"), [
    ("fp32", ()), ("fp16", ("FP16",)), ("mixed", ("FP16", "INT8")),
])
@pytest.mark.parametrize("era", ["8.6", "10"])
def test_weakly_typed_eras_use_builder_flags(era: str, precision: str, flags: tuple[str, ...]) -> None:
    extra = INT8_YAML.replace("int8", precision) if precision == "mixed" else ""
    plan = plan_for(era, extra, precision=precision)
    assert plan.builder_flags == flags
    assert plan.strongly_typed is False and plan.tf32 is False
    assert plan.model == "onnx" and plan.model_path is None


@pytest.mark.parametrize(("precision", "model", "path"), [
    ("fp32", "onnx", None),
    ("fp16", "onnx-fp16", QDQ["fp16"]),
    ("int8", "onnx-qdq", QDQ["int8"]),
])
def test_trt11_is_strongly_typed_and_builds_the_precision_model(precision: str, model: str,
                                                                path: str | None) -> None:
    plan = plan_for("11", precision=precision, models=QDQ)
    assert plan.builder_flags == ()
    assert plan.strongly_typed is True
    assert plan.network_flags == ()
    assert (plan.model, plan.model_path) == (model, path)
    assert plan.calibrator is None


def test_trt11_mixed_uses_a_mixed_model_or_the_qdq_model() -> None:
    with_mixed = plan_for("11", precision="mixed", models={**QDQ, "mixed": "/store/m.mixed.onnx"})
    assert (with_mixed.model, with_mixed.model_path) == ("onnx-qdq", "/store/m.mixed.onnx")
    qdq_only = plan_for("11", precision="mixed", models=QDQ)
    assert qdq_only.model_path == QDQ["int8"]
    assert any("Q/DQ model" in w for w in qdq_only.warnings)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_trt11_without_the_precision_model_is_an_error(precision: str) -> None:
    with pytest.raises(ConfigError) as info:
        plan_for("11", precision=precision, models={})
    assert "strongly typed" in (info.value.hint or "")


# --- calibrators ------------------------------------------------------------------------------

@pytest.mark.parametrize(("version", "deprecated"), [("8.6.1.6", False), ("10.0.1.6", False),
                                                     ("10.1.0", True), ("10.8.0", True)])
def test_int8_calibrator_and_deprecation(version: str, deprecated: bool) -> None:
    plan = derive_plan(intent(INT8_YAML), trt_version=version, input_shapes=SHAPES,
                       capabilities=AMPERE)
    assert plan.builder_flags == ("INT8",)
    cal = plan.calibrator
    assert cal is not None
    assert (cal.kind, cal.batch_size, cal.max_batches) == ("EntropyCalibrator2", 8, 10)
    assert cal.cache == "/store/calib.cache"
    assert cal.deprecated is deprecated
    assert any("deprecated since TensorRT 10.1" in w for w in plan.warnings) is deprecated
    # explicit batch calibrates at a fixed shape whose batch is the calibration batch size
    assert [(p.min, p.opt, p.max) for p in cal.profile] == [((8, 300, 300, 3),) * 3]


@pytest.mark.parametrize(("algorithm", "kind"), [("entropy", "EntropyCalibrator2"),
                                                 ("minmax", "MinMaxCalibrator"),
                                                 ("percentile", "LegacyCalibrator")])
def test_calibrator_kind_by_algorithm(algorithm: str, kind: str) -> None:
    plan = plan_for("8.6", INT8_YAML.replace("entropy", algorithm))
    assert plan.calibrator is not None and plan.calibrator.kind == kind
    if kind == "LegacyCalibrator":
        assert plan.calibrator.quantile == pytest.approx(0.9999)
    else:
        assert plan.calibrator.quantile is None


def test_trt11_ignores_the_calibrator_with_a_warning() -> None:
    plan = plan_for("11", INT8_YAML, models=QDQ)
    assert plan.calibrator is None
    assert any("calibrator is ignored on TensorRT 11" in w for w in plan.warnings)


def test_calibrator_on_fp16_is_ignored_with_a_warning() -> None:
    plan = plan_for("10", INT8_YAML, precision="fp16")
    assert plan.calibrator is None and plan.builder_flags == ("FP16",)
    assert any("calibrator is ignored for precision fp16" in w for w in plan.warnings)


def test_int8_without_calibrator_is_an_error_on_86() -> None:
    with pytest.raises(ConfigError, match="no calibrator"):
        plan_for("8.6", precision="int8")


def test_int8_without_calibrator_on_10_builds_the_qdq_model() -> None:
    plan = plan_for("10", precision="int8", models=QDQ)
    assert (plan.model, plan.model_path, plan.calibrator) == ("onnx-qdq", QDQ["int8"], None)
    assert plan.builder_flags == ("INT8",)


# --- plugins, timing cache, builder knobs -----------------------------------------------------

@pytest.mark.parametrize("era", ERAS)
def test_plugins_and_timing_cache(era: str) -> None:
    plan = plan_for(era, """
plugins: [plugins/libnms.so, plugins/libanchors.so]
timing_cache: /store/timing.cache
error_on_timing_cache_miss: true
builder_optimization_level: 5
version_compatible: true
hardware_compatibility_level: ampere_plus
""")
    assert plan.plugins == ("plugins/libnms.so", "plugins/libanchors.so")
    assert plan.timing_cache == "/store/timing.cache"
    # ERROR_ON_TIMING_CACHE_MISS does not exist on 8.6: dropped there, with a warning
    assert plan.error_on_timing_cache_miss is (era != "8.6")
    assert any("error_on_timing_cache_miss is ignored" in w for w in plan.warnings) is (era == "8.6")
    assert plan.builder_optimization_level == 5
    assert plan.version_compatible is True
    assert plan.hardware_compatibility_level == "AMPERE_PLUS"
    assert any("plugin libraries at load time" in w for w in plan.warnings)


def test_timing_cache_miss_error_without_cache_warns() -> None:
    plan = plan_for("10", error_on_timing_cache_miss=True)
    assert any("without a timing_cache" in w for w in plan.warnings)


@pytest.mark.parametrize("level", [-1, 6, "3", True])
def test_builder_optimization_level_range(level: Any) -> None:
    with pytest.raises(ConfigError, match="builder_optimization_level"):
        plan_for("10", builder_optimization_level=level)


def test_unknown_hardware_level_is_an_error() -> None:
    with pytest.raises(ConfigError, match="hardware_compatibility_level"):
        plan_for("10", hardware_compatibility_level="turing_plus")


# --- UFF ------------------------------------------------------------------------------------

def test_uff_on_86_is_native_with_implicit_batch() -> None:
    plan = plan_for("8.6", UFF_YAML, shapes={})
    assert (plan.model, plan.parser) == ("uff", "uff")
    assert plan.implicit_batch is True and plan.max_batch_size == 8
    assert plan.network_flags == () and plan.profiles == ()
    (inp,) = plan.uff_inputs
    assert (inp.name, inp.shape, inp.order) == ("image", (3, 300, 300), "NCHW")
    assert plan.uff_outputs == ("scores", "boxes")
    assert any("opt_batch is ignored" in w for w in plan.warnings)


def test_uff_int8_on_86_calibrates_in_implicit_batch() -> None:
    plan = plan_for("8.6", UFF_YAML + INT8_YAML, shapes={})
    assert plan.calibrator is not None and plan.calibrator.profile == ()
    with pytest.raises(ConfigError, match="exceeds max_batch"):
        plan_for("8.6", UFF_YAML + INT8_YAML.replace("batch_size: 8", "batch_size: 16"), shapes={})


@pytest.mark.parametrize("era", ["10", "11"])
def test_uff_on_10_and_11_goes_through_the_converted_onnx(era: str) -> None:
    plan = plan_for(era, UFF_YAML, shapes={})
    assert (plan.model, plan.parser) == ("onnx-from-uff", "onnx")
    assert plan.implicit_batch is False and plan.max_batch_size is None
    (prof,) = plan.profiles  # from uff_inputs, batch dim added
    assert (prof.min, prof.opt, prof.max) == ((1, 3, 300, 300), (4, 3, 300, 300), (8, 3, 300, 300))
    assert any("removed in 10.0" in w for w in plan.warnings)


def test_uff_on_11_with_fp16_builds_the_fp16_model_of_the_converted_onnx() -> None:
    plan = plan_for("11", UFF_YAML, shapes={}, precision="fp16", models=QDQ)
    assert (plan.model, plan.model_path) == ("onnx-fp16", QDQ["fp16"])


def test_uff_without_inputs_is_an_error_and_cannot_be_version_compatible() -> None:
    with pytest.raises(ConfigError, match="uff_inputs"):
        plan_for("8.6", "input_format: uff", shapes={})
    with pytest.raises(ConfigError, match="explicit-batch"):
        plan_for("8.6", UFF_YAML, shapes={}, version_compatible=True)


def test_uff_keys_on_onnx_are_ignored_with_a_warning() -> None:
    plan = plan_for("10", UFF_YAML, input_format="onnx")
    assert plan.uff_inputs and any("ignored for input_format: onnx" in w for w in plan.warnings)


# --- capabilities -----------------------------------------------------------------------------

MAXWELL = {"fast_fp16": False, "fast_int8": False, "compute_capability": (5, 2)}
PASCAL_60 = {"fast_fp16": True, "fast_int8": False, "compute_capability": (6, 0)}


@pytest.mark.parametrize("era", ["8.6", "10"])
def test_unsupported_fp16_errors_by_default(era: str) -> None:
    with pytest.raises(BackendUnavailable) as info:
        plan_for(era, precision="fp16", caps=MAXWELL)
    assert "5.2" in info.value.message and "on_unsupported: fallback" in (info.value.hint or "")


def test_unsupported_fp16_falls_back_to_fp32_when_asked() -> None:
    plan = plan_for("10", precision="fp16", caps=MAXWELL, on_unsupported="fallback")
    assert (plan.requested_precision, plan.precision, plan.builder_flags) == ("fp16", "fp32", ())
    assert plan.fallback is not None and plan.fallback.used == "fp32"
    assert any("falling back to fp32" in w for w in plan.warnings)


def test_mixed_without_int8_falls_back_to_fp16() -> None:
    plan = plan_for("10", INT8_YAML, precision="mixed", caps=PASCAL_60, on_unsupported="fallback")
    assert plan.precision == "fp16" and plan.builder_flags == ("FP16",)
    assert plan.calibrator is None


@pytest.mark.parametrize(("cc", "ok"), [((6, 0), False), ((6, 1), True), ((7, 5), True)])
def test_int8_needs_cc_61(cc: tuple[int, int], ok: bool) -> None:
    caps = {"fast_fp16": True, "fast_int8": False, "compute_capability": cc}
    if ok:
        assert plan_for("10", INT8_YAML, caps=caps).precision == "int8"
    else:
        with pytest.raises(BackendUnavailable, match="int8"):
            plan_for("10", INT8_YAML, caps=caps)


def test_trt11_asks_only_the_compute_capability() -> None:
    # fast_fp16 reported but CC 5.2: fine on 10.x (platformHasFastFp16), not on 11.x (removed).
    caps = {"fast_fp16": True, "fast_int8": False, "compute_capability": (5, 2)}
    assert plan_for("10", precision="fp16", caps=caps).precision == "fp16"
    with pytest.raises(BackendUnavailable):
        plan_for("11", precision="fp16", caps=caps, models=QDQ)
    assert plan_for("11", precision="fp16", caps={"compute_capability": (5, 3)},
                    models=QDQ).precision == "fp16"


def test_unknown_capabilities_defer_the_check() -> None:
    plan = plan_for("10", precision="fp16", caps=None)
    assert plan.precision == "fp16"
    assert any("checked at build time" in w for w in plan.warnings)


# --- the plan as data -------------------------------------------------------------------------

def test_plan_is_frozen_and_json_serializable() -> None:
    plan = plan_for("8.6", INT8_YAML, plugins=["libx.so"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.precision = "fp32"  # type: ignore[misc]
    doc = json.loads(json.dumps(plan.to_dict()))
    assert doc["era"] == "8.6"
    assert doc["profiles"][0]["max"] == [8, 300, 300, 3]
    assert doc["calibrator"]["kind"] == "EntropyCalibrator2"
    assert doc["plugins"] == ["libx.so"]
    # same intent -> same plan (it is cache-key material)
    assert plan_for("8.6", INT8_YAML, plugins=["libx.so"]).to_dict() == plan.to_dict()


# --- the backend module without TensorRT --------------------------------------------------------

def test_without_tensorrt_everything_says_so_with_a_hint(tmp_path: Any) -> None:
    from trtpipe.backends import tensorrt as backend

    if backend.available()[0]:
        pytest.skip("TensorRT is installed here")
    ok, why = backend.available()
    assert ok is False and "TensorRT" in why
    env = backend.environment()  # cache-key facts: never raises
    assert set(env) >= {"tensorrt", "cuda", "gpu", "compute_capability"}
    assert env["tensorrt"] is None
    plan = plan_for("10")
    with pytest.raises(BackendUnavailable) as info:
        backend.build_engine(tmp_path / "m.onnx", plan, tmp_path / "m.plan", timing_cache_in=None,
                             timing_cache_out=None, log_path=tmp_path / "build.log")
    assert info.value.hint and "onnxruntime" in info.value.hint
    with pytest.raises(BackendUnavailable):
        backend.load_engine(tmp_path / "m.plan")


def test_polygraphy_log_goes_to_the_stage_log_not_the_console(tmp_path: Any, capsys: Any) -> None:
    pytest.importorskip("polygraphy")
    from trtpipe.backends.tensorrt import _polygraphy_log

    log = tmp_path / "logs" / "build.log"
    with _polygraphy_log(log) as logger:
        logger.info("building with profile min=1 opt=4 max=8")
    assert "opt=4" in log.read_bytes().decode()
    assert "opt=4" not in capsys.readouterr().out
