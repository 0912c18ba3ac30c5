"""Linear probe: how much of each finding the image embeddings carry, as the AUC of a per-class logistic regression.

Zero-shot scoring reads a finding through the text tower; a linear probe reads it straight from the image
embeddings with supervision. Its AUC on the same test films is the ceiling that the image tower sets for zero-shot
AUC: a large gap means the text side (captions, prompts) is what fails, not the images.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from .multilabel import MultiLabelReport, multilabel_report

__all__ = ["linear_probe_scores", "linear_probe_report"]


def linear_probe_scores(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    inverse_regularisation: float = 0.1,
    train_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit one L2-regularised logistic regression per class on standardised embeddings; score the test films.

    Parameters
    ----------
    train_features, test_features
        ``[N, D]`` and ``[M, D]`` embeddings.
    train_labels
        ``[N, C]`` binary labels.
    inverse_regularisation
        scikit-learn's ``C`` (smaller = stronger regularisation; rare classes have few positives).
    train_mask
        Optional ``[N, C]``: training labels that are unknown are left out of that class's fit.

    Returns
    -------
    scores, fitted
        ``float64 [M, C]`` positive-class probabilities, and ``bool [C]``: False for a class with a single label
        value in training (no probe can be fitted; its scores are 0 and must not be scored).
    """
    scaler = StandardScaler().fit(train_features)
    x_train, x_test = scaler.transform(train_features), scaler.transform(test_features)
    known = np.ones_like(train_labels, dtype=bool) if train_mask is None else np.asarray(train_mask) > 0.5
    scores = np.zeros((len(test_features), train_labels.shape[1]))
    fitted = np.zeros(train_labels.shape[1], dtype=bool)
    for c in range(train_labels.shape[1]):
        y = train_labels[known[:, c], c] > 0.5
        if y.all() or not y.any():
            continue
        fitted[c] = True
        model = LogisticRegression(C=inverse_regularisation, max_iter=1000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x_train[known[:, c]], y)
        scores[:, c] = model.predict_proba(x_test)[:, 1]
    return scores, fitted


def linear_probe_report(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    class_names: Sequence[str],
    groups: Mapping[str, str] | None = None,
    prevalence_groups: Mapping[str, str] | None = None,
    train_mask: np.ndarray | None = None,
    test_mask: np.ndarray | None = None,
    inverse_regularisation: float = 0.1,
    n_bootstrap: int = 0,
) -> MultiLabelReport:
    """Per-class and group AUC of a linear probe (see :func:`linear_probe_scores` and
    :func:`~monai_cxrcml.metrics.multilabel_report`); classes without a fitted probe are reported undefined."""
    scores, fitted = linear_probe_scores(train_features, train_labels, test_features, inverse_regularisation,
                                         train_mask)
    known = np.ones_like(test_labels, dtype=bool) if test_mask is None else np.asarray(test_mask) > 0.5
    return multilabel_report(test_labels, scores, class_names, groups, prevalence_groups, mask=known & fitted,
                             n_bootstrap=n_bootstrap)
