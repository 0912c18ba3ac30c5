"""MIMIC-CXR's own -chexpert.csv + -metadata.csv pair, the path layout, and plain image folders for inference."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from _cxrlt_fixtures import mimic_frames, write_csv

from monai_cxrcml.data import list_image_folder, mimic_relative_path, read_mimic_chexpert
from monai_cxrcml.data.classes import CHEXPERT_CLASSES

CHEXPERT, METADATA = "mimic-cxr-2.0.0-chexpert.csv", "mimic-cxr-2.0.0-metadata.csv"


def test_mimic_relative_path():
    expected = "files/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg"
    dicom = "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014"
    assert mimic_relative_path(10000032, 50414267, dicom) == expected
    assert mimic_relative_path("10000032", "s50414267", dicom) == expected
    assert mimic_relative_path("19999987", "58971208", "x").startswith("files/p19/p19999987/s58971208/")
    with pytest.raises(ValueError, match="not a MIMIC-CXR image id"):
        mimic_relative_path("p10000032", 50414267, dicom)


def write_pair(tmp_path, chexpert, metadata, suffix=""):
    return write_csv(chexpert, tmp_path / (CHEXPERT + suffix)), write_csv(metadata, tmp_path / (METADATA + suffix))


def test_study_labels_reach_every_frontal_image(tmp_path):
    chexpert, metadata = mimic_frames()
    table = read_mimic_chexpert(*write_pair(tmp_path, chexpert, metadata), image_root="/mimic")
    frontal = metadata[metadata["ViewPosition"] == "PA"].reset_index(drop=True)
    assert table.frame["dicom_id"].tolist() == frontal["dicom_id"].tolist()
    assert table.class_names == CHEXPERT_CLASSES
    assert table.frame["study_id"].tolist() == ("s" + frontal["study_id"].astype(str)).tolist()
    first = frontal.loc[0, ["subject_id", "study_id", "dicom_id"]]
    assert table.frame["image"][0] == "/mimic/" + mimic_relative_path(*first)
    study = chexpert.set_index("study_id").loc[frontal["study_id"], list(CHEXPERT_CLASSES)].to_numpy()
    np.testing.assert_array_equal(table.labels, (study == 1).astype(np.float32))  # -1 and blank -> negative
    assert table.mask.all()
    laterals = read_mimic_chexpert(tmp_path / CHEXPERT, tmp_path / METADATA, frontal_only=False)
    assert len(laterals) == len(metadata)
    assert laterals.frame["image"][0].startswith(str(tmp_path) + "/files/p10/")  # default root: the metadata folder


def test_uncertain_blank_policies_and_class_subset(tmp_path):
    chexpert, metadata = mimic_frames()
    paths = write_pair(tmp_path, chexpert, metadata, ".gz")
    table = read_mimic_chexpert(*paths, class_names=["Edema", "Atelectasis"], uncertain="positive", blank="mask")
    study = chexpert.set_index("study_id").loc[metadata["study_id"][::2], ["Edema", "Atelectasis"]].to_numpy()
    np.testing.assert_array_equal(table.labels, np.isin(study, [1, -1]).astype(np.float32))
    np.testing.assert_array_equal(table.mask, ~np.isnan(study))


def test_images_of_unlabelled_studies_are_dropped_with_a_warning(tmp_path, caplog):
    chexpert, metadata = mimic_frames()
    paths = write_pair(tmp_path, chexpert.iloc[1:], metadata)
    with caplog.at_level(logging.WARNING):
        table = read_mimic_chexpert(*paths, frontal_only=False)
    assert len(table) == len(metadata) - 2
    assert "2 image(s) belong to studies without a row" in caplog.text


def test_duplicate_study_row_names_both_lines(tmp_path):
    chexpert, metadata = mimic_frames()
    chexpert.loc[3, ["subject_id", "study_id"]] = chexpert.loc[1, ["subject_id", "study_id"]].to_numpy()
    with pytest.raises(ValueError, match=r"chexpert\.csv: subject_id='\d+', study_id='s\d+' appears on lines 3, 5"):
        read_mimic_chexpert(*write_pair(tmp_path, chexpert, metadata))


def test_duplicate_dicom_id_in_metadata(tmp_path):
    chexpert, metadata = mimic_frames()
    metadata.loc[4, "dicom_id"] = metadata.loc[0, "dicom_id"]
    with pytest.raises(ValueError, match=r"metadata\.csv: dicom_id='.*' appears on lines 2, 6"):
        read_mimic_chexpert(*write_pair(tmp_path, chexpert, metadata))


def test_bad_label_value_names_chexpert_line_and_column(tmp_path):
    chexpert, metadata = mimic_frames()
    chexpert = chexpert.astype({"Pneumothorax": object})
    chexpert.loc[2, "Pneumothorax"] = "2.0"
    with pytest.raises(ValueError, match=r"chexpert\.csv line 4, column 'Pneumothorax': '2' is not a label"):
        read_mimic_chexpert(*write_pair(tmp_path, chexpert, metadata))


def test_missing_columns_name_the_file(tmp_path):
    chexpert, metadata = mimic_frames()
    with pytest.raises(ValueError, match=r"metadata\.csv: missing required column\(s\) \['dicom_id'\]"):
        read_mimic_chexpert(*write_pair(tmp_path, chexpert, metadata.drop(columns=["dicom_id"])))
    with pytest.raises(ValueError, match=r"chexpert\.csv: missing required column\(s\) \['study_id'\]"):
        read_mimic_chexpert(*write_pair(tmp_path, chexpert.drop(columns=["study_id"]), metadata))
    with pytest.raises(ValueError, match=r"chexpert\.csv: unknown class name\(s\) \['Edema'\]"):
        read_mimic_chexpert(*write_pair(tmp_path, chexpert.drop(columns=["Edema"]), metadata))


def test_files_that_do_not_belong_together(tmp_path):
    chexpert, metadata = mimic_frames()
    chexpert["study_id"] += 1_000_000
    with pytest.raises(ValueError, match="no image of .*metadata.csv has a label row"):
        read_mimic_chexpert(*write_pair(tmp_path, chexpert, metadata))


def test_phantom_mimic_pair(phantom_dir):
    table = read_mimic_chexpert(phantom_dir / CHEXPERT, phantom_dir / METADATA, check_files=True)
    assert len(table) > 0 and set(table.frame["view"]) <= {"PA", "AP"}
    assert os.path.isfile(table.to_datalist()[0]["image"])


# ----------------------------------------------------------------------------------------------------------------
# plain folders


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folder_lists_images_recursively_in_sorted_order(tmp_path):
    dicom = b"\0" * 128 + b"DICM" + b"\0" * 16
    names = [
        "b/film.JPG",
        "a/z.png",
        "a/deeper/x.jpeg",
        "c.dcm",
        "d.dicom",
        "d2.DIC",
        "g.tif",
        "g2.TIFF",
        "h.bmp",
        "e.nii",
        "f.nii.gz",
        "pacs/IM0001",  # DICOM without extension
        "pacs/1.2.840.113619.2.55.3.2831164355.123",  # DICOM named by its UID
    ]
    for name in names:
        touch(tmp_path / name, dicom if name.startswith("pacs") else b"x")
    for name in ["notes.txt", "labels.csv", "pacs/README", ".hidden.jpg", "a/._z.png", ".cache/y.jpg"]:
        touch(tmp_path / name)
    items = list_image_folder(tmp_path)
    assert [i["path"] for i in items] == sorted(names)
    assert all(i["image"] == str(tmp_path / i["path"]) for i in items)
    assert list_image_folder(tmp_path) == items


def test_folder_follows_links_without_looping(tmp_path):
    touch(tmp_path / "root/a/film.jpg")
    os.symlink(tmp_path / "root", tmp_path / "root/a/loop")
    touch(tmp_path / "other/b.png")
    os.symlink(tmp_path / "other", tmp_path / "root/linked")
    assert [i["path"] for i in list_image_folder(tmp_path / "root")] == ["a/film.jpg", "linked/b.png"]


def test_folder_errors(tmp_path):
    touch(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError, match=r"no image found.*\.jpg.*DICM"):
        list_image_folder(tmp_path)
    with pytest.raises(NotADirectoryError, match="not a folder"):
        list_image_folder(tmp_path / "notes.txt")
