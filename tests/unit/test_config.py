"""config.load: positions, safe bounded YAML, every error at once, defaults from the schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from trtpipe import config
from trtpipe.errors import ConfigError

GOOD = b"""version: 1
name: t
stages:
  build:
    kind: build
    inputs: {model: m.onnx}
    max_batch: 2
"""


def _write(tmp_path: Path, data: bytes, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    (tmp_path / "m.onnx").write_bytes(b"not read by load")
    return path


def test_defaults_are_filled_from_the_schema(tmp_path: Path) -> None:
    cfg = config.load(_write(tmp_path, GOOD))
    build = cfg.doc["stages"]["build"]
    schema_build = config.schema()["$defs"]["build"]["properties"]
    assert cfg.doc["store"] == config.schema()["properties"]["store"]["default"]
    for key in ("backend", "precision", "workspace", "optimization_level"):
        assert build[key] == schema_build[key]["default"]
    assert build["max_batch"] == 2  # given values are kept


def test_positions_point_at_keys(tmp_path: Path) -> None:
    cfg = config.load(_write(tmp_path, GOOD))
    assert cfg.positions[("stages", "build", "max_batch")] == (7, 5)
    assert cfg.where(("stages", "build", "max_batch")).endswith("p.yaml:7:5: $.stages.build.max_batch")
    # unknown deeper paths fall back to the nearest known parent
    assert ":7:5: " in cfg.where(("stages", "build", "max_batch", "deeper"))


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    bad = GOOD.replace(b"max_batch: 2", b"max_batch: two\n    precision: fp64\n    colour: red")
    with pytest.raises(ConfigError) as info:
        config.load(_write(tmp_path, bad))
    errors = info.value.errors
    assert len(errors) == 3
    assert any(":7:5: $.stages.build.max_batch: expected integer" in e for e in errors)
    assert any(":8:5: $.stages.build.precision:" in e for e in errors)
    assert any(":9:5: $.stages.build.colour: unknown key 'colour'" in e for e in errors)


def test_merge_key_explicit_values_win(tmp_path: Path) -> None:
    doc = GOOD + b"""  big:
    <<: *b
    max_batch: 64
"""
    doc = doc.replace(b"  build:\n", b"  build: &b\n")
    cfg = config.load(_write(tmp_path, doc))
    assert cfg.doc["stages"]["big"]["max_batch"] == 64
    assert cfg.doc["stages"]["build"]["max_batch"] == 2
    assert cfg.doc["stages"]["big"]["inputs"] == {"model": "m.onnx"}


def test_duplicate_keys_are_rejected_with_both_lines(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(_write(tmp_path, GOOD + b"    max_batch: 3\n"))
    assert "p.yaml:8:5: $.stages.build.max_batch: duplicate key 'max_batch' (first defined on line 7)" in \
        info.value.message


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    assert config.load(_write(tmp_path, b"\xef\xbb\xbf" + GOOD)).doc["name"] == "t"


def test_non_utf8_names_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(_write(tmp_path, GOOD.replace(b"name: t", b"name: t\xff")))
    assert "p.yaml:2:8: not valid UTF-8 (byte 0xff)" in info.value.message


def test_deep_nesting_is_bounded_and_located(tmp_path: Path) -> None:
    deep = b"version: 1\nname: t\ndescription: " + b"[" * (config.MAX_DEPTH + 5) + b"]" * (config.MAX_DEPTH + 5) + b"\n"
    with pytest.raises(ConfigError) as info:
        config.load(_write(tmp_path, deep))
    assert "p.yaml:3:" in info.value.message and f"deeper than {config.MAX_DEPTH}" in info.value.message


def test_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + b"#" * (config.MAX_FILE_BYTES + 1))
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert "limit" in info.value.message


def test_application_tags_are_rejected_not_executed(tmp_path: Path) -> None:
    evil = GOOD.replace(b"name: t", b"name: !!python/name:os.system\n"
                        b"description: !!python/object/apply:os.system ['echo pwned']")
    with pytest.raises(ConfigError) as info:
        config.load(_write(tmp_path, evil))
    errors = info.value.errors
    assert any("p.yaml:2:7: $.name: cannot read this value" in e for e in errors), errors
    assert any("p.yaml:3:14: $.description: unsupported YAML tag" in e for e in errors), errors


def test_directory_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such pipeline file"):
        config.load(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        config.load(tmp_path)


@pytest.mark.parametrize(("path", "text"), [
    (("stages", "build", "max_batch"), "$.stages.build.max_batch"),
    (("stages", "verify@fp32", "inputs"), '$.stages["verify@fp32"].inputs'),
    (("stages", "b", "batches", 0), "$.stages.b.batches[0]"),
])
def test_format_json_path(path: tuple, text: str) -> None:
    assert config.format_json_path(path) == text
