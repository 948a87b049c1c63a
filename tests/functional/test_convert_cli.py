"""`trtpipe convert` / `inspect` on NVIDIA's lenet5 reference pair, through the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trtpipe import cli
from trtpipe.backends.uff import format as uff_format

DATA = Path(__file__).resolve().parents[1] / "backends" / "uff" / "data"


def test_convert_pb_to_uff_reproduces_nvidia(tmp_path: Path) -> None:
    out = tmp_path / "out.uff"
    assert cli.main(["convert", str(DATA / "lenet5.pb"), "-o", str(out)]) == 0
    ours, theirs = out.read_bytes(), (DATA / "lenet5.uff").read_bytes()
    assert len(ours) == len(theirs)
    # Identical up to protobuf map order (NVIDIA's writer emitted maps in hash order).
    assert uff_format.serialize(uff_format.parse(ours)) == uff_format.serialize(uff_format.parse(theirs))


def test_convert_uff_to_onnx_matches_tensorflow(tmp_path: Path) -> None:
    from trtpipe.backends import tf
    from trtpipe.backends.onnxruntime import Engine

    out = tmp_path / "lenet5.onnx"
    assert cli.main(["convert", str(DATA / "lenet5.uff"), "-o", str(out)]) == 0
    x = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    ref = tf.run_frozen(DATA / "lenet5.pb", {"input_1": x}, ["dense_1/Softmax"])["dense_1/Softmax"]
    got = Engine(out).run({"input_1": x})["dense_1/Softmax"]
    assert np.max(np.abs(ref - got)) <= 1e-5


def test_inspect_uff_lists_every_node(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["inspect", str(DATA / "lenet5.uff")]) == 0
    text = capsys.readouterr().out
    for node in ("dense_1/Softmax", "dense_1/bias", "dense/MatMul", "flatten/Reshape", "input_1", "MarkOutput_0"):
        assert node in text
    assert "weights_dense/kernel" in text and "orders_NC_CK" in text


def test_convert_garbage_uff_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.uff"
    bad.write_bytes(b"\x00\x01garbage" * 10)
    out = tmp_path / "out.onnx"
    assert cli.main(["convert", str(bad), "-o", str(out)]) == 2
    assert "bad.uff" in capsys.readouterr().err
    assert not out.exists()


def test_auto_backend_is_not_fooled_by_tensorrt_stubs() -> None:
    from trtpipe.stages.build import resolve_backend, tensorrt_usable

    assert tensorrt_usable() is False  # no TensorRT here, with or without tensorrt-stubs installed
    assert resolve_backend({"backend": "auto"}) == "onnxruntime"


def test_doctor_reports_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor"]) == 0
    text = capsys.readouterr().out.lower()
    assert "tensorrt" in text and "onnxruntime" in text.replace(" ", "")
