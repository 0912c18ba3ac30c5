"""The phantom data set: generated films with real label files, the stand-in for MIMIC-CXR-JPG in the demo and
the tests (:mod:`~monai_cxrcml.phantom.generator`), and the drawing of its films (:mod:`~monai_cxrcml.phantom.signs`).

Command line: ``python -m monai_cxrcml.phantom OUT_DIR --patients 800 --size 256 --seed 0 [--jobs 2]
[--labels FILE]`` (also installed as ``cxrcml-phantom``).
"""

from .generator import (
    ensure_phantom,
    make_phantom,
    make_table_phantom,
    phantom_label_file,
    torchxrayvision_table,
)

__all__ = ["ensure_phantom", "make_phantom", "make_table_phantom", "phantom_label_file", "torchxrayvision_table"]
