"""Latency of the default pipeline's fp32, fp16 and int8 ONNX Runtime engines on this CPU.

Batch 1 and max_batch, measured side by side in one run (rounds alternate between engines so
machine noise hits all of them), with each engine's ratio to fp32. Builds the pipeline first if
needed (cheap when cached).

    python benchmarks/precision.py [--rounds 5] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from _common import ROOT, ensure_built, median

from trtpipe.backends.onnxruntime import Engine
from trtpipe.bench.measure import measure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", type=Path, default=ROOT / "pipeline.yaml")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0, help="measurement window per engine per round")
    args = ap.parse_args()
    lock = ensure_built(args.pipeline)
    engines: dict[str, Engine] = {}
    max_batch = 1
    for name, st in lock["stages"].items():
        if st["kind"] == "serialize" and name.startswith("serialize@"):
            meta = json.loads((args.pipeline.parent / st["outputs"]["metadata"]["path"]).read_bytes())
            engines[meta["precision"]] = Engine(args.pipeline.parent / st["outputs"]["engine"]["path"])
            max_batch = int(meta["max_batch"])
    shape = engines["fp32"].inputs[0]["shape"]
    rng = np.random.default_rng(0)
    data = rng.random((max_batch, *shape[1:]), dtype=np.float32)
    name = engines["fp32"].inputs[0]["name"]
    results: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for batch in (1, max_batch):
            feeds = {name: np.ascontiguousarray(data[:batch])}
            for prec, eng in engines.items():
                lat = measure(lambda eng=eng, feeds=feeds: eng.run(feeds), warmup_s=0.1,
                              min_duration_s=args.seconds, min_iterations=5)
                results.setdefault((prec, batch), []).append(float(np.median(lat)))
    print(f"{'precision':<10} {'batch':>5} {'median ms':>10} {'vs fp32':>8}")
    for batch in (1, max_batch):
        base = median(results[("fp32", batch)])
        for prec in engines:
            ms = median(results[(prec, batch)])
            print(f"{prec:<10} {batch:>5} {ms * 1000:>10.2f} {base / ms:>7.2f}x")
    print("(ratio > 1: faster than fp32; medians over rounds of per-round medians)")


if __name__ == "__main__":
    main()
