"""Diagnostics of a refit (monai_cxrcml.handlers.pseudo_labels.diagnostics)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_cxrcml.handlers import cluster_purity
from monai_cxrcml.handlers.pseudo_labels import ClusterDiagnostics
from monai_cxrcml.handlers.pseudo_labels.diagnostics import describe
from monai_cxrcml.mixture import StudentTMixture

EPOCH_22 = {"n_films": 796.0, "clusters_used": 40.0, "size_min": 7.0, "size_median": 19.5, "size_max": 44.0,
            "entropy": 0.0017, "dof_mean": 4.0, "log_likelihood": 259.6731, "n_iter": 18.0, "seconds": 4.3085,
            "ami": 0.2667, "ami_findings": 0.0431}
"""The diagnostics of a demo refit."""


def test_log_line_names_every_figure_the_fit_has():
    assert describe(EPOCH_22) == (
        "40 clusters used, sizes min/median/max 7/19/44, assignment entropy 0.002, nu 4.00, log-likelihood 259.673, "
        "18 EM iterations, 4.31 s, AMI vs finding combinations 0.2667, mean AMI vs each finding 0.0431"
    )
    plain = {k: v for k, v in EPOCH_22.items() if k not in ("dof_mean", "log_likelihood", "n_iter", "ami",
                                                            "ami_findings")}
    assert describe(plain) == "40 clusters used, sizes min/median/max 7/19/44, assignment entropy 0.002, 4.31 s"


def test_diagnostics_of_a_fit_with_an_unassigned_row():
    x = torch.tensor([[0.0], [0.1], [5.0], [5.1], [5.2]], dtype=torch.float64)
    mixture = StudentTMixture(2, covariance_type="diag", random_state=0).fit(x)
    proba = mixture.predict_proba(x)
    proba[4] = 0.0  # a non-finite embedding: no component claims it
    labels = torch.where(proba.sum(1) > 0, proba.argmax(1), -1)
    findings = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [0, 1]])
    d = ClusterDiagnostics(findings)(mixture, proba, labels, torch.arange(5), 0.5)
    assert (d["n_films"], d["clusters_used"], d["size_min"], d["size_max"]) == (5.0, 2.0, 2.0, 2.0)
    assert d["entropy"] == pytest.approx(0.0, abs=1e-3) and d["dof_mean"] == 4.0 and d["seconds"] == 0.5
    assert d["log_likelihood"] == mixture.lower_bound_ and d["n_iter"] == mixture.n_iter_
    assert d["ami"] == pytest.approx(1.0)  # the clusters are the findings
    assert "ami" not in ClusterDiagnostics()(mixture, proba, labels, torch.arange(5), 0.5)


def test_cluster_purity_is_zero_for_clusters_that_ignore_the_findings():
    findings = np.array([[1, 0], [0, 1]] * 50)
    assert cluster_purity(np.arange(100) % 2, findings)["ami"] == pytest.approx(1.0)
    purity = cluster_purity(np.arange(100) // 50, findings)
    assert purity["ami"] == pytest.approx(0.0, abs=0.02) and purity["ami_findings"] == pytest.approx(0.0, abs=0.02)
