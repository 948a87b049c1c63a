"""TensorFlow backend: freezing from every source type, determinism, running, and bad inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trtpipe.backends import fingerprint
from trtpipe.backends import tf as tfb
from trtpipe.errors import ConfigError, InvalidArtifact

OUTPUTS = ["scores", "boxes"]


@pytest.fixture
def h(helpers: Any) -> Any:
    """Short alias of the conftest helpers."""
    return helpers


def _keras_outputs(model: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    scores, boxes = model(x, training=False)
    return {"scores": scores.numpy(), "boxes": boxes.numpy()}


def _assert_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray], atol: float = 1e-5) -> None:
    assert set(got) == set(want)
    for name in want:
        assert got[name].shape == want[name].shape, name
        np.testing.assert_allclose(got[name], want[name], atol=atol, rtol=0, err_msg=name)


def test_builder_freeze_signature_and_numerics(h: Any, tiny_frozen: tuple[Path, dict[str, Any]]) -> None:
    pb, sig = tiny_frozen
    assert sig["inputs"] == [{"name": "image", "dtype": "float32", "shape": [None, 16, 16, 3]}]
    assert [o["name"] for o in sig["outputs"]] == OUTPUTS
    # 4x4 cells x 2 anchors = 32 anchors
    assert sig["outputs"][0]["shape"] == [None, 32, 3] and sig["outputs"][1]["shape"] == [None, 32, 4]
    assert sig["tensorflow"] == tfb.version()
    import tensorflow as tf  # type: ignore[import-untyped]

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(pb.read_bytes())
    ops = {n.op for n in graph_def.node}
    assert not ops & {"VarHandleOp", "ReadVariableOp", "VariableV2", "NoOp"}
    # The final nodes carry the Keras output names.
    assert {n.name: n.op for n in graph_def.node}["scores"] == "Identity"
    x = h.images(3)
    _assert_close(tfb.run_frozen(pb, {"image": x}, OUTPUTS), _keras_outputs(h.make_tiny_model(0), x))


def test_builder_freeze_is_byte_deterministic(tiny_dir: Path, tiny_frozen: tuple[Path, dict[str, Any]],
                                              tmp_path: Path) -> None:
    again = tmp_path / "again.pb"
    other_seed = tmp_path / "seed1.pb"
    tfb.freeze("builders/tiny.py:build", again, base_dir=tiny_dir, seed=0)
    tfb.freeze("builders/tiny.py:build", other_seed, base_dir=tiny_dir, seed=1)
    assert again.read_bytes() == tiny_frozen[0].read_bytes()
    assert other_seed.read_bytes() != again.read_bytes()


@pytest.mark.parametrize("kind", ["keras", "h5", "savedmodel"])
def test_freeze_saved_formats_match_keras(h: Any, kind: str, tmp_path: Path) -> None:
    model = h.make_tiny_model(seed=3)
    src = {"keras": "m.keras", "h5": "m.h5", "savedmodel": "exported"}[kind]
    if kind == "savedmodel":
        model.export(tmp_path / src, verbose=False)
    else:
        model.save(tmp_path / src)
    sig = tfb.freeze(src, tmp_path / "out.pb", base_dir=tmp_path)
    assert [i["name"] for i in sig["inputs"]] == ["image"]
    names = [o["name"] for o in sig["outputs"]]
    if kind == "savedmodel":
        # Keras' export names signature outputs output_0, output_1, ... (sorted keys here).
        assert names == ["output_0", "output_1"]
    else:
        assert names == OUTPUTS
    x = h.images(2, seed=5)
    got = tfb.run_frozen(tmp_path / "out.pb", {"image": x}, names)
    _assert_close(dict(zip(OUTPUTS, got.values(), strict=True)), _keras_outputs(model, x))


def test_pb_passthrough_is_validated_and_copied(tiny_frozen: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    pb, sig = tiny_frozen
    sig2 = tfb.freeze(str(pb), tmp_path / "copy.pb", base_dir=tmp_path)
    assert (tmp_path / "copy.pb").read_bytes() == pb.read_bytes()
    assert sig2 == sig
    assert tfb.signature_of_pb(pb.read_bytes()) == sig


def test_runner_reuses_session_across_batch_sizes(h: Any, tiny_frozen: tuple[Path, dict[str, Any]]) -> None:
    pb, _ = tiny_frozen
    model = h.make_tiny_model(0)
    with tfb.TFRunner(pb, OUTPUTS) as runner:
        for batch in (1, 5):
            x = h.images(batch, seed=batch)
            _assert_close(runner.run({"image": x}), _keras_outputs(model, x))
        with pytest.raises(InvalidArtifact, match="missing: \\['image'\\], unknown: \\['img'\\]"):
            runner.run({"img": h.images(1)})
    with pytest.raises(InvalidArtifact, match="'nope' is not a node"):
        tfb.TFRunner(pb, ["nope"])


def _v1_graph_bytes(build: Any) -> bytes:
    import tensorflow as tf  # type: ignore[import-untyped]

    graph = tf.Graph()
    with graph.as_default():
        build(tf)
    return bytes(graph.as_graph_def().SerializeToString())


def test_bad_pb_sources(tmp_path: Path) -> None:
    (tmp_path / "garbage.pb").write_bytes(b"\xff\xfe not a protobuf \x00" * 7)
    with pytest.raises(InvalidArtifact, match="garbage.pb: not a TensorFlow GraphDef") as err:
        tfb.freeze("garbage.pb", tmp_path / "o.pb", base_dir=tmp_path)
    assert err.value.hint

    def with_variable(tf: Any) -> None:
        x = tf.compat.v1.placeholder(tf.float32, [None, 2], name="x")
        v = tf.compat.v1.Variable(tf.ones([2]), name="w")
        tf.identity(x * v, name="y")

    (tmp_path / "vars.pb").write_bytes(_v1_graph_bytes(with_variable))
    with pytest.raises(InvalidArtifact, match="variable op .*not frozen") as err:
        tfb.freeze("vars.pb", tmp_path / "o.pb", base_dir=tmp_path)
    assert err.value.node

    def no_placeholder(tf: Any) -> None:
        tf.identity(tf.constant([1.0]), name="y")

    (tmp_path / "const.pb").write_bytes(_v1_graph_bytes(no_placeholder))
    with pytest.raises(InvalidArtifact, match="no Placeholder"):
        tfb.freeze("const.pb", tmp_path / "o.pb", base_dir=tmp_path)
    assert not (tmp_path / "o.pb").exists()


def test_bad_sources(tiny_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidArtifact, match="model source not found") as err:
        tfb.freeze("missing.keras", tmp_path / "o.pb", base_dir=tmp_path)
    assert "relative to" in (err.value.hint or "")
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(InvalidArtifact, match="unknown model file type '.onnx'"):
        tfb.freeze("model.onnx", tmp_path / "o.pb", base_dir=tmp_path)
    (tmp_path / "plain_dir").mkdir()
    with pytest.raises(InvalidArtifact, match="not a SavedModel"):
        tfb.freeze("plain_dir", tmp_path / "o.pb", base_dir=tmp_path)
    with pytest.raises(ConfigError, match="no function 'nope'") as cerr:
        tfb.freeze("builders/tiny.py:nope", tmp_path / "o.pb", base_dir=tiny_dir)
    assert "build" in (cerr.value.hint or "")
    with pytest.raises(ConfigError, match="returned int, not a Keras model"):
        tfb.freeze("builders/tiny.py:not_a_model", tmp_path / "o.pb", base_dir=tiny_dir)
    with pytest.raises(ConfigError, match="names no function"):
        tfb.freeze("builders/tiny.py", tmp_path / "o.pb", base_dir=tiny_dir)
    (tmp_path / "broken.py").write_bytes(b"import definitely_not_a_module_xyz\n")
    with pytest.raises(ConfigError, match="importing it failed: ModuleNotFoundError"):
        tfb.freeze("broken.py:build", tmp_path / "o.pb", base_dir=tmp_path)
    assert not (tmp_path / "o.pb").exists()


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_unsafe_lambda_is_refused(ext: str, tmp_path: Path) -> None:
    import keras  # type: ignore[import-untyped]

    model = keras.Sequential([keras.Input((4,), name="a"), keras.layers.Lambda(lambda t: t * 2.0)])
    model.save(tmp_path / f"lam.{ext}")
    with pytest.raises(InvalidArtifact, match="Python lambda") as err:
        tfb.freeze(f"lam.{ext}", tmp_path / "o.pb", base_dir=tmp_path)
    assert "Lambda" in (err.value.hint or "")


def test_imports_stay_light(h: Any) -> None:
    code = ("import sys, trtpipe.backends.tf, trtpipe.backends.onnx, trtpipe.backends.onnxruntime, "
            "trtpipe.backends.fingerprint, configs.models.ssd\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'onnx', 'onnxruntime', 'tf2onnx') if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], cwd=h.repo, capture_output=True, check=True)
    assert out.stdout.decode().strip() == ""


def test_fingerprint() -> None:
    hw = fingerprint.hardware()
    assert {"cpu", "isa", "machine", "os", "python", "cores"} <= set(hw)
    assert hw["cores"] >= 1 and hw["python"] == ".".join(map(str, sys.version_info[:3]))
    assert set(hw["isa"]) <= set(fingerprint.INFERENCE_FLAGS)
    versions = fingerprint.framework_versions("numpy", "tensorflow", "no_such_framework_xyz")
    assert versions["numpy"] == np.__version__
    assert versions["tensorflow"] == tfb.version()
    assert versions["no_such_framework_xyz"] is None


def test_cpuinfo_parsing(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_bytes(b"processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu avx2 avx512f amx_tile\n\n"
                     b"processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n")
    model, flags = fingerprint._cpuinfo(info)
    assert model == "Test CPU 9000"
    assert {"avx2", "avx512f", "amx_tile"} <= flags and "fpu" in flags
    assert fingerprint._cpuinfo(tmp_path / "absent") == (None, set())
