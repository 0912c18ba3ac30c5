"""Read a chest film (JPEG, PNG, TIFF, BMP, DICOM or NIfTI) into a float32 ``[H, W]`` array in ``[0, 1]``, as displayed.

:func:`read_film` states the orientation, intensity and bad-input rules; :func:`load_film` adds the resize. DICOM and
NIfTI are read by :mod:`~monai_cxrcml.data.film_formats`, pixel values scaled by :mod:`~monai_cxrcml.data.film_values`.
"""

from __future__ import annotations

import math
import os
import stat
import struct
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from monai_cxrcml.data.film_formats import read_dicom, read_nifti
from monai_cxrcml.data.film_values import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIZE,
    FilmReadError,
    Intensity,
    check_film_size,
    check_finite,
    luma,
    minmax,
    to_unit,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MIN_SIZE",
    "FilmReadError",
    "Intensity",
    "check_film_file",
    "decode_raster",
    "film_format",
    "load_film",
    "read_film",
    "resize_longest_side",
]

_NIFTI_SUFFIXES = (".nii", ".nii.gz")
_DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
_RASTER_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"BM")  # JPEG, PNG, TIFF, BMP

def check_film_file(path: str | os.PathLike) -> os.stat_result:
    """``os.stat`` of a film file, or :class:`FilmReadError` if it is missing, not a regular file or empty."""
    if not isinstance(path, (str, os.PathLike)):
        raise FilmReadError(
            path, f"not a file path (got {type(path).__name__} {path!r}); the datalist entry for this image is empty"
        )
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FilmReadError(path, "the file does not exist; check the image root (dataset_dir) and the path column")
    except PermissionError:
        raise FilmReadError(path, "permission denied; make the file readable by this user")
    except OSError as e:
        raise FilmReadError(path, f"cannot stat the file ({e}); check the path and the file system")
    if stat.S_ISDIR(st.st_mode):
        raise FilmReadError(path, "this is a directory, not an image file; point the datalist at image files")
    if not stat.S_ISREG(st.st_mode):
        raise FilmReadError(path, "this is not a regular file; point the datalist at image files")
    if st.st_size == 0:
        raise FilmReadError(path, "the file is empty (0 bytes); copy it again from its source or drop it")
    return st


def read_film(
    path: str | os.PathLike,
    *,
    size_hint: int | None = None,
    draft: bool = True,
    intensity: Intensity = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_size: int = DEFAULT_MIN_SIZE,
) -> np.ndarray:
    """Read one film as displayed: float32 ``[H, W]`` in ``[0, 1]``, row 0 = top, column 0 = left.

    Parameters
    ----------
    path
        JPEG, PNG, TIFF or BMP (any mode Pillow reads: 8/16-bit gray, RGB, RGBA, palette), DICOM (``.dcm`` or any
        file with the ``DICM`` preamble) or NIfTI (``.nii``, ``.nii.gz``). The format is found from the content (the
        DICOM preamble, the JPEG/PNG/TIFF/BMP signatures, the NIfTI magic); the suffix decides only where the
        content cannot (a gzipped NIfTI, a DICOM without its preamble), so a JPEG named ``.dcm`` is read as a JPEG.
    size_hint
        The longest side the caller will resize the film to. With ``draft=True`` a JPEG may then be decoded at
        1/2, 1/4 or 1/8 scale, never below ``size_hint`` (see the module notes); other formats ignore it.
    draft
        Allow DCT-domain downscaling of JPEGs when ``size_hint`` is given.
    intensity
        ``"auto"``: scaling by the source's bit depth or DICOM VOI (module notes); ``"minmax"``: per-film stretch.
    max_pixels
        Decompression-bomb guard: a header claiming more pixels per frame raises before decoding.
    min_size
        Smallest accepted width and height in pixels, checked on the header before decoding.

    Returns
    -------
    np.ndarray
        float32 ``[H, W]`` in ``[0, 1]``, C-contiguous.

    Raises
    ------
    FilmReadError
        For every unreadable or implausible film; the message names the path and the fix.

    Notes
    -----
    Orientation
        Row 0 is the top of the film and column 0 its left side *as a viewer displays it*: no transposition (unlike
        MONAI's ``PILReader``, which returns ``(W, H)``). JPEG/PNG/TIFF honour the EXIF orientation tag (every current
        viewer and browser does; MIMIC-CXR-JPG carries none). DICOM rows/columns are used as stored; MONOCHROME1 films,
        and MONOCHROME2 films with a Presentation LUT Shape of INVERSE, are inverted once so that bone is bright (a
        MONOCHROME1 film's INVERSE shape, as the DX IOD requires, names the same inversion). A 2-D NIfTI follows the
        MONAI/ITK convention for 2-D images (voxel axis 0 = image column, axis 1 = row) and is transposed to ``[rows,
        cols]``; its affine is not applied.

    Intensity (``intensity="auto"``)
        * 8-bit sources (gray, RGB, RGBA, palette JPEG/PNG): ``value / 255``. Colour is reduced to ITU-R BT.601 luma
          (``0.299 R + 0.587 G + 0.114 B``); alpha is ignored.
        * Unsigned integer sources with more than 8 bits (16-bit PNG/TIFF, integer NIfTI): divided by ``2**b - 1``,
          where ``b`` is the bit depth the file declares (PNG ``sBIT``) or else the smallest even depth >= 8 that holds
          the film's maximum. 12-bit data stored in a 16-bit PNG (common in DICOM exports) is therefore scaled by
          4095, not 65535 (which would give a nearly black film), while the absolute grey levels of the film are kept
          (unlike a per-film min-max stretch).
        * DICOM: modality LUT (Rescale Slope/Intercept or Modality LUT Sequence), then the first VOI LUT or window
          (Window Center/Width, LINEAR, LINEAR_EXACT or SIGMOID) scaled by the VOI output range; a DICOM without any VOI
          is stretched min-max, as viewers do. A broken window (width < 1) falls back to min-max with a warning.
        * Floating-point sources (float NIfTI/TIFF): kept when already within ``[0, 1]``, otherwise stretched min-max;
          signed integers with negative values are stretched min-max too. 16-bit colour PNGs are refused (Pillow keeps
          only their high byte).
          NaN or infinite values raise :class:`FilmReadError`.
        * ``intensity="minmax"`` stretches every film to its own minimum and maximum instead.
        A constant film is valid (a black film is a film); a constant film stretched min-max is all zeros.

    Speed
        With ``size_hint`` (the longest side the caller will resize to) and ``draft=True``, JPEGs are decoded by
        libjpeg's DCT-domain scaling at 1/2, 1/4 or 1/8 of full size, never below ``size_hint``. For a ~3000x2500
        film at ``size_hint=224`` this skips the inverse DCT, colour conversion and float conversion of ~90% of the
        pixels; after the final antialiased resize the result differs from a full decode by about 1/255 on average.

    Bad input
        Every unreadable film raises :class:`FilmReadError` naming the path and what to do: missing file, directory,
        zero-byte file, unknown format, truncated or corrupt JPEG/PNG (Pillow's ``LOAD_TRUNCATED_IMAGES`` is never
        set, so a truncated JPEG is detected instead of being filled with grey), DICOM without pixel data or with a
        compressed transfer syntax whose decoder is not installed, NIfTI with NaN/inf voxels or more than two
        non-singleton axes, films smaller than ``min_size`` per side, and headers claiming more than ``max_pixels``
        pixels (decompression-bomb guard, checked before any pixel is decoded).
    """
    if intensity not in ("auto", "minmax"):
        raise ValueError(f"intensity={intensity!r}; expected 'auto' or 'minmax'")
    limits = (max_pixels, min_size)
    kind = film_format(path)
    if kind == "dicom":
        film = read_dicom(path, intensity, limits)
    elif kind == "nifti":
        film = read_nifti(path, intensity, limits)
    else:
        film = _read_pil(path, size_hint if draft else None, intensity, limits)
    return np.ascontiguousarray(np.clip(film, 0.0, 1.0, out=film), dtype=np.float32)


def film_format(path: str | os.PathLike) -> Literal["raster", "dicom", "nifti"]:
    """Which reader a film file needs, from its content first and its suffix only where the content cannot tell.

    ``"dicom"`` (the Part 10 preamble, or a ``.dcm``/``.dicom``/``.dic`` file without one), ``"nifti"`` (the NIfTI-1/2
    magic or a ``.nii``/``.nii.gz`` name) or ``"raster"`` (JPEG/PNG/TIFF/BMP signatures, and anything else Pillow may
    read). So a JPEG named ``.dcm`` is a raster.

    Raises
    ------
    FilmReadError
        When the file is missing, not a regular file, empty or cannot be opened.
    """
    check_film_file(path)
    try:
        with open(path, "rb") as f:
            head = f.read(352)
    except OSError as e:
        raise FilmReadError(path, f"cannot open the file ({e}); check permissions and the file system")
    name = os.fspath(path).lower()
    if head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(_RASTER_MAGIC):
        return "raster"
    if name.endswith(_NIFTI_SUFFIXES) or head[344:348] == b"n+1\0" or head[4:8] == b"n+2\0":
        return "nifti"
    if name.endswith(_DICOM_SUFFIXES):  # DICOM without the Part 10 preamble
        return "dicom"
    return "raster"


def resize_longest_side(film: np.ndarray, size: int) -> np.ndarray:
    """Resize so that the longest side is ``size``, keeping the aspect ratio.

    Bicubic with antialiasing (torch; matches Pillow's bicubic filter when downscaling), clipped to ``[0, 1]``.

    Parameters
    ----------
    film
        float32 ``[H, W]``.
    size
        Target length of the longest side.

    Returns
    -------
    np.ndarray
        float32 ``[h, w]`` with ``max(h, w) == size``.
    """
    h, w = film.shape
    scale = size / max(h, w)
    out_hw = (max(1, round(h * scale)), max(1, round(w * scale)))
    if out_hw == (h, w):
        return film
    t = torch.from_numpy(np.ascontiguousarray(film, dtype=np.float32))[None, None]
    t = F.interpolate(t, size=out_hw, mode="bicubic", align_corners=False, antialias=True)
    return t[0, 0].clamp_(0.0, 1.0).numpy()


def load_film(
    path: str | os.PathLike,
    image_size: int | None = None,
    *,
    draft: bool = True,
    intensity: Intensity = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_size: int = DEFAULT_MIN_SIZE,
) -> np.ndarray:
    """:func:`read_film`, then :func:`resize_longest_side` to ``image_size`` (full size when ``None``).

    Returns
    -------
    np.ndarray
        float32 ``[h, w]`` in ``[0, 1]`` with ``max(h, w) == image_size``.
    """
    film = read_film(
        path, size_hint=image_size, draft=draft, intensity=intensity, max_pixels=max_pixels, min_size=min_size
    )
    return film if image_size is None else resize_longest_side(film, image_size)


# ----------------------------------------------------------------------------------------------------------------
# JPEG / PNG / TIFF / BMP via Pillow


def _png_header(path) -> tuple[int, int | None]:
    """(bit depth, gray significant bits of the ``sBIT`` chunk or None) of a PNG; Pillow exposes neither."""
    with open(path, "rb") as f:
        head = f.read(33)  # signature + IHDR
        bit_depth = head[24]
        while True:
            header = f.read(8)
            if len(header) < 8:
                return bit_depth, None
            length, kind = struct.unpack(">I4s", header)
            if kind in (b"IDAT", b"IEND"):
                return bit_depth, None
            if kind == b"sBIT":
                return bit_depth, f.read(1)[0] or None
            f.seek(length + 4, os.SEEK_CUR)


def _draft_request(width: int, height: int, size_hint: int) -> tuple[int, int]:
    """Smallest (w, h) the draft decode may produce so that the longest side stays >= ``size_hint``."""
    scale = size_hint / max(width, height)
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))


def decode_raster(
    path: str | os.PathLike,
    *,
    size_hint: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_size: int = DEFAULT_MIN_SIZE,
) -> Image.Image:
    """A raster film (JPEG, PNG, TIFF, BMP) decoded by Pillow, upright (EXIF orientation applied), in its own mode.

    Parameters
    ----------
    path
        The film file.
    size_hint
        When given, a JPEG may be decoded at 1/2, 1/4 or 1/8 scale, never below this longest side (module notes).
    max_pixels, min_size
        Header checks made before any pixel is decoded (see :func:`read_film`).

    Raises
    ------
    FilmReadError
        For an unrecognised, corrupt, truncated, too large or too small image; the message names the file.
    """
    try:
        image = Image.open(path)
    except Image.DecompressionBombError as e:
        raise FilmReadError(
            path,
            f"{e} Pillow's own guard (PIL.Image.MAX_IMAGE_PIXELS) refused it before max_pixels was checked; "
            "if the film is genuine, raise both",
        )
    except UnidentifiedImageError:
        raise FilmReadError(
            path,
            "not a recognised image (JPEG, PNG, TIFF, BMP, DICOM or NIfTI); the file is corrupt or has another "
            "format: convert it or drop it",
        )
    except MemoryError:
        raise
    except Exception as e:  # Pillow raises many types on malformed headers
        raise FilmReadError(path, f"corrupt image header ({e}); copy the file again from its source or drop it")
    width, height = image.size
    try:
        check_film_size(path, height, width, (max_pixels, min_size))
        if size_hint is not None and image.format == "JPEG":
            image.draft("L" if image.mode in ("L", "RGB") else None, _draft_request(width, height, size_hint))
        image.load()
        if image.getexif().get(0x0112, 1) == 1:
            return image
        upright = ImageOps.exif_transpose(image)
    except (FilmReadError, MemoryError):
        image.close()
        raise
    except Exception as e:  # Pillow raises many types on malformed data
        image.close()
        raise FilmReadError(
            path, f"truncated or corrupt {image.format or 'image'} data ({e}); copy the file again or drop it"
        )
    upright.format = image.format
    return upright


def _read_pil(path, size_hint: int | None, intensity: Intensity, limits: tuple[int, int]) -> np.ndarray:
    image = decode_raster(path, size_hint=size_hint, max_pixels=limits[0], min_size=limits[1])
    values, declared_bits = _pil_values(path, image)
    if values.ndim == 3:
        gray = luma(values)
        return minmax(gray) if intensity == "minmax" else gray / np.float32(255)
    check_finite(path, values)
    return to_unit(values, intensity, declared_bits)


def _pil_values(path, image: Image.Image) -> tuple[np.ndarray, int | None]:
    """Pixel values of a loaded Pillow image: gray ``[H, W]`` (any dtype) or 8-bit colour ``[H, W, C]``."""
    mode = image.mode
    bit_depth, significant_bits = _png_header(path) if image.format == "PNG" else (8, None)
    if bit_depth == 16 and not mode.startswith("I;16"):
        raise FilmReadError(
            path,
            f"16-bit {mode} PNG: Pillow keeps only the high 8 bits of colour or alpha PNGs, which blackens films of "
            "fewer than 16 significant bits; save the film as a 16-bit grayscale PNG",
        )
    if mode == "L":
        return np.asarray(image), None
    if mode.startswith("I;16"):
        values = np.asarray(image)
        return values.astype(values.dtype.newbyteorder("=")), significant_bits
    if mode in ("I", "F"):
        return np.asarray(image), None
    if mode == "1":
        return np.asarray(image.convert("L")), None
    if mode == "LA":
        return np.asarray(image)[..., 0], None
    if mode in ("P", "PA"):
        return np.asarray(image.convert("RGBA")), None
    return np.asarray(image.convert("RGB")), None


