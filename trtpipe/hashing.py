"""Digests of files and directories, and the stage cache key: the ONLY place keys are made.

A stage's key is ``sha256`` of the canonical JSON of ``{kind, version, params, inputs, env}``.
Output digests are recorded, never part of a key (engine builds are not bit-deterministic).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

CHUNK = 4 * 1024 * 1024


def bytes_digest(data: bytes) -> str:
    """sha256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of a file's bytes (read in binary, in large chunks)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest() if hasattr(hashlib, "file_digest") else _chunked(fh)


def _chunked(fh: Any) -> str:
    h = hashlib.sha256()
    for block in iter(lambda: fh.read(CHUNK), b""):
        h.update(block)
    return h.hexdigest()


def dir_digest(path: str | os.PathLike[str], file_hash: Any = file_digest) -> str:
    """Digest of a directory tree: sorted relative paths, file modes' exec bit and contents.

    Symlinks are followed; hidden editor/OS droppings are not special-cased on purpose (they
    are content too, and skipping them silently would make a key lie).
    """
    root = Path(path)
    h = hashlib.sha256(b"trtpipe-dir/1\0")
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            executable = bool(full.stat().st_mode & stat.S_IXUSR)
            h.update(f"{rel}\0{int(executable)}\0{file_hash(full)}\n".encode())
    return h.hexdigest()


def canonical_json(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, UTF-8, floats as repr (stable across runs)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def key_material(kind: str, version: int, params: dict[str, Any], inputs: dict[str, Any],
                 env: dict[str, Any]) -> dict[str, Any]:
    """Everything a stage's result depends on, as one JSON-able dict (kept in records for `status`)."""
    return {"kind": kind, "version": version, "params": params, "inputs": inputs, "env": env}


def stage_key(material: dict[str, Any]) -> str:
    """The cache key of a stage: sha256 of its canonical key material."""
    return hashlib.sha256(b"trtpipe-stage/1\0" + canonical_json(material)).hexdigest()
