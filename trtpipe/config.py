"""Read a pipeline file: safe, bounded YAML keeping line/column, schema validation, defaults.

``load(path)`` returns a ``Config``: the document as plain data with defaults filled, plus a map
from JSON paths to source positions so later checks (references, cycles, files) can point at the
exact line. Every problem found is collected and raised at once as a ``ConfigError`` whose
``errors`` are ``FILE:LINE:COL: $.json.path: message`` strings.
"""

from __future__ import annotations

import copy
import difflib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from trtpipe.errors import ConfigError

#: Hard limits that keep loading bounded whatever the file contains.
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000
MAX_DEPTH = 64

JsonPath = tuple[str | int, ...]


@dataclass
class Config:
    """A validated pipeline document."""

    path: Path
    doc: dict[str, Any]
    positions: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        """Directory that relative paths in the file are resolved against."""
        return self.path.parent

    def where(self, json_path: JsonPath) -> str:
        """``FILE:LINE:COL: $.path`` for the closest known position of ``json_path``."""
        return locate(self.path, self.positions, json_path)


def format_json_path(json_path: JsonPath) -> str:
    """``('stages', 'build', 'max_batch')`` -> ``$.stages.build.max_batch``."""
    out = "$"
    for part in json_path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("_", "").replace("-", "").isalnum():
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


def locate(path: Path, positions: dict[JsonPath, tuple[int, int]], json_path: JsonPath) -> str:
    """Location prefix for an error at ``json_path`` (falls back to the nearest parent)."""
    probe = tuple(json_path)
    while probe not in positions and probe:
        probe = probe[:-1]
    line, col = positions.get(probe, (1, 1))
    return f"{path}:{line}:{col}: {format_json_path(json_path)}"


# --------------------------------------------------------------------------- YAML


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    """Turns a composed YAML node tree into plain data, recording positions.

    PyYAML's constructor silently keeps the last of duplicate keys and expands aliases without
    limit; this walk rejects duplicates and counts every node it visits (aliases included), so an
    alias bomb stops at MAX_NODES instead of eating the machine.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.positions: dict[JsonPath, tuple[int, int]] = {}
        self.errors: list[str] = []
        self.visited = 0

    def error(self, node: yaml.Node, json_path: JsonPath, message: str) -> None:
        line, col = _mark(node)
        self.errors.append(f"{self.path}:{line}:{col}: {format_json_path(json_path)}: {message}")

    def build(self, node: yaml.Node, json_path: JsonPath = (), depth: int = 0) -> Any:
        self.visited += 1
        if self.visited > MAX_NODES:
            # Aliases share their anchor's node, so this points at the anchored value being repeated.
            line, col = _mark(node)
            raise ConfigError(
                f"{self.path}:{line}:{col}: {format_json_path(json_path)}: the YAML expands to more than "
                f"{MAX_NODES} values (alias/anchor bomb?)",
                hint="remove the recursive or repeated aliases (*name) from the file")
        if depth > MAX_DEPTH:
            line, col = _mark(node)
            raise ConfigError(f"{self.path}:{line}:{col}: {format_json_path(json_path)}: "
                              f"YAML nested deeper than {MAX_DEPTH} levels")
        self.positions.setdefault(json_path, _mark(node))
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _COLLECTION_TAGS:
            # Application tags (`!!python/...`, `!custom`) are never honoured: say so, don't ignore them.
            self.error(node, json_path, f"unsupported YAML tag {node.tag}")
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, json_path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*json_path, i), depth + 1) for i, item in enumerate(node.value)]
        try:
            return _SCALARS.construct_object(node, deep=True)
        except yaml.YAMLError as exc:  # an unknown tag, or a malformed timestamp/number for its tag
            self.error(node, json_path, f"cannot read this value ({node.tag}): "
                                        f"{getattr(exc, 'problem', None) or exc}")
            return None

    def _mapping(self, node: yaml.MappingNode, json_path: JsonPath, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for src in sources:
                    value = self.build(src, json_path, depth + 1)
                    if not isinstance(value, dict):
                        self.error(src, json_path, "a merge key (<<) must refer to a mapping")
                        continue
                    for k, v in value.items():
                        merged.setdefault(k, v)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.error(key_node, json_path, "mapping keys must be plain strings")
                continue
            key = _SCALARS.construct_object(key_node)
            if not isinstance(key, str):
                key = str(key)
            child = (*json_path, key)
            if key in out:
                first = self.positions.get(child, (0, 0))[0]
                self.error(key_node, child, f"duplicate key '{key}' (first defined on line {first})")
                continue
            self.positions[child] = _mark(key_node)
            out[key] = self.build(value_node, child, depth + 1)
        for k, v in merged.items():
            out.setdefault(k, copy.deepcopy(v))
        return out


_SCALARS = yaml.SafeLoader("")  # only its scalar constructors are used
_COLLECTION_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:omap")


def read_yaml(path: Path) -> tuple[Any, dict[JsonPath, tuple[int, int]]]:
    """Parse ``path`` safely; returns (data, positions) or raises ``ConfigError`` with locations."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such pipeline file",
                          hint="pass the pipeline file as an argument, or run from its directory") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a pipeline YAML file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: {len(raw)} bytes is larger than the {MAX_FILE_BYTES}-byte limit for a pipeline file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"{path}:{line}:{col}: not valid UTF-8 (byte 0x{raw[exc.start]:02x})",
                          hint="save the file as UTF-8") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        msg = f"{where}: YAML syntax error: {problem}" + (f" ({context})" if context else "")
        raise ConfigError(msg, hint="check indentation and quoting around that line") from None
    if node is None:
        raise ConfigError(f"{path}:1:1: the pipeline file is empty",
                          hint="start from the README's example pipeline")
    builder = _Builder(path)
    try:
        data = builder.build(node)
    finally:
        # The shared scalar constructor memoises every node it saw; drop them so a long-lived
        # process (an IDE, a test session) does not keep every file it ever loaded alive.
        _SCALARS.constructed_objects.clear()
    if builder.errors:
        raise ConfigError(builder.errors[0], errors=builder.errors)
    return data, builder.positions


# --------------------------------------------------------------------------- schema


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The packaged pipeline JSON Schema (single source of truth)."""
    data = resources.files("trtpipe").joinpath("schemas/pipeline.schema.json").read_bytes()
    return json.loads(data)


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _resolve(sch: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in sch:
        name = sch["$ref"].rsplit("/", 1)[-1]
        sch = root["$defs"][name]
    return sch


def _explain(err: Any, root: dict[str, Any]) -> list[tuple[JsonPath, str]]:
    """Turn one jsonschema error into (json path, message) pairs a person can act on."""
    path: JsonPath = tuple(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in allowed]
        where = "stage" if "kind" in allowed else "here"
        return [((*path, k), f"unknown key '{k}'{_did_you_mean(k, allowed)}; allowed {where}: {', '.join(allowed)}")
                for k in extra]
    if err.validator == "enum" and path and path[-1] == "kind" and len(path) == 3:
        return [(path, f"unknown stage kind {json.dumps(err.instance)}"
                       f"{_did_you_mean(str(err.instance), err.validator_value)}; "
                       f"known kinds: {', '.join(err.validator_value)}")]
    if err.validator == "enum":
        return [(path, f"{json.dumps(err.instance)} is not one of {', '.join(json.dumps(v) for v in err.validator_value)}"
                       f"{_did_you_mean(str(err.instance), [str(v) for v in err.validator_value])}")]
    if err.validator == "required":
        missing = [k for k in err.validator_value if isinstance(err.instance, dict) and k not in err.instance]
        return [(path, f"missing required key '{k}'") for k in missing]
    if err.validator == "const" and path == ("version",):
        return [(path, f"unsupported pipeline format version {json.dumps(err.instance)}; this trtpipe reads version 1")]
    if err.validator == "type":
        want = err.validator_value if isinstance(err.validator_value, str) else " or ".join(err.validator_value)
        return [(path, f"expected {want}, got {type(err.instance).__name__} {json.dumps(err.instance, default=str)[:60]}")]
    if err.validator == "oneOf" and err.context:
        best = min(err.context, key=lambda e: len(list(e.absolute_path)))
        return [(path, f"{json.dumps(err.instance, default=str)[:60]} is not valid here: {best.message}")]
    if "propertyNames" in err.schema_path:
        # jsonschema reports a bad key as a `pattern` error on the parent object: point at the key.
        return [((*path, str(err.instance)), f"invalid stage name {json.dumps(err.instance)}: "
                 "use letters, digits, '_' and '-', starting with a letter or digit")]
    return [(path, err.message)]


def validate_doc(path: Path, doc: Any, positions: dict[JsonPath, tuple[int, int]]) -> None:
    """Validate ``doc`` against the schema; raise one ``ConfigError`` listing every problem."""
    import jsonschema  # light; kept local so `import trtpipe.config` stays minimal

    root = schema()
    validator = jsonschema.Draft202012Validator(root)
    found: list[tuple[int, str]] = []
    for err in validator.iter_errors(doc):
        leaves = [err]
        # Errors inside allOf/if-then carry their real causes in context (a per-kind schema).
        while leaves and leaves[0].validator in ("allOf", "$ref") and leaves[0].context:
            leaves = list(leaves[0].context)
        for leaf in leaves:
            for json_path, message in _explain(leaf, root):
                line = positions.get(json_path, positions.get(json_path[:-1], (0, 0)))[0]
                found.append((line, f"{locate(path, positions, json_path)}: {message}"))
    if found:
        msgs = [m for _, m in sorted(set(found))]
        raise ConfigError(f"{path}: {len(msgs)} problem(s) in the pipeline file", errors=msgs,
                          hint="see `trtpipe validate --help` and schemas/pipeline.schema.json")


def fill_defaults(instance: Any, sch: dict[str, Any], root: dict[str, Any]) -> Any:
    """Return ``instance`` with every schema ``default`` filled in (recursively, for objects)."""
    sch = _resolve(sch, root)
    if isinstance(instance, dict):
        props = dict(sch.get("properties", {}))
        for sub in sch.get("allOf", []):
            cond = sub.get("if", {}).get("properties", {})
            if all(instance.get(k) == v.get("const") for k, v in cond.items()):
                props.update(_resolve(sub.get("then", {}), root).get("properties", {}))
        out = dict(instance)
        for key, prop in props.items():
            prop = _resolve(prop, root)
            if key not in out and "default" in prop:
                out[key] = copy.deepcopy(prop["default"])
        for key, value in out.items():
            if key in props:
                out[key] = fill_defaults(value, props[key], root)
            elif isinstance(sch.get("additionalProperties"), dict):
                out[key] = fill_defaults(value, sch["additionalProperties"], root)
        return out
    if isinstance(instance, list) and isinstance(sch.get("items"), dict):
        return [fill_defaults(v, sch["items"], root) for v in instance]
    return instance


def load(path: str | Path) -> Config:
    """Read, validate and default-fill a pipeline file. Writes nothing."""
    path = Path(path)
    doc, positions = read_yaml(path)
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}:1:1: $: a pipeline file is a mapping with version, name and stages; "
                          f"found {type(doc).__name__}")
    validate_doc(path, doc, positions)
    root = schema()
    return Config(path=path, doc=fill_defaults(doc, root, root), positions=positions)
