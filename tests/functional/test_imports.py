"""`trtpipe --help`, `validate`, `status` and a fully cached `run` import no heavy framework."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from trtpipe_testkit import subprocess_env

HEAVY = ("tensorflow", "keras", "onnxruntime", "tf2onnx", "onnx", "tensorrt", "polygraphy", "matplotlib")

PROBE = """
import sys, trtpipe.cli
try:
    rc = trtpipe.cli.main({argv!r})
except SystemExit as exc:
    rc = exc.code
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
sys.stderr.write("HEAVY=" + ",".join(heavy) + "\\n")
sys.exit(rc)
"""


def _probe(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    code = PROBE.format(argv=argv, heavy=HEAVY)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=cwd, env=subprocess_env(),
                          timeout=300)


@pytest.mark.parametrize("argv", [["--help"], ["validate"], ["status"], ["run"], ["run", "--frozen"]],
                         ids=["help", "validate", "status", "cached-run", "frozen"])
def test_light_commands_import_no_framework(argv: list[str], tiny_copy: Path) -> None:
    proc = _probe(argv, tiny_copy.parent)  # PIPELINE defaults to ./pipeline.yaml
    err = proc.stderr.decode()
    assert proc.returncode == 0, err[-3000:]
    assert "HEAVY=\n" in err, err[-3000:]
    if argv == ["run"]:
        assert proc.stdout.decode().count("cached") >= 5
