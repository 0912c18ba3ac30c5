"""What a label file holds: its format, rows, frontal rows, patients, and per-class counts with their groups.

:func:`summarize_label_file` is the first thing to run on a new file (``python -m monai_cxrcml.data.summary FILE``,
:mod:`monai_cxrcml.cli.summary`). Counts are positive images under the given uncertain/blank policies, over all
rows and over the frontal rows training uses (a row is a film: VinDr-CXR's box rows are aggregated per image
first); uncertain (-1) and blank cells are counted per class where the format has them. The base/rare and
common/medium/rare groups are those :func:`~monai_cxrcml.data.load_fold` would give if the whole frontal file were
the training part (:mod:`~monai_cxrcml.data.groups`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..formats import detect_label_format, get_label_format, read_label_table
from ..groups import base_rare_groups, group_rule, prevalence_groups
from ..table import LabelTable

__all__ = ["summarize_label_file"]


def _unknown_cells(table: LabelTable) -> np.ndarray:
    """``np.int64 [C]``: cells of each class whose label is not known (masked)."""
    return (~table.mask).sum(axis=0).astype(np.int64)


def summarize_label_file(
    path: str | os.PathLike,
    label_format: str | None = None,
    class_names: Sequence[str] | str | None = None,
    uncertain: str = "negative",
    blank: str = "negative",
    group_by: str = "auto",
    rare_threshold: float = 1000,
    common_threshold: float = 10000,
    **options: Any,
) -> dict[str, Any]:
    """The summary of one label file, as a JSON-ready dictionary.

    Parameters
    ----------
    path, label_format, class_names, uncertain, blank, **options
        As :func:`~monai_cxrcml.data.formats.read_label_table` takes them (``label_format=None`` detects it).
    group_by, rare_threshold, common_threshold
        The grouping rule and thresholds (:mod:`~monai_cxrcml.data.groups`).

    Returns
    -------
    dict
        ``file, format, format_title, rows, frontal_rows, patients, frontal_patients, studies, views`` (view ->
        rows), ``group_rule``, ``thresholds``, ``policies`` and ``classes``: one dict per class with ``name``,
        ``positive`` (all rows), ``frontal_positive``, ``uncertain`` and ``blank`` (cells, None where the
        format has no such cells), ``frontal_prevalence``, ``group`` and ``prevalence_group``.
    """
    name = label_format or detect_label_format(path)
    fmt = get_label_format(name)
    read = dict(label_format=name, class_names=class_names, **options)
    everything = read_label_table(path, frontal_only=False, uncertain=uncertain, blank=blank, **read)
    frontal = read_label_table(path, uncertain=uncertain, blank=blank, **read)
    cells = fmt.options() & {"uncertain", "blank"}
    unknown: dict[str, np.ndarray | None] = {"uncertain": None, "blank": None}
    if "uncertain" in cells:
        unknown["uncertain"] = _unknown_cells(read_label_table(path, frontal_only=False, uncertain="mask", **read))
    if "blank" in cells:
        unknown["blank"] = _unknown_cells(read_label_table(path, frontal_only=False, blank="mask", **read))
    groups = base_rare_groups(frontal, rare_threshold, group_by)
    prevalence = prevalence_groups(frontal, (rare_threshold, common_threshold), group_by)
    positive, frontal_positive = everything.positives(), frontal.positives()
    classes = []
    for j, class_name in enumerate(everything.class_names):
        classes.append({
            "name": class_name,
            "positive": positive[class_name],
            "frontal_positive": frontal_positive[class_name],
            "uncertain": None if unknown["uncertain"] is None else int(unknown["uncertain"][j]),
            "blank": None if unknown["blank"] is None else int(unknown["blank"][j]),
            "frontal_prevalence": frontal_positive[class_name] / len(frontal),
            "group": groups[class_name],
            "prevalence_group": prevalence[class_name],
        })
    views = everything.frame["view"].replace("", "(unknown)").value_counts()
    return {
        "file": os.fspath(path),
        "format": name,
        "format_title": fmt.title,
        "rows": len(everything),
        "frontal_rows": len(frontal),
        "patients": int(everything.frame["subject_id"].nunique()),
        "frontal_patients": int(frontal.frame["subject_id"].nunique()),
        "studies": int(everything.frame["study_id"].nunique()),
        "views": {str(k): int(v) for k, v in views.items()},
        "group_rule": group_rule(frontal.class_names, len(frontal), group_by),
        "thresholds": {"rare": rare_threshold, "common": common_threshold},
        "policies": {k: v for k, v in (("uncertain", uncertain), ("blank", blank)) if k in cells},
        "classes": classes,
    }
