"""The default pipeline from an empty store: time per stage, total, and trtpipe's own overhead.

Copies the pipeline file into a temporary store (same inputs, empty `store:`), runs it once with
`--json`, and splits the wall time into time inside the stages' framework work and everything
else (process start, validation, hashing, storing, reporting) -- trtpipe's own overhead.

    python benchmarks/cold_run.py [--pipeline pipeline.yaml]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from _common import ROOT, TRTPIPE


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", type=Path, default=ROOT / "pipeline.yaml")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="trtpipe-cold-") as tmp:
        text = args.pipeline.read_bytes().decode()
        lines = [f"store: {tmp}/store" if line.startswith("store:") else line for line in text.splitlines()]
        cold = args.pipeline.parent / f".cold-run-{Path(tmp).name}.yaml"
        cold.write_bytes(("\n".join(lines) + "\n").encode())
        try:
            start = time.perf_counter()
            proc = subprocess.run([*TRTPIPE, "run", str(cold), "--json"], cwd=ROOT, capture_output=True, check=True)
            wall = time.perf_counter() - start
        finally:
            cold.unlink(missing_ok=True)
            cold.with_suffix(".lock").unlink(missing_ok=True)
    result = json.loads(proc.stdout)
    print(f"{'stage':<24} {'kind':<17} {'status':<9} {'seconds':>8} {'in stage':>9}")
    for st in result["stages"]:
        print(f"{st['name']:<24} {st['kind']:<17} {st['status']:<9} {st['seconds']:>8.2f} {st.get('run_seconds', 0):>9.2f}")
    in_stages = sum(st.get("run_seconds", 0.0) for st in result["stages"])
    print(f"total wall {wall:.2f} s; inside stage work {in_stages:.2f} s; "
          f"trtpipe overhead {wall - in_stages:.2f} s ({(wall - in_stages) / wall:.1%}, incl. Python start-up)")


if __name__ == "__main__":
    main()
