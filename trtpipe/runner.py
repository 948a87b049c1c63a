"""Run a pipeline's stages in order: key -> hit (reuse) | miss (run, commit). Never prints.

Progress goes to a ``reporter`` (``on_start(spec, reason)``, ``on_end(result)``); the CLI picks
the console or JSON one. Framework output during a stage (Python logging and the process's
stdout/stderr file descriptors, where TensorFlow's C++ logs go) is captured into the stage's
log file, which is stored as the stage's ``log`` output.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from trtpipe import hashing
from trtpipe.errors import BackendUnavailable, ConfigError, TrtpipeError
from trtpipe.lockfile import LockFile, explain_change
from trtpipe.pipeline import Pipeline, Ref, StageSpec
from trtpipe.stages.base import Input, StageContext
from trtpipe.store import Store


@dataclass
class StageResult:
    """What happened to one stage in a run (or would happen, in plan mode)."""

    name: str
    kind: str
    status: str  # built | cached | measured | failed | skipped | stale
    seconds: float = 0.0
    run_seconds: float = 0.0  # time inside the stage's own work (frameworks), excluding trtpipe's
    key: str | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    reason: str = ""
    error: str | None = None
    hint: str | None = None
    missing_backend: bool = False  # failed because a framework/backend is not installed (exit 3)
    log: Path | None = None
    upstream: list[str] = field(default_factory=list)
    material: dict[str, Any] | None = None
    record: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "status": self.status, "seconds": round(self.seconds, 3),
                "run_seconds": round(self.run_seconds, 3),
                "key": self.key, "reason": self.reason, "error": self.error,
                "outputs": {n: {"path": str(o["path"]), "sha256": o["sha256"]} for n, o in self.outputs.items()}}


@dataclass
class RunResult:
    """The outcome of ``runner.run``."""

    pipeline: str
    stages: list[StageResult]
    lock_path: Path | None = None
    store_root: Path | None = None

    @property
    def ok(self) -> bool:
        return not any(s.status in ("failed", "stale") for s in self.stages)

    def to_json(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline, "ok": self.ok, "stages": [s.to_json() for s in self.stages]}


class Reporter(Protocol):
    def on_start(self, spec: StageSpec, reason: str) -> None: ...
    def on_end(self, result: StageResult) -> None: ...


class _Silent:
    def on_start(self, spec: StageSpec, reason: str) -> None:
        pass

    def on_end(self, result: StageResult) -> None:
        pass


@contextlib.contextmanager
def _capture(log_path: Path) -> Iterator[logging.Logger]:
    """Send Python logging and fd 1/2 (C++ framework logs) to ``log_path`` for the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    fh = open(log_path, "ab", buffering=0)
    text = open(log_path, "a", encoding="utf-8", errors="replace", buffering=1)
    saved = [os.dup(1), os.dup(2)]
    handler = logging.StreamHandler(text)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    old_streams = sys.stdout, sys.stderr
    try:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        sys.stdout = sys.stderr = text
        yield logging.getLogger("trtpipe.stage")
    finally:
        with contextlib.suppress(Exception):
            text.flush()
        sys.stdout, sys.stderr = old_streams
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
        text.close()
        fh.close()


def _relname(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path)


class Runner:
    """Executes (or, with ``plan=True``, only evaluates) a pipeline against a store."""

    def __init__(self, pipeline: Pipeline, store: Store, reporter: Reporter | None = None, *,
                 force: set[str] | None = None, keep_going: bool = False, frozen: bool = False,
                 plan: bool = False, capture: bool = True) -> None:
        self.p = pipeline
        self.store = store
        self.reporter = reporter or _Silent()
        self.force = force or set()
        self.keep_going = keep_going
        self.plan = plan or frozen
        self.frozen = frozen
        self.capture = capture
        self.lock = LockFile.for_pipeline(pipeline.config.path)

    # ------------------------------------------------------------------ inputs and keys

    def _input_material(self, ref: Ref, results: dict[str, StageResult]) -> dict[str, Any] | None:
        if ref.stage:
            up = results.get(ref.stage)
            if up is None or not up.outputs:
                return None
            return {"outputs": {n: o["sha256"] for n, o in sorted(up.outputs.items()) if n != "log"}}
        assert ref.path is not None
        entry = ref.ref.split(":", 1)[1] if ref.ref.split(":", 1)[0].endswith(".py") and ":" in ref.ref else None
        try:
            digest = self.store.stat_cache.digest(ref.path)
        except OSError as exc:
            raise ConfigError(f"{ref.path}: cannot read input ({exc.strerror})") from None
        return {"sha256": digest, **({"entry": entry} if entry else {})}

    def _material(self, spec: StageSpec, results: dict[str, StageResult]) -> dict[str, Any] | None:
        inputs: dict[str, Any] = {}
        for role, value in sorted(spec.inputs.items()):
            refs = value if isinstance(value, list) else [value]
            mats = [self._input_material(r, results) for r in refs]
            if any(m is None for m in mats):
                return None
            inputs[role] = mats if isinstance(value, list) else mats[0]
        files = spec.impl.data_files(spec.params, self.p.config.base_dir)
        if files:
            base = self.p.config.base_dir
            inputs["data"] = {"files": {_relname(f, base): self.store.stat_cache.digest(f) for f in files}}
        return hashing.key_material(spec.kind, spec.impl.VERSION, spec.impl.key_params(spec.params),
                                    inputs, spec.impl.env_keys(spec.params))

    def _context_inputs(self, spec: StageSpec, results: dict[str, StageResult]) -> dict[str, Input | list[Input]]:
        out: dict[str, Input | list[Input]] = {}
        for role, value in spec.inputs.items():
            refs = value if isinstance(value, list) else [value]
            items = []
            for r in refs:
                if r.stage:
                    files = {n: self.store.object_path(o["sha256"]) for n, o in results[r.stage].outputs.items()}
                    digests = {n: o["sha256"] for n, o in results[r.stage].outputs.items()}
                    items.append(Input(ref=r.ref, stage=r.stage, files=files, artifact=r.artifact, digests=digests))
                else:
                    items.append(Input(ref=r.ref, path=r.path, artifact=r.artifact))
            out[role] = items if isinstance(value, list) else items[0]
        return out

    # ------------------------------------------------------------------ main loop

    def run(self, names: list[str] | None = None) -> RunResult:
        """Run ``names`` (default: every stage) in topological order."""
        order = names or self.p.order
        results: dict[str, StageResult] = {}
        stop = False
        for name in order:
            spec = self.p.stages[name]
            res = self._one(spec, results, stop)
            results[name] = res
            if res.status == "failed" and not self.keep_going:
                stop = True
        self.store.stat_cache.save()
        ordered = [results[n] for n in order]
        out = RunResult(pipeline=self.p.name, stages=ordered, store_root=self.store.root)
        if not self.plan:
            self.lock.update(self.p, ordered, full=names is None or set(names) == set(self.p.order))
            out.lock_path = self.lock.path
            if names is None:
                self.store.prune_pipeline(self.p.name, set(self.p.order))
        return out

    def _one(self, spec: StageSpec, results: dict[str, StageResult], stop: bool) -> StageResult:
        res = StageResult(name=spec.name, kind=spec.kind, status="skipped", upstream=list(spec.upstream))
        bad_up = [u for u in spec.upstream if results.get(u) is None or results[u].status in ("failed", "skipped", "stale")]
        if bad_up:
            up = results.get(bad_up[0])
            state = up.status if up else "skipped"
            res.status = "stale" if state == "stale" else "skipped"
            res.reason = f"upstream '{bad_up[0]}' " + {"stale": "would rebuild", "failed": "failed"}.get(
                state, "did not complete")
        elif stop:
            res.reason = "not run: an earlier stage failed (use --keep-going to run independent stages)"
        if res.reason:
            self.reporter.on_end(res)
            return res
        try:
            material = self._material(spec, results)
        except TrtpipeError as exc:
            res.status, res.error, res.hint = "failed", exc.message, exc.hint
            self.reporter.on_end(res)
            return res
        assert material is not None
        res.material = material
        res.key = key = hashing.stage_key(material)
        cacheable = spec.impl.cache_enabled(spec.params)
        forced = spec.name in self.force
        rec = self.store.read_record(key) if cacheable and not forced else None
        problem = self.store.check_record(rec) if rec else None
        entry = self.lock.entry(spec.name)
        if self.frozen and rec and not problem and (entry is None or entry.get("key") != key):
            # --frozen proves the lock file describes this pipeline: a store that happens to hold the
            # result (built earlier with these params) does not make a stale lock entry up to date.
            res.status = "stale"
            res.reason = f"{self.lock.path.name} is out of date: {explain_change(entry, material)}"
            self.reporter.on_end(res)
            return res
        if rec and not problem:
            return self._hit(spec, res, rec)
        if not cacheable:
            res.reason = "measures every run (cache: false)"
            if self.frozen:
                res.status, res.reason = "skipped", "measurement stage, not run with --frozen"
                self.reporter.on_end(res)
                return res
        elif forced:
            res.reason = "forced (--force)"
        else:
            res.reason = problem or explain_change(self.lock.entry(spec.name), material)
        if self.plan:
            res.status = "stale"
            self.reporter.on_end(res)
            return res
        return self._build(spec, res, results)

    def _hit(self, spec: StageSpec, res: StageResult, rec: dict[str, Any]) -> StageResult:
        res.status, res.record = "cached", rec
        res.seconds = float(rec.get("duration_s", 0.0))
        links = {} if self.plan else self.store.link_outputs(self.p.name, spec.name, rec)
        res.outputs = {n: {**o, "path": links.get(n, self.store.object_path(o["sha256"]))}
                       for n, o in rec["outputs"].items()}
        res.log = res.outputs.get("log", {}).get("path")
        self.reporter.on_end(res)
        return res

    def _build(self, spec: StageSpec, res: StageResult, results: dict[str, StageResult]) -> StageResult:
        key = res.key
        assert key is not None
        self.reporter.on_start(spec, res.reason)
        started = time.perf_counter()
        with self.store.lock(key):
            rec = self.store.read_record(key) if spec.impl.cache_enabled(spec.params) and spec.name not in self.force else None
            if rec and not self.store.check_record(rec):  # another run built it while we waited
                return self._hit(spec, res, rec)
            with self.store.scratch(key) as scratch:
                log_path = scratch / "log.txt"
                log_path.touch()
                try:
                    spec.impl.preflight(spec.params)
                    ctx = StageContext(name=spec.name, pipeline=self.p.name, params=spec.params,
                                       inputs=self._context_inputs(spec, results), scratch=scratch / "out",
                                       base_dir=self.p.config.base_dir, log=logging.getLogger("trtpipe.stage"),
                                       store_root=self.store.root, lock_digests=self._lock_digests())
                    ctx.scratch.mkdir()
                    with _capture(log_path) if self.capture else contextlib.nullcontext(ctx.log) as log:
                        ctx.log = log
                        run_started = time.perf_counter()
                        outputs = spec.impl.run(ctx)
                        res.run_seconds = time.perf_counter() - run_started
                    outputs = {**outputs, "log": log_path}
                    seconds = time.perf_counter() - started
                    rec = self.store.commit(key, outputs, {"stage": spec.name, "kind": spec.kind,
                                                           "material": res.material, "duration_s": round(seconds, 3)})
                except TrtpipeError as exc:
                    res.missing_backend = isinstance(exc, BackendUnavailable)
                    return self._failed(spec, res, exc.message, exc.hint, log_path, started)
                except Exception as exc:  # an unexpected bug: keep the traceback in the log
                    with open(log_path, "a", encoding="utf-8") as fh:
                        fh.write(traceback.format_exc())
                    return self._failed(spec, res, f"unexpected {type(exc).__name__}: {exc}",
                                        "this is a bug in trtpipe or a framework; the traceback is in the log",
                                        log_path, started)
        # A measurement (benchmark) is not a build: a second run still reports every build cached.
        res.status = "built" if spec.impl.cache_enabled(spec.params) else "measured"
        res.record = rec
        res.seconds = time.perf_counter() - started
        links = self.store.link_outputs(self.p.name, spec.name, rec)
        res.outputs = {n: {**o, "path": links[n]} for n, o in rec["outputs"].items()}
        res.log = links.get("log")
        self.reporter.on_end(res)
        return res

    def _failed(self, spec: StageSpec, res: StageResult, message: str, hint: str | None, log_path: Path,
                started: float) -> StageResult:
        keep = self.store.root / "logs" / self.p.name / f"{spec.name}.failed.log"
        keep.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            shutil.copyfile(log_path, keep)
        res.status, res.error, res.hint, res.log = "failed", message, hint, keep
        res.seconds = time.perf_counter() - started
        self.reporter.on_end(res)
        return res

    def _lock_digests(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, entry in self.lock.stages.items():
            for oname, o in entry.get("outputs", {}).items():
                out[f"{name}.{oname}"] = o.get("sha256", "")
        return out

