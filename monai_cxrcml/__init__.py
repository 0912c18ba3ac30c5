"""monai-cxrcml: CXR-CML (CLIP + Student-t mixture metric learning), zero-shot chest X-ray classification in MONAI."""

__version__ = "0.1.0"
