"""Cache semantics of `trtpipe run` on the tiny pipeline: hits run nothing, changes rerun downstream only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from trtpipe_testkit import PIPELINE_NAME, TRTPIPE, set_max_batch, statuses, subprocess_env, write_pipeline

from trtpipe import api, cli, hashing
from trtpipe.store import Store

ALL = ["freeze", "onnx", "build", "serialize", "verify"]


def _records(store: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (store / "stages").glob("*.json")}


def _lock(path: Path) -> dict:
    return json.loads(path.with_suffix(".lock").read_bytes())


def _object(store: Path, digest: str) -> Path:
    return store / "objects" / digest[:2] / digest[2:]


def test_second_run_is_all_cached_and_executes_nothing(tiny_copy: Path, stage_runs: list[str]) -> None:
    store = tiny_copy.parent / "artifacts"
    records, lock_bytes = _records(store), tiny_copy.with_suffix(".lock").read_bytes()
    result = api.run(tiny_copy)
    assert result.ok
    assert statuses(result) == dict.fromkeys(ALL, "cached")
    assert stage_runs == []
    assert _records(store) == records  # no record rewritten
    assert tiny_copy.with_suffix(".lock").read_bytes() == lock_bytes  # the lock is byte-identical


def test_param_change_reruns_that_stage_and_downstream_only(tiny_copy: Path, stage_runs: list[str],
                                                            capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    set_max_batch(tiny_copy, 8, 4)
    plan = api.status(tiny_copy)
    assert statuses(plan) == {"freeze": "cached", "onnx": "cached", "build": "stale", "serialize": "stale",
                              "verify": "stale"}
    reasons = {s.name: s.reason for s in plan.stages}
    assert "param max_batch: 8 -> 4" in reasons["build"]
    assert "upstream 'build'" in reasons["serialize"]
    monkeypatch.setenv("COLUMNS", "250")
    assert cli.main(["status", str(tiny_copy)]) == 0
    out = capsys.readouterr().out
    assert "param max_batch: 8 -> 4" in out and "would rebuild" in out
    assert cli.main(["status", "--json", str(tiny_copy)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["up_to_date"] is False
    assert stage_runs == []  # status builds nothing

    result = api.run(tiny_copy)
    assert result.ok
    assert statuses(result) == {"freeze": "cached", "onnx": "cached", "build": "built", "serialize": "built",
                                "verify": "built"}
    assert stage_runs == ["build", "serialize", "verify"]
    assert _lock(tiny_copy)["stages"]["build"]["params"]["max_batch"] == 4


def test_corrupted_object_is_detected_and_rebuilt(tiny_copy: Path, stage_runs: list[str]) -> None:
    store = tiny_copy.parent / "artifacts"
    digest = _lock(tiny_copy)["stages"]["build"]["outputs"]["engine"]["sha256"]
    obj = _object(store, digest)
    os.chmod(obj, 0o644)
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size; a bit flip in the middle of the engine
    obj.write_bytes(bytes(data))
    plan = api.status(tiny_copy)
    build = next(s for s in plan.stages if s.name == "build")
    assert build.status == "stale" and "corrupt" in build.reason

    result = api.run(tiny_copy)
    assert result.ok
    assert "build" in stage_runs and "freeze" not in stage_runs and "onnx" not in stage_runs
    new = _lock(tiny_copy)["stages"]["build"]["outputs"]["engine"]["sha256"]
    assert hashing.file_digest(_object(store, new)) == new
    assert Store(store).check_record(Store(store).read_record(_lock(tiny_copy)["stages"]["build"]["key"])) is None


def test_deleted_object_is_rebuilt(tiny_copy: Path, stage_runs: list[str]) -> None:
    store = tiny_copy.parent / "artifacts"
    digest = _lock(tiny_copy)["stages"]["freeze"]["outputs"]["graph"]["sha256"]
    obj = _object(store, digest)
    obj.unlink()
    # the human-facing hard link must not keep serving it either: it is a link to the same bytes
    plan = api.status(tiny_copy)
    freeze = next(s for s in plan.stages if s.name == "freeze")
    assert freeze.status == "stale" and "missing" in freeze.reason

    result = api.run(tiny_copy)
    assert result.ok
    assert stage_runs[0] == "freeze"
    graph = _lock(tiny_copy)["stages"]["freeze"]["outputs"]["graph"]["sha256"]
    assert hashing.file_digest(_object(store, graph)) == graph


def test_force_reruns_only_the_named_stage(tiny_copy: Path, stage_runs: list[str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    before = _lock(tiny_copy)["stages"]["onnx"]["outputs"]["model"]["sha256"]
    assert cli.main(["run", "--json", "--force", "onnx", "--", str(tiny_copy)]) == 0
    doc = json.loads(capsys.readouterr().out)
    got = {s["name"]: s["status"] for s in doc["stages"]}
    assert got["onnx"] == "built" and got["freeze"] == "cached"
    assert stage_runs[0] == "onnx" and "freeze" not in stage_runs
    # tf2onnx is deterministic here, so the same model bytes keep everything downstream cached
    after = doc["stages"][1]["outputs"]["model"]["sha256"]
    assert got["build"] == ("cached" if after == before else "built"), (before, after)


def test_keep_going_runs_independent_stages_after_a_failure(tiny_copy: Path, stage_runs: list[str]) -> None:
    text = tiny_copy.read_bytes().decode()
    broken = "  broken:\n    kind: freeze\n    inputs: {model: tiny.py:no_such_function}\n"
    tiny_copy.write_bytes(text.replace("stages:\n", "stages:\n" + broken, 1).encode())

    stop = api.run(tiny_copy)
    assert not stop.ok
    got = statuses(stop)
    assert got["broken"] == "failed"
    assert set(got[n] for n in ALL) == {"skipped"}
    failed = next(s for s in stop.stages if s.name == "broken")
    assert "no_such_function" in (failed.error or "") + (failed.hint or "")

    going = api.run(tiny_copy, keep_going=True)
    assert not going.ok
    got = statuses(going)
    assert got["broken"] == "failed"
    assert all(got[n] == "cached" for n in ALL)


def test_frozen_exit_codes(tiny_copy: Path, stage_runs: list[str], capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    assert cli.main(["run", "--frozen", str(tiny_copy)]) == 0
    assert "up to date" in capsys.readouterr().out
    set_max_batch(tiny_copy, 8, 2)
    lock_before = tiny_copy.with_suffix(".lock").read_bytes()
    assert cli.main(["run", "--frozen", str(tiny_copy)]) == 1
    out = capsys.readouterr().out
    assert "would rebuild" in out
    assert "build: param max_batch: 8 -> 2" in out
    assert stage_runs == []
    assert tiny_copy.with_suffix(".lock").read_bytes() == lock_before  # --frozen writes nothing


def test_lock_file_contents(tiny_copy: Path) -> None:
    lock = _lock(tiny_copy)
    base = tiny_copy.parent
    assert lock["pipeline"] == PIPELINE_NAME and list(lock["stages"]) == ALL
    store = Store(base / "artifacts")
    for name, entry in lock["stages"].items():
        for field in ("kind", "key", "params", "inputs", "outputs", "toolchain", "duration_s"):
            assert field in entry, (name, field)
        assert len(entry["key"]) == 64 and store.read_record(entry["key"]) is not None
        assert isinstance(entry["duration_s"], float)
        for out in entry["outputs"].values():
            path = base / out["path"]
            assert hashing.file_digest(path) == out["sha256"]
    assert lock["stages"]["freeze"]["inputs"]["model"]["sha256"] == hashing.file_digest(base / "tiny.py")
    assert lock["stages"]["freeze"]["toolchain"]["tensorflow"]
    assert lock["stages"]["build"]["params"]["max_batch"] == 8
    assert lock["stages"]["build"]["toolchain"]["onnxruntime"]
    onnx_model = lock["stages"]["onnx"]["outputs"]["model"]["sha256"]
    assert lock["stages"]["build"]["inputs"]["model"]["outputs"]["model"] == onnx_model

    # Every human-facing file carries its own sha256[:12] and is listed in the lock.
    listed = {out["path"] for e in lock["stages"].values() for out in e["outputs"].values()}
    files = [p for p in (base / "artifacts" / PIPELINE_NAME).rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert hashing.file_digest(path)[:12] in path.name, path
        assert os.path.relpath(path, base) in listed, path
    assert len(files) == len(listed)

    report = json.loads((base / lock["stages"]["verify"]["outputs"]["report"]["path"]).read_bytes())
    assert report["ok"] is True and report["batches"] == [1, 8]


def test_killed_stage_leaves_nothing_valid_and_rerun_completes(tmp_path: Path) -> None:
    path = write_pipeline(tmp_path / "p", model="tiny.py:slow")
    marker = tmp_path / "freeze-started"
    proc = subprocess.Popen([*TRTPIPE, "run", str(path)], env={**subprocess_env(), "TRTPIPE_TEST_SLOW_MARKER":
                            str(marker)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the freeze stage never started"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    store = path.parent / "artifacts"
    assert list((store / "stages").glob("*.json")) == []
    assert not (store / PIPELINE_NAME / "freeze").exists() or not any((store / PIPELINE_NAME / "freeze").iterdir())
    assert not path.with_suffix(".lock").exists()
    assert [p for p in (store / "objects").rglob("*") if p.is_file() and not p.name.startswith(".tmp-")] == []

    result = api.run(path)  # no marker variable now: the builder does not pause
    assert result.ok and set(statuses(result).values()) == {"built"}
    assert list((store / "tmp").iterdir()) == []  # the killed run's scratch was cleaned up


def test_two_concurrent_runs_share_one_store(tiny_copy: Path) -> None:
    folder = tiny_copy.parent
    # Two pipelines (different names and lock files) on the same store with the same new build:
    # they contend for the same stage keys.
    a = write_pipeline(folder, "a.yaml", name="a", max_batch=2)
    b = write_pipeline(folder, "b.yaml", name="b", max_batch=2)
    procs = [subprocess.Popen([*TRTPIPE, "run", "--json", str(p)], env=subprocess_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for p in (a, b)]
    outs = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err.decode()[-3000:]
        assert json.loads(out)["ok"] is True
    la, lb = _lock(a)["stages"], _lock(b)["stages"]
    assert {n: e["key"] for n, e in la.items()} == {n: e["key"] for n, e in lb.items()}
    store = Store(folder / "artifacts")
    for entry in (*la.values(), *lb.values()):
        rec = store.read_record(entry["key"])
        assert rec is not None and store.check_record(rec) is None
    for obj in (folder / "artifacts" / "objects").rglob("*"):
        if obj.is_file():
            assert not obj.name.startswith(".tmp-")
            assert hashing.file_digest(obj) == obj.parent.name + obj.name


def test_frozen_checks_the_lock_file_not_only_the_store(tiny_copy: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Both max_batch values are in the store, but the lock records 4: --frozen with 8 must fail."""
    monkeypatch.setenv("COLUMNS", "250")
    set_max_batch(tiny_copy, 8, 4)
    assert api.run(tiny_copy).ok  # lock now records max_batch 4; the store holds both builds
    set_max_batch(tiny_copy, 4, 8)
    assert statuses(api.status(tiny_copy))["build"] == "cached"  # nothing would be rebuilt...
    assert cli.main(["run", "--frozen", str(tiny_copy)]) == 1  # ...but the lock file is stale
    out = capsys.readouterr().out
    assert "build: pipeline.lock is out of date: param max_batch: 4 -> 8" in out
