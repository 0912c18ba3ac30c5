"""Read DICOM (pydicom 2.4 and 3.x) and 2-D NIfTI films into float32 ``[H, W]`` in ``[0, 1]``, as displayed.

The rules (modality and VOI LUTs, MONOCHROME1, the NIfTI axis order) are those of
:func:`~monai_cxrcml.data.films.read_film`, which dispatches here.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from monai_cxrcml.data.film_values import FilmReadError, Intensity, check_film_size, check_finite, luma, minmax, to_unit

__all__ = ["read_dicom", "read_nifti"]

# Which optional package decodes which compressed DICOM transfer syntax (pydicom 2.4 and 3.x plugins).
_DICOM_DECODER_HINTS = {
    "1.2.840.10008.1.2.4.50": "pip install pylibjpeg pylibjpeg-libjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.51": "pip install pylibjpeg pylibjpeg-libjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.57": "pip install pylibjpeg pylibjpeg-libjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.70": "pip install pylibjpeg pylibjpeg-libjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.80": "pip install pylibjpeg pylibjpeg-libjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.81": "pip install pylibjpeg pylibjpeg-libjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.90": "pip install pylibjpeg pylibjpeg-openjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.91": "pip install pylibjpeg pylibjpeg-openjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.201": "pip install pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.202": "pip install pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pip install pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pip install pylibjpeg pylibjpeg-rle",
}
_DICOM_DECODER_DEFAULT_HINT = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg (or python-gdcm)"


def _pydicom():
    try:
        import pydicom
    except ImportError as e:  # pragma: no cover - pydicom is an install requirement
        raise ImportError("reading DICOM films needs pydicom: pip install pydicom") from e
    try:
        from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import apply_color_lut, apply_modality_lut, apply_voi_lut

        pixel_array = None
    return pydicom, apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array


def read_dicom(path, intensity: Intensity, limits: tuple[int, int]) -> np.ndarray:
    """A DICOM film, frame 0, as displayed: float32 ``[H, W]`` in ``[0, 1]`` (``limits``: max pixels, min side)."""
    pydicom, apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array = _pydicom()
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as e:  # pydicom raises many types on malformed files
        raise FilmReadError(path, f"not a readable DICOM file ({type(e).__name__}: {e}); re-export it or drop it")
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        kind = ds.get("SOPClassUID", None)
        kind = f" ({kind.name})" if kind is not None else ""
        raise FilmReadError(
            path,
            f"the DICOM file has no pixel data{kind}: it is not an image (e.g. a report or presentation state); "
            "remove it from the datalist",
        )
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError):
        raise FilmReadError(path, "the DICOM file has pixel data but no valid Rows/Columns; re-export it")
    check_film_size(path, rows, cols, limits)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        warnings.warn(f"{path}: DICOM has {frames} frames; reading frame 0 only", stacklevel=3)
    try:
        if pixel_array is not None:
            values = pixel_array(ds, index=0 if frames > 1 else None, as_rgb=False)
        else:
            values = ds.pixel_array[0] if frames > 1 else ds.pixel_array
    except Exception as e:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if syntax is not None and syntax.is_compressed:
            hint = _DICOM_DECODER_HINTS.get(str(syntax), _DICOM_DECODER_DEFAULT_HINT)
            raise FilmReadError(
                path,
                f"cannot decode its compressed pixel data ({syntax.name}): {type(e).__name__}: {e}. "
                f"Install a decoder: {hint}",
            )
        raise FilmReadError(path, f"cannot decode its pixel data ({type(e).__name__}: {e}); re-export it")
    values = np.asarray(values)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR" or values.ndim == 3:
        if photometric == "PALETTE COLOR":
            values = apply_color_lut(values, ds)
            full_scale = np.iinfo(values.dtype).max
        else:
            full_scale = 2 ** int(ds.get("BitsStored", 8 * values.dtype.itemsize)) - 1
        # YBR: channel 0 is the luma itself (pixel_array is asked for no colour conversion).
        gray = values[..., 0].astype(np.float32) if photometric.startswith("YBR") else luma(values)
        return minmax(gray) if intensity == "minmax" else gray / np.float32(full_scale)
    if values.ndim != 2:
        raise FilmReadError(path, f"unexpected DICOM pixel array shape {values.shape}; re-export it as 2-D")
    check_finite(path, values)
    film = _dicom_grayto_unit(path, ds, values, apply_modality_lut, apply_voi_lut, intensity)
    # MONOCHROME1 is inverted once. Its Presentation LUT Shape INVERSE (which the DX IOD requires for MONOCHROME1)
    # names that same inversion, not a second one; INVERSE inverts a MONOCHROME2 film.
    inverse = ds.get("PresentationLUTShape", "") == "INVERSE"
    if photometric == "MONOCHROME1" or inverse:
        film = 1.0 - film
    return film


def _dicom_grayto_unit(path, ds, values, apply_modality_lut, apply_voi_lut, intensity: Intensity) -> np.ndarray:
    """Modality LUT, then VOI LUT or window scaled by its output range, else min-max; float32 [0, 1]."""
    values = apply_modality_lut(values, ds)
    check_finite(path, values)
    has_lut = bool(ds.get("VOILUTSequence")) and all(
        ds.VOILUTSequence[0].get(k) is not None for k in ("LUTDescriptor", "LUTData")
    )
    has_window = ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None
    if intensity == "minmax" or not (has_lut or has_window):
        return minmax(values)
    try:
        if has_lut:
            first, count = int(ds.VOILUTSequence[0].LUTDescriptor[1]), int(ds.VOILUTSequence[0].LUTDescriptor[0])
            probe = np.arange(first, first + (count or 2**16), dtype=np.int64)
            if values.dtype.kind == "f":
                values = np.rint(values).astype(np.int64)
        else:
            probe = np.array([-1e15, 1e15])
        with np.errstate(over="ignore"):
            out_range = apply_voi_lut(probe, ds, prefer_lut=True)
        lo, hi = float(out_range.min()), float(out_range.max())
        windowed = apply_voi_lut(values, ds, prefer_lut=True)
    except (ValueError, NotImplementedError, IndexError, KeyError, AttributeError) as e:
        warnings.warn(f"{path}: invalid VOI LUT or window ({e}); stretching the film min-max instead", stacklevel=4)
        return minmax(values)
    if hi <= lo:
        return np.zeros(values.shape, np.float32)
    return ((windowed - lo) / (hi - lo)).astype(np.float32)


def read_nifti(path, intensity: Intensity, limits: tuple[int, int]) -> np.ndarray:
    """A 2-D NIfTI film transposed to ``[rows, cols]``: float32 in ``[0, 1]`` (``limits``: max pixels, min side)."""
    try:
        import nibabel as nib
    except ImportError as e:  # pragma: no cover - nibabel is an install requirement
        raise ImportError("reading NIfTI films needs nibabel: pip install nibabel") from e
    try:
        image = nib.load(os.fspath(path))
        shape = tuple(int(s) for s in image.shape)
    except Exception as e:  # nibabel raises many types on malformed files
        raise FilmReadError(path, f"not a readable NIfTI file ({type(e).__name__}: {e}); re-export it or drop it")
    spatial = tuple(s for s in shape if s != 1)
    if len(spatial) != 2 or len(shape) < 2 or any(s != 1 for s in shape[2:]):
        raise FilmReadError(
            path,
            f"NIfTI shape {shape} is not a 2-D film (expected (columns, rows) with only singleton axes after "
            "them); save one 2-D image per file",
        )
    cols, rows = shape[0], shape[1]
    check_film_size(path, rows, cols, limits)
    try:
        values = np.asanyarray(image.dataobj).reshape(cols, rows)
    except Exception as e:
        raise FilmReadError(path, f"truncated or corrupt NIfTI data ({type(e).__name__}: {e}); re-export it")
    check_finite(path, values)
    return to_unit(np.ascontiguousarray(values.T), intensity)
