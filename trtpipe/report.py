"""Console reporters: rich progress + summary table, and a JSON reporter. Only the CLI uses them."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from trtpipe.pipeline import StageSpec
from trtpipe.runner import RunResult, StageResult

if TYPE_CHECKING:  # rich is imported only when something richer than a cached line is shown
    from rich.console import Console
    from rich.table import Table

_STYLE = {"measured": "blue", "built": "green", "cached": "cyan", "failed": "bold red", "skipped": "yellow", "stale": "magenta"}


class LazyConsole:
    """A rich ``Console`` created on first use, writing to a duplicate of ``stream``'s descriptor.

    Stages redirect file descriptors 1 and 2 into their log files while they run (that is where
    TensorFlow's C++ logs go); writing to a duplicate keeps trtpipe's own progress on the terminal.
    Plain lines (``line``) go out without importing rich, so a fully cached run stays fast.
    """

    def __init__(self, stream: IO[str]) -> None:
        try:
            fd = os.dup(stream.fileno())
            self.out: IO[str] = os.fdopen(fd, "w", buffering=1, encoding="utf-8", errors="replace")
        except (OSError, ValueError, AttributeError):  # not a real file (pytest capture, StringIO)
            self.out = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._console: Console | None = None

    @property
    def rich(self) -> Console:
        if self._console is None:
            from rich.console import Console

            width = None if self.tty else 160  # logs and CI: wide enough for the tables
            self._console = Console(file=self.out, highlight=False, soft_wrap=True, width=width)
        return self._console

    def print(self, *args: Any, **kwargs: Any) -> None:
        self.rich.print(*args, **kwargs)

    def rule(self, *args: Any, **kwargs: Any) -> None:
        self.rich.rule(*args, **kwargs)

    def status(self, *args: Any, **kwargs: Any) -> Any:
        return self.rich.status(*args, **kwargs)

    def line(self, text: str) -> None:
        """A plain line, no markup (and no rich import)."""
        if self._console is not None:
            self._console.print(text, markup=False, highlight=False)
        else:
            self.out.write(text + "\n")
            self.out.flush()


def console_for(stream: IO[str]) -> LazyConsole:
    """The console trtpipe's commands print to."""
    return LazyConsole(stream)


class ConsoleReporter:
    """Shows each stage as it runs (spinner + elapsed) and a line when it ends."""

    def __init__(self, console: LazyConsole, *, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose
        self._status: Any = None
        self._started = 0.0

    def on_start(self, spec: StageSpec, reason: str) -> None:
        self._started = time.perf_counter()
        self._status = self.console.status(f"[bold]{spec.name}[/] ({spec.kind}) running: {reason}", spinner="dots")
        self._status.start()

    def on_end(self, result: StageResult) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
        if result.status == "cached" and not self.verbose:
            self.console.line(f"{result.status:>8} {result.name} ({result.kind})")
            return
        style = _STYLE.get(result.status, "")
        line = f"[{style}]{result.status:>7}[/] [bold]{result.name}[/] ({result.kind})"
        if result.status in ("built", "measured"):
            line += f" in {result.seconds:.1f}s"
        if result.reason and (result.status in ("built", "stale", "skipped", "failed") or self.verbose):
            line += f" [dim]- {result.reason}[/]"
        self.console.print(line)
        if result.error:
            for i, err_line in enumerate(result.error.splitlines()):
                self.console.print(f"        [red]{'error: ' if i == 0 else ''}{err_line}[/]", markup=True,
                                   highlight=False)
            if result.hint:
                self.console.print(f"        [yellow]hint:[/] {result.hint}")
            if result.log:
                self.console.print(f"        log: {result.log}")
        if self.verbose and result.log and result.status in ("built", "measured", "failed") and Path(result.log).exists():
            text = Path(result.log).read_bytes().decode("utf-8", "replace").rstrip()
            if text:
                self.console.rule(f"log of {result.name}", style="dim")
                self.console.print(text, markup=False, highlight=False)
                self.console.rule(style="dim")


def summary_table(result: RunResult, base: Path) -> Table:
    """The end-of-run table: stage, kind, status, seconds, short digest and path of each output."""
    from rich.table import Table

    table = Table(title=f"pipeline {result.pipeline}", title_justify="left")
    for col, kw in (("stage", {}), ("kind", {}), ("status", {}), ("seconds", {"justify": "right"}),
                    ("outputs", {})):
        table.add_column(col, **kw)
    for st in result.stages:
        outs = "\n".join(Path(o["path"]).name for n, o in st.outputs.items() if n != "log")
        table.add_row(st.name, st.kind, f"[{_STYLE.get(st.status, '')}]{st.status}[/]",
                      f"{st.seconds:.1f}" if st.status in ("built", "cached", "measured", "failed") else "", outs)
    return table


def status_table(result: RunResult) -> Table:
    """``trtpipe status``: what is cached and what would rebuild, and why."""
    from rich.table import Table

    table = Table(title=f"pipeline {result.pipeline}", title_justify="left")
    for col in ("stage", "kind", "state", "why"):
        table.add_column(col)
    for st in result.stages:
        state = {"cached": "up to date", "stale": "would rebuild", "skipped": "not run"}.get(st.status, st.status)
        table.add_row(st.name, st.kind, f"[{_STYLE.get(st.status, '')}]{state}[/]", st.reason or st.error or "")
    return table


def _rel(path: Path, base: Path) -> str:
    try:
        return os.path.relpath(path, base)
    except ValueError:
        return str(path)


def print_json(obj: Any, stream: IO[str] | None = None) -> None:
    """Print ``obj`` as indented JSON to ``stream`` (default: the *current* ``sys.stdout``)."""
    # Looked up at call time: a default bound at import would keep a stale (replaced or closed) stream.
    stream = stream or sys.stdout
    stream.write(json.dumps(obj, indent=2, default=str) + "\n")
    stream.flush()
