"""Preprocessing: hand-computed references for each step, TF cross-check, clear spec errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trtpipe.data.images import read_image, write_ppm
from trtpipe.data.preprocess import preprocess, resize
from trtpipe.errors import ConfigError

# Bilinear 2 -> 4 with half-pixel centres samples source positions 0, .25, .75, 1 (clamped),
# so a row [a, b] becomes [a, .75a+.25b, .25a+.75b, b]. For the 2x2 gray image [[0, 40], [80, 120]]
# that gives, by hand:
UP_2x2_TO_4x4 = np.array([[0, 10, 30, 40],
                          [20, 30, 50, 60],
                          [60, 70, 90, 100],
                          [80, 90, 110, 120]], np.float32)


def test_bilinear_upscale_hand_computed() -> None:
    img = np.array([[0, 40], [80, 120]], np.uint8)[:, :, None]
    out = resize(img, 4, 4, "bilinear")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:, :, 0], UP_2x2_TO_4x4, atol=1e-5)


def test_bilinear_downscale_by_two_averages_blocks() -> None:
    img = np.arange(16, dtype=np.uint8).reshape(4, 4, 1)
    # centres at source 0.5 and 2.5: the mean of each 2x2 block
    expected = [[(0 + 1 + 4 + 5) / 4, (2 + 3 + 6 + 7) / 4],
                [(8 + 9 + 12 + 13) / 4, (10 + 11 + 14 + 15) / 4]]
    np.testing.assert_allclose(resize(img, 2, 2)[:, :, 0], expected, atol=1e-5)


def test_nearest_keeps_dtype_and_picks_half_pixel_neighbours() -> None:
    img = np.array([[1, 2, 3]], np.uint8)[:, :, None]
    up = resize(img, 1, 6, "nearest")  # floor((i + .5) / 2) = 0 0 1 1 2 2
    assert up.dtype == np.uint8
    assert up[0, :, 0].tolist() == [1, 1, 2, 2, 3, 3]
    down = resize(img, 1, 2, "nearest")  # floor((i + .5) * 1.5) = 0, 2
    assert down[0, :, 0].tolist() == [1, 3]


def test_full_pipeline_on_tiny_ppm_matches_hand_reference(tmp_path: Path) -> None:
    # R carries the 2x2 pattern, G its complement, B a constant; read back from a real PPM file.
    r = np.array([[0, 40], [80, 120]], np.uint8)
    rgb = np.stack([r, 200 - r, np.full_like(r, 60)], axis=-1)
    write_ppm(tmp_path / "tiny.ppm", rgb)
    spec = {"resize": {"height": 4, "width": 4, "method": "bilinear"}, "channel_order": "BGR",
            "scale": 0.5, "mean": [10.0, 20.0, 30.0], "std": [2.0, 4.0, 5.0], "layout": "NCHW",
            "dtype": "float32"}
    out = preprocess(read_image(tmp_path / "tiny.ppm"), spec)
    red = UP_2x2_TO_4x4
    # BGR puts B first; then (x * 0.5 - mean) / std per output channel, CHW layout.
    expected = np.stack([(np.full((4, 4), 60) * 0.5 - 10) / 2,
                         ((200 - red) * 0.5 - 20) / 4,
                         (red * 0.5 - 30) / 5])
    assert out.shape == (3, 4, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_center_crop_then_nhwc() -> None:
    img = np.arange(25, dtype=np.uint8).reshape(5, 5, 1)
    out = preprocess(img, {"crop": {"height": 3, "width": 2}})
    # offsets (5-3)//2 = 1 rows and (5-2)//2 = 1 columns
    np.testing.assert_array_equal(out[:, :, 0], [[6, 7], [11, 12], [16, 17]])
    assert out.dtype == np.float32


def test_resize_runs_before_crop() -> None:
    img = np.arange(4, dtype=np.uint8).reshape(2, 2, 1)
    out = preprocess(img, {"resize": {"height": 4, "width": 4, "method": "nearest"},
                           "crop": {"height": 2, "width": 2}})
    np.testing.assert_array_equal(out[:, :, 0], [[0, 1], [2, 3]])


def test_empty_spec_is_float32_identity() -> None:
    img = np.array([[[1, 2, 3]]], np.uint8)
    out = preprocess(img, {})
    assert out.dtype == np.float32 and out.tolist() == [[[1.0, 2.0, 3.0]]]
    assert preprocess(img[:, :, 0], None).shape == (1, 1, 1)  # 2-D gray gains its channel axis


def test_scalar_mean_and_std_apply_to_every_channel() -> None:
    img = np.array([[[255, 0, 51]]], np.uint8)
    out = preprocess(img, {"scale": 1 / 255, "mean": 0.5, "std": 0.5})
    np.testing.assert_allclose(out[0, 0], [1.0, -1.0, -0.6], atol=1e-6)


def test_integer_dtype_rounds_and_bgra_keeps_alpha_last() -> None:
    img = np.array([[[10, 20, 30, 40]]], np.uint8)
    out = preprocess(img, {"channel_order": "BGR", "dtype": "uint8"})
    assert out.dtype == np.uint8 and out[0, 0].tolist() == [30, 20, 10, 40]
    bilinear = preprocess(np.array([[0, 1]], np.uint8)[:, :, None],
                          {"resize": {"height": 1, "width": 4}, "dtype": "uint8"})
    assert bilinear[0, :, 0].tolist() == [0, 0, 1, 1]  # .25 -> 0, .75 -> 1 (round to nearest)


def test_matches_tensorflow_resize() -> None:
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    for h, w in ((5, 13), (14, 4), (21, 27)):
        ours = resize(img, h, w, "bilinear")
        ref = tf.image.resize(img[None].astype(np.float32), (h, w), method="bilinear",
                              antialias=False).numpy()[0]
        np.testing.assert_allclose(ours, ref, atol=1e-3)
        ours_nn = resize(img, h, w, "nearest")
        ref_nn = tf.image.resize(img[None], (h, w), method="nearest").numpy()[0]
        np.testing.assert_array_equal(ours_nn, ref_nn)


@pytest.mark.parametrize(
    ("spec", "image", "needle"),
    [
        ({"crop": {"height": 9, "width": 2}}, (4, 4, 3), "crop 9x2 is larger than the 4x4 image"),
        ({"channel_order": "BGR"}, (4, 4, 1), "BGR needs a colour image, this one has 1"),
        ({"channel_order": "GBR"}, (4, 4, 3), "channel_order must be RGB or BGR"),
        ({"mean": [1, 2]}, (4, 4, 3), "mean has 2 values but the image has 3 channel(s)"),
        ({"std": [1, 0, 1]}, (4, 4, 3), "std contains 0"),
        ({"layout": "CHWN"}, (4, 4, 3), "layout must be NHWC or NCHW"),
        ({"resize": {"height": 4, "width": 4, "method": "cubic"}}, (4, 4, 3), "method must be"),
        ({"resize": {"height": 0, "width": 4}}, (4, 4, 3), "resize.height must be a positive"),
        ({"scale": "x"}, (4, 4, 3), "scale must be a number"),
        ({"dtype": "complex64"}, (4, 4, 3), "dtype must be a numeric dtype"),
        ({"scale": 2.0, "dtype": "uint8"}, (4, 4, 3), "outside uint8 [0, 255]"),
        ({"normalize": True}, (4, 4, 3), "unknown preprocess key(s) ['normalize']"),
    ],
)
def test_bad_specs_raise_config_error_with_location(spec: dict, image: tuple, needle: str) -> None:
    img = np.full(image, 200, np.uint8)
    with pytest.raises(ConfigError) as err:
        preprocess(img, spec, where="configs/data/x.ppm")
    assert needle in str(err.value)
    assert str(err.value).startswith("configs/data/x.ppm: ")
