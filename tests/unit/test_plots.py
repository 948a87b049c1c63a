"""The sweep PNG: valid PNG, configured pixel size, no software/time metadata, atomic write."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from trtpipe.bench import summarize
from trtpipe.errors import ConfigError
from trtpipe.plots import plot_sweep, sweep_png_bytes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Split a PNG into (type, payload) chunks, checking every CRC."""
    assert data[:8] == PNG_SIGNATURE
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, payload = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + payload) == crc, kind
        chunks.append((kind, payload))
        pos += 12 + length
    return chunks


def make_series() -> dict[str, list[dict[str, object]]]:
    """Two series whose points come from summarize() on generated latencies."""
    rng = np.random.default_rng(3)
    series: dict[str, list[dict[str, object]]] = {}
    for label, per_sample in (("onnxruntime fp32", 0.0011), ("tensorflow", 0.0023)):
        series[label] = [summarize(list(0.0005 + per_sample * b + rng.exponential(1e-4, 30)), b)
                         for b in (1, 2, 4, 8)]
    return series


@pytest.mark.parametrize(("size", "dpi"), [((1200, 500), 100), ((640, 320), 80)])
def test_plot_is_png_of_configured_size(tmp_path: Path, size: tuple[int, int], dpi: int) -> None:
    out = tmp_path / "plots" / "sweep.png"
    plot_sweep(make_series(), out, title="ssd <benchmark>", width_px=size[0], height_px=size[1], dpi=dpi)
    data = out.read_bytes()
    chunks = png_chunks(data)
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height = struct.unpack(">II", chunks[0][1][:8])
    assert (width, height) == size
    texts = b"".join(p for k, p in chunks if k in (b"tEXt", b"iTXt", b"zTXt", b"tIME"))
    assert b"Software" not in texts and b"matplotlib" not in texts.lower()
    assert not [k for k, _ in chunks if k == b"tIME"]
    # Only the final file is left behind (atomic write: temp file renamed away).
    assert [p.name for p in out.parent.iterdir()] == ["sweep.png"]


def test_plot_has_drawn_content_and_is_reproducible() -> None:
    mpl_image = pytest.importorskip("matplotlib.image")
    series = make_series()
    first = sweep_png_bytes(series, title="t")
    assert sweep_png_bytes(series, title="t") == first
    pixels = mpl_image.imread(io.BytesIO(first))
    assert pixels.shape[:2] == (500, 1200)
    # Lines in at least two distinct colours besides white/grey/black.
    rgb = (pixels[..., :3] * 255).astype(int).reshape(-1, 3)
    saturated = {tuple(c) for c in rgb[(rgb.max(axis=1) - rgb.min(axis=1)) > 80]}
    assert len(saturated) >= 2
    assert sweep_png_bytes(series, title="other title") != first


@pytest.mark.parametrize(("series", "needle"), [
    ({}, "no series"),
    ({"ort": []}, "series 'ort' has no points"),
    ({"ort": [{"batch": 1, "median_ms": 1.0}]}, "lacks ['p90_ms', 'throughput']"),
])
def test_plot_rejects_bad_series(tmp_path: Path, series: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        plot_sweep(series, tmp_path / "x.png", title="t")
    assert needle in err.value.message
    assert not (tmp_path / "x.png").exists()
