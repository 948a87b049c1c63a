"""The library face of trtpipe: ``run``, ``validate``, ``status``. Raises; never prints."""

from __future__ import annotations

from pathlib import Path

from trtpipe import config, pipeline
from trtpipe.errors import ConfigError
from trtpipe.runner import Reporter, Runner, RunResult
from trtpipe.store import Store


def validate(path: str | Path) -> pipeline.Pipeline:
    """Load, schema-check and resolve a pipeline file. Writes nothing."""
    cfg = config.load(path)
    return pipeline.build(cfg)


def open_store(p: pipeline.Pipeline, *, create: bool = True) -> Store:
    """The pipeline's artifact store (``store:`` relative to the pipeline file)."""
    return Store(p.config.base_dir / p.config.doc["store"], create=create)


def _selection(p: pipeline.Pipeline, targets: list[str] | None) -> list[str] | None:
    if not targets:
        return None
    return p.closure(p.resolve_names(targets))


def run(path: str | Path, *, targets: list[str] | None = None, force: list[str] | None = None,
        force_all: bool = False, keep_going: bool = False, frozen: bool = False,
        reporter: Reporter | None = None, capture: bool = True) -> RunResult:
    """Run a pipeline. ``frozen`` builds nothing and reports stages that would rebuild.

    Validation and preflight checks (backends present, capabilities) happen before anything is
    written, so a bad file or a missing backend never leaves partial work behind.
    """
    p = validate(path)
    names = _selection(p, targets)
    selected = names or p.order
    if force_all:
        forced = set(selected)
    else:
        forced = set(p.resolve_names(force)) if force else set()
        unknown = forced - set(selected)
        if unknown:
            raise ConfigError(f"--force {', '.join(sorted(unknown))}: not among the stages being run")
    if not frozen:
        # Before any work (nothing written, not even the store): a missing framework or backend is
        # exit 3, not a failure halfway. Only stages that will run need theirs; a cached run needs none.
        plan = Runner(p, open_store(p, create=False), None, force=forced, plan=True).run(names)
        for st in plan.stages:
            if st.status == "stale":
                spec = p.stages[st.name]
                spec.impl.preflight(spec.params)
    store = open_store(p)
    with store.lock(f"pipeline-{p.name}"):
        runner = Runner(p, store, reporter, force=forced, keep_going=keep_going, frozen=frozen, capture=capture)
        return runner.run(names)


def status(path: str | Path, *, targets: list[str] | None = None) -> RunResult:
    """What is cached and what would rebuild (and why). Builds nothing, imports no framework."""
    p = validate(path)
    runner = Runner(p, open_store(p, create=False), None, plan=True)
    return runner.run(_selection(p, targets))

