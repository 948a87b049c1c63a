"""store: content-addressed objects, records, human-facing links, stat cache, scratch cleanup."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from trtpipe import hashing
from trtpipe.store import StatCache, Store


def _out(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / "scratch" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def test_put_file_is_content_addressed_and_read_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    digest, size = store.put_file(_out(tmp_path, "a.bin", b"hello"))
    assert digest == hashing.bytes_digest(b"hello") and size == 5
    obj = store.object_path(digest)
    assert obj.read_bytes() == b"hello" and obj.parent.name == digest[:2]
    assert not obj.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert store.put_file(_out(tmp_path, "b.bin", b"hello")) == (digest, 5)  # deduplicated
    assert [p.name for p in obj.parent.iterdir()] == [obj.name]  # no temp files left


def test_commit_record_and_integrity_checks(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    key = "k" * 64
    rec = store.commit(key, {"engine": _out(tmp_path, "engine.onnx", b"E" * 1000)}, {"stage": "build"})
    assert store.read_record(key) == rec and store.check_record(rec) is None
    obj = store.object_path(rec["outputs"]["engine"]["sha256"])
    os.chmod(obj, 0o644)
    obj.write_bytes(b"E" * 999 + b"X")
    assert "corrupt" in (store.check_record(rec) or "")
    obj.unlink()
    assert "missing" in (store.check_record(rec) or "")
    # a corrupt object is replaced by a fresh put, never trusted
    store.put_file(_out(tmp_path, "engine.onnx", b"E" * 1000))
    assert store.check_record(rec) is None


def test_damaged_or_foreign_records_are_misses(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    key = "a" * 64
    store.record_path(key).write_bytes(b"{not json")
    assert store.read_record(key) is None
    store.record_path(key).write_bytes(json.dumps({"format": 1, "key": "b" * 64, "outputs": {}}).encode())
    assert store.read_record(key) is None  # a record copied under another key


def test_commit_refuses_missing_outputs(tmp_path: Path) -> None:
    from trtpipe.errors import StoreError

    store = Store(tmp_path / "s")
    with pytest.raises(StoreError, match="was not produced"):
        store.commit("c" * 64, {"engine": tmp_path / "nope.onnx"}, {})
    assert store.read_record("c" * 64) is None


def test_human_facing_names_carry_the_digest_and_stale_names_go(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    rec1 = store.commit("1" * 64, {"engine": _out(tmp_path, "engine.onnx", b"one")}, {})
    links = store.link_outputs("pipe", "build", rec1)
    d1 = hashing.bytes_digest(b"one")
    assert links["engine"] == store.root / "pipe" / "build" / f"engine-{d1[:12]}.onnx"
    assert os.path.samefile(links["engine"], store.object_path(d1))
    rec2 = store.commit("2" * 64, {"engine": _out(tmp_path, "engine.onnx", b"two")}, {})
    links2 = store.link_outputs("pipe", "build", rec2)
    assert [p.name for p in (store.root / "pipe" / "build").iterdir()] == [links2["engine"].name]
    store.prune_pipeline("pipe", set())
    assert not (store.root / "pipe" / "build").exists()


def test_stat_cache_rehashes_an_edited_file_even_with_restored_mtime(tmp_path: Path) -> None:
    cache = StatCache(tmp_path / "statcache.json")
    f = tmp_path / "model.bin"
    f.write_bytes(b"aaaa")
    st = f.stat()
    assert cache.digest(f) == hashing.bytes_digest(b"aaaa")
    cache.save()
    assert str(f.absolute()) in json.loads((tmp_path / "statcache.json").read_bytes())
    f.write_bytes(b"bbbb")  # same size
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = StatCache(tmp_path / "statcache.json")
    assert again.digest(f) == hashing.bytes_digest(b"bbbb")


def test_scratch_of_a_dead_process_is_cleaned(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    dead = int(child.stdout)
    leftover = store.root / "tmp" / f"{'d' * 16}.{dead}.xyz"
    (leftover / "out").mkdir(parents=True)
    mine = store.root / "tmp" / f"{'e' * 16}.{os.getpid()}.abc"
    mine.mkdir()
    with store.scratch("f" * 64) as scratch:
        assert scratch.is_dir()
        assert not leftover.exists() and mine.exists()
    assert not scratch.exists()
