"""The run report: one self-contained HTML page (inline CSS and SVG, PNGs as data: URIs).

``render_report(run)`` takes the plain ``run`` dict the runner assembles (contract in
docs/benchmark.md) and returns the page as a string; the caller writes it (atomically, as UTF-8
bytes). Every value taken from ``run`` is HTML-escaped. ``format_console_table`` gives the same
benchmark numbers as a ``rich`` table for the terminal.
"""

from __future__ import annotations

import base64
import graphlib
import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from trtpipe.backends._imports import require
from trtpipe.bench.stats import speedups
from trtpipe.errors import ConfigError

#: Fill / stroke colour per stage status (unknown statuses are drawn grey).
STATUS_COLOURS = {
    "built": ("#e3f4e4", "#2e7d32"),
    "cached": ("#e3eefb", "#1565c0"),
    "measured": ("#efe7fb", "#5e35b1"),
    "failed": ("#fde7e7", "#c62828"),
    "skipped": ("#f1f1f1", "#8a8a8a"),
}
_PRECISIONS = ("fp32", "fp16", "bf16", "tf32", "int8", "fp8", "best")

# DAG layout, in SVG user units (px).
_BOX_W, _BOX_H, _GAP_X, _GAP_Y, _PAD = 180, 52, 56, 18, 12

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d1d1f}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:18px 0 6px}table{border-collapse:collapse;margin:6px 0 12px}
th,td{border:1px solid #d6d6d6;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#2e7d32;font-weight:600}.bad{color:#c62828;font-weight:600}.muted{color:#6e6e73}
.status-built{color:#2e7d32}.status-cached{color:#1565c0}.status-failed{color:#c62828}
.status-skipped{color:#8a8a8a}.status-measured{color:#5e35b1}code{font-size:12px}dl{display:grid;grid-template-columns:max-content auto;
gap:2px 12px;margin:6px 0}dt{font-weight:600}dd{margin:0}img{max-width:100%;height:auto}
pre.err{background:#fdf1f1;padding:6px;white-space:pre-wrap}
""".strip()


def render_report(run: Mapping[str, Any]) -> str:
    """Render ``run`` (see module docstring) as a complete, self-contained HTML document."""
    for key in ("pipeline", "stages"):
        if key not in run:
            raise ConfigError(f"run report: the run dict has no {key!r}",
                              hint="build it with the keys pipeline, generated, machine, versions, "
                                   "stages, verifications, benchmarks")
    stages = list(run["stages"])
    title = f"trtpipe run: {run['pipeline']}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">generated {_e(run.get("generated", "?"))}</p>',
        _header(run),
        '<h2 id="graph">Pipeline graph</h2>', dag_svg(stages),
        '<h2 id="stages">Stages</h2>', _stage_table(stages),
        _verifications(run.get("verifications") or []),
        _benchmarks(run.get("benchmarks") or []),
        "</body>", "</html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _num(value: object, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else ("yes" if value else "no")
    if isinstance(value, (int, float)):
        return f"{value:.{digits}g}" if isinstance(value, float) else str(value)
    return _e(value)


def _header(run: Mapping[str, Any]) -> str:
    out = []
    for heading, key in (("Machine", "machine"), ("Versions", "versions")):
        items = run.get(key) or {}
        rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items.items())
        out.append(f"<h3>{heading}</h3><dl>{rows}</dl>" if rows else f"<h3>{heading}</h3><p class=\"muted\">—</p>")
    return "\n".join(out)


def _levels(stages: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Topological level of each stage: 0 for sources, else 1 + the deepest upstream level."""
    names = [str(s["name"]) for s in stages]
    deps: dict[str, list[str]] = {}
    for s in stages:
        ups = [str(u) for u in s.get("inputs") or []]
        for up in ups:
            if up not in names:
                raise ConfigError(f"run report: stage {s['name']!r} lists input {up!r}, which is not a "
                                  f"stage of this run", hint="inputs must name upstream stages")
        deps[str(s["name"])] = ups
    try:
        order = list(graphlib.TopologicalSorter(deps).static_order())
    except graphlib.CycleError as exc:
        raise ConfigError(f"run report: stage inputs form a cycle: {' -> '.join(exc.args[1])}") from exc
    level: dict[str, int] = {}
    for name in order:
        level[name] = 1 + max((level[u] for u in deps[name]), default=-1)
    return level


def dag_svg(stages: Sequence[Mapping[str, Any]]) -> str:
    """Inline SVG of the stage DAG: one column per topological level, edges upstream → downstream."""
    if not stages:
        return '<p class="muted">no stages</p>'
    level = _levels(stages)
    columns: dict[int, list[Mapping[str, Any]]] = {}
    for s in stages:  # keep the run's (topological) order within a column
        columns.setdefault(level[str(s["name"])], []).append(s)
    pos: dict[str, tuple[int, int]] = {}
    for col, members in columns.items():
        for row, s in enumerate(members):
            pos[str(s["name"])] = (_PAD + col * (_BOX_W + _GAP_X), _PAD + row * (_BOX_H + _GAP_Y))
    width = _PAD * 2 + len(columns) * _BOX_W + (len(columns) - 1) * _GAP_X
    height = _PAD * 2 + max(len(m) for m in columns.values()) * (_BOX_H + _GAP_Y) - _GAP_Y
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="pipeline graph" '
           f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'style="max-width:100%;height:auto" '
           f'font-family="system-ui,sans-serif" font-size="12">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#777"></path>'
           '</marker></defs>']
    for s in stages:
        x2, y2 = pos[str(s["name"])]
        for up in s.get("inputs") or []:
            x1, y1 = pos[str(up)]
            sx, sy, tx, ty = x1 + _BOX_W, y1 + _BOX_H / 2, x2, y2 + _BOX_H / 2
            mid = (sx + tx) / 2
            out.append(f'<path d="M{sx},{sy} C{mid},{sy} {mid},{ty} {tx},{ty}" fill="none" '
                       f'stroke="#777" stroke-width="1.4" marker-end="url(#arrow)"></path>')
    for s in stages:
        name, status = str(s["name"]), str(s.get("status", "?"))
        x, y = pos[name]
        fill, stroke = STATUS_COLOURS.get(status, ("#f1f1f1", "#8a8a8a"))
        secs = s.get("seconds")
        detail = f"{s.get('kind', '?')} · {status}" + (f" · {secs:.2f} s" if isinstance(secs, (int, float)) else "")
        shown = name if len(name) <= 24 else name[:23] + "…"
        out.append(f'<g class="stage status-{_e(status)}"><title>{_e(name)}: {_e(detail)}</title>'
                   f'<rect x="{x}" y="{y}" width="{_BOX_W}" height="{_BOX_H}" rx="7" fill="{fill}" '
                   f'stroke="{stroke}" stroke-width="2"></rect>'
                   f'<text x="{x + 10}" y="{y + 21}" font-weight="600">{_e(shown)}</text>'
                   f'<text x="{x + 10}" y="{y + 39}" fill="#555">{_e(detail)}</text></g>')
    out.append("</svg>")
    return "\n".join(out)


def _stage_table(stages: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for s in stages:
        outputs = s.get("outputs") or {}
        files = "<br>".join(
            f"{_e(name)}: <code>{_e(_basename(o.get('path', '')))}</code> "
            f"<span class=\"muted\">{_e(str(o.get('sha256', ''))[:12])}</span>"
            for name, o in outputs.items()) or '<span class="muted">—</span>'
        status = str(s.get("status", "?"))
        rows.append(f"<tr><td>{_e(s['name'])}</td><td>{_e(s.get('kind', '?'))}</td>"
                    f'<td class="status-{_e(status)}">{_e(status)}</td>'
                    f'<td class="num">{_seconds(s.get("seconds"))}</td><td>{files}</td></tr>')
        if s.get("error"):
            rows.append(f'<tr><td colspan="5"><pre class="err">{_e(s["error"])}</pre></td></tr>')
    return ("<table><thead><tr><th>stage</th><th>kind</th><th>status</th><th>seconds</th>"
            "<th>outputs</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _seconds(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"


def _basename(path: object) -> str:
    return str(path).replace("\\", "/").rsplit("/", 1)[-1]


def _ok(value: object) -> str:
    if value is None:
        return '<span class="muted">—</span>'
    return '<span class="ok">ok</span>' if value else '<span class="bad">FAIL</span>'


def _verifications(items: Sequence[Mapping[str, Any]]) -> str:
    if not items:
        return ""
    out = ['<h2 id="verification">Verification</h2>']
    for v in items:
        out.append(f"<h3>{_e(v.get('stage', '?'))} <span class=\"muted\">({_e(v.get('precision', '?'))})"
                   f"</span> {_ok(v.get('ok'))}</h3>")
        rows = list(v.get("rows") or [])
        # Columns: output first, ok last, every other key in first-seen order.
        cols: list[str] = []
        for r in rows:
            cols += [k for k in r if k not in cols and k not in ("output", "ok")]
        head = "".join(f"<th>{_e(c)}</th>" for c in ["output", *cols, "ok"])
        body = "".join(
            f"<tr><td>{_e(r.get('output', '?'))}</td>"
            + "".join(f'<td class="num">{_num(r.get(c))}</td>' for c in cols)
            + f"<td>{_ok(r.get('ok'))}</td></tr>" for r in rows)
        out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    return "\n".join(out)


def precision_of(label: str, point: Mapping[str, Any]) -> str:
    """The precision of a sweep point: its own ``precision`` key, else a precision word in the label."""
    if point.get("precision"):
        return str(point["precision"])
    words = [w for w in re.findall(r"[a-z0-9]+", label.lower()) if w in _PRECISIONS]
    return words[-1] if words else "fp32" if label.lower().startswith(("tensorflow", "tf")) else "—"


def _rss_mib(point: Mapping[str, Any]) -> float | None:
    rss = point.get("peak_rss_bytes", point.get("rss_bytes"))
    return rss / 2**20 if isinstance(rss, (int, float)) else None


def _benchmarks(items: Sequence[Mapping[str, Any]]) -> str:
    if not items:
        return ""
    out = ['<h2 id="benchmarks">Benchmarks</h2>']
    heads = ["series", "batch", "mean ms", "median ms", "p90 ms", "p99 ms", "throughput /s",
             "peak RSS MiB", "precision", "speedup vs TF", "noisy"]
    for b in items:
        series = b.get("series") or {}
        out.append(f"<h3>{_e(b.get('stage', '?'))}</h3>")
        ups = speedups(series)
        rows = []
        for label, points in series.items():
            for p in sorted(points, key=lambda q: int(q["batch"])):
                sp = ups[label].get(int(p["batch"]))
                noisy = '<span class="bad">noisy</span>' if p.get("noisy") else ""
                cells = [_num(p.get(k)) for k in ("mean_ms", "median_ms", "p90_ms", "p99_ms")]
                rows.append(f"<tr><td>{_e(label)}</td><td class=\"num\">{_e(p['batch'])}</td>"
                            + "".join(f'<td class="num">{c}</td>' for c in cells)
                            + f'<td class="num">{_num(p.get("throughput"), 5)}</td>'
                            + f'<td class="num">{_num(_rss_mib(p))}</td>'
                            + f"<td>{_e(precision_of(label, p))}</td>"
                            + f'<td class="num">{"—" if sp is None else f"{sp:.2f}×"}</td>'
                            + f"<td>{noisy}</td></tr>")
        out.append("<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in heads)
                   + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
        for label, mc in (b.get("marginal_cost") or {}).items():
            out.append(f"<p>{_e(label)}: each extra sample adds "
                       f"<b>{_num(mc.get('slope_ms_per_sample'), 3)} ms</b> "
                       f"(fixed {_num(mc.get('intercept_ms'), 3)} ms, r² = {_num(mc.get('r2'), 3)})</p>")
        png = b.get("png")
        if png:
            data = base64.b64encode(bytes(png)).decode("ascii")
            out.append(f'<p><img alt="{_e(b.get("stage", ""))} latency and throughput vs batch" '
                       f'src="data:image/png;base64,{data}"></p>')
    return "\n".join(out)


def format_console_table(series: Mapping[str, Sequence[Mapping[str, Any]]]) -> Any:
    """A ``rich.table.Table`` of a benchmark's sweep: the seed's columns, one row per series × batch."""
    table_mod = require("rich.table")
    table = table_mod.Table(title="benchmark")
    for head in ("series", "batch", "mean ms", "median ms", "p99 ms", "cv", "throughput/s", "RSS MiB",
                 "precision", "vs TF"):
        table.add_column(head, justify="left" if head in ("series", "precision") else "right")
    ups = speedups(series)
    for label, points in series.items():
        for p in sorted(points, key=lambda q: int(q["batch"])):
            sp = ups[label].get(int(p["batch"]))
            rss = _rss_mib(p)
            table.add_row(label, str(p["batch"]), f"{p['mean_ms']:.3f}", f"{p['median_ms']:.3f}",
                          f"{p['p99_ms']:.3f}",
                          # a noisy point (cv > 10 %) is flagged: compare it with care
                          f"{p.get('cv', 0.0):.0%}" + (" noisy" if p.get("noisy") else ""),
                          f"{p['throughput']:.1f}",
                          "—" if rss is None else f"{rss:.0f}", precision_of(label, p),
                          "—" if sp is None else f"{sp:.2f}×")
    return table
