"""Metrics for multi-label, long-tailed chest X-ray classification: AUC/AP reports, linear probes, calibration."""

from .calibration_error import calibration_summary, classwise_ece, expected_calibration_error, reliability_bins
from .linear_probe import linear_probe_report, linear_probe_scores
from .multilabel import SUMMARY_MEANS, MultiLabelReport, bootstrap_auc, multilabel_report
from .temperature import CALIBRATION_FORMAT, Calibration, apply_calibration, fit_calibration

__all__ = [
    "CALIBRATION_FORMAT",
    "SUMMARY_MEANS",
    "Calibration",
    "MultiLabelReport",
    "apply_calibration",
    "bootstrap_auc",
    "calibration_summary",
    "classwise_ece",
    "expected_calibration_error",
    "fit_calibration",
    "linear_probe_report",
    "linear_probe_scores",
    "multilabel_report",
    "reliability_bins",
]
