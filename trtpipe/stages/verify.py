"""``verify-roundtrip``: reload the serialized engine from disk and compare it with TensorFlow.

The engine file is re-hashed and checked against the digest the store recorded for it and the
one its metadata sidecar claims, then loaded in a fresh session (nothing reused from memory)
and run on samples at batch 1 and at ``max_batch``; TensorFlow runs the frozen graph on the same
samples. Per output: max abs/rel error, cosine similarity, and task metrics (top-1 agreement,
detection agreement, accuracy with labels). Gates fail the stage with a table of the worst outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where it is used: a cached run never needs it
    import numpy as np

from trtpipe import hashing
from trtpipe.backends.fingerprint import framework_versions
from trtpipe.errors import InvalidArtifact, StageFailed
from trtpipe.fsutil import atomic_write_json
from trtpipe.stages.base import FROZEN, RELEASE, REPORT, Role, Stage, StageContext, register
from trtpipe.stages.common import data_files, graph_and_signature, read_json

#: Default tolerances and gates per precision. Element-wise tolerances are the right question
#: for fp32/fp16; for int8 they are not, so int8 is judged by cosine and task metrics.
DEFAULTS: dict[str, dict[str, Any]] = {
    "fp32": {"atol": 1e-4, "rtol": 1e-3, "gates": {"cosine": 0.9999}},
    "fp16": {"atol": 2e-2, "rtol": 5e-2, "gates": {"cosine": 0.999}},
    "int8": {"atol": None, "rtol": None, "gates": {"cosine": 0.95}},
    "mixed": {"atol": None, "rtol": None, "gates": {"cosine": 0.97}},
}


@register
class Verify(Stage):
    kind = "verify-roundtrip"
    VERSION = 1
    requires = ("tensorflow",)  # + the engine's runtime, checked when it is opened
    roles = {"engine": Role((RELEASE,)), "reference": Role((FROZEN,))}
    outputs = {"report": REPORT}

    def env_keys(self, params: dict[str, Any]) -> dict[str, Any]:
        return framework_versions("tensorflow", "onnxruntime")

    def data_files(self, params: dict[str, Any], base_dir: Path) -> list[Path]:
        return data_files(params.get("samples"), base_dir)

    def run(self, ctx: StageContext) -> dict[str, Path]:
        import numpy as np

        from trtpipe.backends import tf
        from trtpipe.data.sources import load_inputs

        p = ctx.params
        eng_in = ctx.one("engine")
        engine_path, meta = eng_in.file("engine"), read_json(eng_in.file("metadata"), "engine metadata")
        digest = hashing.file_digest(engine_path)
        for what, want in (("the store record", eng_in.digests.get("engine")), ("its metadata", meta.get("engine_sha256"))):
            if want and digest != want:
                raise StageFailed(f"{engine_path}: sha256 {digest[:12]} does not match {what} ({want[:12]})",
                                  hint="the engine file changed after it was built; run again to rebuild")
        if meta.get("backend") == "tensorrt":
            _reserialize_check(engine_path)
        locked = ctx.lock_digests.get(f"{eng_in.stage}.engine")
        if locked and locked != digest:
            ctx.log.info("engine differs from the one in the lock file (%s): it was rebuilt", locked[:12])
        precision = str(meta.get("precision") or "fp32")
        max_batch = int(meta.get("max_batch") or 1)
        batches = p.get("batches") or sorted({1, max_batch})
        too_big = [b for b in batches if b > max_batch]
        if too_big:
            raise StageFailed(f"verify batches {too_big} exceed the engine's max_batch {max_batch}")
        pb, signature = graph_and_signature(ctx.one("reference"))
        spec = p.get("samples") or {"source": "random", "count": max(batches), "seed": 0, "low": 0.0, "high": 1.0}
        samples = load_inputs(spec, signature["inputs"], base_dir=ctx.base_dir)
        n = len(next(iter(samples.values())))
        engine = _open_engine(engine_path, meta)
        out_names = [o["name"] for o in signature["outputs"]]
        tol = DEFAULTS.get(precision, DEFAULTS["fp32"])
        atol = p.get("tolerance", {}).get("atol", tol["atol"])
        rtol = p.get("tolerance", {}).get("rtol", tol["rtol"])
        gates = {**tol["gates"], **p.get("gates", {})}
        from trtpipe import metrics

        rows: list[dict[str, Any]] = []
        with tf.TFRunner(pb, out_names) as ref_runner:
            for b in batches:
                idx = np.arange(b) % n
                feeds = {k: v[idx] for k, v in samples.items()}
                ref, test = ref_runner.run(feeds), engine(feeds)
                for row in metrics.compare_outputs(ref, test, atol=atol, rtol=rtol, min_cosine=gates.get("cosine"),
                                                   metrics=_metric_names(p)):
                    rows.append({"batch": b, **row})
            extra = _task_metrics(p, spec, ctx.base_dir, samples, ref_runner, engine, max_batch, gates)
        ok = all(r["ok"] for r in rows) and all(m.get("ok", True) for m in extra.values())
        report = {"ok": ok, "precision": precision, "backend": meta.get("backend"), "engine_sha256": digest,
                  "batches": batches, "samples": n, "tolerance": {"atol": atol, "rtol": rtol}, "gates": gates,
                  "rows": rows, "task_metrics": extra}
        out = ctx.out("report", ".json")
        atomic_write_json(out, report)
        ctx.log.info("verification report: %s", out.read_text())
        if not ok:
            raise StageFailed(_failure_table(report), hint="inspect the log; loosen `tolerance`/`gates` only if the "
                                                           "difference is expected for this precision")
        return {"report": out}


def _reserialize_check(path: Path) -> None:
    """Deserialize with a fresh runtime and serialize again: the bytes must come back identical."""
    from trtpipe.backends import tensorrt

    engine = tensorrt.load_engine(path)
    again = bytes(engine.serialize())
    if again != path.read_bytes():
        raise StageFailed(f"{path}: the engine re-serializes to different bytes ({len(again)} vs "
                          f"{path.stat().st_size}): the file on disk is not what TensorRT loads",
                          hint="rebuild the engine; check the file was copied in binary mode")


def _metric_names(p: dict[str, Any]) -> list[str]:
    names = [m for m in p.get("metrics", ["max_abs", "max_rel", "cosine"]) if m in ("max_abs", "max_rel", "cosine", "top1_agreement")]
    return names or ["max_abs", "max_rel", "cosine"]


def _open_engine(path: Path, meta: dict[str, Any]) -> Any:
    if meta.get("backend") == "tensorrt":
        from trtpipe.backends import tensorrt

        return lambda feeds: tensorrt.run_engine(path, feeds)
    from trtpipe.backends import onnxruntime as ort_backend

    engine = ort_backend.Engine(path, intra_op_threads=(meta.get("build_params") or {}).get("intra_op_threads"))
    return engine.run


def _batched(fn: Any, samples: dict[str, np.ndarray], max_batch: int) -> dict[str, np.ndarray]:
    import numpy as np

    n = len(next(iter(samples.values())))
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, n, max_batch):
        parts.append(fn({k: v[start:start + max_batch] for k, v in samples.items()}))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _task_metrics(p: dict[str, Any], spec: dict[str, Any], base_dir: Path, samples: dict[str, np.ndarray],
                  ref_runner: Any, engine: Any, max_batch: int, gates: dict[str, Any]) -> dict[str, Any]:
    from trtpipe import metrics

    wanted = set(p.get("metrics", []))
    det = p.get("detection", {"scores": "scores", "boxes": "boxes", "top_k": 10, "iou_threshold": 0.5})
    need_full = wanted & {"top1_agreement", "detection", "accuracy"} or spec.get("labels")
    if not need_full:
        return {}
    ref = _batched(ref_runner.run, samples, max_batch)
    test = _batched(engine, samples, max_batch)
    out: dict[str, Any] = {}
    if "detection" in wanted:
        if det["scores"] not in ref or det["boxes"] not in ref:
            raise StageFailed(f"metric 'detection' needs outputs '{det['scores']}' and '{det['boxes']}'; "
                              f"the model has {', '.join(ref)}", hint="set verify `detection: {scores, boxes}`")
        d = metrics.detection_agreement(ref[det["scores"]], ref[det["boxes"]], test[det["scores"]],
                                        test[det["boxes"]], top_k=det["top_k"], iou_threshold=det["iou_threshold"])
        ok = d["mean_iou_all"] >= gates.get("detection_iou", 0.0) and d["matched_fraction"] >= gates.get("detection_match", 0.0)
        out["detection"] = {**d, "ok": bool(ok)}
    if "top1_agreement" in wanted or spec.get("labels"):
        name = next(iter(ref))
        agree = metrics.top1_agreement(ref[name], test[name])
        out["top1_agreement"] = {"output": name, "value": agree, "ok": bool(agree >= gates.get("top1_agreement", 0.0))}
    if spec.get("labels"):
        labels = _labels(spec, base_dir, len(next(iter(samples.values()))))
        name = next(iter(ref))
        acc_ref, acc_test = metrics.top1_accuracy(ref[name], labels), metrics.top1_accuracy(test[name], labels)
        drop = acc_ref - acc_test
        out["accuracy"] = {"output": name, "reference": acc_ref, "engine": acc_test, "drop": drop,
                           "ok": bool(drop <= gates.get("accuracy_drop", 1.0))}
    return out


def _labels(spec: dict[str, Any], base_dir: Path, n: int) -> np.ndarray:
    import numpy as np

    path = base_dir / spec["source"]
    if path.suffix != ".npz" or spec.get("shuffle"):
        raise StageFailed(f"samples.labels needs an unshuffled .npz source, got {spec['source']}")
    with np.load(path, allow_pickle=False) as data:
        if spec["labels"] not in data:
            raise InvalidArtifact(f"{path}: has no array '{spec['labels']}' (has {', '.join(data.files)})", path=str(path))
        return np.asarray(data[spec["labels"]])[:n]


def _failure_table(report: dict[str, Any]) -> str:
    bad = [r for r in report["rows"] if not r["ok"]]
    lines = [f"verification failed for the {report['precision']} engine ({report['backend']}):"]
    if bad:
        lines.append(f"  {'output':<20} {'batch':>5} {'max_abs':>10} {'max_rel':>10} {'cosine':>9}")
        for r in sorted(bad, key=lambda r: -float(r.get("max_abs") or 0))[:8]:
            lines.append(f"  {r['output']:<20} {r['batch']:>5} {r.get('max_abs', float('nan')):>10.3g} "
                         f"{r.get('max_rel', float('nan')):>10.3g} {r.get('cosine', float('nan')):>9.5f}"
                         + (f"  ({r['error']})" if r.get("error") else ""))
        lines.append(f"  limits: atol={report['tolerance']['atol']} rtol={report['tolerance']['rtol']} "
                     f"cosine>={report['gates'].get('cosine')}")
    for name, m in report["task_metrics"].items():
        if not m.get("ok", True):
            lines.append(f"  {name}: {', '.join(f'{k}={v:.4g}' for k, v in m.items() if isinstance(v, float))} "
                         f"(gates: {report['gates']})")
    return "\n".join(lines)
