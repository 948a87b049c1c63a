"""Open the HTML report in headless Chromium: it loads, shows its content and logs no console errors.

Installs nothing: skipped (with the reason) where ``chromium`` is not already installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trtpipe.fsutil import atomic_write_bytes
from trtpipe.plots import sweep_png_bytes
from trtpipe.report_html import render_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_report_html import make_run  # noqa: E402  (shared run fixture data)


def _chromium() -> str | None:
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


CHROMIUM = _chromium()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (/usr/bin/chromium missing); "
                                             "this test installs nothing")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    run = make_run()
    run["benchmarks"][0]["png"] = sweep_png_bytes(run["benchmarks"][0]["series"], title="bench",
                                                  width_px=600, height_px=250, dpi=100)
    assert CHROMIUM is not None
    page = tmp_path / "report.html"
    atomic_write_bytes(page, render_report(run).encode("utf-8"))
    profile = tmp_path / "profile"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           "--dump-dom", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    dom = proc.stdout.decode("utf-8")
    for stage in run["stages"]:
        assert stage["name"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in dom
    assert "<svg" in dom and "data:image/png;base64," in dom
    for label in run["benchmarks"][0]["series"]:
        assert label in dom
    # Page errors reach stderr as "CONSOLE" lines with the logging flags above.
    errors = [line for line in proc.stderr.decode(errors="replace").splitlines()
              if "CONSOLE" in line and ("error" in line.lower() or "Uncaught" in line)]
    assert errors == []
