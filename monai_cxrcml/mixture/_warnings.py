"""Warnings of the mixture estimators, attributed to the caller's first frame outside this package."""

from __future__ import annotations

import os
import sys
import warnings

__all__ = ["warn"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def warn(message: str, category: type[Warning] = RuntimeWarning) -> None:
    """``warnings.warn`` with the stack level of the first frame outside ``monai_cxrcml/mixture``."""
    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == _PACKAGE_DIR:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
