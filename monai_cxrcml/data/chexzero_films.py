"""CheXzero's film preprocessing, reproduced exactly: the 8-bit film OpenCV reads, LANCZOS to 320 px, centred paste.

CheXzero (``data_process.py``: ``img_to_hdf5`` + ``preprocess``) reads every film with ``cv2.imread`` and packs a
320 x 320 square into HDF5; its zero-shot code then normalises and resizes that square to 224 px
(:mod:`monai_cxrcml.transforms.intensity`, ``ResizeFilmd``). ``docs/design.md`` ("CheXzero, exactly") lists what was
measured against OpenCV and CheXzero's own code.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image

from monai_cxrcml.data.films import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIZE,
    FilmReadError,
    decode_raster,
    film_format,
    read_film,
)

__all__ = ["CHEXZERO_SIZE", "chexzero_square", "load_film_chexzero", "read_film_8bit"]

CHEXZERO_SIZE = 320
"""Side of the square CheXzero stores each film at (``img_to_hdf5(..., resolution=320)``)."""


def read_film_8bit(
    path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_size: int = DEFAULT_MIN_SIZE
) -> Image.Image:
    """The film as ``cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)`` gives it: an 8-bit Pillow image.

    Gray 8-bit films stay ``"L"`` (OpenCV's three equal channels carry the same values); a 16-bit gray film keeps
    its high byte (``v >> 8``, what ``cv2.imread`` does without ``IMREAD_ANYDEPTH``); colour, palette and alpha
    films become ``"RGB"``, as OpenCV decodes them. JPEGs are decoded in full (no DCT-domain scaling) and EXIF
    orientation is applied, as by OpenCV. DICOM and NIfTI films, which OpenCV cannot read, are read as displayed
    (:func:`~monai_cxrcml.data.films.read_film`) and rounded to 8 bits.

    Raises
    ------
    FilmReadError
        For an unreadable film (see :func:`~monai_cxrcml.data.films.read_film`).
    """
    if film_format(path) != "raster":
        film = read_film(path, max_pixels=max_pixels, min_size=min_size)
        return Image.fromarray(np.rint(film * 255).astype(np.uint8), "L")
    image = decode_raster(path, max_pixels=max_pixels, min_size=min_size)
    if image.mode == "L":
        return image
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image).astype(np.int64)
        if values.min() < 0 or values.max() > 65535:
            raise FilmReadError(path, f"{image.mode} pixel values outside 0..65535; save the film as 8 or 16 bits")
        if values.max() < 4096:
            warnings.warn(
                f"{path}: a 16-bit film whose values stay below 4096 (e.g. 12-bit data) keeps only its high byte "
                "under CheXzero's reading, as cv2.imread does, and comes out nearly black",
                stacklevel=2,
            )
        return Image.fromarray((values >> 8).astype(np.uint8), "L")
    if image.mode == "F":
        film = read_film(path, max_pixels=max_pixels, min_size=min_size)
        return Image.fromarray(np.rint(film * 255).astype(np.uint8), "L")
    return image.convert("L" if image.mode in ("1", "LA") else "RGB")


def chexzero_square(image: Image.Image, size: int = CHEXZERO_SIZE) -> np.ndarray:
    """CheXzero's ``preprocess``: longest side to ``size`` with LANCZOS, centred on a black ``size`` square.

    The new size truncates (``int(side * size / longest)``), the paste offset is ``(size - side) // 2``, and an RGB
    image is converted to gray when pasted on the ``"L"`` square (ITU-R 601-2 luma), all as CheXzero does.

    Returns
    -------
    np.ndarray
        uint8 ``[size, size]``.
    """
    ratio = float(size) / max(image.size)
    new_size = tuple(int(side * ratio) for side in image.size)
    if min(new_size) < 1:
        raise ValueError(f"a {image.size[0]}x{image.size[1]} film is too elongated for a {size} px square")
    resized = image.resize(new_size, Image.Resampling.LANCZOS)
    square = Image.new("L", (size, size))
    square.paste(resized, ((size - new_size[0]) // 2, (size - new_size[1]) // 2))
    return np.asarray(square)


def load_film_chexzero(
    path: str | os.PathLike,
    size: int = CHEXZERO_SIZE,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_size: int = DEFAULT_MIN_SIZE,
) -> np.ndarray:
    """:func:`read_film_8bit` then :func:`chexzero_square`, as float32 ``[size, size]`` in ``[0, 1]`` (value / 255).

    Raises
    ------
    FilmReadError
        For an unreadable film, or one too elongated to keep a pixel on its short side.
    """
    image = read_film_8bit(path, max_pixels=max_pixels, min_size=min_size)
    try:
        square = chexzero_square(image, size)
    except ValueError as e:
        raise FilmReadError(path, f"{e}; drop it") from None
    return square.astype(np.float32) / np.float32(255)
