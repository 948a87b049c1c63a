"""From a validated document to an ordered DAG of stage specs.

Expands ``matrix`` stages (``build`` with ``matrix: {precision: [fp32, fp16]}`` becomes
``build@fp32`` and ``build@fp16``; a stage fed by a matrix stage through a single-valued role
expands the same way, a list-valued role fans the variants in), resolves every input to an
upstream stage or an external file, checks artifact types, rejects cycles, and orders the stages
topologically with ``graphlib``. Every problem is reported with its file position.
"""

from __future__ import annotations

import difflib
import graphlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trtpipe.config import Config
from trtpipe.data.files import source_files
from trtpipe.errors import ConfigError
from trtpipe.stages import REGISTRY, Stage
from trtpipe.stages.base import external_type

_PATHISH = ("/", ".", ":", "\\", "~")


@dataclass
class Ref:
    """One resolved input reference."""

    ref: str
    stage: str | None = None
    path: Path | None = None
    artifact: str | None = None


@dataclass
class StageSpec:
    """A stage ready to run: its kind's class, params and resolved inputs."""

    name: str
    kind: str
    impl: Stage
    params: dict[str, Any]
    inputs: dict[str, Ref | list[Ref]]
    origin: str  # the stage name as written in the file (before matrix expansion)
    upstream: list[str] = field(default_factory=list)


@dataclass
class Pipeline:
    """The ordered DAG of a pipeline file."""

    name: str
    config: Config
    stages: dict[str, StageSpec]
    order: list[str]

    def closure(self, targets: list[str]) -> list[str]:
        """``targets`` and everything upstream of them, in run order."""
        wanted: set[str] = set()
        todo = list(targets)
        while todo:
            name = todo.pop()
            if name not in wanted:
                wanted.add(name)
                todo.extend(self.stages[name].upstream)
        return [n for n in self.order if n in wanted]

    def downstream(self, names: set[str]) -> set[str]:
        """``names`` and every stage that depends on them."""
        out = set(names)
        for name in self.order:
            if any(u in out for u in self.stages[name].upstream):
                out.add(name)
        return out

    def resolve_names(self, names: list[str]) -> list[str]:
        """Map user-given names (a stage, a matrix stage's base name) to stage names, or raise."""
        out: list[str] = []
        for name in names:
            hits = [s for s in self.order if s == name or self.stages[s].origin == name]
            if not hits:
                raise ConfigError(f"unknown stage '{name}'{_suggest(name, list(self.stages))}",
                                  hint=f"stages in {self.config.path}: {', '.join(self.order)}")
            out.extend(h for h in hits if h not in out)
        return out


def _data_specs(params: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every data-source mapping (a dict with ``source``) inside a stage's params, with its path."""
    found: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    if isinstance(params, dict):
        if isinstance(params.get("source"), str) and path:
            found.append((path, params))
        for key, value in params.items():
            found.extend(_data_specs(value, (*path, key)))
    return found


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _expand(cfg: Config, errors: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, str], dict[str, list[str]]]:
    """Matrix expansion. Returns (name -> raw stage, name -> origin, origin -> variant names)."""
    raw: dict[str, dict[str, Any]] = cfg.doc["stages"]
    variants: dict[str, list[str]] = {}
    values: dict[str, dict[str, Any]] = {}  # variant name -> {param: value}
    out: dict[str, dict[str, Any]] = {}
    origin: dict[str, str] = {}
    for name, st in raw.items():
        if "matrix" in st:
            (param, vals), = st["matrix"].items()
            if param not in _kind_params(st["kind"]):
                errors.append(f"{cfg.where(('stages', name, 'matrix', param))}: '{param}' is not a parameter "
                              f"of kind '{st['kind']}'")
                continue
            variants[name] = []
            for v in vals:
                vname = f"{name}@{str(v).lower() if isinstance(v, bool) else v}"
                variants[name].append(vname)
                values[vname] = {param: v}
    # Propagate: a stage fed by a matrix stage through a single-valued role expands too.
    changed = True
    while changed:
        changed = False
        for name, st in raw.items():
            if name in variants:
                continue
            roles = REGISTRY[st["kind"]].roles
            for role, ref in st.get("inputs", {}).items():
                if isinstance(ref, str) and ref in variants and role in roles and not roles[role].many:
                    variants[name] = [f"{name}@{v.split('@', 1)[1]}" for v in variants[ref]]
                    changed = True
                    break
    for name, st in raw.items():
        if name not in variants:
            out[name] = st
            origin[name] = name
            continue
        for vname in variants[name]:
            suffix = vname.split("@", 1)[1]
            new = {k: v for k, v in st.items() if k != "matrix"}
            new.update(values.get(vname, {}))
            new_inputs = {}
            for role, ref in st.get("inputs", {}).items():
                if isinstance(ref, str) and ref in variants and f"{ref}@{suffix}" in variants[ref]:
                    ref = f"{ref}@{suffix}"
                new_inputs[role] = ref
            new["inputs"] = new_inputs
            out[vname] = new
            origin[vname] = name
    return out, origin, variants


def _kind_params(kind: str) -> set[str]:
    from trtpipe.config import schema

    return set(schema()["$defs"][kind]["properties"]) - {"kind", "inputs", "description", "matrix"}


def build(cfg: Config) -> Pipeline:
    """Turn a validated config into an ordered pipeline; raise ``ConfigError`` listing every problem."""
    errors: list[str] = []
    stages_raw, origin, variants = _expand(cfg, errors)
    specs: dict[str, StageSpec] = {}
    for name, st in stages_raw.items():
        kind = st["kind"]
        impl = REGISTRY[kind]()
        loc_base = ("stages", origin[name])
        params = {k: v for k, v in st.items() if k not in ("kind", "inputs", "matrix")}
        for sub, message in impl.check(params):
            errors.append(f"{cfg.where((*loc_base, *sub))}: {message}")
        for sub, spec_data in _data_specs(params):
            try:
                source_files(spec_data, cfg.base_dir)
            except ConfigError as exc:
                errors.append(f"{cfg.where((*loc_base, *sub, 'source'))}: {exc.message}"
                              + (f" ({exc.hint})" if exc.hint else ""))
        inputs: dict[str, Ref | list[Ref]] = {}
        upstream: list[str] = []
        for role, value in st.get("inputs", {}).items():
            spec_role = impl.roles[role]
            refs = value if isinstance(value, list) else [value]
            resolved: list[Ref] = []
            for i, ref in enumerate(refs):
                where = cfg.where((*loc_base, "inputs", role, *((i,) if isinstance(value, list) else ())))
                for r in _resolve(ref, role, spec_role.accepts, stages_raw, variants, cfg, where, errors,
                                  fan_in=spec_role.many):
                    resolved.append(r)
                    if r.stage and r.stage not in upstream:
                        upstream.append(r.stage)
            inputs[role] = resolved if spec_role.many else (resolved[0] if resolved else Ref(ref=str(value)))
        specs[name] = StageSpec(name=name, kind=kind, impl=impl, params=params, inputs=inputs,
                                origin=origin[name], upstream=upstream)
    if not errors:
        _insert_calibration(specs)
        for spec in specs.values():
            _check_data_files(cfg, spec, errors)
    order: list[str] = []
    if not errors:
        sorter = graphlib.TopologicalSorter({n: s.upstream for n, s in specs.items()})
        try:
            order = list(sorter.static_order())
        except graphlib.CycleError as exc:
            cycle = list(exc.args[1])
            errors.append(f"{cfg.where(('stages', origin[cycle[0]], 'inputs'))}: the stages form a cycle: "
                          f"{' -> '.join(cycle)}")
    if errors:
        errors = list(dict.fromkeys(errors))  # matrix variants of one declared stage share their messages
        raise ConfigError(f"{cfg.path}: {len(errors)} problem(s) in the pipeline", errors=errors,
                          hint="fix the references listed above")
    # Keep the file's order among stages that are independent (stable, readable output).
    position = {n: i for i, n in enumerate(specs)}
    order = _stable_topo(specs, position)
    return Pipeline(name=cfg.doc["name"], config=cfg, stages=specs, order=order)


def _insert_calibration(specs: dict[str, StageSpec]) -> None:
    """Give every int8/mixed build its own ``<build>.calibrate`` stage (cached on its own)."""
    for name in list(specs):
        spec = specs[name]
        if spec.kind != "build" or spec.params.get("precision") not in ("int8", "mixed") or "calibration" in spec.inputs:
            continue
        cal_name = f"{name}.calibrate"
        model = spec.inputs["model"]
        specs[cal_name] = StageSpec(name=cal_name, kind="calibrate", impl=REGISTRY["calibrate"](),
                                    params={"calibrator": spec.params["calibrator"]}, inputs={"model": model},
                                    origin=spec.origin, upstream=[u for u in spec.upstream])
        spec.inputs["calibration"] = Ref(ref=cal_name, stage=cal_name, artifact="calibration-table")
        spec.upstream.append(cal_name)
    # keep each calibrate stage right before its build in the file order
    names = list(specs)
    ordered = {}
    for name in names:
        if name.endswith(".calibrate"):
            continue
        if f"{name}.calibrate" in specs:
            ordered[f"{name}.calibrate"] = specs[f"{name}.calibrate"]
        ordered[name] = specs[name]
    specs.clear()
    specs.update(ordered)


def _check_data_files(cfg: Config, spec: StageSpec, errors: list[str]) -> None:
    """Data sources named in params (calibration, verify samples) must exist before anything runs."""
    from trtpipe.errors import TrtpipeError

    try:
        spec.impl.data_files(spec.params, cfg.base_dir)
    except TrtpipeError as exc:
        errors.append(f"{cfg.where(('stages', spec.origin, *_source_path(spec.params)))}: {exc.message}")


def _source_path(obj: Any) -> tuple[str, ...]:
    """JSON sub-path of the first ``source`` key inside ``obj`` (where a data spec names its files)."""
    if isinstance(obj, dict):
        if "source" in obj:
            return ("source",)
        for key, value in obj.items():
            sub = _source_path(value)
            if sub:
                return (key, *sub)
    return ()


def _stable_topo(specs: dict[str, StageSpec], position: dict[str, int]) -> list[str]:
    sorter = graphlib.TopologicalSorter({n: s.upstream for n, s in specs.items()})
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=lambda n: position[n])
        for n in ready:
            order.append(n)
            sorter.done(n)
    return order


def _resolve(ref: Any, role: str, accepts: tuple[str, ...], stages: dict[str, dict[str, Any]],
             variants: dict[str, list[str]], cfg: Config, where: str, errors: list[str],
             fan_in: bool) -> list[Ref]:
    """Resolve one reference to upstream stage(s) or an external path, checking artifact types."""
    if not isinstance(ref, str):
        errors.append(f"{where}: expected a stage name or a file path, got {ref!r}")
        return []
    if ref in variants and ref not in stages:
        names = variants[ref] if fan_in else variants[ref][:1]
        return [r for n in names for r in _resolve(n, role, accepts, stages, variants, cfg, where, errors, fan_in)]
    if ref in stages:
        kind = stages[ref]["kind"]
        produced = set(REGISTRY[kind].outputs.values())
        if not produced & set(accepts):
            errors.append(f"{where}: input '{role}' needs {' or '.join(accepts)}, but stage '{ref}' "
                          f"(kind {kind}) produces {', '.join(sorted(produced))}")
            return []
        return [Ref(ref=ref, stage=ref, artifact=next(a for a in accepts if a in produced))]
    file_part = ref.split(":", 1)[0] if ref.split(":", 1)[0].endswith(".py") else ref
    path = (cfg.base_dir / file_part).expanduser()
    if not path.exists():
        if not any(ch in ref for ch in _PATHISH):
            errors.append(f"{where}: unknown stage '{ref}'{_suggest(ref, list(stages))}; "
                          f"stages: {', '.join(stages)}")
        else:
            errors.append(f"{where}: input file not found: {path}")
        return []
    func = ref.split(":", 1)[1] if file_part != ref else None
    if func is not None and not func.isidentifier():
        errors.append(f"{where}: builder {ref!r}: {func!r} is not a Python function name; "
                      "write it as 'path/to/file.py:function_name'")
        return []
    artifact = external_type(ref, path)
    if artifact not in accepts:
        got = artifact or f"an unrecognised file ({path.suffix or 'no extension'})"
        errors.append(f"{where}: input '{role}' needs {' or '.join(accepts)}, but {ref} is {got}")
        return []
    return [Ref(ref=ref, path=path, artifact=artifact)]
