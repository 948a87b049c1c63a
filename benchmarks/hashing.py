"""trtpipe's file digest against coreutils ``sha256sum`` on the same large file, side by side.

Not a test: prints medians of N runs and the ratio. Usage::

    .venv/bin/python benchmarks/hashing.py              # 1 GiB file, 3 runs each
    .venv/bin/python benchmarks/hashing.py --size-mib 256 --repeats 5

The file is made in a temporary directory (``--dir`` to choose where) and deleted afterwards. Its
content is one random 1 MiB block repeated -- SHA-256 costs the same on any bytes, and this keeps
file creation cheap. One untimed read first puts the file in the page cache, and the contenders
alternate within each round, so both are measured on equally warm data (this compares hashing
and read loops, not the disk).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

MIB = 1024 * 1024


def file_sha256(path: Path, chunk: int = 4 * MIB) -> str:
    """Fallback digest: hashlib.sha256 over binary chunks (used when trtpipe.hashing is absent)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def trtpipe_digest() -> tuple[str, Callable[[Path], str]]:
    """trtpipe's own file digest if the module exists, else the local fallback."""
    try:
        from trtpipe.hashing import file_digest
    except ImportError:
        return "file_sha256 (local fallback, 4 MiB chunks)", file_sha256
    return "trtpipe.hashing.file_digest", lambda p: file_digest(p).split(":")[-1]


def sha256sum(path: Path) -> str:
    """Digest by coreutils sha256sum (includes its process start-up, a few ms)."""
    out = subprocess.run(["sha256sum", "-b", str(path)], capture_output=True, check=True).stdout
    return out.split()[0].decode("ascii")


def make_file(path: Path, size_mib: int) -> None:
    block = os.urandom(MIB)
    with open(path, "wb") as fh:
        for _ in range(size_mib):
            fh.write(block)


def timed(fn: Callable[[Path], str], path: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    digest = fn(path)
    return time.perf_counter() - t0, digest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024, help="file size in MiB (default 1024 = 1 GiB)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per contender (default 3)")
    ap.add_argument("--dir", type=Path, default=None, help="where to create the temporary file")
    args = ap.parse_args(argv)
    if shutil.which("sha256sum") is None:
        print("sha256sum (coreutils) not found; nothing to compare against", file=sys.stderr)
        return 2

    label, ours = trtpipe_digest()
    contenders: list[tuple[str, Callable[[Path], str]]] = [
        (label, ours), ("sha256sum (coreutils)", sha256sum),
        ("hashlib, 1 MiB read loop", lambda p: file_sha256(p, MIB)),
        ("hashlib, 8 MiB read loop", lambda p: file_sha256(p, 8 * MIB)),
    ]
    with tempfile.TemporaryDirectory(prefix="trtpipe-bench-hash-", dir=args.dir) as tmp:
        path = Path(tmp) / "blob.bin"
        make_file(path, args.size_mib)
        reference = sha256sum(path)  # also the untimed warm-up read
        times: dict[str, list[float]] = {name: [] for name, _ in contenders}
        for _ in range(args.repeats):
            for name, fn in contenders:
                seconds, digest = timed(fn, path)
                if digest != reference:
                    print(f"{name}: digest {digest} != sha256sum {reference}", file=sys.stderr)
                    return 1
                times[name].append(seconds)
    # The temporary directory (and the file) are gone here.

    size = args.size_mib * MIB
    base = statistics.median(times["sha256sum (coreutils)"])
    print(f"file: {args.size_mib} MiB, median of {args.repeats} runs, page cache warm, digests agree")
    print(f"{'contender':45} {'median s':>9} {'MiB/s':>8} {'vs sha256sum':>13}")
    for name, _ in contenders:
        med = statistics.median(times[name])
        print(f"{name:45} {med:9.3f} {size / MIB / med:8.0f} {med / base:12.2f}x")
    print(f"ratio {label} / sha256sum = {statistics.median(times[label]) / base:.2f} (time; < 1 is faster)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
