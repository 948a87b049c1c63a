"""trtpipe: a declarative, cached build system for inference engines (TensorFlow -> UFF/ONNX -> engine)."""

__version__ = "0.1.0"
