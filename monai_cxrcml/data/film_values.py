"""Pixel values of films: the read error, size limits and the rules that turn stored values into ``[0, 1]``."""

from __future__ import annotations

import os
from typing import Literal

import numpy as np

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MIN_SIZE",
    "FilmReadError",
    "Intensity",
    "check_film_size",
    "check_finite",
    "luma",
    "minmax",
    "to_unit",
]

DEFAULT_MAX_PIXELS = 100_000_000
"""Largest film accepted by default (pixels per frame): 10x the largest MIMIC-CXR film."""

DEFAULT_MIN_SIZE = 16
"""Smallest accepted width and height by default (pixels)."""

Intensity = Literal["auto", "minmax"]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class FilmReadError(RuntimeError):
    """A film that cannot be read; the message names the file and says what to do.

    Parameters
    ----------
    path
        The film's path.
    reason
        What is wrong and how to fix it.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read film '{self.path}': {reason}")

    def __reduce__(self):
        return type(self), (self.path, self.reason)


def check_film_size(path, height: int, width: int, limits: tuple[int, int]) -> None:
    """Raise :class:`FilmReadError` for more than ``limits[0]`` pixels or a side under ``limits[1]`` (a header's)."""
    max_pixels, min_size = limits
    if height * width > max_pixels:
        raise FilmReadError(
            path,
            f"the header claims {width}x{height} pixels ({height * width / 1e6:.0f} megapixels), more than "
            f"max_pixels={max_pixels} (decompression-bomb guard); if the film is genuine, raise max_pixels",
        )
    if height < min_size or width < min_size:
        raise FilmReadError(
            path,
            f"the film is only {width}x{height} pixels (width x height), smaller than min_size={min_size}; "
            "this is not a usable chest film, drop it (or lower min_size)",
        )


def minmax(values: np.ndarray) -> np.ndarray:
    """Stretch to ``[0, 1]`` by the film's own minimum and maximum (all zeros for a constant film); float32."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, np.float32)
    return ((values - lo) / (hi - lo)).astype(np.float32)


def check_finite(path, values: np.ndarray) -> None:
    """Raise :class:`FilmReadError` when floating-point pixel values hold NaN or infinity."""
    if values.dtype.kind == "f":
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        if bad:
            raise FilmReadError(
                path,
                f"{bad} of {values.size} pixel values are NaN or infinite; fix or mask them when the film is written",
            )


def to_unit(values: np.ndarray, intensity: Intensity, declared_bits: int | None = None) -> np.ndarray:
    """Scale gray values to [0, 1] by the rules of the module notes (``values`` already checked finite)."""
    if intensity == "minmax":
        return minmax(values)
    if values.dtype == np.uint8:
        return values.astype(np.float32) / np.float32(255)
    if values.dtype.kind in "ui":
        vmax = int(values.max())
        if values.dtype.kind == "u" or int(values.min()) >= 0:
            bits = max(8, vmax.bit_length())
            bits += bits % 2
            if declared_bits is not None and vmax < 2**declared_bits:
                bits = declared_bits
            return values.astype(np.float32) / np.float32(2**bits - 1)
        return minmax(values)
    if values.min() >= 0 and values.max() <= 1:
        return values.astype(np.float32)
    return minmax(values)


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of ``[..., 3+]`` (channels beyond three, e.g. alpha, ignored); float32."""
    return rgb[..., :3].astype(np.float32) @ _LUMA
