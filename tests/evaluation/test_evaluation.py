"""Zero-shot evaluation of a trained model from the model alone: the run's own test part, the run's own metrics."""

from __future__ import annotations

import json

import pytest

from monai_cxrcml.evaluation import evaluate


def test_evaluation_of_the_run_folder_reproduces_its_metrics(trained, tmp_path):
    report = evaluate(trained, n_bootstrap=0, device="cpu", output_dir=tmp_path)
    metrics = json.loads((trained / "metrics.json").read_text())
    assert report.summary["macro_auc"] == pytest.approx(metrics["macro_auc"], abs=1e-6)
    assert json.loads((tmp_path / "metrics.json").read_text())["protocol"]["name"] == "present_absent_pooled"
    assert (tmp_path / "predictions.npz").is_file()
