"""Timing loop in trtexec's style, and process memory readings.

``measure`` runs a zero-argument callable: first for ``warmup_s`` seconds whose timings are thrown
away (caches, lazy allocations, thread pools and JIT paths settle), then timed iterations until
*both* ``min_duration_s`` has elapsed and ``min_iterations`` have run -- trtexec's ``--warmUp``,
``--duration`` and ``--iterations`` -- optionally capped by ``max_iterations``.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable

from trtpipe.errors import ConfigError


def measure(fn: Callable[[], object], *, warmup_s: float = 0.2, min_duration_s: float = 1.0,
            min_iterations: int = 10, max_iterations: int | None = None,
            clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Return the latency in seconds of each timed call of ``fn``.

    ``clock`` is ``time.perf_counter`` (monotonic, highest resolution); it is a parameter so a
    caller can drive the loop from another monotonic source. ``max_iterations`` wins over
    ``min_duration_s`` (a cap for slow models), but must not be below ``min_iterations``.
    """
    _check_settings(warmup_s, min_duration_s, min_iterations, max_iterations)
    if warmup_s > 0:
        # At least one warm-up call even if it alone outlasts warmup_s: the first call is the slow one.
        start = clock()
        while True:
            fn()
            if clock() - start >= warmup_s:
                break

    latencies: list[float] = []
    start = clock()
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        latencies.append(t1 - t0)
        if max_iterations is not None and len(latencies) >= max_iterations:
            break
        if len(latencies) >= min_iterations and t1 - start >= min_duration_s:
            break
    return latencies


def _check_settings(warmup_s: float, min_duration_s: float, min_iterations: int,
                    max_iterations: int | None) -> None:
    for name, value in (("warmup_s", warmup_s), ("min_duration_s", min_duration_s)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ConfigError(f"benchmark setting {name} must be a number >= 0 seconds, found {value!r}",
                              hint=f"e.g. {name}: 0.5")
    if isinstance(min_iterations, bool) or not isinstance(min_iterations, int) or min_iterations < 1:
        raise ConfigError(f"benchmark setting min_iterations must be an integer >= 1, found {min_iterations!r}",
                          hint="e.g. min_iterations: 10")
    if max_iterations is not None:
        if isinstance(max_iterations, bool) or not isinstance(max_iterations, int) or max_iterations < 1:
            raise ConfigError(f"benchmark setting max_iterations must be an integer >= 1 or null, "
                              f"found {max_iterations!r}", hint="omit it for no cap")
        if max_iterations < min_iterations:
            raise ConfigError(f"benchmark setting max_iterations ({max_iterations}) is below "
                              f"min_iterations ({min_iterations})",
                              hint="raise max_iterations or lower min_iterations")


def peak_rss_bytes() -> int:
    """High-water mark of this process's resident set size, in bytes (since process start).

    From ``getrusage(RUSAGE_SELF).ru_maxrss``. Linux updates that mark lazily (per-thread RSS
    counters are folded in only now and then), so it can trail the current RSS by a few hundred
    kB; a high-water mark is never below the current value, so the larger of the two is returned.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    peak_bytes = int(peak) if sys.platform == "darwin" else int(peak) * 1024
    return max(peak_bytes, _statm_rss_bytes() or 0)


def current_rss_bytes() -> int:
    """Resident set size of this process right now, in bytes.

    Read from ``/proc/self/statm`` (second field, in pages). Where there is no ``/proc`` the
    high-water mark is the best available reading and is returned instead.
    """
    rss = _statm_rss_bytes()
    return peak_rss_bytes() if rss is None else rss


def _statm_rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as fh:
            fields = fh.read().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return None
