"""``freeze``: a Keras/TensorFlow model -> frozen GraphDef ``.pb`` + JSON signature."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trtpipe.backends.fingerprint import framework_versions
from trtpipe.fsutil import atomic_write_json
from trtpipe.stages.base import FROZEN, KERAS, SIGNATURE, Role, Stage, StageContext, register


@register
class Freeze(Stage):
    kind = "freeze"
    VERSION = 1
    requires = ("tensorflow",)
    roles = {"model": Role((KERAS, FROZEN))}
    outputs = {"graph": FROZEN, "signature": SIGNATURE}

    def env_keys(self, params: dict[str, Any]) -> dict[str, Any]:
        return framework_versions("tensorflow")

    def run(self, ctx: StageContext) -> dict[str, Path]:
        from trtpipe.backends import tf

        inp = ctx.one("model")
        graph = ctx.out("graph", ".pb")
        signature = tf.freeze(inp.ref, graph, base_dir=ctx.base_dir, seed=ctx.params["seed"])
        ctx.log.info("froze %s: inputs %s, outputs %s", inp.ref,
                     [i["name"] for i in signature["inputs"]], [o["name"] for o in signature["outputs"]])
        sig_path = ctx.out("signature", ".json")
        atomic_write_json(sig_path, signature)
        return {"graph": graph, "signature": sig_path}
