"""Content-addressed artifact store.

Layout under the store root (``artifacts/`` by default)::

    objects/<hh>/<rest of sha256>          read-only bytes, written temp + fsync + rename
    stages/<key>.json                      one record per stage key (written last, atomically)
    <pipeline>/<stage>/<name>-<sha12>.<ext> human-facing hard links to objects
    locks/<key>.lock                       per-key advisory locks (concurrent runs)
    tmp/                                   scratch directories of running stages
    statcache.json                         (path, size, mtime, ctime, inode) -> digest

A record whose objects are missing, or whose bytes no longer match their digest, is a miss:
it is never served. A stage killed mid-run leaves only scratch files and ``.tmp-*`` files,
which nothing treats as valid.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trtpipe import hashing
from trtpipe.errors import StoreError
from trtpipe.fsutil import atomic_write_json

RECORD_FORMAT = 1


class StatCache:
    """Digest cache keyed by path and stat facts, so a no-op run does not re-read big files.

    ctime is part of the signature: it changes on any write and cannot be set back by a user,
    so an edited file is always re-hashed even if its mtime was restored.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, list[Any]] = {}
        self.dirty = False
        with contextlib.suppress(OSError, ValueError):  # a missing or damaged cache only costs re-hashing
            data = json.loads(path.read_bytes())
            if isinstance(data, dict):
                self.entries = data

    @staticmethod
    def _sig(st: os.stat_result) -> list[int]:
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]

    def digest(self, path: Path) -> str:
        """sha256 of a file or directory, from the cache when its stat facts are unchanged."""
        path = Path(path).absolute()
        if path.is_dir():
            return hashing.dir_digest(path, self.digest)
        st = path.stat()
        sig = self._sig(st)
        hit = self.entries.get(str(path))
        if hit and hit[:4] == sig:
            return str(hit[4])
        digest = hashing.file_digest(path)
        if self._sig(path.stat()) == sig:  # unchanged while we read it
            self.entries[str(path)] = [*sig, digest]
            self.dirty = True
        return digest

    def save(self) -> None:
        """Merge with what other processes saved meanwhile, and write atomically."""
        if not self.dirty:
            return
        try:
            current = json.loads(self.path.read_bytes())
            if not isinstance(current, dict):
                current = {}
        except (OSError, ValueError):
            current = {}
        current.update(self.entries)
        with contextlib.suppress(OSError):
            atomic_write_json(self.path, current)
        self.dirty = False


class Store:
    """A content-addressed store rooted at ``root``."""

    def __init__(self, root: str | os.PathLike[str], *, create: bool = True) -> None:
        self.root = Path(root).absolute()
        self.stat_cache = StatCache(self.root / "statcache.json")
        if not create:  # read-only use (`status`, `report`): never write into the store
            self.stat_cache.save = lambda: None  # type: ignore[method-assign]
            return
        try:
            for sub in ("objects", "stages", "locks", "tmp"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the artifact store at {self.root}: {exc.strerror}",
                             hint="set `store:` in the pipeline file to a writable directory") from None

    # ------------------------------------------------------------------ objects

    def object_path(self, digest: str) -> Path:
        """Where the object with ``digest`` lives (whether or not it exists)."""
        return self.root / "objects" / digest[:2] / digest[2:]

    def has_valid_object(self, digest: str) -> bool:
        """True when the object exists and its bytes still hash to ``digest``."""
        path = self.object_path(digest)
        try:
            return self.stat_cache.digest(path) == digest
        except OSError:
            return False

    def put_file(self, src: Path) -> tuple[str, int]:
        """Copy ``src`` into the store (atomically, read-only); returns (sha256, size)."""
        digest = hashing.file_digest(src)
        size = src.stat().st_size
        dest = self.object_path(digest)
        if dest.exists() and self.has_valid_object(digest):
            return digest, size
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
                shutil.copyfileobj(inp, out, hashing.CHUNK)
                out.flush()
                os.fsync(out.fileno())
            if hashing.file_digest(tmp) != digest:
                raise StoreError(f"{src} changed while it was being stored; run again")
            os.chmod(tmp, 0o444)
            if dest.exists():  # a corrupt object is replaced, never trusted
                os.chmod(dest, 0o644)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return digest, size

    # ------------------------------------------------------------------ records

    def record_path(self, key: str) -> Path:
        return self.root / "stages" / f"{key}.json"

    def read_record(self, key: str) -> dict[str, Any] | None:
        """The record for ``key``, or None when absent or unreadable (a damaged record is a miss)."""
        try:
            rec = json.loads(self.record_path(key).read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(rec, dict) or rec.get("format") != RECORD_FORMAT or rec.get("key") != key:
            return None
        return rec

    def check_record(self, rec: dict[str, Any]) -> str | None:
        """None when every object of ``rec`` is present and intact, else the reason it is not."""
        for name, out in rec.get("outputs", {}).items():
            digest = out.get("sha256", "")
            if not self.object_path(digest).exists():
                return f"output '{name}' is missing from the store"
            if not self.has_valid_object(digest):
                return f"output '{name}' is corrupt in the store (its bytes no longer match sha256 {digest[:12]})"
        return None

    def commit(self, key: str, outputs: dict[str, Path], info: dict[str, Any]) -> dict[str, Any]:
        """Store every output, then write the record last (so a crash never leaves a valid-looking record)."""
        outs: dict[str, Any] = {}
        for name, path in outputs.items():
            path = Path(path)
            if not path.is_file():
                raise StoreError(f"stage output '{name}' was not produced ({path})")
            digest, size = self.put_file(path)
            outs[name] = {"sha256": digest, "size": size, "ext": "".join(path.suffixes[-1:])}
        rec = {"format": RECORD_FORMAT, "key": key, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               **info, "outputs": outs}
        atomic_write_json(self.record_path(key), rec)
        return rec

    # ------------------------------------------------------------------ human-facing names

    def link_outputs(self, pipeline: str, stage: str, rec: dict[str, Any]) -> dict[str, Path]:
        """Hard-link each output as ``<pipeline>/<stage>/<name>-<sha12><ext>``; prune stale names."""
        folder = self.root / pipeline / stage
        folder.mkdir(parents=True, exist_ok=True)
        wanted: dict[str, Path] = {}
        for name, out in rec["outputs"].items():
            target = folder / f"{name}-{out['sha256'][:12]}{out['ext']}"
            wanted[name] = target
            if target.exists() and os.path.samefile(target, self.object_path(out["sha256"])):
                continue
            tmp = folder / f".tmp-{os.getpid()}-{target.name}"
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            try:
                os.link(self.object_path(out["sha256"]), tmp)
            except OSError:  # another filesystem or no hard links: a read-only copy
                shutil.copyfile(self.object_path(out["sha256"]), tmp)
                os.chmod(tmp, 0o444)
            os.replace(tmp, target)
        keep = {p.name for p in wanted.values()}
        for stale in folder.iterdir():
            if stale.name not in keep and not stale.name.startswith(".tmp-"):
                with contextlib.suppress(OSError):
                    shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        return wanted

    def prune_pipeline(self, pipeline: str, stages: set[str]) -> None:
        """Remove human-facing folders of stages that are no longer in the pipeline."""
        folder = self.root / pipeline
        if folder.is_dir():
            for child in folder.iterdir():
                if child.is_dir() and child.name not in stages:
                    shutil.rmtree(child, ignore_errors=True)

    # ------------------------------------------------------------------ locks and scratch

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Exclusive advisory lock (blocks while another process holds it)."""
        path = self.root / "locks" / f"{name}.lock"
        with open(path, "ab") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def scratch(self, key: str) -> Iterator[Path]:
        """A private scratch directory for one stage run, removed afterwards whatever happens."""
        self._clean_stale_scratch()
        path = Path(tempfile.mkdtemp(prefix=f"{key[:16]}.{os.getpid()}.", dir=self.root / "tmp"))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def _clean_stale_scratch(self) -> None:
        """Remove scratch folders of processes that no longer exist (a killed stage's leftovers)."""
        for child in (self.root / "tmp").iterdir():
            parts = child.name.split(".")
            if len(parts) >= 3 and parts[1].isdigit() and not _pid_alive(int(parts[1])):
                shutil.rmtree(child, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
