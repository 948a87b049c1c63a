"""Command line. The ONLY place that prints errors and picks exit codes.

Exit codes: 0 success; 1 a stage failed (including a failed verification, or ``--frozen``
finding work to do); 2 invalid pipeline file, input file or usage; 3 a required backend,
framework or hardware capability is missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from trtpipe import __version__
from trtpipe.errors import TrtpipeError

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_BACKEND = 0, 1, 2, 3

EPILOG = """exit codes:
  0  success
  1  a stage failed (including a failed verification, or --frozen finding work to do)
  2  invalid pipeline file, invalid input file, or bad usage
  3  a required backend, framework or hardware capability is missing
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors are exit 2, like invalid files
        self.print_usage(sys.stderr)
        sys.stderr.write(f"error: {message}\n")
        raise SystemExit(EXIT_INVALID)


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="trtpipe", description="Build, verify and benchmark inference engines from "
                 "TensorFlow/Keras models, as a cached DAG described in pipeline.yaml.",
                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"trtpipe {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def pipeline_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("pipeline", nargs="?", default="pipeline.yaml", metavar="PIPELINE",
                       help="pipeline file (default: ./pipeline.yaml)")

    r = sub.add_parser("run", help="run the pipeline (only what changed)", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    pipeline_arg(r)
    r.add_argument("--target", action="append", metavar="STAGE", help="run STAGE and its upstream only (repeatable)")
    r.add_argument("--force", nargs="*", metavar="STAGE", default=None,
                   help="rebuild these stages even if cached (no names: every selected stage)")
    r.add_argument("--keep-going", action="store_true", help="after a failure, still run independent stages")
    r.add_argument("--frozen", action="store_true",
                   help="CI release mode: build nothing; exit 1 listing stages that would rebuild")
    r.add_argument("--json", action="store_true", help="print one JSON object instead of the console report")
    r.add_argument("-v", "--verbose", action="store_true", help="show why stages run and their framework logs")

    v = sub.add_parser("validate", help="check the pipeline file (schema, references, files, cycles)")
    pipeline_arg(v)
    v.add_argument("--json", action="store_true")

    s = sub.add_parser("status", help="what is cached, what would rebuild and why")
    pipeline_arg(s)
    s.add_argument("--target", action="append", metavar="STAGE")
    s.add_argument("--json", action="store_true")

    i = sub.add_parser("inspect", help="readable summary of an artifact (.pb, .onnx, .uff, engine, report, lock)")
    i.add_argument("file", type=Path)

    c = sub.add_parser("convert", help="convert one model file by extension (.pb/.keras/.h5/SavedModel -> "
                                       ".uff/.onnx; .uff -> .onnx)")
    c.add_argument("src", help="source model (file, SavedModel dir, or builder.py:function)")
    c.add_argument("-o", "--output", required=True, type=Path, help="destination (.uff or .onnx)")
    c.add_argument("--inputs", help="NAME[:SHAPE],... e.g. input_1:28x28x1 (default: the graph's placeholders)")
    c.add_argument("--outputs", help="NAME,... (default: the graph's sinks)")
    c.add_argument("--opset", type=int, default=17)
    c.add_argument("--allow-custom", action="store_true", help="write unknown ops as custom _Op nodes (UFF)")

    sub.add_parser("doctor", help="what this machine offers: backends, GPU, precisions, what to install")

    rp = sub.add_parser("report", help="rebuild the HTML run report from the store without running anything")
    pipeline_arg(rp)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except TrtpipeError as exc:
        _print_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


def _print_error(exc: TrtpipeError) -> None:
    errors = getattr(exc, "errors", None) or [exc.message]
    for err in errors:
        sys.stderr.write(f"error: {err}\n")
    if exc.hint:
        sys.stderr.write(f"hint: {exc.hint}\n")


def _dispatch(args: argparse.Namespace) -> int:
    from trtpipe import commands

    return int(getattr(commands, f"cmd_{args.command}")(args))


if __name__ == "__main__":
    raise SystemExit(main())
