"""``onnx`` and ``uff``: a frozen graph -> an ONNX model (tf2onnx) or a UFF file (trtpipe's writer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trtpipe.backends.fingerprint import framework_versions
from trtpipe.fsutil import atomic_write_bytes, atomic_write_json
from trtpipe.stages.base import FROZEN, ONNX, REPORT, UFF, Role, Stage, StageContext, register
from trtpipe.stages.common import graph_and_signature


@register
class ToOnnx(Stage):
    kind = "onnx"
    VERSION = 2  # 2: canonical (reproducible) node/initializer names
    requires = ("tensorflow", "tf2onnx", "onnx")
    roles = {"graph": Role((FROZEN,))}
    outputs = {"model": ONNX, "report": REPORT}

    def env_keys(self, params: dict[str, Any]) -> dict[str, Any]:
        return framework_versions("tensorflow", "tf2onnx", "onnx")

    def run(self, ctx: StageContext) -> dict[str, Path]:
        from trtpipe.backends import onnx as onnx_backend

        pb, signature = graph_and_signature(ctx.one("graph"))
        model = ctx.out("model", ".onnx")
        info = onnx_backend.tf_to_onnx(pb, signature, model, opset=ctx.params["opset"])
        report = ctx.out("report", ".json")
        atomic_write_json(report, {"signature": signature, **info})
        return {"model": model, "report": report}


@register
class ToUff(Stage):
    kind = "uff"
    VERSION = 1
    requires = ("tensorflow",)
    roles = {"graph": Role((FROZEN,))}
    outputs = {"model": UFF}

    def env_keys(self, params: dict[str, Any]) -> dict[str, Any]:
        # The writer is trtpipe's own code (covered by VERSION); TF only parses the GraphDef.
        return framework_versions("tensorflow")

    def run(self, ctx: StageContext) -> dict[str, Path]:
        from trtpipe.backends.uff import writer

        pb, signature = graph_and_signature(ctx.one("graph"))
        p = ctx.params
        if p.get("input_nodes"):
            inputs = [writer.UffInput(i["name"], tuple(i["shape"]) if i.get("shape") else None, i["order"])
                      for i in p["input_nodes"]]
        else:
            inputs = [writer.UffInput(i["name"], tuple(-1 if d is None else d for d in i["shape"]),
                                      "NC" if len(i["shape"]) == 2 else "NHWC") for i in signature["inputs"]]
        outputs = p.get("output_nodes") or [o["name"] for o in signature["outputs"]]
        plugins = writer.plugins_from_yaml(p["plugins"]) if p.get("plugins") else None
        data = writer.graphdef_to_uff(pb.read_bytes(), inputs=inputs, outputs=outputs, plugins=plugins,
                                      allow_custom=p["allow_custom"])
        out = ctx.out("model", ".uff")
        atomic_write_bytes(out, data)
        ctx.log.info("wrote %d bytes of UFF for outputs %s", len(data), outputs)
        return {"model": out}
