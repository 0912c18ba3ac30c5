"""Metrics for multi-label, long-tailed chest X-ray classification."""

from .linear_probe import linear_probe_report, linear_probe_scores
from .multilabel import MultiLabelReport, bootstrap_auc, multilabel_report

__all__ = ["MultiLabelReport", "bootstrap_auc", "linear_probe_report", "linear_probe_scores", "multilabel_report"]
