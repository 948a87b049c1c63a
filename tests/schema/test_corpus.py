"""The pipeline-file corpus: every valid file validates; every invalid file fails with FILE:LINE.

Each file in ``invalid/`` breaks exactly one rule and starts with ``# expect: LINE: TEXT``: the
error output of ``trtpipe validate`` must contain a message located at ``FILE:LINE:`` that
includes TEXT, and the exit code must be 2. Nothing may be written for an invalid file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trtpipe import api, cli

HERE = Path(__file__).resolve().parent
VALID = sorted((HERE / "valid").glob("*.yaml"))
INVALID = sorted((HERE / "invalid").glob("*.yaml"))
EXPECT = re.compile(rb"^# expect: (\d+): (.+?)\r?\n")

#: Rules the brief requires one file each for (a rename must not silently drop one).
REQUIRED_RULES = {
    "yaml_syntax", "duplicate_key_top", "duplicate_key_nested", "unknown_top_key", "unknown_stage_key",
    "unknown_kind", "wrong_type", "wrong_enum", "missing_max_batch", "version_2", "bad_stage_name",
    "unknown_reference", "cycle", "wrong_artifact_keras", "wrong_artifact_engine", "missing_file",
    "non_utf8", "alias_bomb", "empty", "top_level_list", "opt_batch_gt_max", "int8_without_calibrator",
    "matrix_unknown_param",
}


def expectation(path: Path) -> tuple[int, str]:
    """(line, text) from the file's first line (read as bytes: one corpus file is not UTF-8)."""
    m = EXPECT.match(path.read_bytes())
    assert m, f"{path} must start with '# expect: LINE: TEXT'"
    return int(m.group(1)), m.group(2).decode("ascii")


def assert_located(stderr: str, path: Path, line: int, text: str) -> None:
    located = [ln for ln in stderr.splitlines() if f"{path}:{line}:" in ln]
    assert located, f"no error located at {path}:{line}: in:\n{stderr}"
    assert any(text in ln for ln in located), f"expected {text!r} at line {line}, got:\n{stderr}"


def test_corpus_is_complete() -> None:
    assert {p.stem for p in INVALID} >= REQUIRED_RULES
    assert len(VALID) >= 4
    for path in INVALID:
        expectation(path)


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_file_validates(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = api.validate(path)
    assert pipeline.order, "a valid pipeline has stages"
    assert cli.main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"pipeline '{pipeline.name}'" in out and " -> ".join(pipeline.order) in out


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_file_is_rejected_with_location(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line, text = expectation(path)
    assert cli.main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    assert_located(captured.err, path, line, text)


@pytest.mark.parametrize("name", ["duplicate_key_nested", "cycle", "non_utf8"])
def test_invalid_file_via_console_script(name: str) -> None:
    """The installed entry point behaves like the in-process one (exit 2, located message)."""
    path = HERE / "invalid" / f"{name}.yaml"
    line, text = expectation(path)
    proc = subprocess.run([sys.executable, "-m", "trtpipe.cli", "validate", str(path)], capture_output=True,
                          timeout=120, env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert proc.returncode == 2, proc.stderr.decode()
    assert_located(proc.stderr.decode("utf-8"), path, line, text)


def test_invalid_files_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`trtpipe run` on an invalid file creates no store, no lock file, nothing at all."""
    root = tmp_path / "tests"
    shutil.copytree(HERE, root / "schema", ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    shutil.copytree(HERE.parent / "fixtures", root / "fixtures", ignore=shutil.ignore_patterns("__pycache__"))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for path in sorted((root / "schema" / "invalid").glob("*.yaml")):
        assert cli.main(["run", str(path)]) == 2, path.name
        assert cli.main(["status", str(path)]) == 2, path.name
    capsys.readouterr()
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before


def test_alias_bomb_error_is_bounded(capsys: pytest.CaptureFixture[str]) -> None:
    """The bomb expands to ~3.9e9 strings; the error comes from the node budget, not memory."""
    from trtpipe import config

    path = HERE / "invalid" / "alias_bomb.yaml"
    with pytest.raises(config.ConfigError) as info:
        config.load(path)
    assert f"more than {config.MAX_NODES} values" in info.value.message
    assert info.value.hint
