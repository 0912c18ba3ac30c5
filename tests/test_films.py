"""read_film: orientation, intensity and bad-input behaviour for every film format users bring."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from monai_cxrcml.data.films import FilmReadError, load_film, read_film, resize_longest_side

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


# ---------------------------------------------------------------------------------------------------------------
# orientation through every reader


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA"])
def test_pil_modes_keep_orientation(tmp_path, mode):
    suffix = ".jpg" if mode in ("L", "RGB") else ".png"
    options = {"quality": 95} if suffix == ".jpg" else {}
    path = write_pil(tmp_path / f"film{suffix}", asymmetric_film(), mode, **options)
    film = read_film(path)
    assert film.dtype == np.float32 and film.flags.c_contiguous
    assert_asymmetric_film(film)


def test_png16_12bit_values_scaled_by_bit_depth(tmp_path):
    values = np.rint(asymmetric_film() * 4095)
    film = read_film(write_png16(tmp_path / "film.png", values))
    np.testing.assert_allclose(film, values / 4095, atol=1e-6)
    assert_asymmetric_film(film, atol=1e-3)


def test_png16_full_range_and_declared_sbit(tmp_path):
    full = np.rint(asymmetric_film() * 65535)
    np.testing.assert_allclose(read_film(write_png16(tmp_path / "full.png", full)), full / 65535, atol=1e-6)
    dim = np.rint(asymmetric_film() * 1000)  # a dark 12-bit film: the declared depth wins over the inferred 10 bits
    np.testing.assert_allclose(read_film(write_png16(tmp_path / "dim.png", dim, 12)), dim / 4095, atol=1e-6)
    np.testing.assert_allclose(read_film(write_png16(tmp_path / "dim10.png", dim)), dim / 1023, atol=1e-6)


def test_exif_orientation_honoured(tmp_path):
    film = asymmetric_film()
    stored = np.rot90(film, 1)  # stored rotated 90 degrees counter-clockwise; orientation 6 = rotate clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    path = write_pil(tmp_path / "rotated.jpg", stored, "L", quality=95, exif=exif)
    assert_asymmetric_film(read_film(path))


def _dicom_window_full_range(**tags):
    return {"WindowCenter": 2048, "WindowWidth": 4096, **tags}


def test_dicom_monochrome2_keeps_orientation_and_values(tmp_path):
    stored = np.rint(asymmetric_film() * 4095).astype(np.uint16)
    film = read_film(write_dicom(tmp_path / "m2.dcm", stored, **_dicom_window_full_range()))
    assert_asymmetric_film(film, atol=1e-3)


def test_dicom_monochrome1_is_inverted(tmp_path):
    stored = np.rint((1 - asymmetric_film()) * 4095).astype(np.uint16)
    film = read_film(write_dicom(tmp_path / "m1.dcm", stored, "MONOCHROME1", **_dicom_window_full_range()))
    assert_asymmetric_film(film, atol=1e-3)
    # Without a window: min-max, still inverted (bright quadrant stays top-left).
    plain = read_film(write_dicom(tmp_path / "m1_plain.dcm", stored, "MONOCHROME1"))
    expected = (QUADRANTS - QUADRANTS.min()) / np.ptp(QUADRANTS)
    np.testing.assert_allclose(quadrant_means(plain), expected, atol=1e-3)


def test_dicom_presentation_lut_shape_inverse_inverts_once(tmp_path):
    # A DX film in MONOCHROME1 must carry Presentation LUT Shape INVERSE: one inversion, not two.
    stored_m1 = np.rint((1 - asymmetric_film()) * 4095).astype(np.uint16)
    m1 = write_dicom(tmp_path / "m1.dcm", stored_m1, "MONOCHROME1", PresentationLUTShape="INVERSE",
                     **_dicom_window_full_range())
    assert_asymmetric_film(read_film(m1), atol=1e-3)
    # INVERSE on a MONOCHROME2 film inverts it; IDENTITY leaves it.
    m2 = write_dicom(tmp_path / "m2.dcm", stored_m1, PresentationLUTShape="INVERSE", **_dicom_window_full_range())
    assert_asymmetric_film(read_film(m2), atol=1e-3)
    stored_m2 = np.rint(asymmetric_film() * 4095).astype(np.uint16)
    identity = write_dicom(
        tmp_path / "id.dcm", stored_m2, PresentationLUTShape="IDENTITY", **_dicom_window_full_range()
    )
    assert_asymmetric_film(read_film(identity), atol=1e-3)


def test_dicom_without_extension_is_found_by_preamble(tmp_path):
    stored = np.rint(asymmetric_film() * 4095).astype(np.uint16)
    path = write_dicom(tmp_path / "m2.dcm", stored, **_dicom_window_full_range())
    assert_asymmetric_film(read_film(path.rename(tmp_path / "1.2.3.4")), atol=1e-3)


def test_a_jpeg_or_png_named_dcm_is_read_as_what_it_is(tmp_path):
    for suffix in (".jpg", ".png"):
        path = write_pil(tmp_path / f"film{suffix}", asymmetric_film(), **({"quality": 95} if suffix == ".jpg" else {}))
        assert_asymmetric_film(read_film(path.rename(tmp_path / f"export{suffix}.dcm")))


def test_dicom_rescale_slope_intercept_then_window(tmp_path):
    stored = np.full((64, 64), 2048, np.uint16)
    stored[:32] = 1000
    # Modality values = 2 * stored - 1000: 3096 (window centre -> 0.5) and 1000 (below the window -> 0).
    path = write_dicom(
        tmp_path / "rescaled.dcm", stored, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=3096, WindowWidth=2001
    )
    film = read_film(path)
    np.testing.assert_allclose(film[40:, :], 0.5, atol=1e-3)
    np.testing.assert_allclose(film[:32, :], 0.0, atol=1e-6)


def test_dicom_voi_window_saturates_and_is_linear(tmp_path):
    stored = np.tile(np.linspace(0, 4095, 64).round().astype(np.uint16), (64, 1))
    film = read_film(write_dicom(tmp_path / "w.dcm", stored, WindowCenter=2048, WindowWidth=1024))
    x = stored[0].astype(float)
    expected = np.clip((x - 2047.5) / 1023 + 0.5, 0, 1)
    np.testing.assert_allclose(film[10], expected, atol=1e-3)
    assert film.min() == 0 and film.max() == 1


def test_dicom_voi_lut_sequence(tmp_path):
    stored = np.tile(np.linspace(0, 4095, 64).round().astype(np.uint16), (64, 1))
    item = pydicom.dataset.Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 16])  # LUT Descriptor: 4096 entries from 0, 16 bits
    lut = np.rint(np.sqrt(np.arange(4096) / 4095) * 60000).astype(int)
    item.add_new(0x00283006, "US", lut.tolist())  # LUT Data
    film = read_film(write_dicom(tmp_path / "lut.dcm", stored, VOILUTSequence=pydicom.Sequence([item])))
    np.testing.assert_allclose(film[5], np.sqrt(stored[0] / 4095), atol=1e-4)


def test_dicom_rgb_is_reduced_to_luma(tmp_path):
    gray = np.rint(asymmetric_film() * 255).astype(np.uint8)
    rgb = np.stack([gray] * 3, axis=-1)
    film = read_film(write_dicom(tmp_path / "rgb.dcm", rgb, "RGB", bits_stored=8))
    np.testing.assert_allclose(film, gray / 255, atol=1e-5)


def test_dicom_ybr_uses_its_luma_channel(tmp_path):
    gray = np.rint(asymmetric_film() * 255).astype(np.uint8)
    ybr = np.stack([gray, np.full_like(gray, 100), np.full_like(gray, 200)], axis=-1)
    film = read_film(write_dicom(tmp_path / "ybr.dcm", ybr, "YBR_FULL", bits_stored=8))
    np.testing.assert_allclose(film, gray / 255, atol=1e-5)


def test_dicom_rle_compressed(tmp_path):
    stored = np.rint(asymmetric_film() * 4095).astype(np.uint16)
    path = write_dicom(tmp_path / "rle.dcm", stored, **_dicom_window_full_range())
    ds = pydicom.dcmread(path)
    if not hasattr(ds, "compress"):
        pytest.skip("pydicom < 3 cannot RLE-encode")
    ds.compress(pydicom.uid.RLELossless)
    ds.save_as(path)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    assert_asymmetric_film(read_film(path), atol=1e-3)


def test_dicom_multiframe_reads_first_frame_with_warning(tmp_path):
    stored = np.rint(asymmetric_film() * 4095).astype(np.uint16)
    path = write_dicom(tmp_path / "mf.dcm", stored, frames=2, **_dicom_window_full_range())
    with pytest.warns(UserWarning, match="2 frames"):
        assert_asymmetric_film(read_film(path), atol=1e-3)


def test_nifti_round_trip_through_monai_writer(tmp_path):
    film = asymmetric_film()
    path = write_nifti_monai(tmp_path, film)
    assert nib.load(path).shape[:2] == (FILM_SHAPE[1], FILM_SHAPE[0])  # stored (columns, rows)
    np.testing.assert_allclose(read_film(path), film, atol=1e-6)


def test_nifti_from_monai_loaded_png_matches_png(tmp_path):
    """PNG -> MONAI LoadImage (PILReader, transposed) -> SaveImage NIfTI reads back as the PNG itself."""
    from monai.transforms import LoadImage, SaveImage

    png = write_pil(tmp_path / "film.png", asymmetric_film(), "L")
    loaded = LoadImage(image_only=True, ensure_channel_first=True, reader="PILReader")(png)
    assert tuple(loaded.shape[1:]) == (FILM_SHAPE[1], FILM_SHAPE[0])  # MONAI's (W, H)
    SaveImage(output_dir=tmp_path / "out", output_ext=".nii", writer="NibabelWriter", separate_folder=False,
              output_postfix="", output_dtype=np.uint8, print_log=False)(loaded)
    np.testing.assert_allclose(read_film(tmp_path / "out" / "film.nii"), read_film(png), atol=1e-6)


def test_intensity_minmax_stretches(tmp_path):
    path = write_pil(tmp_path / "film.png", asymmetric_film(), "L")
    film = read_film(path, intensity="minmax")
    assert film.min() == 0.0 and film.max() == 1.0


def test_constant_black_film_is_valid(tmp_path):
    film = read_film(write_pil(tmp_path / "black.png", np.zeros((40, 30)), "L"))
    assert film.shape == (40, 30) and not film.any()


# ---------------------------------------------------------------------------------------------------------------
# JPEG draft decoding and resizing


def _smooth_film(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    film = 0.5 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy)
    film[: h // 3, : w // 3] = 0.95
    return film


def test_draft_decodes_smaller_and_matches_full_decode(tmp_path):
    path = write_pil(tmp_path / "big.jpg", _smooth_film(1200, 1000), "L", quality=92)
    drafted = read_film(path, size_hint=224)
    assert 224 <= max(drafted.shape) < 1200  # decoded at 1/4 scale, never below the hint
    full = load_film(path, 224, draft=False)
    fast = load_film(path, 224)
    assert fast.shape == full.shape == (224, round(1000 * 224 / 1200))
    assert np.abs(fast - full).mean() < 2 / 255


def test_resize_longest_side_keeps_aspect():
    film = np.zeros((100, 200), np.float32)
    assert resize_longest_side(film, 64).shape == (32, 64)
    assert resize_longest_side(film.T, 64).shape == (64, 32)
    assert resize_longest_side(np.ones((10, 20), np.float32), 80).max() <= 1.0


# ---------------------------------------------------------------------------------------------------------------
# bad input: every failure is a FilmReadError naming the path


def _truncated_jpeg(tmp_path: Path) -> Path:
    path = write_pil(tmp_path / "truncated.jpg", _smooth_film(300, 240), "L", quality=90)
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


@pytest.mark.parametrize("case", sorted(BAD_FILMS))
def test_bad_input_raises_film_read_error_naming_the_path(tmp_path, case):
    make, expected = BAD_FILMS[case]
    path = make(tmp_path)
    with pytest.raises(FilmReadError) as info:
        read_film(path)
    message = str(info.value)
    assert str(path) in message and info.value.path == str(path)
    assert expected.lower() in message.lower()
    with pytest.raises(FilmReadError):  # also on the fast path (JPEG draft decoding + resize)
        load_film(path, 64)


def test_max_pixels_guard_is_configurable(tmp_path):
    path = write_pil(tmp_path / "film.png", asymmetric_film(), "L")
    with pytest.raises(FilmReadError, match="max_pixels=5000"):
        read_film(path, max_pixels=5000)
    with pytest.raises(FilmReadError, match="min_size=100"):
        read_film(path, min_size=100)


def test_film_read_error_pickles():
    import pickle

    err = pickle.loads(pickle.dumps(FilmReadError("/x/y.jpg", "broken")))
    assert isinstance(err, FilmReadError) and err.path == "/x/y.jpg" and "broken" in str(err)
