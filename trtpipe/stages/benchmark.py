"""``benchmark``: the seed's batch x precision table, measured like trtexec.

For each engine: a sweep over batch sizes with a warm-up, a minimum duration and a minimum
iteration count per point; latency mean/median/p90/p95/p99, throughput, RSS and a stability
figure. The same sweep on TensorFlow running the frozen graph gives the baseline column and the
speedup. Re-measures on every run unless ``cache: true`` (a cached number from another machine
or moment would be a lie). Outputs JSON + CSV results and a PNG plot.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where it is used: a cached run never needs it
    import numpy as np

from trtpipe.backends.fingerprint import framework_versions, hardware
from trtpipe.fsutil import atomic_write_bytes, atomic_write_json
from trtpipe.stages.base import FROZEN, RELEASE, REPORT, Role, Stage, StageContext, register
from trtpipe.stages.common import graph_and_signature, read_json

BASELINE = "tensorflow fp32"


@register
class Benchmark(Stage):
    kind = "benchmark"
    VERSION = 1
    requires = ("matplotlib",)  # + the engines' runtimes, checked when they are opened
    roles = {"engines": Role((RELEASE,), many=True), "reference": Role((FROZEN,))}
    outputs = {"results": REPORT, "table": REPORT, "plot": REPORT}
    cacheable = False

    def cache_enabled(self, params: dict[str, Any]) -> bool:
        return bool(params.get("cache", False))

    def env_keys(self, params: dict[str, Any]) -> dict[str, Any]:
        hw = hardware()
        return {**framework_versions("onnxruntime", "tensorflow"), "cpu": hw.get("cpu"), "cores": hw.get("cores")}

    def run(self, ctx: StageContext) -> dict[str, Path]:
        from trtpipe.bench.stats import marginal_cost, speedups
        from trtpipe.bench.sweep import batches_from_spec, sweep

        p = ctx.params
        settings = {"warmup_s": p["warmup_s"], "min_duration_s": p["min_duration_s"],
                    "min_iterations": p["min_iterations"]}
        engines = ctx.many("engines")
        metas = [read_json(e.file("metadata"), "engine metadata") for e in engines]
        max_batch = min(int(m.get("max_batch") or 1) for m in metas)
        spec = p.get("batches") or sorted({1, 2, 4, max_batch} & set(range(1, max_batch + 1)))
        batches = batches_from_spec(spec, max_batch)
        inputs = metas[0]["inputs"]
        import numpy as np

        rng = np.random.default_rng(0)
        samples = {i["name"]: rng.random((max(batches), *[d or 1 for d in i["shape"][1:]]), dtype=np.float32)
                   .astype(i.get("dtype", "float32")) for i in inputs}

        series: dict[str, list[dict[str, Any]]] = {}
        labels = _labels(engines, metas)
        for inp, meta, label in zip(engines, metas, labels, strict=False):
            run = _runner(inp.file("engine"), meta)
            ctx.log.info("benchmark %s: batches %s", label, batches)
            points = sweep(lambda b, run=run: _bind(run, samples, b), batches, settings=settings)
            # Memory: process RSS for ONNX Runtime; for TensorRT also the engine's device memory.
            extra = {"device_memory_bytes": meta["device_memory_bytes"]} if meta.get("device_memory_bytes") else {}
            series[label] = [{**pt, **extra, "precision": meta.get("precision"), "backend": meta.get("backend")}
                             for pt in points]
        if p["baseline"] == "tensorflow" and "reference" in ctx.inputs:
            from trtpipe.backends import tf

            pb, signature = graph_and_signature(ctx.one("reference"))
            with tf.TFRunner(pb, [o["name"] for o in signature["outputs"]]) as ref:
                points = sweep(lambda b: _bind(ref.run, samples, b), batches, settings=settings)
            series[BASELINE] = [{**pt, "precision": "fp32", "backend": "tensorflow"} for pt in points]
        results = {"format": "trtpipe-benchmark/1", "batches": batches, "settings": settings,
                   "machine": hardware(), "versions": framework_versions("onnxruntime", "tensorflow", "tensorrt"),
                   "series": series, "marginal_cost": {k: marginal_cost(v) for k, v in series.items()},
                   "speedup": {k: {str(b): s for b, s in v.items()} for k, v in
                               speedups(series, BASELINE if BASELINE in series else None).items()}}
        out_json = ctx.out("results", ".json")
        atomic_write_json(out_json, results)
        out_csv = ctx.out("table", ".csv")
        atomic_write_bytes(out_csv, _csv(series, results["speedup"]).encode())
        out_png = ctx.out("plot", ".png")
        from trtpipe.plots import plot_sweep

        plot_sweep(series, out_png, title=f"{ctx.pipeline}: latency and throughput by batch")
        return {"results": out_json, "table": out_csv, "plot": out_png}


def _labels(engines: list[Any], metas: list[dict[str, Any]]) -> list[str]:
    base = [f"{m.get('backend')} {m.get('precision')}" for m in metas]
    return [f"{b} ({e.stage})" if base.count(b) > 1 else b for b, e in zip(base, engines, strict=False)]


def _runner(path: Path, meta: dict[str, Any]) -> Any:
    if meta.get("backend") == "tensorrt":
        from trtpipe.backends import tensorrt

        return lambda feeds: tensorrt.run_engine(path, feeds)
    from trtpipe.backends import onnxruntime as ort_backend

    threads = (meta.get("build_params") or {}).get("intra_op_threads")  # the engine's declared threading
    return ort_backend.Engine(path, intra_op_threads=threads).run


def _bind(run: Any, samples: dict[str, np.ndarray], batch: int) -> Any:
    import numpy as np

    feeds = {k: np.ascontiguousarray(v[:batch]) for k, v in samples.items()}
    return lambda: run(feeds)


def _csv(series: dict[str, list[dict[str, Any]]], speedup: dict[str, dict[str, Any]]) -> str:
    buf = io.StringIO()
    cols = ["series", "backend", "precision", "batch", "mean_ms", "median_ms", "p90_ms", "p95_ms", "p99_ms",
            "throughput", "cv", "noisy", "rss_bytes", "iterations", "speedup_vs_tensorflow"]
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for label, points in series.items():
        for pt in points:
            row = {**pt, "series": label, "speedup_vs_tensorflow": speedup.get(label, {}).get(str(pt["batch"]))}
            w.writerow([row.get(c) for c in cols])
    return buf.getvalue()
