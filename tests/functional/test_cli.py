"""CLI contract: exit codes 0/1/2/3, --version, --help, --json, --target."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from trtpipe_testkit import REPO, TRTPIPE, set_max_batch, statuses, subprocess_env

from trtpipe import __version__, api, cli


def test_version_and_help() -> None:
    version = subprocess.run([*TRTPIPE, "--version"], capture_output=True, env=subprocess_env(), timeout=120)
    assert version.returncode == 0
    assert version.stdout.decode().strip() == f"trtpipe {__version__}"
    helptext = subprocess.run([*TRTPIPE, "--help"], capture_output=True, env=subprocess_env(), timeout=120)
    assert helptext.returncode == 0
    out = helptext.stdout.decode()
    for word in ("run", "validate", "status", "inspect", "exit codes"):
        assert word in out
    for code in ("0  success", "1  a stage failed", "2  invalid pipeline", "3  a required backend"):
        assert code in out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--no-such-option"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_missing_pipeline_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert cli.main(["validate", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "hint:" in err


def test_tensorrt_backend_without_tensorrt_exits_3_before_any_stage(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copyfile(REPO / "tests" / "fixtures" / "files" / "identity.onnx", tmp_path / "identity.onnx")
    path = tmp_path / "pipeline.yaml"
    path.write_bytes(b"version: 1\nname: trt\nstages:\n  build:\n    kind: build\n"
                     b"    inputs: {model: identity.onnx}\n    backend: tensorrt\n    max_batch: 2\n"
                     b"  serialize:\n    kind: serialize\n    inputs: {engine: build}\n")
    assert cli.main(["validate", str(path)]) == 0  # the file itself is fine
    capsys.readouterr()
    assert cli.main(["run", str(path)]) == 3
    err = capsys.readouterr().err
    assert "tensorrt" in err.lower() and "hint:" in err
    assert not (tmp_path / "artifacts").exists()  # not even a store: nothing ran
    assert not path.with_suffix(".lock").exists()


def test_run_json_output_shape(tiny_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--json", str(tiny_copy)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["pipeline"] == "tiny" and doc["ok"] is True
    assert [s["name"] for s in doc["stages"]] == ["freeze", "onnx", "build", "serialize", "verify"]
    for st in doc["stages"]:
        assert {"name", "kind", "status", "seconds", "key", "outputs"} <= set(st)
        assert st["status"] == "cached" and len(st["key"]) == 64
        for out in st["outputs"].values():
            assert Path(out["path"]).is_file() and len(out["sha256"]) == 64


def test_target_runs_the_stage_and_its_upstream_only(tiny_copy: Path, stage_runs: list[str],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    set_max_batch(tiny_copy, 8, 3)
    result = api.run(tiny_copy, targets=["build"])
    assert statuses(result) == {"freeze": "cached", "onnx": "cached", "build": "built"}
    assert stage_runs == ["build"]
    lock = json.loads(tiny_copy.with_suffix(".lock").read_bytes())
    assert lock["stages"]["build"]["params"]["max_batch"] == 3
    assert lock["stages"]["serialize"]["key"]  # a partial run keeps the other stages' entries
    assert cli.main(["run", "--target", "nope", str(tiny_copy)]) == 2
    assert "unknown stage 'nope'" in capsys.readouterr().err


def test_run_through_console_script_exits_0_when_cached(tiny_copy: Path) -> None:
    exe = shutil.which("trtpipe", path=str(Path(TRTPIPE[0]).parent))
    cmd = [exe] if exe else TRTPIPE
    proc = subprocess.run([*cmd, "run", str(tiny_copy)], capture_output=True, env=subprocess_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    assert all(f"cached {name} (" in out for name in ("freeze", "onnx", "build", "serialize", "verify"))
    assert tiny_copy.with_suffix(".lock").is_file()


def test_cli_run_every_artifact_file_is_digest_named_and_locked(tiny_copy: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """After a CLI run (which also writes the run report), every regular file under
    artifacts/<pipeline>/ has its own sha256[:12] in its name and is listed in pipeline.lock;
    a convenience symlink may exist but must point at such a file."""
    from trtpipe import hashing

    assert cli.main(["run", str(tiny_copy)]) == 0
    capsys.readouterr()
    base = tiny_copy.parent
    lock = json.loads(tiny_copy.with_suffix(".lock").read_bytes())
    listed = {o["path"]: o["sha256"] for e in lock["stages"].values() for o in e["outputs"].values()}
    extra = lock.get("report")
    if extra:
        listed[extra["path"]] = extra["sha256"]
    for path in sorted((base / "artifacts" / "tiny").rglob("*")):
        if path.is_symlink():
            assert str(Path(path.parent, path.readlink()).relative_to(base)) in listed, path
            continue
        if path.is_file():
            rel = str(path.relative_to(base))
            digest = hashing.file_digest(path)
            assert digest[:12] in path.name, rel
            assert listed.get(rel) == digest, rel
