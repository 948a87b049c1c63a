"""Sample sources: random/npz/npy/images, ordering, and signature checks with clear errors."""

from __future__ import annotations

import importlib.util
import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from trtpipe.data.images import write_ppm
from trtpipe.data.sources import check_inputs, describe_source, load_inputs, source_files
from trtpipe.errors import ConfigError, InvalidArtifact

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
RGB8 = [{"name": "image", "dtype": "float32", "shape": [None, 8, 8, 3]}]


def _images(directory: Path, names: list[str], size: int = 8) -> None:
    """Write one flat-colour RGB PPM per name; pixel value = the name's position * 10."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        write_ppm(directory / name, np.full((size, size, 3), i * 10, np.uint8))


def _savez(path: Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


# ----------------------------------------------------------------------------- random


def test_random_is_deterministic_per_seed_and_follows_signature() -> None:
    inputs = [{"name": "a", "dtype": "float32", "shape": [None, 2, 3]},
              {"name": "ids", "dtype": "int32", "shape": [None, 4]}]
    spec = {"source": "random", "count": 5, "seed": 7, "low": -1.0, "high": 3.0}
    first = load_inputs(spec, inputs, base_dir=Path("."))
    again = load_inputs(spec, inputs, base_dir=Path("."))
    other = load_inputs({**spec, "seed": 8}, inputs, base_dir=Path("."))
    assert list(first) == ["a", "ids"]
    assert first["a"].shape == (5, 2, 3) and first["a"].dtype == np.float32
    assert first["ids"].shape == (5, 4) and first["ids"].dtype == np.int32
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    assert not np.array_equal(first["a"], other["a"])
    assert first["a"].min() >= -1.0 and first["a"].max() < 3.0
    assert set(np.unique(first["ids"])) <= {-1, 0, 1, 2, 3}


def test_random_rejects_dynamic_spatial_dims() -> None:
    inputs = [{"name": "image", "dtype": "float32", "shape": [None, None, None, 3]}]
    with pytest.raises(ConfigError, match="input 'image' has shape \\[N, N, N, 3\\]"):
        load_inputs({"source": "random", "count": 2}, inputs, base_dir=Path("."))


# ----------------------------------------------------------------------------- npz / npy


def test_npz_source_casts_ignores_labels_and_limits_count(tmp_path: Path) -> None:
    x = np.arange(6 * 2, dtype=np.float64).reshape(6, 2)
    _savez(tmp_path / "s.npz", x=x, labels=np.arange(6))
    inputs = [{"name": "x", "dtype": "float32", "shape": [None, 2]}]
    out = load_inputs({"source": "s.npz", "count": 4}, inputs, base_dir=tmp_path)
    assert list(out) == ["x"] and out["x"].dtype == np.float32
    np.testing.assert_array_equal(out["x"], x[:4])
    shuffled = load_inputs({"source": "s.npz", "shuffle": True, "seed": 1}, inputs,
                           base_dir=tmp_path)
    assert sorted(shuffled["x"][:, 0].tolist()) == x[:, 0].tolist()  # a permutation of all rows
    again = load_inputs({"source": "s.npz", "shuffle": True, "seed": 1}, inputs, base_dir=tmp_path)
    np.testing.assert_array_equal(shuffled["x"], again["x"])


def test_npz_missing_input_names_file_and_input(tmp_path: Path) -> None:
    _savez(tmp_path / "s.npz", other=np.zeros((2, 2), np.float32))
    inputs = [{"name": "x", "dtype": "float32", "shape": [None, 2]}]
    with pytest.raises(ConfigError, match=r"s\.npz: no data for model input\(s\) \['x'\] "
                                          r"\(has: \['other'\]\)"):
        load_inputs({"source": "s.npz"}, inputs, base_dir=tmp_path)


def test_npy_feeds_single_input_and_refuses_several(tmp_path: Path) -> None:
    np.save(tmp_path / "s.npy", np.ones((3, 2), np.float32))
    one = [{"name": "x", "dtype": "float32", "shape": [None, 2]}]
    assert load_inputs({"source": "s.npy"}, one, base_dir=tmp_path)["x"].shape == (3, 2)
    two = [*one, {"name": "y", "dtype": "float32", "shape": [None, 2]}]
    with pytest.raises(ConfigError, match=r"s\.npy: an \.npy file feeds one input"):
        load_inputs({"source": "s.npy"}, two, base_dir=tmp_path)


def test_corrupt_npz_is_invalid_artifact(tmp_path: Path) -> None:
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(InvalidArtifact, match=r"bad\.npz: not a readable \.npz file"):
        load_inputs({"source": "bad.npz"}, RGB8, base_dir=tmp_path)


@pytest.mark.parametrize(
    ("array", "inputs", "needle", "hint"),
    [
        (np.zeros((2, 8, 8), np.float32), RGB8,
         "x.npz: input 'image' expects rank 4 (shape [N, 8, 8, 3]), got shape (2, 8, 8)",
         "sample axis"),
        (np.zeros((2, 8, 9, 3), np.float32), RGB8,
         "(axis 2: expected 8, found 9)", "preprocess.resize {height: 8, width: 8}"),
        (np.zeros((2, 8, 8, 3), np.float32),
         [{"name": "image", "dtype": "uint8", "shape": [None, 8, 8, 3]}],
         "input 'image' expects dtype uint8, got float32", "preprocess.dtype: uint8"),
        (np.full((2, 8, 8, 3), 300, np.int64),
         [{"name": "image", "dtype": "uint8", "shape": [None, 8, 8, 3]}],
         "expects uint8, values span [300, 300]", "write the data as uint8"),
    ],
)
def test_check_inputs_mismatches(array: np.ndarray, inputs: list, needle: str, hint: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_inputs({"image": array}, inputs, origin="x.npz")
    assert needle in str(err.value)
    assert err.value.hint and hint in err.value.hint


def test_check_inputs_rejects_nan_and_unequal_counts() -> None:
    bad = np.zeros((2, 8, 8, 3), np.float32)
    bad[1, 0, 0, 0] = np.nan
    with pytest.raises(InvalidArtifact, match="x.npz: input 'image': 1 value\\(s\\) are NaN"):
        check_inputs({"image": bad}, RGB8, origin="x.npz")
    two = [{"name": "a", "dtype": "float32", "shape": [None]},
           {"name": "b", "dtype": "float32", "shape": [None]}]
    with pytest.raises(ConfigError, match="different sample counts"):
        check_inputs({"a": np.zeros(2), "b": np.zeros(3)}, two, origin="x.npz")


# ----------------------------------------------------------------------------- images


def test_glob_order_is_sorted_and_shuffle_is_seeded(tmp_path: Path) -> None:
    names = ["b.ppm", "a.ppm", "c10.ppm", "c2.ppm"]
    _images(tmp_path / "imgs", names)  # pixel value = position in `names` * 10
    spec = {"source": "imgs/*.ppm", "preprocess": {}}
    files = source_files(spec, tmp_path)
    assert [f.name for f in files] == ["a.ppm", "b.ppm", "c10.ppm", "c2.ppm"]
    out = load_inputs(spec, RGB8, base_dir=tmp_path)["image"]
    assert out[:, 0, 0, 0].tolist() == [10.0, 0.0, 20.0, 30.0]  # a, b, c10, c2
    shuffled = [load_inputs({**spec, "shuffle": True, "seed": 3, "count": 3}, RGB8,
                            base_dir=tmp_path)["image"][:, 0, 0, 0].tolist() for _ in range(2)]
    assert shuffled[0] == shuffled[1] and len(shuffled[0]) == 3
    perm = np.random.default_rng(3).permutation(4)[:3]
    assert shuffled[0] == [[10.0, 0.0, 20.0, 30.0][i] for i in perm]


def test_directory_source_takes_only_images(tmp_path: Path) -> None:
    _images(tmp_path / "d", ["x.ppm", "y.ppm"])
    (tmp_path / "d" / "README.md").write_bytes(b"not an image")
    spec = {"source": "d", "count": 8}
    assert [f.name for f in source_files(spec, tmp_path)] == ["x.ppm", "y.ppm"]
    assert load_inputs(spec, RGB8, base_dir=tmp_path)["image"].shape == (2, 8, 8, 3)
    assert describe_source(spec, tmp_path) == "2 of 2 image(s) from d"


def test_empty_glob_and_missing_path_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data source 'calib/\*\.ppm' matched no files") as err:
        source_files({"source": "calib/*.ppm"}, tmp_path)
    assert "relative to the pipeline file" in (err.value.hint or "")
    with pytest.raises(ConfigError, match=r"data source 'samples\.npz' not found"):
        load_inputs({"source": "samples.npz"}, RGB8, base_dir=tmp_path)
    assert source_files({"source": "random"}, tmp_path) == []


def test_wrong_image_size_names_file_input_and_suggests_resize(tmp_path: Path) -> None:
    _images(tmp_path, ["small.ppm"], size=4)
    with pytest.raises(ConfigError) as err:
        load_inputs({"source": "small.ppm"}, RGB8, base_dir=tmp_path)
    assert str(err.value).startswith("small.ppm: input 'image' expects per-sample shape [8, 8, 3]")
    assert "preprocess.resize {height: 8, width: 8}" in (err.value.hint or "")
    ok = load_inputs({"source": "small.ppm",
                      "preprocess": {"resize": {"height": 8, "width": 8}}}, RGB8, base_dir=tmp_path)
    assert ok["image"].shape == (1, 8, 8, 3)


def test_grayscale_for_rgb_input(tmp_path: Path) -> None:
    (tmp_path / "configs" / "data").mkdir(parents=True)
    shutil.copy(DATA / "gray_4x4.pgm", tmp_path / "configs" / "data" / "x.pgm")
    inputs = [{"name": "image", "dtype": "float32", "shape": [None, 4, 4, 3]}]
    with pytest.raises(ConfigError) as err:
        load_inputs({"source": "configs/data/x.pgm"}, inputs, base_dir=tmp_path)
    assert str(err.value) == "configs/data/x.pgm: input 'image' expects 3 channels (RGB), image has 1"
    assert "P6 PPM" in (err.value.hint or "")


def test_gray_images_feed_rank3_and_nchw_inputs(tmp_path: Path) -> None:
    shutil.copy(DATA / "gray_4x4.pgm", tmp_path / "g.pgm")
    rank3 = [{"name": "g", "dtype": "float32", "shape": [None, 4, 4]}]
    out = load_inputs({"source": "g.pgm"}, rank3, base_dir=tmp_path)["g"]
    np.testing.assert_array_equal(out[0], np.arange(0, 160, 10).reshape(4, 4))
    nchw = [{"name": "g", "dtype": "float32", "shape": [None, 1, 2, 2]}]
    spec = {"source": "g.pgm", "preprocess": {"resize": {"height": 2, "width": 2},
                                              "layout": "NCHW"}}
    out = load_inputs(spec, nchw, base_dir=tmp_path)["g"]
    assert out.shape == (1, 1, 2, 2)
    # 4 -> 2 bilinear averages 2x2 blocks of 0..150 step 10
    np.testing.assert_allclose(out[0, 0], [[25, 45], [105, 125]])


def test_corrupt_image_in_glob_names_the_file(tmp_path: Path) -> None:
    _images(tmp_path / "c", ["a.ppm"])
    shutil.copy(DATA / "truncated_2x2.ppm", tmp_path / "c" / "b.ppm")
    with pytest.raises(InvalidArtifact, match=r"b\.ppm: truncated P6"):
        load_inputs({"source": "c/*.ppm"}, RGB8, base_dir=tmp_path)


def test_images_feed_only_one_input(tmp_path: Path) -> None:
    _images(tmp_path, ["a.ppm"])
    two = [*RGB8, {"name": "scale", "dtype": "float32", "shape": [None, 1]}]
    with pytest.raises(ConfigError, match="images feed only one"):
        load_inputs({"source": "a.ppm"}, two, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"model inputs \['scale'\] would get no data"):
        load_inputs({"source": "a.ppm", "input": "image"}, two, base_dir=tmp_path)


def test_uint8_input_needs_uint8_preprocess_dtype(tmp_path: Path) -> None:
    _images(tmp_path, ["a.ppm"])
    u8 = [{"name": "image", "dtype": "uint8", "shape": [None, 8, 8, 3]}]
    with pytest.raises(ConfigError) as err:
        load_inputs({"source": "a.ppm"}, u8, base_dir=tmp_path)
    assert "preprocess.dtype: uint8" in (err.value.hint or "")
    out = load_inputs({"source": "a.ppm", "preprocess": {"dtype": "uint8"}}, u8, base_dir=tmp_path)
    assert out["image"].dtype == np.uint8


# ----------------------------------------------------------------------------- committed data


def test_committed_calibration_images_load_and_are_reproducible() -> None:
    spec = {"source": "configs/data/calib/*.ppm", "count": 3,
            "preprocess": {"scale": 1 / 255, "mean": [0.5] * 3, "std": [0.5] * 3}}
    inputs = [{"name": "image", "dtype": "float32", "shape": [None, 300, 300, 3]}]
    out = load_inputs(spec, inputs, base_dir=ROOT)["image"]
    assert out.shape == (3, 300, 300, 3)
    assert -1.0 <= out.min() < 0 < out.max() <= 1.0
    assert len(source_files(spec, ROOT)) == 14
    assert len(source_files({"source": "configs/data/verify"}, ROOT)) == 4
    module_spec = importlib.util.spec_from_file_location(
        "make_calib_images", ROOT / "scripts" / "make_calib_images.py")
    assert module_spec and module_spec.loader
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0  # every committed image is what the script makes


def test_classifier_example_heldout_accuracy() -> None:
    keras = pytest.importorskip("keras")
    example = ROOT / "configs" / "examples" / "classifier"
    model = keras.models.load_model(example / "model.keras", compile=False)
    (inp,) = model.inputs
    signature = [{"name": "image", "dtype": "float32", "shape": list(inp.shape)}]
    held = load_inputs({"source": "heldout.npz"}, signature, base_dir=example)
    calib = load_inputs({"source": "calib.npz", "count": 16}, signature, base_dir=example)
    assert calib["image"].shape == (16, 8, 8, 1)
    with np.load(example / "heldout.npz") as npz:
        labels = npz["labels"]
    probs = np.asarray(model(held["image"], training=False))
    assert probs.shape == (len(labels), 10)
    assert (probs.argmax(axis=1) == labels).mean() >= 0.95
