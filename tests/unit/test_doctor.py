"""``doctor_report`` on this machine: honest about what is (and is not) here, never imports TF."""

from __future__ import annotations

import importlib.metadata as md
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from trtpipe.backends.tensorrt import available
from trtpipe.doctor import _precisions, doctor_report, format_doctor


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return doctor_report()


def test_doctor_does_not_import_tensorflow_and_is_json() -> None:
    code = ("import sys, json; from trtpipe.doctor import doctor_report; r = doctor_report(); "
            "json.dumps(r); print(sorted(m for m in ('tensorflow', 'tf2onnx', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True)
    assert out.stdout.strip() == "[]"


def test_report_shape(report: dict[str, Any]) -> None:
    assert set(report) >= {"python", "trtpipe", "backends", "gpu", "cpu", "precisions", "missing"}
    assert report["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert set(report["backends"]) == {"tensorflow", "tf2onnx", "onnx", "onnxconverter_common",
                                       "onnxruntime", "polygraphy", "tensorrt"}
    for entry in report["backends"].values():
        assert isinstance(entry["installed"], bool)
        assert entry["installed"] or entry["hint"]


def test_versions_come_from_package_metadata(report: dict[str, Any]) -> None:
    ort = report["backends"]["onnxruntime"]
    assert ort["installed"] and ort["version"] == md.version(ort["distribution"])
    assert "CPUExecutionProvider" in ort["providers"]
    tf = report["backends"]["tensorflow"]
    if tf["installed"] and tf["distribution"]:
        assert tf["version"] == md.version(tf["distribution"])


@pytest.mark.skipif(available()[0], reason="TensorRT is installed on this machine")
def test_tensorrt_reported_missing_with_hint(report: dict[str, Any]) -> None:
    trt = report["backends"]["tensorrt"]
    assert trt["installed"] is False
    assert "TensorRT" in trt["hint"] and "onnxruntime" in trt["hint"]
    assert any(m["name"] == "TensorRT" for m in report["missing"])
    assert report["precisions"]["tensorrt"] == []
    assert report["precisions"]["tensorrt_reason"] == "TensorRT is not installed"
    has_stubs = any(d.metadata["Name"] == "tensorrt-stubs" for d in md.distributions())
    assert trt["stubs_only"] is has_stubs
    text = format_doctor(report)
    assert "missing  TensorRT" in text and trt["hint"] in text


def test_gpu_section_matches_nvidia_smi_presence(report: dict[str, Any]) -> None:
    assert report["gpu"]["nvidia_smi"] is (shutil.which("nvidia-smi") is not None)
    if not report["gpu"]["nvidia_smi"]:
        assert report["gpu"]["gpus"] == []
        assert "gpu: none found" in format_doctor(report)


def test_cpu_isa_flags_are_really_there(report: dict[str, Any]) -> None:
    cpu = report["cpu"]
    assert cpu["logical_cores"] and cpu["logical_cores"] >= 1
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        words = set(cpuinfo.read_bytes().decode(errors="replace").split())
        assert all(flag in words for flag in cpu["isa"])
        if "avx2" in words:
            assert "avx2" in cpu["isa"]


def test_onnxruntime_precisions_here(report: dict[str, Any]) -> None:
    prec = report["precisions"]["onnxruntime"]
    assert prec[:1] == ["fp32"] and {"int8", "mixed"} <= set(prec)
    assert ("fp16" in prec) is report["backends"]["onnxconverter_common"]["installed"]


def test_tensorrt_precisions_follow_the_compute_capability(report: dict[str, Any]) -> None:
    backends = json.loads(json.dumps(report["backends"]))
    backends["tensorrt"]["installed"] = True  # what the same machine would offer with TensorRT
    assert _precisions(backends, [])["tensorrt_reason"].startswith("no NVIDIA GPU")
    kepler = _precisions(backends, [{"compute_capability": "3.7"}])["tensorrt"]
    pascal = _precisions(backends, [{"compute_capability": "6.0"}])["tensorrt"]
    ampere = _precisions(backends, [{"compute_capability": "8.6"}])["tensorrt"]
    assert kepler == ["fp32"]
    assert pascal == ["fp32", "fp16"]
    assert ampere == ["fp32", "fp16", "int8", "mixed"]
