"""Input data for trtpipe: image decoding, preprocessing and sample sets (numpy only).

Submodules: ``images`` (PPM/PGM natively, PNG/JPEG via Pillow), ``preprocess``, ``sources``
(sample sets checked against a model signature) and ``files`` (which files a source reads;
numpy-free, used for cache keys). Import the submodule you need.
"""
