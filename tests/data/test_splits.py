"""Patient-level iterative stratification: disjoint folds, +-1 balance per class, determinism, reports."""

from __future__ import annotations

import numpy as np
import pytest
from _cxrlt_fixtures import make_table

from monai_cxrcml.data import fold_report, fold_split, holdout_split, iterative_stratification, patient_folds
from monai_cxrcml.data.classes import CXRLT2024_CLASSES, CXRLT2024_TRAIN_COUNTS, CXRLT2024_TRAIN_SIZE


def cxrlt_like_patients(patients: int, seed: int = 0) -> np.ndarray:
    """``[P, 40]`` patient positives with CXR-LT's long tail, shared severity and nested classes."""
    rng = np.random.default_rng(seed)
    counts = np.array([CXRLT2024_TRAIN_COUNTS[c] for c in CXRLT2024_CLASSES])
    prevalence = np.minimum(counts / CXRLT2024_TRAIN_SIZE * 2.5, 0.6)
    severity = np.exp(0.5 * rng.normal(size=(patients, 1)) - 0.125)
    y = rng.random((patients, 40)) < prevalence * severity
    names = list(CXRLT2024_CLASSES)
    for child, parent in [("Lobar Atelectasis", "Atelectasis"), ("Rib Fracture", "Fracture")]:
        y[:, names.index(parent)] |= y[:, names.index(child)]
    return y


def cxrlt_like_table(patients: int, seed: int = 0):
    """A table of 1-4 images per patient carrying the patient's positives (patient-level labels)."""
    rng = np.random.default_rng(seed + 1)
    y = cxrlt_like_patients(patients, seed)
    per_patient = rng.integers(1, 5, patients)
    owner = np.repeat(np.arange(patients), per_patient)
    return make_table([f"1{p:07d}" for p in owner], y[owner], CXRLT2024_CLASSES), y


@pytest.mark.parametrize("patients, seed", [(1500, 0), (1500, 1), (400, 2)])
def test_each_class_within_one_across_folds(patients, seed):
    y = cxrlt_like_patients(patients, seed)
    part = iterative_stratification(y, 5, seed=seed)
    assert part.shape == (patients,) and set(part.tolist()) == set(range(5))
    counts = np.stack([y[part == f].sum(axis=0) for f in range(5)])  # [5, 40] positive patients
    assert (counts.max(axis=0) - counts.min(axis=0) <= 1).all(), counts
    sizes = np.bincount(part, minlength=5)
    assert sizes.max() - sizes.min() <= 1


def test_unequal_parts_stay_within_one_of_their_share():
    y = cxrlt_like_patients(1000, 3)
    part = iterative_stratification(y, (0.8, 0.2), seed=0)
    test_counts = y[part == 1].sum(axis=0)
    assert (np.abs(test_counts - 0.2 * y.sum(axis=0)) < 1).all()
    assert abs((part == 1).sum() - 200) < 1


def test_rare_classes_are_spread_not_lumped():
    y = np.zeros((50, 3), dtype=bool)
    y[:3, 0] = True  # 3 positives over 5 folds: three folds get one each
    y[3:10, 1] = True  # 7 positives: 2, 2, 1, 1, 1
    y[:10, 2] = True
    part = iterative_stratification(y, 5, seed=0)
    assert sorted(np.bincount(part[y[:, 0]], minlength=5).tolist()) == [0, 0, 1, 1, 1]
    assert sorted(np.bincount(part[y[:, 1]], minlength=5).tolist()) == [1, 1, 1, 2, 2]
    assert np.bincount(part[y[:, 2]], minlength=5).tolist() == [2, 2, 2, 2, 2]


def test_deterministic_by_seed():
    y = cxrlt_like_patients(600, 0)
    first = iterative_stratification(y, 5, seed=7)
    np.testing.assert_array_equal(first, iterative_stratification(y, 5, seed=7))
    assert (first != iterative_stratification(y, 5, seed=8)).any()


def test_folds_are_disjoint_by_patient_and_ignore_row_order():
    table, _ = cxrlt_like_table(300)
    folds = patient_folds(table, num_folds=5, seed=0)
    assert folds.shape == (len(table),) and folds.dtype == np.int64
    per_patient = table.frame.assign(fold=folds).groupby("subject_id")["fold"].nunique()
    assert (per_patient == 1).all()
    order = np.random.default_rng(0).permutation(len(table))
    np.testing.assert_array_equal(patient_folds(table.subset(order), num_folds=5, seed=0), folds[order])


def test_patient_positives_balanced_from_image_table():
    table, _ = cxrlt_like_table(1000)
    report = fold_report(table, patient_folds(table, 5, seed=0))
    spread = report.groupby("class")["positive_patients"].agg(lambda s: s.max() - s.min())
    assert (spread <= 1).all(), spread[spread > 1]


def test_holdout_split_is_80_20_by_patient():
    table, y = cxrlt_like_table(1000)
    train, test = holdout_split(table, test_fraction=0.2, seed=0)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(table)
    train_patients, test_patients = set(table.frame["subject_id"][train]), set(table.frame["subject_id"][test])
    assert not train_patients & test_patients
    assert abs(len(test_patients) - 200) < 1
    report = fold_report(table, {"train": train, "test": test}).set_index(["class", "fold"])
    share = 0.2 * y.sum(axis=0)
    test_positive = report.xs("test", level="fold").loc[list(CXRLT2024_CLASSES), "positive_patients"].to_numpy()
    assert (np.abs(test_positive - share) < 1).all()
    with pytest.raises(ValueError, match="test_fraction"):
        holdout_split(table, test_fraction=1.0)


@pytest.mark.parametrize("val_fraction", [0.1, 0.0])
def test_fold_split_train_val_test(val_fraction):
    table, _ = cxrlt_like_table(400)
    folds = patient_folds(table, 5, seed=0)
    subjects = table.frame["subject_id"].to_numpy()
    for fold in range(5):
        train, val, test = fold_split(table, fold, num_folds=5, seed=0, val_fraction=val_fraction)
        np.testing.assert_array_equal(test, np.flatnonzero(folds == fold))
        assert sorted([*train, *val, *test]) == list(range(len(table)))
        parts = [set(subjects[i]) for i in (train, val, test)]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert len(parts[1]) == round(val_fraction * (len(parts[0]) + len(parts[1])))
    with pytest.raises(ValueError, match="fold=5 is out of range"):
        fold_split(table, 5, num_folds=5)


def test_fold_report_flags_thin_and_unscorable_classes():
    labels = np.zeros((12, 3), dtype=np.float32)
    labels[:, 0] = 1  # positive everywhere: no negative -> unscorable
    labels[[0, 1, 2, 3], 1] = 1  # images 0-3 belong to patients a, a, b, b
    labels[[4, 5, 6, 7, 8, 9], 2] = 1
    subjects = ["a", "a", "b", "b", "c", "c", "d", "d", "e", "e", "f", "f"]
    table = make_table(subjects, labels, ["Everywhere", "Early", "Late"])
    folds = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    report = fold_report(table, folds, min_positives=2).set_index(["class", "fold"])
    assert list(report.columns) == ["images", "positive_images", "positive_patients", "negative_images", "status"]
    assert report.loc[("Everywhere", 0), "status"] == "unscorable"
    assert report.loc[("Early", 0)].to_dict() == {
        "images": 6, "positive_images": 4, "positive_patients": 2, "negative_images": 2, "status": "ok"
    }
    assert report.loc[("Early", 1), "status"] == "unscorable"  # no positive
    assert report.loc[("Late", 0), "positive_patients"] == 1 and report.loc[("Late", 0), "status"] == "thin"
    assert report.loc[("Late", 1), "status"] == "ok"
    named = fold_report(table, {"train": np.arange(6), "test": np.arange(6, 12)}, min_positives=2)
    assert named["fold"].tolist()[:2] == ["train", "test"] and named["class"].tolist()[:2] == ["Everywhere"] * 2


def test_bad_arguments():
    y = np.ones((3, 2), dtype=bool)
    with pytest.raises(ValueError, match="cannot split 3 patients into 5 parts"):
        iterative_stratification(y, 5)
    with pytest.raises(ValueError, match="at least 2 folds"):
        iterative_stratification(y, 1)
    with pytest.raises(ValueError, match="summing to 1"):
        iterative_stratification(y, (0.5, 0.2))
