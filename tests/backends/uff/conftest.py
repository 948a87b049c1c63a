"""Fixtures for the UFF tests: NVIDIA's reference lenet5 pair (.pb and the .uff its converter wrote)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = Path(__file__).resolve().parent
SHARED = Path("/work/shared/fixtures/uff-reference")
#: sha256 from PROVENANCE.md: the copies under data/ must be NVIDIA's files, unmodified.
SHA256 = {
    "lenet5.pb": "420ddd2d3bf5325ff6a249c3fefa27df417a67a0d71b896279acd5e1194f1430",
    "lenet5.uff": "bbc41372e1fe3e29bb76e31c1bfa9ceebaeb00c8dcf17889167ce4ed8473eb97",
}


def _fixture(name: str) -> bytes:
    # A copy ships under data/ so CI does not depend on the shared folder.
    for path in (HERE / "data" / name, SHARED / name):
        if path.exists():
            data = path.read_bytes()
            assert hashlib.sha256(data).hexdigest() == SHA256[name], f"{path} was modified"
            return data
    pytest.skip(f"reference fixture {name} not available")


@pytest.fixture(scope="session")
def lenet_pb() -> bytes:
    return _fixture("lenet5.pb")


@pytest.fixture(scope="session")
def lenet_uff() -> bytes:
    return _fixture("lenet5.uff")
