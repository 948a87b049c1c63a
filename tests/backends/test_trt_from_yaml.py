"""The TensorRT configuration derived from the default pipeline.yaml, per era (no TensorRT needed).

This goes through the real path a run takes: the pipeline file is loaded and expanded, each build
stage's params become the intent (``trt_intent``), and ``derive_plan`` maps it for 8.6, 10.x and
11.x. Nothing imports TensorRT.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trtpipe import api
from trtpipe.backends.trt_plan import derive_plan
from trtpipe.stages.build import trt_intent

REPO = Path(__file__).resolve().parents[2]
SHAPES = {"image": [None, 300, 300, 3]}


def _build_params(stage: str) -> tuple[dict, str | None]:
    p = api.validate(REPO / "pipeline.yaml")
    spec = p.stages[stage]
    return dict(spec.params, backend="tensorrt"), spec.inputs["model"].artifact


@pytest.mark.parametrize("version", ["8.6.1", "10.8.0", "11.1.0"])
def test_fp32_onnx_profile_and_workspace(version: str) -> None:
    params, artifact = _build_params("build@fp32")
    plan = derive_plan(trt_intent(params, artifact), trt_version=version, input_shapes=SHAPES).to_dict()
    text = repr(plan)
    assert "1073741824" in text  # workspace: 1GiB -> memory-pool limit in bytes
    assert "[1, 300, 300, 3]" in text and "[8, 300, 300, 3]" in text  # profile min/max on the batch dim


def test_int8_uses_trtpipe_calibration_cache_on_86_and_qdq_model_on_11() -> None:
    params, artifact = _build_params("build@int8")
    cache = Path("/store/build@int8.calibrate/trt_cache.cache")
    old = derive_plan(trt_intent(params, artifact, cache), trt_version="8.6.1", input_shapes=SHAPES).to_dict()
    assert "EntropyCalibrator2" in repr(old) and str(cache) in repr(old)
    new = derive_plan(trt_intent(params, artifact, cache), trt_version="11.1.0", input_shapes=SHAPES,
                      precision_models={"int8": "/tmp/int8.onnx"}).to_dict()
    assert "/tmp/int8.onnx" in repr(new)
    assert "EntropyCalibrator2" not in repr(new)
    with pytest.raises(Exception, match="(?i)int8|q/dq|precision"):
        derive_plan(trt_intent(params, artifact, cache), trt_version="11.1.0", input_shapes=SHAPES)


def test_uff_branch_is_native_on_86_and_via_onnx_later() -> None:
    params, artifact = _build_params("build-uff")
    assert artifact == "uff"
    intent = trt_intent(params, artifact)
    intent["uff_inputs"] = [{"name": "image", "shape": [300, 300, 3], "order": "NHWC"}]
    intent["uff_outputs"] = ["scores", "boxes"]
    native = derive_plan(intent, trt_version="8.6.1", input_shapes={}).to_dict()
    assert native["model"] == "uff"
    later = derive_plan(intent, trt_version="10.8.0", input_shapes=SHAPES).to_dict()
    assert later["model"] == "onnx-from-uff"
