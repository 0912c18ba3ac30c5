"""Report of a run: per-class AUC bars, ROC curves, reliability diagram, t-SNE of the embeddings, and a summary.

``python -m monai_cxrcml.report RUN_DIR`` (see ``__main__``) or :func:`make_report` from Python.
"""

from .artifacts import Predictions, load_metrics, load_mixture, load_predictions
from .build import PLOT_FILES, default_classes, make_report
from .plots import (
    plot_auc_bars,
    plot_reliability,
    plot_roc_curves,
    plot_tsne,
    reliability_table,
    roc_table,
)
from .result import ReportResult
from .summary import Document, summary_document, write_summary

__all__ = [
    "Document", "PLOT_FILES", "Predictions", "ReportResult",
    "default_classes", "load_metrics", "load_mixture",
    "load_predictions", "make_report", "plot_auc_bars", "plot_reliability", "plot_roc_curves", "plot_tsne",
    "reliability_table", "roc_table", "summary_document", "write_summary",
]
