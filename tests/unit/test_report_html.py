"""The HTML run report: complete, escaped, self-contained and well-formed; the console table."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest

from trtpipe.bench import marginal_cost, summarize
from trtpipe.errors import ConfigError
from trtpipe.plots import sweep_png_bytes
from trtpipe.report_html import STATUS_COLOURS, dag_svg, format_console_table, render_report

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Checker(HTMLParser):
    """Checks that every element is closed in order, and collects table rows and image sources."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.rows: list[list[str]] = []
        self.imgs: list[str] = []
        self.tags: list[str] = []
        self._cell: list[str] | None = None
        self._row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs).get("src") or "")
        if tag == "tr":
            self._row = []
        if tag in ("td", "th"):
            self._cell = []
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(html: str) -> Checker:
    checker = Checker()
    checker.feed(html)
    checker.close()
    assert checker.problems == []
    assert checker.stack == []
    return checker


def make_run(png: bytes | None = None) -> dict:
    rng = np.random.default_rng(11)
    series = {
        label: [summarize(list(0.0004 + per * b + rng.exponential(5e-5, 25)), b) for b in (1, 2, 4)]
        for label, per in (("onnxruntime fp32", 0.001), ("onnxruntime int8", 0.0006), ("tensorflow", 0.002))
    }
    for p in series["onnxruntime int8"]:
        p["rss_bytes"], p["peak_rss_bytes"] = 300 << 20, 412 << 20
    digest = "0123456789abcdef" * 4
    stages = [
        {"name": "freeze", "kind": "freeze", "status": "cached", "seconds": 0.01, "inputs": [],
         "outputs": {"pb": {"path": "artifacts/ssd/freeze/model-0123456789ab.pb", "sha256": digest},
                     "signature": {"path": "artifacts/ssd/freeze/sig.json", "sha256": digest[::-1]}},
         "error": None},
        {"name": "to_onnx", "kind": "onnx", "status": "built", "seconds": 3.25, "inputs": ["freeze"],
         "outputs": {"onnx": {"path": "artifacts/ssd/to_onnx/model.onnx", "sha256": digest}}, "error": None},
        {"name": "to_uff", "kind": "uff", "status": "failed", "seconds": 0.5, "inputs": ["freeze"],
         "outputs": {}, "error": "node 'NMS' <TRT_NMS> & friends: unsupported"},
        {"name": "build <int8>", "kind": "build", "status": "skipped", "seconds": None, "inputs": ["to_uff"],
         "outputs": {}, "error": None},
        {"name": "verify", "kind": "verify", "status": "built", "seconds": 1.5, "inputs": ["to_onnx"],
         "outputs": {}, "error": None},
        {"name": "bench", "kind": "benchmark", "status": "built", "seconds": 12.0,
         "inputs": ["to_onnx", "freeze"], "outputs": {}, "error": None},
    ]
    return {
        "pipeline": "ssd & friends",
        "generated": "2026-11-28T17:30:00+00:00",
        "machine": {"cpu": "x86_64 <avx2>", "cores": 2},
        "versions": {"trtpipe": "0.1.0", "onnxruntime": "1.23"},
        "stages": stages,
        "verifications": [{"stage": "verify", "precision": "fp32", "ok": False, "rows": [
            {"output": "scores", "max_abs": 1.5e-6, "max_rel": 2e-5, "threshold": 1e-4, "ok": True},
            {"output": "boxes", "max_abs": 0.25, "max_rel": 0.1, "threshold": 1e-4, "ok": False}]}],
        "benchmarks": [{"stage": "bench", "series": series, "png": png,
                        "marginal_cost": {k: marginal_cost(v) for k, v in series.items()}}],
    }


def test_report_is_well_formed_and_complete() -> None:
    run = make_run()
    html = render_report(run)
    assert html.startswith("<!DOCTYPE html>")
    doc = parse(html)
    assert "script" not in doc.tags  # no JS, and the error text's <TRT_NMS> stayed text
    text = " ".join(" ".join(r) for r in doc.rows)
    for stage in run["stages"]:
        assert stage["name"] in text  # decoded cell text holds every stage name
    assert "node 'NMS' <TRT_NMS> & friends: unsupported" in text
    assert "model-0123456789ab.pb" in text and "0123456789ab" in text
    assert "artifacts/ssd" not in text  # file names, not directories
    # Every benchmark point appears as a row: label, batch, median, speedup.
    for label, points in run["benchmarks"][0]["series"].items():
        for p in points:
            row = next(r for r in doc.rows if r[:2] == [label, str(p["batch"])])
            assert f"{p['median_ms']:.4g}" in row and f"{p['p99_ms']:.4g}" in row
            assert row[-2].endswith("×")
            assert row[-1] == ("noisy" if p["noisy"] else "")
    int8 = next(r for r in doc.rows if r[0] == "onnxruntime int8")
    assert int8[7] == "412" and int8[8] == "int8"
    assert next(r for r in doc.rows if r[0] == "tensorflow")[-2] == "1.00×"
    # Verification rows: metric columns, threshold and verdict.
    boxes = next(r for r in doc.rows if r and r[0] == "boxes")
    assert boxes == ["boxes", "0.25", "0.1", "0.0001", "FAIL"]
    assert "each extra sample adds" in html


def test_report_escapes_everything() -> None:
    html = render_report(make_run())
    assert "<TRT_NMS>" not in html and "&lt;TRT_NMS&gt;" in html
    assert "ssd &amp; friends" in html and "ssd & friends" not in html
    assert "x86_64 &lt;avx2&gt;" in html
    assert "build &lt;int8&gt;" in html


def test_report_is_self_contained_with_embedded_png() -> None:
    run = make_run()
    png = sweep_png_bytes(run["benchmarks"][0]["series"], title="bench", width_px=400, height_px=200)
    run["benchmarks"][0]["png"] = png
    doc = parse(render_report(run))
    assert len(doc.imgs) == 1
    prefix = "data:image/png;base64,"
    assert doc.imgs[0].startswith(prefix)
    assert base64.b64decode(doc.imgs[0][len(prefix):]) == png
    assert not {"link", "script", "iframe"} & set(doc.tags)
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", render_report(run))


def test_dag_svg_layout_and_colours() -> None:
    run = make_run()
    html = render_report(run)
    svg_text = html[html.index("<svg"):html.index("</svg>") + 6]
    root = ET.fromstring(svg_text)  # the inline SVG is valid XML on its own
    ns = {"s": "http://www.w3.org/2000/svg"}
    groups = root.findall("s:g", ns)
    assert len(groups) == len(run["stages"])
    boxes = {}
    for g in groups:
        name = g.find("s:title", ns).text.split(":")[0]  # type: ignore[union-attr]
        rect = g.find("s:rect", ns)
        boxes[name] = (float(rect.get("x")), float(rect.get("y")), rect.get("stroke"))  # type: ignore[union-attr,arg-type]
    # One column per topological level.
    assert boxes["freeze"][0] < boxes["to_onnx"][0] == boxes["to_uff"][0]
    assert boxes["to_uff"][0] < boxes["build <int8>"][0] == boxes["verify"][0] == boxes["bench"][0]
    assert boxes["to_onnx"][1] != boxes["to_uff"][1]
    for stage in run["stages"]:
        assert boxes[stage["name"]][2] == STATUS_COLOURS[stage["status"]][1]
    edges = [p for p in root.iter("{http://www.w3.org/2000/svg}path") if p.get("marker-end")]
    assert len(edges) == sum(len(s["inputs"]) for s in run["stages"])


def test_dag_rejects_unknown_inputs_and_cycles() -> None:
    with pytest.raises(ConfigError, match="stage 'b' lists input 'nope'"):
        dag_svg([{"name": "a", "inputs": []}, {"name": "b", "inputs": ["nope"]}])
    with pytest.raises(ConfigError, match="cycle"):
        dag_svg([{"name": "a", "inputs": ["b"]}, {"name": "b", "inputs": ["a"]}])
    with pytest.raises(ConfigError, match="'stages'"):
        render_report({"pipeline": "p"})


def test_minimal_run_renders() -> None:
    doc = parse(render_report({"pipeline": "p", "stages": []}))
    assert doc.rows == [["stage", "kind", "status", "seconds", "outputs"]]


def test_console_table_lists_every_point() -> None:
    console_mod = pytest.importorskip("rich.console")
    series = make_run()["benchmarks"][0]["series"]
    console = console_mod.Console(record=True, width=200, color_system=None)
    console.print(format_console_table(series))
    out = console.export_text()
    lines = out.splitlines()
    for label, points in series.items():
        for p in points:
            assert any(line.split("│")[1].strip() == label and line.split("│")[2].strip() == str(p["batch"])
                       and f"{p['median_ms']:.3f}" in line for line in lines if line.count("│") > 3)
    assert "412" in out and "1.00×" in out
