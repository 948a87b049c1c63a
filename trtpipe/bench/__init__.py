"""Benchmark measurement: trtexec-style timing loops, statistics, and batch-size sweeps.

Plain library code: no frameworks are imported here (the callables being timed bring their own).
"""

from trtpipe.bench.measure import current_rss_bytes, measure, peak_rss_bytes
from trtpipe.bench.stats import marginal_cost, speedups, summarize
from trtpipe.bench.sweep import batches_from_spec, sweep

__all__ = ["batches_from_spec", "current_rss_bytes", "marginal_cost", "measure", "peak_rss_bytes",
           "speedups", "summarize", "sweep"]
