#!/usr/bin/env python3
"""Generate the procedural calibration/verification images under ``configs/data/``.

Each image is a 300x300 RGB binary PPM (P6): a two-colour linear gradient, a handful of filled
rectangles, discs, triangles and stripe patches, plus uniform noise. Everything comes from a
seeded numpy ``Generator`` and uses only exact arithmetic (no sin/exp), so the same numpy gives
byte-identical files on every platform. The images are original, generated works: public domain.

    python scripts/make_calib_images.py            # (re)write configs/data/{calib,verify}/
    python scripts/make_calib_images.py --check    # exit 1 if the committed files differ
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZE = 300
SEED = 20240611
#: split name -> (stream id, number of images). 18 x 270 KB keeps the set under 5 MB.
SPLITS: dict[str, tuple[int, int]] = {"calib": (1, 14), "verify": (2, 4)}


def scene(split: str, index: int, size: int = SIZE) -> np.ndarray:
    """Return image ``index`` of ``split`` as a ``(size, size, 3)`` uint8 array."""
    stream, _ = SPLITS[split]
    rng = np.random.default_rng([SEED, stream, index])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)

    # Background: gradient between two colours along a random integer direction.
    dx, dy = (int(v) for v in rng.integers(-4, 5, size=2))
    if dx == 0 and dy == 0:
        dx = 1
    t = xx * dx + yy * dy
    t = (t - t.min()) / (t.max() - t.min())
    c0, c1 = rng.random(3) * 255.0, rng.random(3) * 255.0
    img = c0 + (c1 - c0) * t[:, :, None]

    for _ in range(int(rng.integers(3, 9))):
        colour = rng.random(3) * 255.0
        mask = _shape_mask(rng, xx, yy, size)
        # Blend so overlapping shapes keep some of what lies underneath (richer histograms).
        alpha = 0.55 + 0.45 * rng.random()
        img[mask] = img[mask] * (1.0 - alpha) + colour * alpha

    amplitude = 4.0 + 36.0 * rng.random()
    img += (rng.random((size, size, 3)) - 0.5) * amplitude
    return np.clip(np.floor(img + 0.5), 0, 255).astype(np.uint8)


def _shape_mask(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray,
                size: int) -> np.ndarray:
    kind = int(rng.integers(0, 4))
    cx, cy = (float(v) for v in rng.integers(0, size, size=2))
    extent = float(rng.integers(size // 12, size // 3))
    if kind == 0:  # axis-aligned rectangle
        w, h = extent, float(rng.integers(size // 12, size // 3))
        return (np.abs(xx - cx) <= w / 2) & (np.abs(yy - cy) <= h / 2)
    if kind == 1:  # disc
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= extent ** 2
    if kind == 2:  # triangle: inside all three edges (signs of exact cross products)
        pts = rng.integers(-int(extent), int(extent) + 1, size=(3, 2)).astype(np.float64)
        pts += (cx, cy)
        signs = []
        for (x0, y0), (x1, y1) in zip(pts, np.roll(pts, -1, axis=0), strict=True):
            signs.append((x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0))
        s = np.stack(signs)
        return np.asarray((s >= 0).all(axis=0) | (s <= 0).all(axis=0))
    # stripes inside a square patch
    period = int(rng.integers(4, 24))
    horizontal = bool(rng.integers(0, 2))
    band = ((yy if horizontal else xx).astype(np.int64) // period) % 2 == 0
    return band & (np.abs(xx - cx) <= extent) & (np.abs(yy - cy) <= extent)


def image_path(out_dir: Path, split: str, index: int) -> Path:
    """Where image ``index`` of ``split`` lives under ``out_dir``."""
    return out_dir / split / f"{split}_{index:02d}.ppm"


def main(argv: list[str] | None = None) -> int:
    """Write (or ``--check``) every image; return the exit code."""
    sys.path.insert(0, str(ROOT))
    from trtpipe.data.images import encode_pnm, write_ppm  # the project's own writer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "configs" / "data")
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for split, (_, count) in SPLITS.items():
        for index in range(count):
            path = image_path(args.out, split, index)
            img = scene(split, index)
            if args.check:
                if not path.is_file() or path.read_bytes() != encode_pnm(img):
                    stale.append(path)
            else:
                write_ppm(path, img)
                print(path)
    for path in stale:
        print(f"differs: {path}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
