"""The phantom data set: generated films with real label files, the stand-in for MIMIC-CXR-JPG in the demo and
the tests (:mod:`~monai_cxrcml.phantom.generator`), the drawing of its films (:mod:`~monai_cxrcml.phantom.signs`)
and its free-text reports (:mod:`~monai_cxrcml.phantom.reports`).

Command line: ``python -m monai_cxrcml.phantom OUT_DIR --patients 800 --size 256 --seed 0 [--jobs 2]
[--labels FILE] [--reports]`` (also installed as ``cxrcml-phantom``).
"""

from .generator import (
    ensure_phantom,
    make_phantom,
    make_table_phantom,
    phantom_label_file,
    torchxrayvision_table,
)
from .reports import phantom_report, write_phantom_reports

__all__ = [
    "ensure_phantom",
    "make_phantom",
    "make_table_phantom",
    "phantom_label_file",
    "phantom_report",
    "torchxrayvision_table",
    "write_phantom_reports",
]
