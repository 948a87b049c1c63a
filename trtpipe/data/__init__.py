"""Input data for trtpipe: image decoding, preprocessing and sample sets (numpy only).

Pillow is imported lazily, and only for PNG/JPEG; PPM/PGM and ``.npz``/``.npy`` need nothing
beyond numpy.
"""

from trtpipe.data.images import read_image, write_ppm
from trtpipe.data.preprocess import preprocess
from trtpipe.data.sources import check_inputs, describe_source, load_inputs, source_files

__all__ = ["check_inputs", "describe_source", "load_inputs", "preprocess", "read_image",
           "source_files", "write_ppm"]
