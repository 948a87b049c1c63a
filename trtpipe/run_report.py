"""The per-run HTML report: assembled from a run's results and the store, stored by content hash.

``write_report(pipeline, result)`` writes ``artifacts/<pipeline>/report-<sha12>.html`` (and the
benchmark plots beside it as they are already stored) and points ``report.html`` at it (a
relative symlink, replaced atomically: always the latest run). ``rebuild_report(path)`` does
the same from the store alone, without running anything (``trtpipe report``).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from trtpipe import hashing
from trtpipe.fsutil import atomic_write_bytes
from trtpipe.pipeline import Pipeline
from trtpipe.runner import RunResult


def _load(path: Path) -> Any:
    with contextlib.suppress(OSError, ValueError):
        return json.loads(Path(path).read_bytes())
    return None


def run_dict(p: Pipeline, result: RunResult) -> dict[str, Any]:
    """The ``render_report`` input for ``result`` (see ``trtpipe.report_html``)."""
    from trtpipe.backends.fingerprint import framework_versions, hardware

    stages, verifications, benchmarks = [], [], []
    for st in result.stages:
        stages.append({"name": st.name, "kind": st.kind, "status": "skipped" if st.status == "stale" else st.status,
                       "seconds": st.seconds, "inputs": list(st.upstream), "error": st.error or None,
                       "outputs": {n: {"path": str(o["path"]), "sha256": o["sha256"]} for n, o in st.outputs.items()}})
        if st.kind == "verify-roundtrip" and "report" in st.outputs:
            rep = _load(st.outputs["report"]["path"]) or {}
            rows = [{"output": f"{r['output']} @ batch {r['batch']}",
                     **{k: r[k] for k in ("max_abs", "max_rel", "cosine") if k in r}, "ok": r["ok"]}
                    for r in rep.get("rows", [])]
            for name, m in rep.get("task_metrics", {}).items():
                rows.append({"output": name, **{k: v for k, v in m.items() if isinstance(v, (int, float)) and k != "ok"},
                             "ok": m.get("ok", True)})
            verifications.append({"stage": st.name, "precision": rep.get("precision"), "ok": rep.get("ok"), "rows": rows})
        if st.kind == "benchmark" and "results" in st.outputs:
            res = _load(st.outputs["results"]["path"]) or {}
            png = Path(st.outputs["plot"]["path"]).read_bytes() if "plot" in st.outputs else None
            benchmarks.append({"stage": st.name, "series": res.get("series", {}), "png": png,
                               "marginal_cost": res.get("marginal_cost", {})})
    return {"pipeline": p.name, "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": hardware(), "versions": framework_versions("tensorflow", "tf2onnx", "onnx", "onnxruntime",
                                                                  "tensorrt", "polygraphy"),
            "stages": stages, "verifications": verifications, "benchmarks": benchmarks}


def write_report(p: Pipeline, result: RunResult) -> Path:
    """Render, store by content hash, and link ``report.html``; returns the report path."""
    from trtpipe.report_html import render_report

    html = render_report(run_dict(p, result)).encode("utf-8")
    folder = Path(result.store_root or p.config.base_dir / p.config.doc["store"]) / p.name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"report-{hashing.bytes_digest(html)[:12]}.html"
    atomic_write_bytes(path, html)
    for old in folder.glob("report-*.html"):
        if old != path:
            old.unlink(missing_ok=True)
    from trtpipe.lockfile import LockFile

    LockFile.for_pipeline(p.config.path).set_extra("report", {
        "path": os.path.relpath(path, p.config.base_dir), "sha256": hashing.bytes_digest(html)})
    link = folder / "report.html"
    tmp = folder / f".tmp-report-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(path.name, tmp)
    os.replace(tmp, link)
    return path


def rebuild_report(pipeline_path: str | Path) -> Path:
    """Regenerate the report from the store (stage states as ``trtpipe status`` sees them)."""
    from trtpipe import api
    from trtpipe.lockfile import LockFile

    p = api.validate(pipeline_path)
    result = api.status(pipeline_path)
    store = api.open_store(p)
    lock = LockFile.for_pipeline(p.config.path)
    for st in result.stages:
        entry = lock.entry(st.name)
        if st.status == "cached" or not entry:
            continue
        rec = store.read_record(entry["key"])
        if rec and not store.check_record(rec):  # the last recorded result (e.g. a benchmark)
            st.status, st.reason, st.seconds = "built", "last recorded run", float(rec.get("duration_s", 0))
            st.outputs = {n: {**o, "path": store.object_path(o["sha256"])} for n, o in rec["outputs"].items()}
    return write_report(p, result)
