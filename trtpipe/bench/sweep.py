"""Batch-size sweeps: one measured, summarized point per batch, and the batch-list spec."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from trtpipe.bench.measure import current_rss_bytes, measure, peak_rss_bytes
from trtpipe.bench.stats import summarize
from trtpipe.errors import ConfigError, StageFailed, TrtpipeError

#: Keys ``settings`` may carry; they are the keyword arguments of ``measure``.
SETTINGS_KEYS = ("warmup_s", "min_duration_s", "min_iterations", "max_iterations")

_RANGE = re.compile(r"^\s*(\d+)\s*\.\.\s*(\d+|max)\s*$")


def sweep(make_runner: Callable[[int], Callable[[], object]], batches: list[int], *,
          settings: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Measure ``make_runner(batch)()`` for each batch; return one point dict per batch.

    A point is :func:`trtpipe.bench.stats.summarize` plus ``rss_bytes`` (resident set right after
    the batch's timed loop) and ``peak_rss_bytes`` (the process high-water mark so far -- it only
    grows, so it bounds the memory of this batch and every batch before it). ``settings`` holds
    ``measure`` keywords (``warmup_s``, ``min_duration_s``, ``min_iterations``, ``max_iterations``).
    A runner that raises something other than a ``TrtpipeError`` becomes ``StageFailed`` naming
    the batch.
    """
    opts = dict(settings or {})
    unknown = sorted(set(opts) - set(SETTINGS_KEYS))
    if unknown:
        raise ConfigError(f"unknown benchmark setting(s) {unknown}; expected some of {list(SETTINGS_KEYS)}",
                          hint="check the spelling of the benchmark stage's settings")
    if not batches:
        raise ConfigError("sweep: the list of batch sizes is empty", hint="e.g. batches: [1, 2, 4, 8]")
    points: list[dict[str, Any]] = []
    for batch in batches:
        try:
            run = make_runner(batch)
            latencies = measure(run, **opts)
        except TrtpipeError:
            raise
        except Exception as exc:  # a framework error: name the batch instead of a raw traceback
            raise StageFailed(f"benchmark at batch {batch} failed: {type(exc).__name__}: {exc}",
                              hint="run the model once at this batch size outside the benchmark "
                                   "(trtpipe run -v shows the framework log)") from exc
        point = summarize(latencies, batch)
        point["rss_bytes"] = current_rss_bytes()
        # Read after rss_bytes, and never below it, so peak >= rss holds for every point.
        point["peak_rss_bytes"] = max(peak_rss_bytes(), point["rss_bytes"])
        points.append(point)
    return points


def batches_from_spec(spec: object, max_batch: int | None) -> list[int]:
    """Expand a batch spec into a list of batch sizes, each checked against ``max_batch``.

    ``spec`` is a list (``[1, 2, 4, 8]``), a single integer, an inclusive range mapping
    (``{"start": 1, "stop": 8, "step": 1}``; ``step`` defaults to 1) or a string ``"1..8"``.
    ``stop`` may be ``"max"`` to mean ``max_batch``. Batches must be positive, unique and not
    above ``max_batch`` (``None`` = no limit); a violation names the offending value.
    """
    if isinstance(spec, bool):
        raise ConfigError(f"batches: expected a list, a range or 'a..b', found {spec!r}")
    if isinstance(spec, int):
        out = [spec]
    elif isinstance(spec, (list, tuple)):
        out = list(spec)
    elif isinstance(spec, Mapping):
        out = _from_mapping(spec, max_batch)
    elif isinstance(spec, str):
        m = _RANGE.match(spec)
        if not m:
            raise ConfigError(f"batches: cannot parse {spec!r}; expected 'start..stop' such as '1..8'",
                              hint="or a list like [1, 2, 4, 8]")
        start, stop = int(m.group(1)), _stop(m.group(2), max_batch)
        out = _inclusive_range(start, stop, 1, spec)
    else:
        raise ConfigError(f"batches: expected a list, a range mapping or 'a..b', found "
                          f"{type(spec).__name__} {spec!r}", hint="e.g. batches: [1, 2, 4, 8]")
    return _checked(out, max_batch)


def _from_mapping(spec: Mapping[str, Any], max_batch: int | None) -> list[int]:
    unknown = sorted(set(spec) - {"start", "stop", "step"})
    if unknown or "stop" not in spec:
        raise ConfigError(f"batches: a range needs 'stop' (and optional 'start', 'step'); "
                          f"found keys {sorted(spec)}", hint='e.g. {"start": 1, "stop": 8, "step": 1}')
    start, step, stop = spec.get("start", 1), spec.get("step", 1), spec["stop"]
    for key, value in (("start", start), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"batches: range {key} must be an integer >= 1, found {value!r}")
    if isinstance(stop, str):
        stop = _stop(stop, max_batch)
    if isinstance(stop, bool) or not isinstance(stop, int):
        raise ConfigError(f"batches: range stop must be an integer or 'max', found {stop!r}")
    return _inclusive_range(start, stop, step, spec)


def _stop(text: str, max_batch: int | None) -> int:
    if text.strip() != "max":
        return int(text)
    if max_batch is None:
        raise ConfigError("batches: 'max' used but the engine has no max_batch",
                          hint="give an explicit stop, e.g. '1..8'")
    return max_batch


def _inclusive_range(start: int, stop: int, step: int, spec: object) -> list[int]:
    if stop < start:
        raise ConfigError(f"batches: range {spec!r} is empty (stop {stop} < start {start})",
                          hint="stop is inclusive and must be >= start")
    return list(range(start, stop + 1, step))


def _checked(values: list[Any], max_batch: int | None) -> list[int]:
    if not values:
        raise ConfigError("batches: the list of batch sizes is empty", hint="e.g. batches: [1, 2, 4, 8]")
    seen: set[int] = set()
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"batches: every batch must be an integer >= 1, found {value!r}")
        if max_batch is not None and value > max_batch:
            raise ConfigError(f"batches: batch {value} exceeds the engine's max_batch {max_batch}",
                              hint=f"drop {value} from batches or build the engine with max_batch >= {value}")
        if value in seen:
            raise ConfigError(f"batches: batch {value} is listed twice")
        seen.add(value)
    return list(values)
