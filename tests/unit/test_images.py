"""Image decoding: hand-made PNM headers, PNG/JPEG through Pillow, clear errors, atomic writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trtpipe.data.images import encode_pnm, read_image, write_ppm
from trtpipe.errors import InvalidArtifact

DATA = Path(__file__).resolve().parents[1] / "data"


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_p6_header_with_comments() -> None:
    img = read_image(DATA / "comments_2x2.ppm")
    assert img.dtype == np.uint8
    assert img.shape == (2, 2, 3)
    np.testing.assert_array_equal(img, [[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]])


def test_p5_16bit_is_big_endian_uint16() -> None:
    img = read_image(DATA / "gray16_3x1.pgm")
    assert img.dtype == np.uint16
    np.testing.assert_array_equal(img[:, :, 0], [[0, 258, 65535]])


def test_p3_ascii_with_trailing_comment() -> None:
    img = read_image(DATA / "ascii_2x1.ppm")
    np.testing.assert_array_equal(img, [[[255, 128, 0], [1, 2, 3]]])


def test_small_maxval_is_rescaled_to_full_range(tmp_path: Path) -> None:
    path = _write(tmp_path, "m15.pgm", b"P5 3 1 15\n" + bytes([0, 7, 15]))
    # 7/15 of 255 = 119.0 exactly
    np.testing.assert_array_equal(read_image(path)[:, :, 0], [[0, 119, 255]])


def test_ascii_16bit_maxval_rounds_half_up(tmp_path: Path) -> None:
    path = _write(tmp_path, "m1000.pgm", b"P2\n3 1\n1000\n0 500 1000\n")
    img = read_image(path)
    assert img.dtype == np.uint16
    # 500 * 65535 / 1000 = 32767.5 -> 32768
    np.testing.assert_array_equal(img[:, :, 0], [[0, 32768, 65535]])


def test_raster_may_start_with_whitespace_bytes(tmp_path: Path) -> None:
    # Exactly one whitespace byte ends the header; pixel bytes 10 ("\n") and 32 (" ") are data.
    path = _write(tmp_path, "ws.pgm", b"P5\n2 1\n255\n\n ")
    np.testing.assert_array_equal(read_image(path)[:, :, 0], [[10, 32]])


def test_comment_directly_after_magic(tmp_path: Path) -> None:
    path = _write(tmp_path, "c.pgm", b"P5#no space\n1 1 255\n\x07")
    assert read_image(path).tolist() == [[[7]]]


def test_trailing_newline_after_raster_is_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path, "nl.pgm", b"P5 1 1 255\n\x09\n")
    assert read_image(path).tolist() == [[[9]]]


def test_truncated_raster_names_file_and_sizes() -> None:
    with pytest.raises(InvalidArtifact) as err:
        read_image(DATA / "truncated_2x2.ppm")
    msg = str(err.value)
    assert "truncated_2x2.ppm" in msg
    assert "expected 12 bytes of pixel data, found 5" in msg
    assert err.value.path and err.value.path.endswith("truncated_2x2.ppm")
    assert err.value.hint


def test_truncated_16bit_counts_two_bytes_per_sample(tmp_path: Path) -> None:
    path = _write(tmp_path, "t16.pgm", b"P5 2 2 65535\n" + bytes(7))
    with pytest.raises(InvalidArtifact, match="expected 8 bytes of pixel data, found 7"):
        read_image(path)


def test_garbage_is_unrecognized() -> None:
    with pytest.raises(InvalidArtifact, match=r"garbage\.ppm: unrecognized image format"):
        read_image(DATA / "garbage.ppm")


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "file is empty"),
        (b"P6\n2", "truncated PNM header: expected 3 numbers"),
        (b"P6\nab 2\n255\n", "width must be a decimal integer"),
        (b"P6\n0 2\n255\n", "width must be in 1..16777216, found 0"),
        (b"P5 1 1 70000\n\x00\x00", "maxval must be in 1..65535, found 70000"),
        (b"P5 1 1 255", "no whitespace byte after maxval"),
        (b"P2 2 1 255\n3 256\n", "pixel value 256 exceeds maxval 255"),
        (b"P2 2 1 255\n3\n", "expected 2 sample values, found 1"),
        (b"P2 1 1 255\n3 4\n", "1 values beyond the expected 1"),
        (b"P3 1 1 255\n1 x 3\n", "not a decimal integer"),
        (b"P5 1 1 100\n\xc8", "pixel value 200 exceeds maxval 100"),
        (b"P5 1 1 255\n\x01P5 1 1 255\n\x02", "unexpected bytes after the pixel data"),
        (b"P4\n8 1\n\xff", "unsupported PNM variant P4"),
    ],
)
def test_malformed_pnm_errors(tmp_path: Path, data: bytes, needle: str) -> None:
    path = _write(tmp_path, "bad.pnm", data)
    with pytest.raises(InvalidArtifact) as err:
        read_image(path)
    assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidArtifact, match="nope.ppm: image file not found"):
        read_image(tmp_path / "nope.ppm")


def test_write_ppm_roundtrip_rgb_and_gray16(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    gray16 = rng.integers(0, 65536, (3, 4, 1), dtype=np.uint16)
    write_ppm(tmp_path / "rgb.ppm", rgb)
    write_ppm(tmp_path / "g.pgm", gray16)
    assert (tmp_path / "rgb.ppm").read_bytes().startswith(b"P6\n7 5\n255\n")
    assert (tmp_path / "g.pgm").read_bytes().startswith(b"P5\n4 3\n65535\n")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.ppm"), rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "g.pgm"), gray16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.pgm", "rgb.ppm"]  # no temp files


def test_write_ppm_rejects_float_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(InvalidArtifact, match="out.ppm: cannot write image: PNM needs uint8"):
        write_ppm(tmp_path / "out.ppm", np.zeros((2, 2, 3), np.float32))
    with pytest.raises(InvalidArtifact, match=r"shape \(2, 2, 2\)"):
        write_ppm(tmp_path / "out.ppm", np.zeros((2, 2, 2), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_encode_pnm_2d_is_pgm() -> None:
    assert encode_pnm(np.array([[1, 2]], np.uint8)) == b"P5\n2 1\n255\n\x01\x02"


def test_png_via_pillow(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    gray = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(gray).save(tmp_path / "gray.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgba)
    np.testing.assert_array_equal(read_image(tmp_path / "gray.png"), gray[:, :, None])


def test_format_is_sniffed_not_taken_from_the_name(tmp_path: Path) -> None:
    from PIL import Image

    img = np.full((4, 4, 3), 77, np.uint8)
    Image.fromarray(img).save(tmp_path / "really_png.ppm", format="PNG")
    np.testing.assert_array_equal(read_image(tmp_path / "really_png.ppm"), img)


def test_jpeg_decodes_close_to_source(tmp_path: Path) -> None:
    from PIL import Image

    img = np.zeros((16, 16, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 200, 100, 50
    Image.fromarray(img).save(tmp_path / "flat.jpg", quality=95)
    out = read_image(tmp_path / "flat.jpg")
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img).max() <= 3  # lossy, but a flat colour survives


def test_corrupt_png_names_file(tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.arange(64 * 64 * 3, dtype=np.uint32).astype(np.uint8)
                    .reshape(64, 64, 3)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    path = _write(tmp_path, "cut.png", data[: len(data) // 2])
    with pytest.raises(InvalidArtifact, match="cut.png: corrupt or unsupported image"):
        read_image(path)


def test_import_is_cheap() -> None:
    code = ("import sys, trtpipe.data; heavy = [m for m in ('PIL', 'tensorflow', 'onnx', "
            "'onnxruntime', 'matplotlib') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=DATA.parents[1])
    assert out.stdout.strip() == "[]"
