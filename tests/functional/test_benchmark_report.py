"""The benchmark stage and the HTML run report on the tiny pipeline (real TF and ORT)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import struct
from pathlib import Path

from trtpipe import api, cli

EXTRA = """\
  bench:
    kind: benchmark
    inputs: {engines: [serialize], reference: freeze}
    batches: [1, 2, 4]
    warmup_s: 0.0
    min_duration_s: 0.05
    min_iterations: 3
"""


def _with_bench(tiny_copy: Path) -> Path:
    pipeline = tiny_copy
    pipeline.write_bytes(pipeline.read_bytes() + EXTRA.encode())
    return pipeline


def test_benchmark_measures_every_run_and_reports(tiny_copy: Path) -> None:
    pipeline = _with_bench(tiny_copy)
    result = api.run(pipeline)
    assert result.ok, [(s.name, s.error) for s in result.stages]
    states = {s.name: s.status for s in result.stages}
    assert states["bench"] == "measured"
    assert all(v == "cached" for k, v in states.items() if k != "bench")
    bench = next(s for s in result.stages if s.name == "bench")
    res = json.loads(Path(bench.outputs["results"]["path"]).read_bytes())
    assert set(res["series"]) == {"onnxruntime fp32", "tensorflow fp32"}
    for points in res["series"].values():
        assert [p["batch"] for p in points] == [1, 2, 4]
        for p in points:
            assert p["iterations"] >= 3 and p["p99_ms"] >= p["median_ms"] >= p["min_ms"] > 0
    rows = list(csv.DictReader(io.StringIO(Path(bench.outputs["table"]["path"]).read_text())))
    assert len(rows) == 6 and {r["batch"] for r in rows} == {"1", "2", "4"}
    png = Path(bench.outputs["plot"]["path"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1200, 500)

    # `trtpipe report` rebuilds the page from the store, running nothing.
    assert cli.main(["report", str(pipeline)]) == 0
    page = (tiny_copy.parent / "artifacts" / "tiny" / "report.html").read_text(encoding="utf-8")
    for st in result.stages:
        assert st.name in page
    assert "onnxruntime fp32" in page and "tensorflow fp32" in page
    assert "data:image/png;base64," in page

    # A second run re-measures (cache: false) but builds nothing.
    again = api.run(pipeline)
    assert {s.name: s.status for s in again.stages}["bench"] == "measured"
    assert all(s.status == "cached" for s in again.stages if s.name != "bench")


def test_benchmark_batches_above_max_batch_fail_clearly(tiny_copy: Path) -> None:
    pipeline = _with_bench(tiny_copy)
    pipeline.write_bytes(pipeline.read_bytes().replace(b"batches: [1, 2, 4]", b"batches: [1, 64]"))
    result = api.run(pipeline)
    bench = next(s for s in result.stages if s.name == "bench")
    assert bench.status == "failed"
    assert "64" in (bench.error or "") and "max_batch" in (bench.error or "")


def test_benchmark_of_a_corrupt_engine_is_rebuilt_not_measured(tiny_copy: Path) -> None:
    pipeline = _with_bench(tiny_copy)
    first = api.run(pipeline)
    engine = next(s for s in first.stages if s.name == "serialize").outputs["engine"]["sha256"]
    obj = tiny_copy.parent / "artifacts" / "objects" / engine[:2] / engine[2:]
    obj.chmod(0o644)
    obj.write_bytes(b"not an engine")
    second = api.run(pipeline)
    states = {s.name: s.status for s in second.stages}
    # build and serialize share that object (same bytes); whichever record is checked first rebuilds
    # it, the benchmark then measures a good engine.
    assert "built" in (states["build"], states["serialize"]) and states["bench"] == "measured"
    # The engine the benchmark measured is intact (a rebuilt engine may be a new object; either
    # way the corrupt bytes were never served).
    measured = next(s for s in second.stages if s.name == "serialize").outputs["engine"]["sha256"]
    path = tiny_copy.parent / "artifacts" / "objects" / measured[:2] / measured[2:]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == measured
