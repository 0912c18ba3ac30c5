"""Metrics for multi-label, long-tailed chest X-ray classification."""

from .multilabel import MultiLabelReport, bootstrap_auc, multilabel_report

__all__ = ["MultiLabelReport", "bootstrap_auc", "multilabel_report"]
