"""Stage kinds. Importing this package registers every kind (the modules import no framework)."""

from trtpipe.stages import benchmark, build, calibrate, convert, freeze, serialize, verify  # noqa: F401  (registers kinds)
from trtpipe.stages.base import REGISTRY, Stage

__all__ = ["REGISTRY", "Stage"]
