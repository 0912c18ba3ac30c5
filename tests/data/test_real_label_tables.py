"""The readers on the real NIH, PadChest, CheXpert and VinDr-CXR tables, checked against counts pandas computes here."""

from __future__ import annotations

import ast

import numpy as np
import pandas as pd
import pytest
from _real_tables import CHEXPERT, NIH, PADCHEST, VINDR, requires_tables, table

from monai_cxrcml.data import LabelTable, detect_label_format, read_label_table
from monai_cxrcml.data.nih import NIH_CLASSES
from monai_cxrcml.data.vindr import VINDR_CLASSES

pytestmark = requires_tables


def positives(t: LabelTable) -> pd.Series:
    return pd.Series(t.positives())


# ---------------------------------------------------------------- NIH ChestX-ray14


@pytest.fixture(scope="module")
def nih() -> pd.DataFrame:
    return pd.read_csv(table(NIH))


def test_nih_rows_patients_classes_and_counts(nih):
    read = read_label_table(table(NIH), frontal_only=False)
    assert detect_label_format(table(NIH)) == "nih"
    assert len(read) == len(nih) == 112_120
    assert read.frame["subject_id"].nunique() == nih["Patient ID"].nunique() == 30_805
    assert read.class_names == NIH_CLASSES
    expected = nih["Finding Labels"].str.split("|").explode().value_counts()
    assert positives(read).to_dict() == expected.reindex(NIH_CLASSES).to_dict()
    assert read.positives()["Effusion"] == 13_317 and read.positives()["Hernia"] == 227
    assert read.frame["dicom_id"].tolist() == nih["Image Index"].tolist()
    assert read.mask.all()


def test_nih_frontal_filter_keeps_pa_and_ap(nih):
    frontal = read_label_table(table(NIH))
    assert len(frontal) == int(nih["View Position"].isin(["PA", "AP"]).sum()) == 67_310 + 44_810
    assert frontal.frame["view"].value_counts().to_dict() == {"PA": 67_310, "AP": 44_810}


# ---------------------------------------------------------------- CheXpert


@pytest.fixture(scope="module")
def chexpert() -> pd.DataFrame:
    return pd.read_csv(table(CHEXPERT))


def test_chexpert_rows_patients_studies_and_frontal(chexpert):
    read = read_label_table(table(CHEXPERT), frontal_only=False)
    assert detect_label_format(table(CHEXPERT)) == "chexpert"
    assert len(read) == len(chexpert) == 223_414
    patient = chexpert["Path"].str.extract(r"(patient\d+)/")[0]
    study = chexpert["Path"].str.extract(r"(patient\d+/study\d+)/")[0]
    assert read.frame["subject_id"].nunique() == patient.nunique() == 64_540
    assert read.frame["study_id"].nunique() == study.nunique()
    assert read.class_names == tuple(chexpert.columns[5:])
    frontal = read_label_table(table(CHEXPERT))
    is_frontal = chexpert["Frontal/Lateral"] == "Frontal"
    assert len(frontal) == int(is_frontal.sum()) == 191_027
    # the 17 frontal films whose AP/PA says LL or RL are frontal by the format's own field
    assert frontal.frame["view"].value_counts().to_dict() == chexpert.loc[is_frontal, "AP/PA"].value_counts().to_dict()


@pytest.mark.parametrize("uncertain, blank", [("negative", "negative"), ("positive", "negative"), ("mask", "negative"),
                                              ("negative", "mask"), ("mask", "mask")])
def test_chexpert_uncertain_and_blank_policies(chexpert, uncertain, blank):
    read = read_label_table(table(CHEXPERT), frontal_only=False, uncertain=uncertain, blank=blank)
    cells = chexpert[list(read.class_names)]
    positive = cells == 1
    if uncertain == "positive":
        positive |= cells == -1
    unknown = (cells == -1) & (uncertain == "mask") | cells.isna() & (blank == "mask")
    assert positives(read).to_dict() == positive.sum().to_dict()
    assert (~read.mask).sum(axis=0).tolist() == unknown.sum().tolist()
    effusion = read.class_names.index("Pleural Effusion")
    assert int(((read.labels[:, effusion] > 0) & read.mask[:, effusion]).sum()) == {
        "negative": 86_187, "positive": 86_187 + 11_628, "mask": 86_187}[uncertain]


# ---------------------------------------------------------------- PadChest


@pytest.fixture(scope="module")
def padchest() -> pd.DataFrame:
    return pd.read_csv(table(PADCHEST), dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def padchest_sets(padchest) -> list:
    """Each row's set of stripped finding names (None where the cell is missing), parsed by ast here."""
    return [None if cell in ("", "nan") else {x.strip() for x in ast.literal_eval(cell)} - {""}
            for cell in padchest["Labels"]]


@pytest.fixture(scope="module")
def padchest_read() -> LabelTable:
    return read_label_table(table(PADCHEST), frontal_only=False, blank="mask")


def test_padchest_rows_patients_studies_classes_and_counts(padchest, padchest_sets, padchest_read):
    read = padchest_read
    assert detect_label_format(table(PADCHEST)) == "padchest"
    assert len(read) == len(padchest) == 160_861
    assert read.frame["subject_id"].nunique() == padchest["PatientID"].nunique() == 67_625
    assert read.frame["study_id"].nunique() == padchest["StudyID"].nunique()
    counts = pd.Series([name for s in padchest_sets if s for name in s]).value_counts()
    assert sorted(read.class_names) == sorted(counts.index) and len(read.class_names) == 193
    assert positives(read).to_dict() == counts.reindex(read.class_names).to_dict()
    assert {k: read.positives()[k] for k in ("normal", "cardiomegaly", "pleural effusion")} == {
        "normal": 50_616, "cardiomegaly": 15_022, "pleural effusion": 9_853}
    tails = "/" + padchest["ImageDir"] + "/" + padchest["ImageID"]
    assert all(path.endswith(tail) for path, tail in zip(read.frame["image"], tails))


def test_padchest_rows_without_a_label_list_follow_the_blank_policy(padchest_sets, padchest_read):
    missing = np.array([s is None for s in padchest_sets])
    assert missing.sum() == 103
    np.testing.assert_array_equal(~padchest_read.mask.any(axis=1), missing)  # mask: every label unknown
    negative = read_label_table(table(PADCHEST), frontal_only=False, class_names=["normal", "nodule"])
    assert negative.mask.all() and not negative.labels[missing].any()
    empty = np.array([s is not None and not s for s in padchest_sets])
    assert empty.sum() == 777 and not padchest_read.labels[empty].any() and padchest_read.mask[empty].all()


def test_padchest_frontal_filter_by_projection(padchest):
    frontal = read_label_table(table(PADCHEST), class_names=["normal"])
    assert len(frontal) == int(padchest["Projection"].isin(["PA", "AP", "AP_horizontal"]).sum()) == 110_633
    assert frontal.frame["view"].value_counts().to_dict() == {"PA": 91_728, "AP_HORIZONTAL": 14_346, "AP": 4_559}
    keep_unknown = read_label_table(table(PADCHEST), class_names=["normal"], unknown_view="keep")
    assert len(keep_unknown) == 110_633 + int((padchest["Projection"] == "UNK").sum())


# ---------------------------------------------------------------- VinDr-CXR


@pytest.fixture(scope="module")
def vindr_votes() -> pd.DataFrame:
    """Radiologists per image and class (pandas), and readers per image."""
    boxes = pd.read_csv(table(VINDR))
    votes = boxes.groupby(["image_id", "class_name"])["rad_id"].nunique().unstack(fill_value=0)
    votes["readers"] = boxes.groupby("image_id")["rad_id"].nunique()
    return votes


@pytest.mark.parametrize("rule", ["any", "majority"])
def test_vindr_images_and_aggregation_rule(vindr_votes, rule):
    read = read_label_table(table(VINDR), rule=rule)
    assert detect_label_format(table(VINDR)) == "vindr"
    assert len(read) == len(vindr_votes) == 15_000 and (vindr_votes["readers"] == 3).all()
    assert read.class_names == VINDR_CLASSES
    findings = [c for c in VINDR_CLASSES if c != "No finding"]
    votes = vindr_votes.loc[read.frame["dicom_id"], findings]
    found = votes >= 1 if rule == "any" else votes > vindr_votes.loc[read.frame["dicom_id"], ["readers"]].values / 2
    expected = {**found.sum().to_dict(), "No finding": int((~found.any(axis=1)).sum())}
    assert read.positives() == {c: int(expected[c]) for c in VINDR_CLASSES}
    assert read.positives()["No finding"] == {"any": 10_606, "majority": 10_648}[rule]


KNOWN_IMAGES = {
    # R10 alone marks Cardiomegaly; R9 alone ILD; Pleural thickening by three, Aortic enlargement and Pulmonary
    # fibrosis by two radiologists
    "0007d316f756b3fa0baea2ff514ce945": {
        "any": {"Cardiomegaly", "ILD", "Pleural thickening", "Aortic enlargement", "Pulmonary fibrosis"},
        "majority": {"Pleural thickening", "Aortic enlargement", "Pulmonary fibrosis"},
    },
    # five findings, each of one radiologist: no finding by majority
    "00bcb82818ea83d6a86df241762cd7d0": {
        "any": {"Aortic enlargement", "Other lesion", "Cardiomegaly", "Pleural thickening", "Pleural effusion"},
        "majority": {"No finding"},
    },
    # three "No finding" verdicts
    "000434271f63a053c4128a0ba6352c7f": {"any": {"No finding"}, "majority": {"No finding"}},
}


@pytest.mark.parametrize("rule", ["any", "majority"])
def test_vindr_rule_on_known_images(rule):
    read = read_label_table(table(VINDR), rule=rule)
    rows = read.frame.reset_index().set_index("dicom_id")["index"]
    for image, expected in KNOWN_IMAGES.items():
        labels = read.labels[rows[image]]
        assert {c for c, y in zip(read.class_names, labels) if y} == expected[rule], image
