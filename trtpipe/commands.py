"""Implementations of the CLI sub-commands (called by ``cli``; they may print, they return exit codes)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from trtpipe import api

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_BACKEND = 0, 1, 2, 3


def cmd_run(args: argparse.Namespace) -> int:
    from trtpipe.report import ConsoleReporter, console_for, print_json, summary_table

    console = console_for(sys.stdout)
    reporter = None if args.json else ConsoleReporter(console, verbose=args.verbose)
    force = args.force
    result = api.run(args.pipeline, targets=args.target, force=force or None, force_all=force == [],
                     keep_going=args.keep_going, frozen=args.frozen, reporter=reporter)
    code = _exit_code(result)
    if args.json:
        print_json(result.to_json())
        return code
    measured = [s for s in result.stages if s.status == "measured"]
    builds = [s for s in result.stages if s.status != "measured"]
    where = f"{os.path.relpath(result.store_root or '.', Path.cwd())}/{result.pipeline}/"
    if all(s.status == "cached" for s in builds) and not measured and not args.verbose:
        console.line(f"pipeline {result.pipeline}: all {len(builds)} stages cached, nothing to do (outputs under {where})")
    else:
        console.print(summary_table(result, Path.cwd()))
        if builds and all(s.status == "cached" for s in builds):
            console.line(f"all {len(builds)} build stages cached, nothing built; {len(measured)} measurement "
                         f"stage(s) re-measured (cache: false)")
    if args.frozen:
        stale = [s for s in result.stages if s.status == "stale"]
        if stale:
            console.print(f"[bold red]--frozen:[/] {len(stale)} stage(s) would rebuild:")
            for s in stale:
                console.print(f"  {s.name}: {s.reason}")
        else:
            console.line("--frozen: every stage is up to date with the store and lock file")
    else:
        if result.lock_path and any(s.status != "cached" for s in result.stages):
            console.line(f"lock file: {os.path.relpath(result.lock_path, Path.cwd())}")
        _after_run(result, console, args.pipeline)
    return code


def _exit_code(result: api.RunResult) -> int:
    """0 ok; 3 when a stage failed because a framework/backend is missing; else 1."""
    if result.ok:
        return EXIT_OK
    return EXIT_BACKEND if any(s.missing_backend for s in result.stages) else EXIT_FAILED


def _after_run(result: api.RunResult, console: Any, pipeline_path: str) -> None:
    """Print each benchmark's batch table and write the HTML run report (only when something ran)."""
    for st in result.stages:
        if st.kind == "benchmark" and st.status in ("built", "cached", "measured") and "results" in st.outputs:
            from trtpipe.report_html import format_console_table

            res = json.loads(Path(st.outputs["results"]["path"]).read_bytes())
            console.print(format_console_table(res["series"]))
            for label, mc in res.get("marginal_cost", {}).items():
                console.print(f"  {label}: each extra sample adds {mc['slope_ms_per_sample']:.2f} ms "
                              f"(fixed {mc['intercept_ms']:.2f} ms, r2 {mc['r2']:.3f})")
            if "plot" in st.outputs:
                console.print(f"plot: {st.outputs['plot']['path']}")
    if any(st.status in ("built", "measured", "failed") for st in result.stages):
        from trtpipe.run_report import write_report

        path = write_report(api.validate(pipeline_path), result)
        console.print(f"report: {path.parent / 'report.html'} -> {path.name}")


def cmd_validate(args: argparse.Namespace) -> int:
    p = api.validate(args.pipeline)
    if args.json:
        print(json.dumps({"ok": True, "pipeline": p.name, "stages": p.order}))
    else:
        print(f"{args.pipeline}: ok: pipeline '{p.name}', {len(p.order)} stages: {' -> '.join(p.order)}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from trtpipe.report import console_for, print_json, status_table

    result = api.status(args.pipeline, targets=args.target)
    if args.json:
        print_json({**result.to_json(), "up_to_date": result.ok})
    else:
        console = console_for(sys.stdout)
        console.print(status_table(result))
        stale = sum(s.status == "stale" for s in result.stages)
        console.print("everything is up to date" if not stale else f"{stale} stage(s) would rebuild")
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    from trtpipe.inspect import describe

    print(describe(args.file))
    return EXIT_OK


def cmd_convert(args: argparse.Namespace) -> int:
    from trtpipe.convert import convert

    info = convert(args.src, args.output, inputs=args.inputs, outputs=args.outputs, opset=args.opset,
                   allow_custom=args.allow_custom)
    print(f"wrote {args.output} ({info})")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from trtpipe.doctor import doctor_report, format_doctor

    print(format_doctor(doctor_report()))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from trtpipe.run_report import rebuild_report

    path = rebuild_report(args.pipeline)
    print(f"report: {path}")
    return EXIT_OK

