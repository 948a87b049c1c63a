"""hashing: digests and the stage key."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from trtpipe import hashing

BASE = {"kind": "build", "version": 1, "params": {"max_batch": 8, "precision": "fp32"},
        "inputs": {"model": {"outputs": {"model": "ab" * 32}}}, "env": {"onnxruntime": "1.20"}}


def _key(**changes: object) -> str:
    m = {**BASE, **changes}
    return hashing.stage_key(hashing.key_material(m["kind"], m["version"], m["params"], m["inputs"], m["env"]))


def test_file_digest_is_sha256(tmp_path: Path) -> None:
    data = os.urandom(100_000)
    (tmp_path / "f").write_bytes(data)
    assert hashing.file_digest(tmp_path / "f") == hashlib.sha256(data).hexdigest() == hashing.bytes_digest(data)


def test_stage_key_is_stable_and_order_independent() -> None:
    assert _key() == _key()
    assert _key(params={"precision": "fp32", "max_batch": 8}) == _key()
    assert len(_key()) == 64


@pytest.mark.parametrize("change", [
    {"kind": "serialize"}, {"version": 2}, {"params": {"max_batch": 4, "precision": "fp32"}},
    {"inputs": {"model": {"outputs": {"model": "cd" * 32}}}}, {"env": {"onnxruntime": "1.21"}},
    {"params": {"max_batch": 8, "precision": "fp32", "extra": None}},
])
def test_stage_key_depends_on_every_part(change: dict) -> None:
    assert _key(**change) != _key()


def test_canonical_json_refuses_nan() -> None:
    assert hashing.canonical_json({"b": 1, "a": [1.5, "é"]}) == '{"a":[1.5,"é"],"b":1}'.encode()
    with pytest.raises(ValueError):
        hashing.canonical_json({"x": float("nan")})


def test_dir_digest_depends_on_names_contents_and_exec_bit(tmp_path: Path) -> None:
    root = tmp_path / "d"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"a")
    (root / "sub" / "b.txt").write_bytes(b"b")
    first = hashing.dir_digest(root)
    copy = tmp_path / "copy"
    (copy / "sub").mkdir(parents=True)
    (copy / "sub" / "b.txt").write_bytes(b"b")  # created in another order: same tree, same digest
    (copy / "a.txt").write_bytes(b"a")
    assert hashing.dir_digest(copy) == first
    (root / "sub" / "b.txt").write_bytes(b"B")
    assert hashing.dir_digest(root) != first
    (root / "sub" / "b.txt").write_bytes(b"b")
    assert hashing.dir_digest(root) == first
    (root / "a.txt").rename(root / "c.txt")
    assert hashing.dir_digest(root) != first
    (root / "c.txt").rename(root / "a.txt")
    os.chmod(root / "a.txt", 0o755)
    assert hashing.dir_digest(root) != first
