"""verify-roundtrip catches a wrong engine: an engine checked against a different model fails with exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from trtpipe_testkit import write_pipeline

from trtpipe import api, cli

WRONG_REFERENCE = "  other:\n    kind: freeze\n    inputs: {model: tiny.py:other}\n"


def test_verify_against_a_different_model_fails_with_a_table(tiny_copy: Path, stage_runs: list[str],
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # Same engine chain as the built pipeline (cached), but the reference is another network.
    path = write_pipeline(tiny_copy.parent, "wrong.yaml", name="wrong", reference="other", extra=WRONG_REFERENCE)
    monkeypatch.setenv("COLUMNS", "250")
    assert cli.main(["run", str(path)]) == 1
    out = capsys.readouterr().out
    assert stage_runs == ["other", "verify"]  # the engine chain came from the cache
    signature = json.loads(next((path.parent / "artifacts" / "wrong" / "other").glob("signature-*.json")).read_bytes())
    output_name = signature["outputs"][0]["name"]
    assert "verification failed for the fp32 engine" in out
    assert "max_abs" in out and "limits: atol=0.0001" in out
    table = [ln for ln in out.splitlines() if output_name in ln and "max_abs" not in ln]
    assert table, out
    # the row shows the batch and a large error for that output
    assert any(float(ln.split()[2]) > 1e-3 for ln in table if len(ln.split()) > 2 and ln.split()[1].isdigit()), table

    result = api.run(path)
    assert not result.ok
    verify = next(s for s in result.stages if s.name == "verify")
    assert verify.status == "failed" and verify.log and Path(verify.log).is_file()
    lock = json.loads(path.with_suffix(".lock").read_bytes())
    assert "verify" not in lock["stages"]  # a failed stage is never recorded as good


def test_verify_passes_for_the_right_model(tiny_copy: Path) -> None:
    lock = json.loads(tiny_copy.with_suffix(".lock").read_bytes())
    report = json.loads((tiny_copy.parent / lock["stages"]["verify"]["outputs"]["report"]["path"]).read_bytes())
    assert report["ok"] is True
    assert report["engine_sha256"] == lock["stages"]["serialize"]["outputs"]["engine"]["sha256"]
    assert {r["batch"] for r in report["rows"]} == {1, 8}
    assert all(r["max_abs"] <= report["tolerance"]["atol"] or r["ok"] for r in report["rows"])
