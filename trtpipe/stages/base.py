"""The stage contract and the registry mapping a kind to its class.

A stage is one small class: ``kind``, ``VERSION`` (bump it when behaviour changes; that
invalidates its cache), the input roles it accepts, the outputs it produces, ``env_keys()``
(the toolchain facts its result depends on; cheap to compute, no framework imports) and
``run(ctx)``. It never parses YAML, hashes, caches or prints.
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

#: Artifact types. External files get a type from their name (see ``external_type``).
KERAS = "keras-model"        # .keras / .h5 / SavedModel dir / builder.py:function
FROZEN = "frozen-graph"      # frozen GraphDef .pb
SIGNATURE = "signature"      # JSON I/O signature
ONNX = "onnx"
UFF = "uff"
ENGINE = "engine"            # a built engine (ORT optimized model or TensorRT plan)
RELEASE = "release-engine"   # serialized engine + metadata sidecar
CALIBRATION = "calibration-table"
REPORT = "report"
LOG = "log"


def external_type(ref: str, path: Path) -> str | None:
    """Artifact type of an external file/dir reference, or None when unrecognised."""
    if ":" in ref and ref.split(":", 1)[0].endswith(".py"):
        return KERAS
    if path.is_dir():
        return KERAS if (path / "saved_model.pb").exists() else None
    suffix = path.suffix.lower()
    return {".keras": KERAS, ".h5": KERAS, ".hdf5": KERAS, ".pb": FROZEN, ".onnx": ONNX, ".uff": UFF,
            ".plan": ENGINE, ".engine": ENGINE}.get(suffix)


@dataclass(frozen=True)
class Role:
    """An input role: which artifact types it accepts, and whether it takes a list."""

    accepts: tuple[str, ...]
    many: bool = False


@dataclass
class Input:
    """What a stage receives for one role: an upstream stage's outputs, or an external path."""

    ref: str
    stage: str | None = None                     # upstream stage name, None for external
    files: dict[str, Path] = field(default_factory=dict)  # output name -> file (upstream)
    path: Path | None = None                     # external file/dir
    artifact: str | None = None                  # artifact type
    digests: dict[str, str] = field(default_factory=dict)  # output name -> sha256 (upstream)

    def file(self, name: str) -> Path:
        """The upstream output ``name`` (raises KeyError with a clear message when absent)."""
        if name not in self.files:
            raise KeyError(f"input '{self.ref}' has no output '{name}' (has: {', '.join(self.files)})")
        return self.files[name]


@dataclass
class StageContext:
    """Everything ``Stage.run`` may use."""

    name: str
    pipeline: str
    params: dict[str, Any]
    inputs: dict[str, Input | list[Input]]
    scratch: Path
    base_dir: Path
    log: logging.Logger
    store_root: Path
    lock_digests: dict[str, str] = field(default_factory=dict)  # "<stage>.<output>" -> sha256

    def out(self, name: str, ext: str) -> Path:
        """Path in the scratch directory where output ``name`` should be written."""
        return self.scratch / f"{name}{ext}"

    def one(self, role: str) -> Input:
        value = self.inputs[role]
        assert not isinstance(value, list)
        return value

    def many(self, role: str) -> list[Input]:
        value = self.inputs[role]
        return value if isinstance(value, list) else [value]


class Stage(abc.ABC):
    """Base class of every stage kind."""

    kind: ClassVar[str]
    VERSION: ClassVar[int] = 1
    roles: ClassVar[dict[str, Role]] = {}
    #: output name -> artifact type
    outputs: ClassVar[dict[str, str]] = {}
    #: Python modules this kind needs to run (checked before any work starts, never imported there)
    requires: ClassVar[tuple[str, ...]] = ()
    #: False for stages that must re-run every time (benchmarks: a cached number would be a lie)
    cacheable: ClassVar[bool] = True

    def cache_enabled(self, params: dict[str, Any]) -> bool:
        return self.cacheable

    def env_keys(self, params: dict[str, Any]) -> dict[str, Any]:
        """Toolchain facts the result depends on. Must be cheap: never import a framework here."""
        return {}

    def key_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Params that enter the cache key (default: all but the free-text description)."""
        return {k: v for k, v in params.items() if k not in ("description",)}

    def check(self, params: dict[str, Any]) -> list[tuple[tuple[str, ...], str]]:
        """Static checks beyond the schema: (json sub-path, message) for each problem."""
        return []

    def data_files(self, params: dict[str, Any], base_dir: Path) -> list[Path]:
        """Files named inside params (data sources) whose contents enter the cache key."""
        return []

    def preflight(self, params: dict[str, Any]) -> None:
        """Checks that need this machine (frameworks present, capabilities) before any work starts."""
        from trtpipe.backends._imports import check_available

        check_available(*self.requires, why=f"needed by '{self.kind}' stages")

    @abc.abstractmethod
    def run(self, ctx: StageContext) -> dict[str, Path]:
        """Do the work in ``ctx.scratch``; return {output name: file path}."""


REGISTRY: dict[str, type[Stage]] = {}


def register(cls: type[Stage]) -> type[Stage]:
    """Class decorator adding a stage kind to the registry."""
    REGISTRY[cls.kind] = cls
    return cls
