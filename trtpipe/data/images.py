"""Image decoding: a strict native PNM (PGM/PPM) decoder, PNG/JPEG through Pillow, and a PPM writer.

Every decoded image is an ``(H, W, C)`` array with ``C`` = 1 (gray), 3 (RGB) or 4 (RGBA, Pillow
only). PNM samples are rescaled to the full range of the output dtype: ``maxval`` < 256 gives
``uint8`` in 0..255 and 256 <= ``maxval`` <= 65535 gives ``uint16`` in 0..65535, so that a
``scale`` of 1/255 (or 1/65535) means the same thing whatever ``maxval`` the writer chose.

The format is chosen by the file's magic bytes, never by its name. Any malformed file raises
``InvalidArtifact`` naming the file and what is wrong with it.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from types import ModuleType

import numpy as np

from trtpipe.errors import BackendUnavailable, InvalidArtifact
from trtpipe.fsutil import atomic_write_bytes

__all__ = ["IMAGE_SUFFIXES", "read_image", "write_ppm", "encode_pnm"]

#: File name suffixes that directory sources treat as images (format is still sniffed by magic).
from trtpipe.data.files import IMAGE_SUFFIXES  # noqa: E402  (one definition, numpy-free)

_PNM_CHANNELS = {b"P2": 1, b"P3": 3, b"P5": 1, b"P6": 3}
_WHITESPACE = b" \t\n\r\x0b\x0c"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
# Comments in plain (ASCII) rasters are not in the spec, but common writers emit them; dropping
# them is harmless because a raster token can never contain '#'.
_COMMENT_RE = re.compile(rb"#[^\r\n]*")


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode the image at ``path`` into an ``(H, W, C)`` ``uint8`` (or ``uint16``) array.

    Supports binary and ASCII PGM/PPM (P5, P6, P2, P3; any maxval up to 65535) natively and
    PNG/JPEG through Pillow (extra ``images``). Raises ``InvalidArtifact`` for a missing,
    truncated, malformed or unsupported file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise InvalidArtifact(f"{path}: image file not found", hint="check the data source path",
                              path=str(path)) from None
    except OSError as exc:
        raise InvalidArtifact(f"{path}: cannot read image ({exc.strerror or exc})",
                              path=str(path)) from None
    if data[:2] in _PNM_CHANNELS:
        return _decode_pnm(data, path)
    if data[:1] == b"P" and data[1:2] in (b"1", b"4", b"7"):
        raise _bad(path, f"unsupported PNM variant {data[:2].decode()} (PBM bitmap / PAM)",
                   "convert it to P6 (PPM, RGB) or P5 (PGM, gray), e.g. with `pnmtoppm` or Pillow")
    if data.startswith(_PNG_MAGIC) or data.startswith(_JPEG_MAGIC):
        return _decode_with_pillow(path)
    if not data:
        raise _bad(path, "file is empty", "regenerate or re-download the image")
    raise _bad(path, f"unrecognized image format (first bytes {data[:8]!r})",
               "supported formats: PPM/PGM (P2, P3, P5, P6), PNG, JPEG")


def encode_pnm(array: np.ndarray) -> bytes:
    """Encode an ``(H, W, 3)`` array as binary PPM (P6) or ``(H, W)``/``(H, W, 1)`` as PGM (P5).

    ``uint8`` uses maxval 255, ``uint16`` maxval 65535 (big-endian samples, as the format requires).
    """
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"PNM needs an (H, W, 1|3) array with H, W >= 1, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        maxval, raster = 255, arr.tobytes()
    elif arr.dtype == np.uint16:
        maxval, raster = 65535, arr.astype(">u2").tobytes()
    else:
        raise ValueError(f"PNM needs uint8 or uint16 samples, got {arr.dtype}")
    magic = "P6" if arr.shape[2] == 3 else "P5"
    height, width = arr.shape[:2]
    return f"{magic}\n{width} {height}\n{maxval}\n".encode("ascii") + raster


def write_ppm(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Atomically write ``array`` to ``path`` as binary PPM (3 channels) or PGM (1 channel)."""
    try:
        data = encode_pnm(array)
    except ValueError as exc:
        raise InvalidArtifact(f"{path}: cannot write image: {exc}",
                              hint="pass a uint8/uint16 array shaped (H, W, 3) or (H, W, 1)",
                              path=str(path)) from None
    atomic_write_bytes(path, data)


# --------------------------------------------------------------------------- PNM


def _bad(path: Path, what: str, hint: str | None = None) -> InvalidArtifact:
    return InvalidArtifact(f"{path}: {what}", hint=hint, path=str(path))


def _header_tokens(data: bytes, path: Path, count: int) -> tuple[list[bytes], int]:
    """Read ``count`` header tokens after the magic, skipping whitespace and ``#`` comments.

    Returns the tokens and the offset just past the last token.
    """
    tokens: list[bytes] = []
    pos, end = 2, len(data)
    while len(tokens) < count:
        while pos < end and data[pos] in _WHITESPACE:
            pos += 1
        if pos >= end:
            raise _bad(path, f"truncated PNM header: expected {count} numbers (width, height"
                       f"{', maxval' if count == 3 else ''}) after the magic, found {len(tokens)}",
                       "the file is cut short; regenerate it")
        if data[pos] == ord("#"):
            nl = min((i for i in (data.find(b"\n", pos), data.find(b"\r", pos)) if i >= 0),
                     default=end)
            pos = nl
            continue
        start = pos
        while pos < end and data[pos] not in _WHITESPACE and data[pos] != ord("#"):
            pos += 1
        tokens.append(data[start:pos])
    return tokens, pos


def _header_int(token: bytes, what: str, path: Path, low: int, high: int) -> int:
    if not token.isdigit():
        raise _bad(path, f"bad PNM header: {what} must be a decimal integer, found {token[:20]!r}")
    value = int(token)
    if not low <= value <= high:
        raise _bad(path, f"bad PNM header: {what} must be in {low}..{high}, found {value}")
    return value


def _decode_pnm(data: bytes, path: Path) -> np.ndarray:
    magic = data[:2]
    channels = _PNM_CHANNELS[magic]
    tokens, pos = _header_tokens(data, path, 3)
    # 2**24 per side is far beyond any real image and keeps size arithmetic obviously safe.
    width = _header_int(tokens[0], "width", path, 1, 1 << 24)
    height = _header_int(tokens[1], "height", path, 1, 1 << 24)
    maxval = _header_int(tokens[2], "maxval", path, 1, 65535)
    count = width * height * channels
    if magic in (b"P5", b"P6"):
        # Exactly one whitespace byte separates maxval from the raster, which may start with
        # bytes that look like whitespace -- so no skipping here.
        if pos >= len(data) or data[pos] not in _WHITESPACE:
            raise _bad(path, "truncated PNM: no whitespace byte after maxval, no pixel data")
        raster = data[pos + 1:]
        samples = _binary_raster(raster, count, maxval, path, magic, width, height)
    else:
        samples = _ascii_raster(data[pos:], count, maxval, path)
    if samples.size and int(samples.max()) > maxval:
        raise _bad(path, f"pixel value {int(samples.max())} exceeds maxval {maxval}")
    return _rescale(samples, maxval).reshape(height, width, channels)


def _binary_raster(raster: bytes, count: int, maxval: int, path: Path, magic: bytes,
                   width: int, height: int) -> np.ndarray:
    itemsize = 1 if maxval < 256 else 2
    need = count * itemsize
    if len(raster) < need:
        raise _bad(path, f"truncated {magic.decode()} ({width}x{height}, maxval {maxval}): expected "
                   f"{need} bytes of pixel data, found {len(raster)}",
                   "the file is cut short; regenerate it")
    extra = raster[need:]
    if extra.strip(_WHITESPACE):
        # A second concatenated image (allowed by netpbm) or junk: either way not what a
        # single-sample image source means, so refuse rather than silently ignore it.
        raise _bad(path, f"{len(extra)} unexpected bytes after the pixel data "
                   "(multi-image PNM files are not supported)", "write one image per file")
    return np.frombuffer(raster, dtype=np.uint8 if itemsize == 1 else ">u2", count=count)


def _ascii_raster(text: bytes, count: int, maxval: int, path: Path) -> np.ndarray:
    tokens = _COMMENT_RE.sub(b" ", text).split()
    if len(tokens) < count:
        raise _bad(path, f"truncated plain PNM: expected {count} sample values, found {len(tokens)}",
                   "the file is cut short; regenerate it")
    if len(tokens) > count:
        raise _bad(path, f"plain PNM has {len(tokens) - count} values beyond the expected {count}")
    for tok in tokens:
        if not tok.isdigit():
            raise _bad(path, f"plain PNM sample is not a decimal integer: {tok[:20]!r}")
        if len(tok) > 6 and int(tok) > maxval:  # keep the int64 conversion below overflow-free
            raise _bad(path, f"pixel value {int(tok)} exceeds maxval {maxval}")
    # int64 first: a value above maxval must be reported, not wrapped around by the cast.
    return np.array([int(t) for t in tokens], dtype=np.int64)


def _rescale(samples: np.ndarray, maxval: int) -> np.ndarray:
    """Map 0..maxval onto the full range of the output dtype (exact when maxval is 255/65535)."""
    full, dtype = (255, np.uint8) if maxval < 256 else (65535, np.uint16)
    if maxval == full:
        return samples.astype(dtype, copy=False)
    # Round half up in integer arithmetic so results are exact and platform independent.
    wide = samples.astype(np.uint64)
    return ((wide * full * 2 + maxval) // (2 * maxval)).astype(dtype)


# --------------------------------------------------------------------------- Pillow


def _pillow(path: Path) -> ModuleType:
    try:
        return importlib.import_module("PIL.Image")
    except ImportError as exc:
        raise BackendUnavailable(
            f"{path}: decoding PNG/JPEG needs Pillow, which is not installed ({exc})",
            hint="pip install 'trtpipe[images]' (or just Pillow); or convert the images to PPM, "
                 "which needs nothing beyond numpy",
        ) from exc


def _decode_with_pillow(path: Path) -> np.ndarray:
    image_mod = _pillow(path)
    try:
        with image_mod.open(path) as img:
            img.load()  # decode now so truncation errors surface here, naming the file
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L"):
                arr = np.asarray(img, dtype=np.uint16)
            elif mode in ("L", "RGB", "RGBA"):
                arr = np.asarray(img, dtype=np.uint8)
            elif mode == "LA" or (mode == "P" and "transparency" in img.info):
                arr = np.asarray(img.convert("RGBA"), dtype=np.uint8)
            else:  # 1, P, CMYK, YCbCr, I, F ...: RGB is the honest common denominator
                arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, image_mod.DecompressionBombError) as exc:
        raise _bad(path, f"corrupt or unsupported image ({type(exc).__name__}: {exc})",
                   "re-export the image, or convert it to PPM") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr)
