"""What a report wrote and the data behind it (filled by :func:`~monai_cxrcml.report.make_report`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = ["ReportResult"]


@dataclass
class ReportResult:
    """What :func:`make_report` wrote and the data behind it.

    Attributes
    ----------
    run_dir, report_dir, summary_path
        The run folder, ``run_dir/report`` and the summary file in it.
    plots
        Plot name (``auc_bars``, ``roc``, ``reliability``, ``tsne``) -> PNG written.
    data
        Plot name -> the table the plot function returned.
    metrics
        ``metrics.json`` (or None).
    per_class
        Per-class table of ``metrics.json`` (or None).
    classes
        Classes of the ROC and reliability plots.
    finding
        Finding of the t-SNE's second panel (or None).
    ece
        ECE of each reliability curve.
    tsne
        Facts about the t-SNE (films shown, clusters, mixture checkpoint) for the summary.
    missing
        What could not be drawn, why, and how to get it.
    notes
        Caveats about what was drawn.
    """

    run_dir: Path
    report_dir: Path
    summary_path: Path | None = None
    plots: dict[str, Path] = field(default_factory=dict)
    data: dict[str, pd.DataFrame] = field(default_factory=dict)
    metrics: dict | None = None
    per_class: pd.DataFrame | None = None
    classes: list[str] = field(default_factory=list)
    finding: str | None = None
    ece: dict[str, float] = field(default_factory=dict)
    tsne: dict[str, object] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
