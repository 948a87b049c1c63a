"""pipeline.build: topological order, targets (closure), matrix expansion and propagation, calibrate insertion."""

from __future__ import annotations

from pathlib import Path

import pytest

from trtpipe import api
from trtpipe.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "fixtures" / "models" / "tiny.py"


def _pipeline(tmp_path: Path, stages: str) -> Path:
    (tmp_path / "tiny.py").write_bytes(TINY.read_bytes())
    path = tmp_path / "p.yaml"
    path.write_bytes(f"version: 1\nname: t\nstages:\n{stages}".encode())
    return path


CHAIN = """\
  verify:
    kind: verify-roundtrip
    inputs: {engine: serialize, reference: freeze}
  serialize:
    kind: serialize
    inputs: {engine: build}
  build:
    kind: build
    inputs: {model: onnx}
    max_batch: 4
    MATRIX
  onnx:
    kind: onnx
    inputs: {graph: freeze}
  freeze:
    kind: freeze
    inputs: {model: tiny.py:build}
"""


def test_order_is_topological_whatever_the_file_order(tmp_path: Path) -> None:
    p = api.validate(_pipeline(tmp_path, CHAIN.replace("MATRIX", "")))
    assert p.order == ["freeze", "onnx", "build", "serialize", "verify"]
    assert p.stages["verify"].upstream == ["serialize", "freeze"]
    assert p.downstream({"onnx"}) == {"onnx", "build", "serialize", "verify"}


def test_target_closure_is_the_stage_and_its_upstream(tmp_path: Path) -> None:
    p = api.validate(_pipeline(tmp_path, CHAIN.replace("MATRIX", "")))
    assert p.closure(["build"]) == ["freeze", "onnx", "build"]
    assert p.closure(["freeze"]) == ["freeze"]
    assert p.closure(["verify"]) == p.order


def test_independent_stages_keep_file_order(tmp_path: Path) -> None:
    stages = "".join(f"  {n}:\n    kind: freeze\n    inputs: {{model: tiny.py:build}}\n" for n in ("z", "a", "m"))
    assert api.validate(_pipeline(tmp_path, stages)).order == ["z", "a", "m"]


def test_matrix_expands_and_propagates_downstream(tmp_path: Path) -> None:
    p = api.validate(_pipeline(tmp_path, CHAIN.replace("MATRIX", "matrix: {max_batch: [2, 8]}")))
    assert p.order == ["freeze", "onnx", "build@2", "build@8", "serialize@2", "serialize@8", "verify@2", "verify@8"]
    assert p.stages["build@2"].params["max_batch"] == 2 and p.stages["build@8"].params["max_batch"] == 8
    assert "matrix" not in p.stages["build@2"].params
    assert p.stages["serialize@8"].inputs["engine"].stage == "build@8"
    assert p.stages["verify@2"].upstream == ["serialize@2", "freeze"]
    assert p.stages["build@8"].origin == "build"
    # a target by the declared name selects every variant
    assert p.resolve_names(["build"]) == ["build@2", "build@8"]
    assert p.closure(p.resolve_names(["serialize@8"])) == ["freeze", "onnx", "build@8", "serialize@8"]
    with pytest.raises(ConfigError, match="unknown stage 'biuld'"):
        p.resolve_names(["biuld"])


def test_int8_build_gets_its_own_calibrate_stage(tmp_path: Path) -> None:
    stages = CHAIN.replace("MATRIX", "matrix: {precision: [fp32, int8]}\n    calibrator: {data: {source: random}}")
    p = api.validate(_pipeline(tmp_path, stages))
    assert "build@fp32.calibrate" not in p.stages
    cal = p.stages["build@int8.calibrate"]
    assert cal.kind == "calibrate" and cal.upstream == ["onnx"]
    assert p.order.index("build@int8.calibrate") < p.order.index("build@int8")
    assert "build@int8.calibrate" in p.stages["build@int8"].upstream
    assert p.stages["build@int8"].inputs["calibration"].stage == "build@int8.calibrate"


def test_all_reference_errors_are_reported_together(tmp_path: Path) -> None:
    stages = ("  onnx:\n    kind: onnx\n    inputs: {graph: frieze}\n"
              "  build:\n    kind: build\n    inputs: {model: missing/model.onnx}\n    max_batch: 1\n")
    with pytest.raises(ConfigError) as info:
        api.validate(_pipeline(tmp_path, stages))
    errors = info.value.errors
    assert len(errors) == 2
    assert "p.yaml:6:" in errors[0] and "unknown stage 'frieze'" in errors[0]
    assert "p.yaml:9:" in errors[1] and "input file not found" in errors[1]


def test_longer_cycle_is_printed_in_full(tmp_path: Path) -> None:
    stages = "".join(f"  {a}:\n    kind: freeze\n    inputs: {{model: {b}}}\n"
                     for a, b in (("a", "b"), ("b", "c"), ("c", "a")))
    with pytest.raises(ConfigError) as info:
        api.validate(_pipeline(tmp_path, stages))
    cycle = info.value.errors[0].split("cycle: ")[1]
    names = cycle.split(" -> ")
    assert names[0] == names[-1] and sorted(names[:-1]) == ["a", "b", "c"]


def test_missing_verify_samples_are_a_validation_error(tmp_path: Path) -> None:
    stages = CHAIN.replace("MATRIX", "").replace(
        "inputs: {engine: serialize, reference: freeze}",
        "inputs: {engine: serialize, reference: freeze}\n    samples: {source: images/*.png}")
    with pytest.raises(ConfigError) as info:
        api.validate(_pipeline(tmp_path, stages))
    assert info.value.errors == [info.value.errors[0]]
    assert "p.yaml:7:15: $.stages.verify.samples.source" in info.value.errors[0]
    assert "matched no files" in info.value.errors[0]


@pytest.mark.parametrize("ref", ["tiny.py:", "tiny.py:not a name"])
def test_builder_reference_needs_a_function_name(tmp_path: Path, ref: str) -> None:
    stages = f'  freeze:\n    kind: freeze\n    inputs: {{model: "{ref}"}}\n'
    with pytest.raises(ConfigError) as info:
        api.validate(_pipeline(tmp_path, stages))
    assert "p.yaml:6:" in info.value.errors[0] and "is not a Python function name" in info.value.errors[0]
