"""Error types. Library code raises these; only ``trtpipe.cli`` prints them and picks exit codes.

Every error carries a one-line ``message`` (what went wrong, and where) and an optional
``hint`` (what to do about it). ``exit_code`` is the documented CLI exit code:

* 1 -- a stage failed (including a failed verification, or ``--frozen`` finding work)
* 2 -- invalid pipeline file, invalid input file, or bad usage
* 3 -- a required backend, framework or piece of hardware is missing
"""

from __future__ import annotations


class TrtpipeError(Exception):
    """Base class of every error trtpipe raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(TrtpipeError):
    """The pipeline file (or a command line) is invalid. ``errors`` holds every located problem."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None, errors: list[str] | None = None) -> None:
        super().__init__(message, hint)
        self.errors = errors or [message]


class InvalidArtifact(TrtpipeError):
    """An input file (model, UFF, image, engine...) is corrupt, truncated, foreign or unsupported.

    Raised by backends; ``path`` names the file and ``node`` the graph node when there is one.
    Inside a pipeline run the runner reports it as a failed stage (exit 1); the single-file
    commands (``convert``, ``inspect``) exit 2 with it.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None, path: str | None = None,
                 node: str | None = None) -> None:
        super().__init__(message, hint)
        self.path = path
        self.node = node


class UnsupportedOp(InvalidArtifact):
    """A graph contains an op that the requested conversion cannot express."""


class StageFailed(TrtpipeError):
    """A stage ran and failed (including a failed verification gate)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, stage: str | None = None) -> None:
        super().__init__(message, hint)
        self.stage = stage


class BackendUnavailable(TrtpipeError):
    """A framework, backend or hardware capability needed for the request is missing here."""

    exit_code = 3


class StoreError(TrtpipeError):
    """The artifact store is unusable (permissions, corrupt records that cannot be repaired...)."""

    exit_code = 1
