"""Per-class AUC/AP, group means that are never NaN, bootstrap intervals, and the ignite metric."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from sklearn.metrics import average_precision_score, roc_auc_score

from monai_cxrcml.handlers.multilabel_auc import MultiLabelAUC
from monai_cxrcml.handlers.report_writer import MetricsReportWriter
from monai_cxrcml.metrics import bootstrap_auc, multilabel_report
from monai_cxrcml.metrics.multilabel import _weighted_auc

CLASSES = ["A", "B", "C", "D"]
GROUPS = {"A": "base", "B": "base", "C": "rare", "D": "rare"}
PREVALENCE = {"A": "common", "B": "medium", "C": "rare", "D": "rare"}


def _data(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 4)) < [0.4, 0.2, 0.05, 0.03]).astype(np.float32)
    s = rng.random((n, 4)) + y * [0.8, 0.5, 0.3, 0.1]
    return y, s


def test_per_class_scores_match_sklearn_and_group_means():
    y, s = _data()
    report = multilabel_report(y, s, CLASSES, GROUPS, PREVALENCE, n_bootstrap=0)
    for j, name in enumerate(CLASSES):
        assert report.per_class.loc[name, "auc"] == pytest.approx(roc_auc_score(y[:, j], s[:, j]))
        assert report.per_class.loc[name, "ap"] == pytest.approx(average_precision_score(y[:, j], s[:, j]))
        assert report.per_class.loc[name, "n_pos"] == int(y[:, j].sum())
    auc = report.per_class.auc
    assert report.summary["macro_auc"] == pytest.approx(auc.mean())
    assert report.summary["base_auc"] == pytest.approx(auc[["A", "B"]].mean())
    assert report.summary["rare_auc"] == pytest.approx(auc[["C", "D"]].mean())
    assert report.summary["common_auc"] == pytest.approx(auc["A"])
    assert report.summary["medium_auc"] == pytest.approx(auc["B"])
    assert report.summary["macro_ap"] == pytest.approx(report.per_class.ap.mean())


def test_single_valued_class_is_undefined_and_left_out_of_means():
    y, s = _data()
    y[:, 3] = 0  # D: no positive in this split
    with pytest.warns(UserWarning, match=r"AUC undefined for 1 class.*\['D'\]"):
        report = multilabel_report(y, s, CLASSES, GROUPS, n_bootstrap=50)
    assert math.isnan(report.per_class.loc["D", "auc"])
    assert report.undefined == ["D"]
    assert report.summary["rare_auc"] == pytest.approx(report.per_class.loc["C", "auc"])
    for key, value in report.summary.items():
        assert value is None or not np.any(np.isnan(value)), key
    doc = report.to_dict()
    assert doc["per_class"]["D"]["auc"] is None and doc["per_class"]["D"]["ci"] is None
    json.dumps(doc, allow_nan=False)  # strict JSON: no NaN anywhere


def test_group_without_defined_class_gives_none_not_nan():
    y, s = _data()
    y[:, 2:] = 0
    with pytest.warns(UserWarning):
        report = multilabel_report(y, s, CLASSES, GROUPS, n_bootstrap=20)
    assert report.summary["rare_auc"] is None and report.summary["rare_auc_ci"] is None
    assert "n/a" in report.format_table()


def test_masked_labels_are_left_out():
    y, s = _data()
    mask = np.ones_like(y, dtype=bool)
    mask[:100, 0] = False
    report = multilabel_report(y, s, CLASSES, mask=mask, n_bootstrap=0)
    assert report.per_class.loc["A", "auc"] == pytest.approx(roc_auc_score(y[100:, 0], s[100:, 0]))
    assert report.per_class.loc["A", "n_pos"] + report.per_class.loc["A", "n_neg"] == 300


def test_weighted_auc_equals_auc_of_the_resampled_data_with_ties():
    rng = np.random.default_rng(1)
    y = rng.random(300) < 0.3
    s = np.round(rng.random(300) + 0.2 * y, 1)  # many ties
    order = np.argsort(s, kind="stable")
    w = rng.integers(0, 4, size=(6, 300))
    got = _weighted_auc(y[order], s[order], w[:, order])
    want = [roc_auc_score(np.repeat(y, w[r]), np.repeat(s, w[r])) for r in range(6)]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_bootstrap_interval_covers_estimate_and_is_seeded():
    y, s = _data(n=600)
    subjects = np.arange(600) // 3
    a = multilabel_report(y, s, CLASSES, GROUPS, subject_ids=subjects, n_bootstrap=300, seed=5)
    b = multilabel_report(y, s, CLASSES, GROUPS, subject_ids=subjects, n_bootstrap=300, seed=5)
    assert a.bootstrap_unit == "patient"
    np.testing.assert_array_equal(a.per_class.auc_ci_low, b.per_class.auc_ci_low)
    low, high = a.summary["macro_auc_ci"]
    assert low < a.summary["macro_auc"] < high
    assert ((a.per_class.auc_ci_low <= a.per_class.auc) & (a.per_class.auc <= a.per_class.auc_ci_high)).all()


def test_patient_bootstrap_resamples_whole_patients():
    # Two images per patient, identical: a patient-level resample keeps pairs together, so every AUC sample
    # equals that of a data set built from whole patients.
    rng = np.random.default_rng(2)
    y1 = rng.random((50, 1)) < 0.4
    s1 = rng.random((50, 1)) + y1
    y, s = np.repeat(y1, 2, axis=0), np.repeat(s1, 2, axis=0)
    subjects = np.repeat(np.arange(50), 2)
    samples = bootstrap_auc(y, s, np.ones_like(y), 200, seed=0, subject_ids=subjects)
    single = bootstrap_auc(y1, s1, np.ones_like(y1), 200, seed=0)
    np.testing.assert_allclose(samples, single)


def test_save_writes_json_and_csv(tmp_path):
    y, s = _data()
    report = multilabel_report(y, s, CLASSES, GROUPS, PREVALENCE, n_bootstrap=20)
    json_path, csv_path = report.save(tmp_path / "out")
    doc = json.loads(json_path.read_text())
    for key in ("macro_auc", "base_auc", "rare_auc", "macro_ap", "per_class"):
        assert key in doc
    assert set(doc["per_class"]["A"]) >= {"auc", "ap", "n_pos", "group", "ci"}
    assert csv_path.read_text().splitlines()[0].startswith("class,auc,auc_ci_low,auc_ci_high,ap,n_pos")


def test_non_finite_scores_are_refused():
    y, s = _data()
    s[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf for class\(es\) \['B'\]"):
        multilabel_report(y, s, CLASSES)


def test_ignite_metric_publishes_group_means_and_report(tmp_path):
    y, s = _data()
    batches = [
        {"pred": torch.tensor(s[i : i + 64]), "label": torch.tensor(y[i : i + 64]),
         "label_mask": torch.ones(len(y[i : i + 64]), 4),
         "subject_id": [str(k // 2) for k in range(i, min(i + 64, len(y)))]}
        for i in range(0, len(y), 64)
    ]
    engine = Engine(lambda e, b: b)
    MultiLabelAUC(CLASSES, GROUPS, PREVALENCE, n_bootstrap=20).attach(engine, "macro_auc")
    MetricsReportWriter(tmp_path).attach(engine)
    engine.run(batches)
    want = multilabel_report(y, s, CLASSES, GROUPS, PREVALENCE, n_bootstrap=0).summary
    for key in ("macro_auc", "base_auc", "rare_auc", "common_auc", "medium_auc", "macro_ap"):
        assert engine.state.metrics[key] == pytest.approx(want[key])
    assert engine.state.metric_details["macro_auc"].bootstrap_unit == "patient"
    assert json.loads((tmp_path / "metrics.json").read_text())["macro_auc"] == pytest.approx(want["macro_auc"])


def test_ignite_metric_rejects_wrong_width():
    engine = Engine(lambda e, b: b)
    MultiLabelAUC(CLASSES).attach(engine, "macro_auc")
    with pytest.raises(ValueError, match=r"\[B, 4\]"):
        engine.run([{"pred": torch.rand(2, 3), "label": torch.zeros(2, 3), "label_mask": None, "subject_id": None}])
