"""Which files a data source reads (numpy-free: computing a cache key must stay cheap)."""

from __future__ import annotations

import glob
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trtpipe.errors import ConfigError

#: Image file suffixes a directory source picks up.
IMAGE_SUFFIXES = frozenset({".ppm", ".pgm", ".pnm", ".png", ".jpg", ".jpeg"})
_GLOB_CHARS = frozenset("*?[")
_PATH_HINT = "paths are relative to the pipeline file's directory"


def source_files(data_spec: Mapping[str, Any], base_dir: Path) -> list[Path]:
    """Every file the source depends on, sorted (``[]`` for ``random``); the caller hashes them.

    All matches of a glob or directory are listed, not only the first ``count``: with
    ``shuffle`` the chosen samples depend on the whole list.
    """
    source = data_spec.get("source", "random")
    if source == "random":
        return []
    if not isinstance(source, str) or not source:
        raise ConfigError(f"data source must be 'random' or a path/glob, got {source!r}")
    base_dir = Path(base_dir)
    kind = _kind(source, base_dir)
    if kind == "glob":
        root = None if Path(source).is_absolute() else base_dir
        found = [Path(p) if root is None else root / p
                 for p in glob.glob(source, root_dir=root, recursive=True)]
        files = [p for p in found if p.is_file()]
        if not files:
            raise ConfigError(f"data source {source!r} matched no files (searched from {base_dir})",
                              hint=f"check the pattern; {_PATH_HINT}")
        return sorted(files, key=lambda p: p.as_posix())
    path = _resolve(source, base_dir)
    if not path.exists():
        raise ConfigError(f"data source {source!r} not found (looked for {path})",
                          hint=f"create it, or fix the path; {_PATH_HINT}")
    if kind == "dir":
        files = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise ConfigError(f"data source directory {source!r} contains no images "
                              f"({', '.join(sorted(IMAGE_SUFFIXES))})",
                              hint="add images, or point the source at a glob or .npz file")
        return sorted(files, key=lambda p: p.as_posix())
    return [path]


def _kind(source: str, base_dir: Path) -> str:
    if _GLOB_CHARS & set(source):
        return "glob"
    suffix = Path(source).suffix.lower()
    if suffix in (".npz", ".npy"):
        return suffix[1:]
    return "dir" if _resolve(source, base_dir).is_dir() else "image"


def _resolve(source: str, base_dir: Path) -> Path:
    path = Path(source).expanduser()
    return path if path.is_absolute() else Path(base_dir) / path
