"""Every label format on small files written here: detection, refusal, views, policies and every malformed row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _cxrlt_fixtures import cxrlt_frame, write_csv
from _format_fixtures import chexpert_frame, nih_frame, padchest_frame, vindr_frame

from monai_cxrcml.data import LABEL_FORMATS, detect_label_format, load_fold, read_label_table
from monai_cxrcml.data.chexpert import read_chexpert_csv
from monai_cxrcml.data.nih import read_nih_csv
from monai_cxrcml.data.padchest import read_padchest_csv
from monai_cxrcml.data.vindr import read_vindr_csv

WRITERS = {"cxrlt": cxrlt_frame, "nih": nih_frame, "padchest": padchest_frame, "chexpert": chexpert_frame,
           "vindr": vindr_frame}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_format_is_detected_from_the_header(tmp_path, name):
    path = write_csv(WRITERS[name](), tmp_path / "labels.csv.gz")
    assert detect_label_format(path) == name
    table = read_label_table(path, frontal_only=False)
    explicit = read_label_table(path, label_format=name, frontal_only=False)
    assert table.class_names == explicit.class_names and len(table) == len(explicit) > 0


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_fold_datalists_have_the_cxrlt_keys(tmp_path, name):
    path = write_csv(WRITERS[name](patients=20) if name != "vindr" else pd.concat(
        [vindr_frame().assign(image_id=lambda f, i=i: f["image_id"] + f"_{i}") for i in range(8)]), tmp_path / "x.csv")
    fold = load_fold(path, num_folds=2, val_fraction=0, min_positives=1)
    item = fold.datalist("train")[0]
    assert set(item) == {"image", "label", "label_mask", "caption", "dicom_id", "subject_id", "study_id", "view",
                         "sample_id"}
    assert item["label"].shape == (len(fold.class_names),) and isinstance(item["caption"], str)
    assert not set(fold.train.frame["subject_id"]) & set(fold.test.frame["subject_id"])


def test_a_file_of_no_format_is_refused_with_every_format_and_its_columns(tmp_path):
    path = write_csv(pd.DataFrame({"filename": ["a.png"], "diagnosis": ["effusion"]}), tmp_path / "mine.csv")
    with pytest.raises(ValueError) as error:
        read_label_table(path)
    message = str(error.value)
    assert "mine.csv: not a label file" in message and "'diagnosis'" in message
    for fmt in LABEL_FORMATS.values():
        assert f"{fmt.name}" in message and fmt.columns in message
    assert "Finding Labels" in message and "class_name, rad_id" in message


def test_mimic_chexpert_csv_is_pointed_to_its_reader(tmp_path):
    path = write_csv(pd.DataFrame({"subject_id": [1], "study_id": [2], "Edema": [1.0]}), tmp_path / "chexpert.csv")
    with pytest.raises(ValueError, match="read_mimic_chexpert"):
        detect_label_format(path)


def test_ambiguous_header_and_unknown_format_name(tmp_path):
    frame = cxrlt_frame().assign(Path="patient1/study1/view1_frontal.jpg")
    path = write_csv(frame, tmp_path / "both.csv")
    with pytest.raises(ValueError, match=r"fits the formats \['cxrlt', 'chexpert'\].*label_format="):
        detect_label_format(path)
    assert len(read_label_table(path, label_format="cxrlt", frontal_only=False)) == len(frame)
    with pytest.raises(ValueError, match=r"label_format='mimic' is not a known format.*'padchest'"):
        read_label_table(path, label_format="mimic")


def test_an_option_the_format_does_not_take_is_named(tmp_path):
    path = write_csv(nih_frame(), tmp_path / "nih.csv")
    with pytest.raises(ValueError, match=r"nih\.csv is a NIH ChestX-ray14 file \(nih\).*\['split'\]"):
        read_label_table(path, split="train")
    with pytest.raises(ValueError, match=r"\['rule'\]"):
        read_label_table(path, rule="majority")
    with pytest.raises(ValueError, match="uncertain='maybe' is not a label policy"):
        read_label_table(path, uncertain="maybe")


# ---------------------------------------------------------------- NIH


def test_nih_labels_views_and_ids(tmp_path):
    frame = nih_frame()
    table = read_nih_csv(write_csv(frame, tmp_path / "Data_Entry.csv"), image_root="/films")
    assert table.frame["image"].tolist() == ["/films/" + f for f in frame["Image Index"]]
    assert table.frame["study_id"].tolist() == [f[:-4] for f in frame["Image Index"]]
    effusion = table.class_names.index("Effusion")
    np.testing.assert_array_equal(table.labels[:, effusion], frame["Finding Labels"].str.contains("Effusion"))
    narrow = read_nih_csv(tmp_path / "Data_Entry.csv", class_names=["Mass", "Effusion"])
    assert narrow.class_names == ("Mass", "Effusion")
    with pytest.raises(ValueError, match=r"Data_Entry\.csv: unknown class name\(s\) \['Pleural Effusion'\]"):
        read_nih_csv(tmp_path / "Data_Entry.csv", class_names=["Pleural Effusion"])


def test_nih_duplicate_image_and_empty_findings_are_named(tmp_path):
    frame = nih_frame()
    frame.loc[5, "Image Index"] = frame.loc[1, "Image Index"]
    with pytest.raises(ValueError, match=r"Image Index='00000001_001\.png' appears on lines 3, 7"):
        read_nih_csv(write_csv(frame, tmp_path / "a.csv"))
    frame = nih_frame().astype({"Finding Labels": object})
    frame.loc[4, "Finding Labels"] = ""
    with pytest.raises(ValueError, match=r"a\.csv line 6: column 'Finding Labels' is empty"):
        read_nih_csv(write_csv(frame, tmp_path / "a.csv"))


# ---------------------------------------------------------------- PadChest


def test_padchest_lists_views_and_missing_lists(tmp_path):
    frame = padchest_frame()
    path = write_csv(frame, tmp_path / "PADCHEST.csv")
    table = read_padchest_csv(path, frontal_only=False, blank="mask")
    assert table.class_names == ("cardiomegaly", "nodule", "normal", "pleural effusion")
    row = frame.index[frame["Labels"] == "[' cardiomegaly', 'pleural effusion']"][0]
    assert table.labels[row].tolist() == [1, 0, 0, 1]
    missing = (frame["Labels"] == "nan").to_numpy()
    assert not table.mask[missing].any() and table.mask[~missing].all()
    assert set(table.frame["view"]) == {"PA", "LATERAL", "AP_HORIZONTAL", "AP", "COSTAL", ""}
    frontal = read_padchest_csv(path)
    assert set(frontal.frame["view"]) == {"PA", "AP_HORIZONTAL", "AP"}
    assert frontal.frame["image"].tolist() == [
        str(tmp_path / d / i) for d, i in frame.loc[frame["Projection"].isin(["PA", "AP", "AP_horizontal"]),
                                                    ["ImageDir", "ImageID"]].itertuples(index=False)]


@pytest.mark.parametrize("cell", ["normal, nodule", "['normal', nodule]", "[\"normal\"]",
                                  "__import__('os').system('true')", "['a'] + ['b']"])
def test_padchest_malformed_label_list_is_named_not_evaluated(tmp_path, cell):
    frame = padchest_frame()
    frame.loc[7, "Labels"] = cell
    with pytest.raises(ValueError) as error:
        read_padchest_csv(write_csv(frame, tmp_path / "PADCHEST.csv"))
    assert "PADCHEST.csv line 9, column 'Labels'" in str(error.value) and repr(cell) in str(error.value)


def test_padchest_duplicate_image_and_unknown_projection_are_named(tmp_path):
    frame = padchest_frame()
    frame.loc[9, "ImageID"] = frame.loc[0, "ImageID"]
    with pytest.raises(ValueError, match=r"ImageID='0_0_x\.png' appears on lines 2, 11"):
        read_padchest_csv(write_csv(frame, tmp_path / "p.csv"))
    frame = padchest_frame()
    frame.loc[3, "Projection"] = "OBLIQUE"
    with pytest.raises(ValueError, match=r"p\.csv line 5, column 'Projection': 'OBLIQUE'"):
        read_padchest_csv(write_csv(frame, tmp_path / "p.csv"))


# ---------------------------------------------------------------- CheXpert


def test_chexpert_patients_views_and_policies(tmp_path):
    frame = chexpert_frame()
    (tmp_path / "CheXpert-v1.0-small").mkdir()
    path = write_csv(frame, tmp_path / "CheXpert-v1.0-small" / "train.csv")
    table = read_chexpert_csv(path, uncertain="mask", blank="mask", frontal_only=False)
    assert table.class_names == ("No Finding", "Edema", "Pleural Effusion")
    assert table.frame["subject_id"].nunique() == 12
    assert table.frame["study_id"].str.fullmatch(r"patient\d{5}/study1").all()
    # Path repeats the root's last folder: resolved once
    first = "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg"
    assert table.frame["image"].iloc[0] == str(tmp_path / first)
    np.testing.assert_array_equal(table.mask, frame[list(table.class_names)].isin([0, 1]).to_numpy())
    assert len(read_chexpert_csv(path)) == 24


def test_chexpert_test_layout_takes_views_from_the_file_name(tmp_path):
    frame = chexpert_frame()[["Path", "Edema"]]
    frame["Path"] = frame["Path"].str.replace("CheXpert-v1.0-small/train/", "test/")
    table = read_chexpert_csv(write_csv(frame.fillna(0), tmp_path / "test_labels.csv"), image_root=tmp_path / "x")
    assert len(table) == 24 and set(table.frame["view"]) == {"FRONTAL"}
    assert table.frame["image"].iloc[0] == str(tmp_path / "x/test/patient00001/study1/view1_frontal.jpg")


def test_chexpert_path_without_patient_is_named(tmp_path):
    frame = chexpert_frame()
    frame.loc[2, "Path"] = "images/view1_frontal.jpg"
    with pytest.raises(ValueError, match=r"train\.csv line 4, column 'Path': 'images/view1_frontal\.jpg' names no"):
        read_chexpert_csv(write_csv(frame, tmp_path / "train.csv"))


# ---------------------------------------------------------------- VinDr-CXR


@pytest.mark.parametrize("rule, expected", [
    ("any", {"img1": {"Cardiomegaly", "Nodule/Mass"}, "img2": {"Aortic enlargement"}, "img3": {"No finding"}}),
    ("majority", {"img1": {"Cardiomegaly"}, "img2": {"No finding"}, "img3": {"No finding"}}),
])
def test_vindr_image_labels_by_rule(tmp_path, rule, expected):
    table = read_vindr_csv(write_csv(vindr_frame(), tmp_path / "train.csv"), rule=rule)
    assert table.frame["dicom_id"].tolist() == ["img1", "img2", "img3"]
    assert table.frame["image"].iloc[0] == str(tmp_path / "img1.dicom")
    found = {image: {c for c, y in zip(table.class_names, row) if y}
             for image, row in zip(table.frame["dicom_id"], table.labels)}
    assert found == expected


def test_vindr_contradiction_duplicate_and_rule_are_named(tmp_path):
    frame = vindr_frame()
    frame.loc[4, "rad_id"] = "R3"  # R3 marks Aortic enlargement and No finding on img2
    with pytest.raises(ValueError, match=r"radiologist R3 marks both 'No finding' and a finding on image img2 "
                                         r"\(lines 6, 8"):
        read_vindr_csv(write_csv(frame, tmp_path / "train.csv"))
    frame = pd.concat([vindr_frame(), vindr_frame().iloc[[1]]], ignore_index=True)
    with pytest.raises(ValueError, match=r"appears on lines 3, 12"):
        read_vindr_csv(write_csv(frame, tmp_path / "train.csv"))
    with pytest.raises(ValueError, match=r"rule='all': use one of \['any', 'majority'\]"):
        read_vindr_csv(tmp_path / "train.csv", rule="all")
