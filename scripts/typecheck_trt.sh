#!/usr/bin/env bash
# Type-check the TensorRT backend against the TensorRT 10.x type stubs (no TensorRT, no GPU).
#
# Installs `tensorrt-stubs` with --no-deps (its declared deps would pull real TensorRT), copies the
# stub files into a temporary directory, sanitizes the few syntax errors they contain (parameters
# named `in`, non-default after default), and runs mypy with mypy-trt.ini on the two modules that
# call TensorRT. Exit status is mypy's.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"

if ! "$PY" -c "import importlib.metadata as m; m.version('tensorrt-stubs')" 2>/dev/null; then
    "$PY" -m pip install --quiet --no-deps tensorrt-stubs
fi
"$PY" -c "import mypy" 2>/dev/null || "$PY" -m pip install --quiet mypy

STUBS="$(mktemp -d "${TMPDIR:-/tmp}/trtpipe-trt-stubs.XXXXXX")"
trap 'rm -rf "$STUBS"' EXIT

"$PY" - "$STUBS" <<'PYEOF'
import ast
import re
import shutil
import sys
import sysconfig
from pathlib import Path

dest = Path(sys.argv[1])
site = Path(sysconfig.get_paths()["purelib"])
for pkg in ("tensorrt", "tensorrt_bindings"):
    for src in (site / pkg).glob("*.pyi"):
        out = dest / pkg / src.name
        out.parent.mkdir(parents=True, exist_ok=True)
        fixed = []
        for line in src.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            if stripped.startswith("def "):
                body = stripped + " ..."
                try:
                    ast.parse(body)
                except SyntaxError:
                    # `in` is a Python keyword the stub generator kept as a parameter name.
                    line = re.sub(r"([(,]\s*)in:", r"\1in_:", line)
                    try:
                        ast.parse(line.strip() + " ...")
                    except SyntaxError:
                        # Anything else unparsable: keep the name and return type, loosen the args.
                        m = re.match(r"(\s*def \w+)\((self[^,)]*)?.*\)( -> .*:)\s*$", line)
                        if m is None:
                            raise SystemExit(f"cannot sanitize stub line: {line}")
                        self_arg = (m.group(2) or "").strip()
                        args = (self_arg + ", " if self_arg else "") + "*args: typing.Any, **kwargs: typing.Any"
                        line = f"{m.group(1)}({args}){m.group(3)}"
            fixed.append(line)
        out.write_text("\n".join(fixed) + "\n", encoding="utf-8")
        if pkg == "tensorrt_bindings" and src.name == "tensorrt.pyi":
            ast.parse(out.read_text(encoding="utf-8"))  # fail here, clearly, if still broken
print(f"sanitized TensorRT stubs in {dest}")
PYEOF

cd "$ROOT"
MYPYPATH="$STUBS" "$PY" -m mypy --config-file mypy-trt.ini \
    trtpipe/backends/tensorrt.py trtpipe/backends/trt_calibrator.py
