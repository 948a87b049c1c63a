"""UFF (NVIDIA's Universal Framework Format): schema, writer (TF GraphDef -> UFF), reader (UFF -> ONNX).

Submodules import heavy frameworks lazily; importing this package is cheap.
"""
