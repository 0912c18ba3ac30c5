"""read_film: orientation, intensity and bad-input behaviour for every film format users bring."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from _films import (
    BAD_FILMS,
    FILM_SHAPE,
    QUADRANTS,
    assert_asymmetric_film,
    asymmetric_film,
    quadrant_means,
    smooth_film,
    write_dicom,
    write_nifti_monai,
    write_pil,
    write_png16,
)
from PIL import Image

from monai_cxrcml.data.films import FilmReadError, load_film, read_film, resize_longest_side

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


def test_draft_decodes_smaller_and_matches_full_decode(tmp_path):
    path = write_pil(tmp_path / "big.jpg", smooth_film(1200, 1000), "L", quality=92)
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
