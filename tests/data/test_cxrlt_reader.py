"""CXR-LT label files -> LabelTable -> datalist: real schema, views, policies, paths and every bad input."""

from __future__ import annotations

import gzip
import os
import re

import numpy as np
import pandas as pd
import pytest
from _cxrlt_fixtures import cxrlt_frame, write_csv

from monai_cxrcml.data import LabelTable, load_fold, read_cxrlt_csv
from monai_cxrcml.data.classes import CXRLT2024_CLASSES, CXRLT2024_UNSEEN_CLASSES
from monai_cxrcml.transforms.captions import meta_label_caption

ROOT = "/data/physionet.org/files/mimic-cxr-jpg/2.0.0"
KEYS = ("image", "dicom_id", "subject_id", "study_id", "view")


@pytest.fixture
def frame() -> pd.DataFrame:
    return cxrlt_frame()


def read(tmp_path, frame, name="train_labeled.csv", **kwargs) -> LabelTable:
    return read_cxrlt_csv(write_csv(frame, tmp_path / name), **{"image_root": ROOT, **kwargs})


def test_real_schema_gives_table_and_labels(tmp_path, frame):
    table = read(tmp_path, frame, frontal_only=False)
    assert len(table) == len(frame)
    assert table.class_names == CXRLT2024_CLASSES
    assert table.frame["dicom_id"].tolist() == frame["dicom_id"].tolist()
    assert table.frame["subject_id"].tolist() == frame["subject_id"].astype(str).tolist()
    assert table.frame["study_id"].tolist() == frame["study_id"].tolist()  # keeps the "s" prefix
    assert table.frame["image"].tolist() == [f"{ROOT}/{p}" for p in frame["fpath"]]
    np.testing.assert_array_equal(table.labels, frame[list(CXRLT2024_CLASSES)].to_numpy(np.float32))
    assert table.labels.dtype == np.float32 and table.mask.all()
    assert table.positives() == {c: int(frame[c].sum()) for c in CXRLT2024_CLASSES}
    assert table.source.endswith("train_labeled.csv")


def test_frontal_filter_by_view_position_then_code_meaning(tmp_path, frame):
    table = read(tmp_path, frame)
    kept = frame.set_index("dicom_id").loc[table.frame["dicom_id"]]
    # PA, AP, and an empty ViewPosition whose code meaning is antero-posterior; never LATERAL, LL, AP AXIAL, unknown
    assert set(zip(kept["ViewPosition"].fillna(""), kept["ViewCodeSequence_CodeMeaning"])) == {
        ("PA", "postero-anterior"),
        ("AP", "antero-posterior"),
        ("", "antero-posterior"),
    }
    assert set(table.frame["view"]) == {"PA", "AP"}
    assert len(table) == 6


def test_view_position_case_and_spaces_and_precedence(tmp_path, frame):
    frame.loc[0, ["ViewPosition", "ViewCodeSequence_CodeMeaning"]] = [" pa ", "lateral"]  # ViewPosition wins
    frame.loc[1, ["ViewPosition", "ViewCodeSequence_CodeMeaning"]] = ["", "Postero-Anterior"]
    table = read(tmp_path, frame)
    views = dict(zip(table.frame["dicom_id"], table.frame["view"]))
    assert views[frame.loc[0, "dicom_id"]] == "PA" and views[frame.loc[1, "dicom_id"]] == "PA"


def test_unknown_view_dropped_by_default_and_kept_on_request(tmp_path, frame):
    unknown = frame["dicom_id"][(frame["ViewPosition"] == "") & (frame["ViewCodeSequence_CodeMeaning"] == "")]
    assert len(unknown) == 2
    assert not set(unknown) & set(read(tmp_path, frame).frame["dicom_id"])
    kept = read(tmp_path, frame, unknown_view="keep").frame
    assert set(unknown) <= set(kept["dicom_id"])
    assert (kept.set_index("dicom_id").loc[list(unknown), "view"] == "").all()
    with pytest.raises(ValueError, match="unknown_view"):
        read(tmp_path, frame, unknown_view="maybe")


def test_file_without_view_columns(tmp_path, frame):
    frame = frame.drop(columns=["ViewPosition", "ViewCodeSequence_CodeMeaning"])
    assert len(read(tmp_path, frame, frontal_only=False)) == len(frame)
    with pytest.raises(ValueError, match=r"train_labeled\.csv.*neither a ViewPosition nor.*frontal_only=False"):
        read(tmp_path, frame)


def test_class_columns_by_name_any_order_and_extra_columns(tmp_path, frame):
    wanted = ["Pleural Effusion", "Adenopathy", "Round(ed) Atelectasis"]
    shuffled = frame[[*reversed(frame.columns)]].assign(Comment="free text", Bulla=0)
    table = read(tmp_path, shuffled, class_names=wanted, frontal_only=False)
    assert table.class_names == tuple(wanted)
    np.testing.assert_array_equal(table.labels, frame[wanted].to_numpy(np.float32))


def test_task3_file_with_unseen_classes(tmp_path):
    frame = cxrlt_frame(class_names=CXRLT2024_UNSEEN_CLASSES)
    table = read(tmp_path, frame, name="test_labeled_task3.csv", class_names=CXRLT2024_UNSEEN_CLASSES)
    assert table.class_names == CXRLT2024_UNSEEN_CLASSES


def test_unknown_class_name_names_file_and_class(tmp_path, frame):
    with pytest.raises(ValueError, match=r"train_labeled\.csv.*'Plural Effusion'.*Pleural Effusion"):
        read(tmp_path, frame, class_names=["Plural Effusion"])
    frame = frame.drop(columns=["Fibrosis"])
    with pytest.raises(ValueError, match=r"train_labeled\.csv.*'Fibrosis'"):
        read(tmp_path, frame)


@pytest.mark.parametrize("column", ["dicom_id", "subject_id", "study_id", "fpath", "Edema"])
def test_missing_required_column_names_file_and_column(tmp_path, frame, column):
    with pytest.raises(ValueError) as error:
        read(tmp_path, frame.drop(columns=[column]))
    message = str(error.value)
    assert "train_labeled.csv" in message and repr(column) in message
    assert "'Adenopathy'" in message  # lists the columns (or class columns) the file has


@pytest.mark.parametrize("value", ["2", "yes", "0.5", "-2", "NaN", "nan", "NA"])
def test_bad_label_value_names_file_line_and_column(tmp_path, frame, value):
    frame = frame.astype({"Edema": object})
    frame.loc[5, "Edema"] = value
    with pytest.raises(ValueError) as error:
        read(tmp_path, frame)
    message = str(error.value)
    assert "train_labeled.csv line 7, column 'Edema'" in message  # header = line 1, row 5 = line 7
    assert repr(value) in message and "Allowed: 1 (positive), 0 (negative), -1 (uncertain) or blank" in message


def test_line_numbers_count_blank_lines(tmp_path, frame):
    path = write_csv(frame, tmp_path / "train_labeled.csv")
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[3].split(",")
    cells[header.index("Mass")] = "yes"
    path.write_text("\n".join([*lines[:2], "", lines[2], ",".join(cells), *lines[4:]]) + "\n")
    with pytest.raises(ValueError, match="line 5, column 'Mass'"):
        read_cxrlt_csv(path, image_root=ROOT)


@pytest.mark.parametrize("policy, label, known", [("negative", 0, True), ("positive", 1, True), ("mask", 0, False)])
@pytest.mark.parametrize("option, column", [("uncertain", "Edema"), ("blank", "Mass")])
def test_uncertain_and_blank_policies(tmp_path, frame, option, column, policy, label, known):
    frame = frame.astype({"Edema": float, "Mass": float})
    frame.loc[0, "Edema"] = -1
    frame.loc[0, "Mass"] = np.nan
    table = read(tmp_path, frame, frontal_only=False, **{option: policy})
    j = CXRLT2024_CLASSES.index(column)
    assert table.labels[0, j] == label and table.mask[0, j] == known
    other = CXRLT2024_CLASSES.index("Mass" if column == "Edema" else "Edema")
    assert table.labels[0, other] == 0 and table.mask[0, other]  # the other cell follows its default, "negative"


def test_unknown_policy(tmp_path, frame):
    with pytest.raises(ValueError, match=r"uncertain='ignore' is not a label policy.*'negative', 'positive', 'mask'"):
        read(tmp_path, frame, uncertain="ignore")


def test_duplicate_dicom_id_names_both_lines(tmp_path, frame):
    frame.loc[9, "dicom_id"] = frame.loc[2, "dicom_id"]
    with pytest.raises(ValueError) as error:
        read(tmp_path, frame)
    message = str(error.value)
    assert "train_labeled.csv" in message and f"dicom_id={frame.loc[2, 'dicom_id']!r}" in message
    assert "lines 4, 11" in message


@pytest.mark.parametrize("column", ["dicom_id", "subject_id", "fpath"])
def test_empty_identifier_names_line_and_column(tmp_path, frame, column):
    frame = frame.astype({column: object})
    frame.loc[3, column] = ""
    with pytest.raises(ValueError, match=rf"train_labeled\.csv line 5: column '{column}' is empty"):
        read(tmp_path, frame)


def test_labels_csv_split_filter(tmp_path, frame):
    frame["split"] = ["train"] * 8 + ["development"] * 4 + ["test"] * 4
    everything = read(tmp_path, frame, name="labels.csv", frontal_only=False)
    assert everything.frame["split"].tolist() == frame["split"].tolist()
    train = read(tmp_path, frame, name="labels.csv", frontal_only=False, split="train")
    assert train.frame["dicom_id"].tolist() == frame["dicom_id"][:8].tolist()
    held = read(tmp_path, frame, name="labels.csv", frontal_only=False, split=["Development", "test"])
    assert set(held.frame["split"]) == {"development", "test"} and len(held) == 8
    frontal_train = read(tmp_path, frame, name="labels.csv", split="train")
    assert set(frontal_train.frame["split"]) == {"train"} and set(frontal_train.frame["view"]) <= {"PA", "AP"}
    with pytest.raises(ValueError, match=r"labels\.csv: no row has split \['validation'\].*'train' \(8 rows\)"):
        read(tmp_path, frame, name="labels.csv", split="validation")
    with pytest.raises(ValueError, match=r"train_labeled\.csv: missing required column\(s\) \['split'\]"):
        read(tmp_path, frame.drop(columns=["split"]), split="train")


@pytest.mark.parametrize(
    "root, prefix",
    [
        (ROOT, ""),  # the MIMIC-CXR-JPG folder
        (ROOT + "/files", ""),  # its files/ subfolder
        (ROOT + "/", "./"),
        (ROOT, "mimic-cxr-jpg/2.0.0/"),  # fpath that repeats the end of the root
        ("/data/physionet.org/files", "mimic-cxr-jpg/2.0.0/"),  # a parent of the data set
        (ROOT, "physionet.org/files/mimic-cxr-jpg/2.0.0/"),
    ],
)
def test_fpath_resolves_to_the_same_file(tmp_path, frame, root, prefix):
    frame["fpath"] = prefix + frame["fpath"]
    table = read(tmp_path, frame, image_root=root, frontal_only=False)
    expected = [f"{ROOT}/{p.removeprefix(prefix)}" for p in frame["fpath"]]
    assert table.frame["image"].tolist() == expected


def test_fpath_absolute_and_default_root(tmp_path, frame):
    frame.loc[0, "fpath"] = "/elsewhere/film.jpg"
    table = read_cxrlt_csv(write_csv(frame, tmp_path / "train_labeled.csv"), frontal_only=False)
    assert table.frame["image"][0] == "/elsewhere/film.jpg"
    assert table.frame["image"][1] == os.path.join(str(tmp_path), frame["fpath"][1])  # default root: the CSV folder


def test_check_files_reports_all_missing_at_once(tmp_path, frame):
    for i, fpath in enumerate(frame["fpath"]):
        if i % 4:  # leave every 4th film missing
            (tmp_path / fpath).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / fpath).write_bytes(b"jpeg")
    path = write_csv(frame, tmp_path / "train_labeled.csv")
    with pytest.raises(FileNotFoundError) as error:
        read_cxrlt_csv(path, image_root=tmp_path, frontal_only=False, check_files=True)
    message = str(error.value)
    assert "train_labeled.csv: 4 of 16 image file(s) not found" in message
    assert f"line 2: {tmp_path / frame['fpath'][0]}" in message and f"line 6: {tmp_path / frame['fpath'][4]}" in message
    for fpath in frame["fpath"][::4]:
        (tmp_path / fpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / fpath).write_bytes(b"jpeg")
    assert len(read_cxrlt_csv(path, image_root=tmp_path, frontal_only=False, check_files=True)) == 16


def test_missing_label_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.csv"))):
        read_cxrlt_csv(tmp_path / "nope.csv")


def test_gzipped_file(tmp_path, frame):
    table = read(tmp_path, frame, name="train_labeled.csv.gz", frontal_only=False)
    assert len(table) == len(frame)


def test_datalist_items(tmp_path, frame):
    table = read(tmp_path, frame)
    datalist = table.to_datalist()
    assert len(datalist) == len(table)
    for i, item in enumerate(datalist):
        assert set(item) == {*KEYS, "label", "label_mask", "caption", "sample_id"}
        assert item["sample_id"] == i and all(item[k] == table.frame[k][i] for k in KEYS)
        assert item["study_id"].startswith("s")
        assert item["label"].dtype == np.float32 and item["label"].shape == (40,)
        assert item["label_mask"].dtype == np.float32 and (item["label_mask"] == 1).all()
        assert item["caption"] == meta_label_caption(table.labels[i], CXRLT2024_CLASSES)
    datalist[0]["label"][:] = 7
    assert (table.labels[0] <= 1).all() and (datalist[1]["label"] <= 1).all()


def test_datalist_caption_skips_masked_and_says_no_finding(tmp_path, frame):
    frame = frame.astype({c: float for c in CXRLT2024_CLASSES})
    frame.loc[:, list(CXRLT2024_CLASSES)] = 0.0
    frame.loc[0, ["Adenopathy", "Pleural Effusion"]] = 1.0
    frame.loc[0, "Edema"] = -1
    item0, item1 = read(tmp_path, frame, frontal_only=False, uncertain="mask").to_datalist()[:2]
    assert item0["caption"] == "adenopathy is present, pleural effusion is present"
    assert item0["label_mask"][CXRLT2024_CLASSES.index("Edema")] == 0
    assert item1["caption"] == "no finding"


def test_subset_keeps_rows_in_order(tmp_path, frame):
    table = read(tmp_path, frame, frontal_only=False)
    part = table.subset([5, 2])
    assert part.frame["dicom_id"].tolist() == [table.frame["dicom_id"][5], table.frame["dicom_id"][2]]
    np.testing.assert_array_equal(part.labels, table.labels[[5, 2]])
    assert part.frame.index.tolist() == [0, 1] and part.to_datalist()[1]["sample_id"] == 1
    assert len(table.subset(np.arange(len(table)) % 2 == 0)) == len(table) // 2


def test_phantom_files_read_like_real_ones(phantom_dir):
    train = read_cxrlt_csv(phantom_dir / "train_labeled.csv", check_files=True)
    from_labels = read_cxrlt_csv(phantom_dir / "labels.csv", split="train", check_files=True)
    assert train.frame["dicom_id"].tolist() == from_labels.frame["dicom_id"].tolist()
    np.testing.assert_array_equal(train.labels, from_labels.labels)
    assert set(train.frame["view"]) <= {"PA", "AP"} and len(train) > 0
    everything = read_cxrlt_csv(phantom_dir / "labels.csv", frontal_only=False)
    assert len(everything) > len(read_cxrlt_csv(phantom_dir / "labels.csv"))
    item = train.to_datalist()[0]
    assert os.path.isfile(item["image"]) and item["caption"]


@pytest.mark.parametrize("name", ["train_labeled.csv", "train_labeled.csv.gz"])
@pytest.mark.parametrize("damage, fields", [(",1,0", 48), ("CUT", 20)])
def test_rows_with_wrong_field_count_name_the_line(tmp_path, frame, name, damage, fields):
    lines = frame.to_csv(index=False).splitlines()
    lines[4] = lines[4] + damage if damage != "CUT" else ",".join(lines[4].split(",")[:20])  # stray commas / cut off
    path = tmp_path / name
    with (gzip.open(path, "wt") if name.endswith(".gz") else open(path, "w")) as f:
        f.write("\r\n".join(lines) + "\r\n\r\n")
    with pytest.raises(ValueError, match=rf"{re.escape(name)} line 5: {fields} fields, the header has 46"):
        read_cxrlt_csv(path)


def test_crlf_and_trailing_blank_lines_are_fine(tmp_path, frame):
    path = tmp_path / "train_labeled.csv"
    path.write_text("\r\n".join(write_csv(frame, path).read_text().splitlines()) + "\r\n\r\n")
    assert len(read_cxrlt_csv(path, frontal_only=False)) == len(frame)


def test_empty_file_names_the_file(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match=r"empty\.csv: the file is empty"):
        read_cxrlt_csv(tmp_path / "empty.csv")


def test_filters_that_keep_nothing_are_an_error(tmp_path, frame):
    frame["ViewPosition"] = "LATERAL"
    with pytest.raises(ValueError, match=r"train_labeled\.csv: no row left out of 16 after the filters"):
        read(tmp_path, frame)


def test_load_fold_takes_the_chosen_split_of_labels_csv_and_refuses_none(phantom_dir):
    labels = phantom_dir / "labels.csv"
    with pytest.raises(ValueError, match=r"labels\.csv has a 'split' column.*split='train'.*--train_split train"):
        load_fold(labels)
    with pytest.raises(ValueError, match=r"test_split='train'.*--test_split train"):
        load_fold(phantom_dir / "train_labeled.csv", test_csv=labels)
    from_labels = load_fold(labels, split="train", test_csv=labels, test_split="test", val_fraction=0.0)
    from_files = load_fold(phantom_dir / "train_labeled.csv", test_csv=phantom_dir / "test_labeled_task1.csv",
                           val_fraction=0.0)
    for part in ("train", "test"):
        ours, theirs = from_labels.part(part).frame, from_files.part(part).frame
        assert ours["dicom_id"].tolist() == theirs["dicom_id"].tolist()
        np.testing.assert_array_equal(from_labels.part(part).labels, from_files.part(part).labels)

