"""Films of every format users bring, written for the tests: an asymmetric film (any flip, rotation or transposition
shows), 8/16-bit raster files, DICOM, NIfTI, and a set of broken files (``BAD_FILMS``)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from PIL import Image


def smooth_film(h: int, w: int) -> np.ndarray:
    """A smooth film [h, w] in [0, 1] with a bright top-left block (JPEG draft decoding tests)."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    film = 0.5 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy)
    film[: h // 3, : w // 3] = 0.95
    return film


# ---------------------------------------------------------------------------------------------------------------
# An asymmetric film: quadrant means top-left 0.9, top-right 0.1, bottom-left 0.35, bottom-right 0.6 on a portrait
# 120 x 80 (rows x cols) film. Any flip, rotation or transposition changes the quadrant pattern or the shape.

QUADRANTS = np.array([[0.9, 0.1], [0.35, 0.6]])
FILM_SHAPE = (120, 80)


def asymmetric_film(shape: tuple[int, int] = FILM_SHAPE) -> np.ndarray:
    """float64 [H, W] in [0, 1] with the four quadrant values of ``QUADRANTS``."""
    h, w = shape
    film = np.empty(shape)
    film[: h // 2, : w // 2], film[: h // 2, w // 2 :] = QUADRANTS[0]
    film[h // 2 :, : w // 2], film[h // 2 :, w // 2 :] = QUADRANTS[1]
    return film


def quadrant_means(film: np.ndarray) -> np.ndarray:
    """[2, 2] means of the inner half of each quadrant (away from edges and JPEG ringing)."""
    h, w = film.shape
    out = np.empty((2, 2))
    for i in range(2):
        for j in range(2):
            q = film[i * h // 2 : (i + 1) * h // 2, j * w // 2 : (j + 1) * w // 2]
            qh, qw = q.shape
            out[i, j] = q[qh // 4 : 3 * qh // 4, qw // 4 : 3 * qw // 4].mean()
    return out


def assert_asymmetric_film(film: np.ndarray, shape=FILM_SHAPE, atol: float = 0.02) -> None:
    assert film.shape == shape
    np.testing.assert_allclose(quadrant_means(film), QUADRANTS, atol=atol)


def write_pil(path: Path, film: np.ndarray, mode: str = "L", **save) -> Path:
    """Write a [0, 1] film as 8-bit gray (L), RGB, RGBA, palette (P) or gray+alpha (LA) with Pillow."""
    gray = Image.fromarray(np.rint(film * 255).astype(np.uint8))
    gray.convert(mode).save(path, **save)
    return path


def write_png16(path: Path, values: np.ndarray, significant_bits: int | None = None) -> Path:
    """16-bit gray PNG of integer ``values``; optionally with an sBIT chunk (which Pillow cannot write)."""
    Image.fromarray(values.astype(np.uint16)).save(path)
    if significant_bits is not None:
        data = path.read_bytes()
        chunk = b"sBIT" + bytes([significant_bits])
        sbit = struct.pack(">I", 1) + chunk + struct.pack(">I", zlib.crc32(chunk))
        ihdr_end = 8 + 8 + 13 + 4
        path.write_bytes(data[:ihdr_end] + sbit + data[ihdr_end:])
    return path


def write_dicom(
    path: Path,
    stored: np.ndarray,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    frames: int = 1,
    pixel_data: bool = True,
    syntax: str = pydicom.uid.ExplicitVRLittleEndian,
    **tags,
) -> Path:
    """A DX DICOM of unsigned ``stored`` values ([H, W], or [H, W, 3] uint8 for RGB) with extra ``tags``."""
    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = pydicom.dataset.FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = stored.shape[:2]
    ds.SamplesPerPixel = 3 if stored.ndim == 3 else 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if stored.dtype == np.uint8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, bits_stored - 1, 0
    if stored.ndim == 3:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if pixel_data:
        if pydicom.uid.UID(syntax).is_compressed:
            ds.PixelData = pydicom.encaps.encapsulate([b"\xff\x4f\xff\x51 not really a codestream"])
            ds["PixelData"].VR = "OB"
        else:
            ds.PixelData = np.concatenate([stored] * frames).astype(f"<u{stored.itemsize}").tobytes()
    for key, value in tags.items():
        setattr(ds, key, value)
    try:
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    except TypeError:  # pydicom 2.x
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
    return path


def write_nifti_monai(path_dir: Path, film: np.ndarray) -> Path:
    """Write a film the way a MONAI user does: a channel-first MetaTensor [1, W, H] (MONAI 2-D convention:
    spatial axis 0 = column) through MONAI's own SaveImage / NibabelWriter."""
    from monai.data import MetaTensor
    from monai.transforms import SaveImage

    meta = {"filename_or_obj": "film", "original_channel_dim": "no_channel"}
    image = MetaTensor(film.T[None].astype(np.float32), meta=meta)
    SaveImage(output_dir=path_dir, output_ext=".nii.gz", writer="NibabelWriter", separate_folder=False,
              output_postfix="", print_log=False)(image)
    return path_dir / "film.nii.gz"


def _truncated_jpeg(tmp_path: Path) -> Path:
    path = write_pil(tmp_path / "truncated.jpg", smooth_film(300, 240), "L", quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR claims width x height, with no pixel data at all."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b""))
    return path


def _png_rgb48(path: Path) -> Path:
    """A 16-bit RGB PNG of 12-bit values (Pillow would keep only the high byte: a black film)."""
    rows = np.full((40, 30, 3), 3000, ">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    ihdr = struct.pack(">IIBBBBB", 30, 40, 16, 2, 0, 0, 0)
    chunks = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)
    return path


def _jpeg_header_claiming(path: Path, width: int, height: int) -> Path:
    """A small real JPEG whose SOF0 marker is patched to claim width x height."""
    write_pil(path, np.zeros((16, 16)), "L")
    data = bytearray(path.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def _nifti_header_claiming(path: Path, width: int, height: int) -> Path:
    nib.save(nib.Nifti1Image(np.zeros((16, 16), np.uint8), np.eye(4)), path)
    data = bytearray(path.read_bytes())
    data[40:46] = struct.pack("<hhh", 2, width, height)  # dim[0..2]
    path.write_bytes(bytes(data))
    return path


def _nan_nifti(path: Path) -> Path:
    values = np.full((40, 30), 0.5, np.float32)
    values[3, 4] = np.nan
    values[5, 6] = np.inf
    nib.save(nib.Nifti1Image(values, np.eye(4)), path)
    return path


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


BAD_FILMS = {
    "missing": (lambda d: d / "missing.jpg", "does not exist"),
    "zero-byte": (lambda d: _write_bytes(d / "empty.jpg", b""), "empty"),
    "directory": (lambda d: (d / "folder.jpg").mkdir() or d / "folder.jpg", "directory"),
    "not a path": (lambda d: float("nan"), "not a file path"),
    "truncated jpeg": (_truncated_jpeg, "truncated"),
    "garbage .jpg": (lambda d: _write_bytes(d / "garbage.jpg", b"\x00\x01garbage" * 50), "not a recognised image"),
    "dicom without pixel data": (
        lambda d: write_dicom(d / "sr.dcm", np.zeros((32, 32), np.uint16), pixel_data=False), "no pixel data"),
    "16-bit rgb png": (lambda d: _png_rgb48(d / "rgb48.png"), "16-bit grayscale"),
    "1x1 png": (lambda d: write_pil(d / "tiny.png", np.zeros((1, 1)), "L"), "1x1"),
    "png header 20000x20000": (lambda d: _png_header_only(d / "bomb.png", 20000, 20000), "decompression"),
    "jpeg header 20000x20000": (lambda d: _jpeg_header_claiming(d / "bomb.jpg", 20000, 20000), "decompression"),
    "dicom header 20000x20000": (
        lambda d: write_dicom(d / "bomb.dcm", np.zeros((16, 16), np.uint16), Rows=20000, Columns=20000),
        "decompression"),
    "nifti header 20000x20000": (lambda d: _nifti_header_claiming(d / "bomb.nii", 20000, 20000), "decompression"),
    "nan nifti": (lambda d: _nan_nifti(d / "nan.nii.gz"), "2 of 1200 pixel values are NaN or infinite"),
    "compressed dicom without decoder": (
        lambda d: write_dicom(d / "j2k.dcm", np.zeros((32, 32), np.uint16),
                              syntax=pydicom.uid.JPEG2000Lossless), "pylibjpeg"),
}
