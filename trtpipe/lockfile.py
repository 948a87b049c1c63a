"""``pipeline.lock``: the machine-written record of what produced each stage's outputs.

Beside the pipeline file (``<stem>.lock``), JSON with sorted keys so diffs are readable in
review. Per stage: kind, key, stage version, params (defaults filled), input digests, output
paths/sha256/sizes, toolchain facts and build duration. A fully cached run rewrites it with the
same bytes, so CI can diff it; release managers read it to prove which inputs made an engine.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trtpipe.fsutil import atomic_write_bytes

if TYPE_CHECKING:
    from trtpipe.pipeline import Pipeline
    from trtpipe.runner import StageResult

LOCK_FORMAT = 1


class LockFile:
    """Read/merge/write a pipeline's lock file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        # No lock yet, or an unreadable one: everything counts as "not built before".
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_bytes())
            if isinstance(data, dict) and data.get("format") == LOCK_FORMAT:
                self.data = data

    @classmethod
    def for_pipeline(cls, pipeline_path: Path) -> LockFile:
        return cls(pipeline_path.with_suffix(".lock"))

    @property
    def stages(self) -> dict[str, Any]:
        return self.data.get("stages", {})

    def entry(self, name: str) -> dict[str, Any] | None:
        return self.stages.get(name)

    def update(self, pipeline: Pipeline, results: list[StageResult], *, full: bool) -> None:
        """Record successful stages; keep entries of stages not run; drop removed stages on a full run."""
        stages = dict(self.stages)
        base = self.path.parent
        for res in results:
            if res.status not in ("built", "cached", "measured") or res.record is None or res.material is None:
                continue
            mat = res.material
            stages[res.name] = {
                "kind": res.kind,
                "key": res.key,
                "stage_version": mat["version"],
                "params": mat["params"],
                "inputs": _inputs_for_lock(pipeline, res.name, mat["inputs"], base),
                "outputs": {n: {"path": _rel(Path(o["path"]), base), "sha256": o["sha256"], "size": o["size"]}
                            for n, o in sorted(res.outputs.items())},
                "toolchain": mat["env"],
                "duration_s": res.record.get("duration_s"),
                "built_at": res.record.get("created"),
            }
        if full:
            stages = {n: e for n, e in stages.items() if n in pipeline.stages}
        extras = {k: v for k, v in self.data.items() if k == "report"}
        self.data = {"format": LOCK_FORMAT, "pipeline": pipeline.name,
                     "pipeline_file": pipeline.config.path.name,
                     "store": pipeline.config.doc["store"],  # as written (relative to the pipeline file)
                     "stages": {n: stages[n] for n in sorted(stages, key=_order_key(pipeline))}, **extras}
        self._write()

    def _write(self) -> None:
        data = (json.dumps(self.data, indent=2, sort_keys=False) + "\n").encode()
        try:
            if self.path.read_bytes() == data:  # a no-op run leaves the file (and its mtime) alone
                return
        except OSError:
            pass
        atomic_write_bytes(self.path, data)


    def set_extra(self, name: str, value: Any) -> None:
        """Record a pipeline-level artifact (e.g. the latest run report) in the lock file."""
        if not self.data:
            return
        self.data[name] = value
        self._write()


def _order_key(pipeline: Pipeline) -> Any:
    pos = {n: i for i, n in enumerate(pipeline.order)}
    return lambda n: (pos.get(n, len(pos)), n)


def _rel(path: Path, base: Path) -> str:
    try:
        return os.path.relpath(path, base)
    except ValueError:
        return str(path)


def _inputs_for_lock(pipeline: Pipeline, name: str, inputs: dict[str, Any], base: Path) -> dict[str, Any]:
    spec = pipeline.stages[name]
    out: dict[str, Any] = {}
    for role, mat in inputs.items():
        if role not in spec.inputs:  # data files named inside params: already {files: {path: sha256}}
            out[role] = mat
            continue
        refs = spec.inputs[role]
        ref_list = refs if isinstance(refs, list) else [refs]
        mats = mat if isinstance(mat, list) else [mat]
        rows = []
        for ref, m in zip(ref_list, mats, strict=False):
            row: dict[str, Any] = {"ref": ref.ref}
            row.update({"stage": ref.stage} if ref.stage else {"path": _rel(ref.path, base) if ref.path else None})
            row.update(m)
            rows.append(row)
        out[role] = rows if isinstance(refs, list) else rows[0]
    return out


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flatten(v, f"{prefix}.{i}"))
        return out
    return {prefix: obj}


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    if isinstance(value, str) and len(value) == 64:
        return value[:12]
    return text if len(text) <= 40 else text[:37] + "..."


def explain_change(entry: dict[str, Any] | None, material: dict[str, Any]) -> str:
    """Why a stage must (re)build, comparing the lock entry of its last build with the new key material."""
    if entry is None:
        return "not built before"
    reasons: list[str] = []
    if entry.get("stage_version") != material["version"]:
        reasons.append(f"stage version {entry.get('stage_version')} -> {material['version']} (trtpipe changed this kind)")
    old_p, new_p = _flatten(entry.get("params", {})), _flatten(material["params"])
    for k in sorted(set(old_p) | set(new_p)):
        if old_p.get(k, "<unset>") != new_p.get(k, "<unset>"):
            reasons.append(f"param {k}: {_short(old_p.get(k, '<unset>'))} -> {_short(new_p.get(k, '<unset>'))}")
    old_in = {k: v for k, v in _flatten(entry.get("inputs", {})).items() if "sha256" in k or ".outputs." in k
              or k.endswith(".entry")}
    new_in = {k: v for k, v in _flatten(material["inputs"]).items() if "sha256" in k or ".outputs." in k or k.endswith(".entry")}
    changed = sorted(k.split(".")[0] for k in set(old_in) | set(new_in) if old_in.get(k) != new_in.get(k))
    for role in dict.fromkeys(changed):
        reasons.append(f"input '{role}' changed")
    old_e, new_e = _flatten(entry.get("toolchain", {})), _flatten(material["env"])
    for k in sorted(set(old_e) | set(new_e)):
        if old_e.get(k) != new_e.get(k):
            reasons.append(f"toolchain {k}: {_short(old_e.get(k, '<unset>'))} -> {_short(new_e.get(k, '<unset>'))}")
    if not reasons:
        return "no cached result in this store for the recorded key"
    return "; ".join(reasons)

