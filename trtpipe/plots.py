"""PNG plots of benchmark sweeps (matplotlib, Agg, imported lazily).

The figure is built with ``matplotlib.figure.Figure`` + the Agg canvas directly rather than
``pyplot``: no global figure registry, no interactive backend selection, safe in threads. The PNG
carries no ``Software`` text chunk, and PNG output has no timestamp, so the same data on the same
matplotlib gives the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trtpipe.backends._imports import require
from trtpipe.errors import ConfigError
from trtpipe.fsutil import atomic_write_bytes

#: Default image size: 1200 x 500 px.
WIDTH_PX, HEIGHT_PX, DPI = 1200, 500, 100


def plot_sweep(series: Mapping[str, Sequence[Mapping[str, Any]]], out_png: Path, *, title: str,
               width_px: int = WIDTH_PX, height_px: int = HEIGHT_PX, dpi: int = DPI) -> None:
    """Write the two-panel sweep plot for ``series`` to ``out_png`` atomically.

    Left panel: median latency (ms) with a whisker up to p90, against batch; right panel:
    throughput (samples/s) against batch. One line per series label.
    """
    atomic_write_bytes(out_png, sweep_png_bytes(series, title=title, width_px=width_px,
                                                 height_px=height_px, dpi=dpi))


def sweep_png_bytes(series: Mapping[str, Sequence[Mapping[str, Any]]], *, title: str,
                    width_px: int = WIDTH_PX, height_px: int = HEIGHT_PX, dpi: int = DPI) -> bytes:
    """The PNG bytes :func:`plot_sweep` writes (for embedding in the HTML report)."""
    _check(series)
    require("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    lat_ax, thr_ax = fig.subplots(1, 2)
    for label, points in series.items():
        pts = sorted(points, key=lambda p: int(p["batch"]))
        x = [int(p["batch"]) for p in pts]
        med = [float(p["median_ms"]) for p in pts]
        # One-sided whisker: how far the slow tail (p90) sits above the median.
        upper = [max(float(p["p90_ms"]) - m, 0.0) for p, m in zip(pts, med, strict=True)]
        lat_ax.errorbar(x, med, yerr=[[0.0] * len(x), upper], marker="o", capsize=4, label=label)
        thr_ax.plot(x, [float(p["throughput"]) for p in pts], marker="o", label=label)
    lat_ax.set(title="Latency (median, whisker to p90)", xlabel="batch size", ylabel="ms")
    thr_ax.set(title="Throughput", xlabel="batch size", ylabel="samples / s")
    for ax in (lat_ax, thr_ax):
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.legend(loc="best", fontsize="small")
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    # No bbox_inches="tight": it would change the pixel size the caller asked for.
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def _check(series: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    if not series:
        raise ConfigError("plot_sweep: no series to plot", hint="benchmark at least one backend")
    for label, points in series.items():
        if not points:
            raise ConfigError(f"plot_sweep: series {label!r} has no points",
                              hint="each series needs at least one measured batch size")
        for point in points:
            missing = [k for k in ("batch", "median_ms", "p90_ms", "throughput") if k not in point]
            if missing:
                raise ConfigError(f"plot_sweep: a point of series {label!r} lacks {missing}",
                                  hint="pass the point dicts returned by trtpipe.bench.sweep()")
