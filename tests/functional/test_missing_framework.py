"""A framework that is not installed: exit 3 with the install hint, before any work -- and a fully
cached run needs no framework at all.

The absence is real for the child process: ``sys.modules[name] = None`` is Python's own way of
marking a module as not importable (``import`` raises, ``importlib.util.find_spec`` returns None).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from trtpipe_testkit import subprocess_env, write_pipeline


def _run_without(module: str, pipeline: Path) -> subprocess.CompletedProcess[bytes]:
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            "import trtpipe.cli\n"
            f"sys.exit(trtpipe.cli.main(['run', {str(pipeline)!r}]))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, env=subprocess_env(),
                          cwd=pipeline.parent, timeout=600)


def test_missing_tensorflow_exits_3_before_any_work(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path / "p")
    proc = _run_without("tensorflow", pipeline)
    err = proc.stderr.decode()
    assert proc.returncode == 3, err
    assert "TensorFlow is not installed" in err and "trtpipe[tf]" in err
    stages = tmp_path / "p" / "artifacts" / "stages"
    assert not stages.exists() or not any(stages.iterdir())  # nothing was built or recorded


def test_cached_run_needs_no_framework(tiny_copy: Path) -> None:
    proc = _run_without("tensorflow", tiny_copy)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"nothing to do" in proc.stdout
