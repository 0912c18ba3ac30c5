"""Reader of PadChest label files (``PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv``).

Schema (36 columns): ``ImageID, ImageDir, StudyDate_DICOM, StudyID, PatientID, ..., Projection, ..., Report, ...,
Labels, Localizations, ...``. ``Labels`` holds the image's findings as a Python list literal
(``"['pleural effusion', ' nodule']"``), parsed without ``eval`` (:mod:`~monai_cxrcml.data.label_sets`); names are
stripped, so ``' nodule'`` and ``'nodule'`` are one class. Classes are the names the file uses, sorted.

Views (``Projection``): ``PA``, ``AP`` and ``AP_horizontal`` (supine AP) are frontal; ``L`` is lateral
(``view`` ``"LATERAL"``), ``COSTAL`` (rib views) and ``EXCLUDE`` are other views; ``UNK`` or blank is unknown.

Missing labels: a row whose ``Labels`` cell is blank or ``nan`` has no list at all; its every label follows the
``blank`` policy (``"negative"``, ``"positive"``, or ``"mask"``: unknown). A list naming nothing (``[]``, ``['']``)
is a labelled image without findings: all negative. Both are counted in the log. The film is
``<image_root>/<ImageDir>/<ImageID>``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .classes import resolve_class_names
from .csv_reading import read_csv_columns, require_unique, require_values
from .label_sets import label_vocabulary, multi_hot, python_lists
from .mimic import select_views
from .table import LABEL_POLICIES, LabelTable, make_label_table, resolve_image_paths

__all__ = ["PADCHEST_FRONTAL_PROJECTIONS", "PADCHEST_REQUIRED_COLUMNS", "read_padchest_csv"]

logger = logging.getLogger(__name__)

PADCHEST_REQUIRED_COLUMNS: tuple[str, ...] = ("ImageID", "ImageDir", "PatientID", "StudyID", "Projection", "Labels")
"""Columns every PadChest label file must have."""

PADCHEST_FRONTAL_PROJECTIONS: tuple[str, ...] = ("PA", "AP", "AP_horizontal")
"""``Projection`` values of frontal films."""

_VIEWS = {"PA": "PA", "AP": "AP", "AP_horizontal": "AP_HORIZONTAL", "L": "LATERAL", "COSTAL": "COSTAL",
          "EXCLUDE": "EXCLUDE", "UNK": "", "": ""}


def read_padchest_csv(
    csv_path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
    frontal_only: bool = True,
    unknown_view: str = "drop",
    blank: str = "negative",
    check_files: bool = False,
) -> LabelTable:
    """Read a PadChest label file into a :class:`~monai_cxrcml.data.table.LabelTable`.

    Parameters
    ----------
    csv_path
        The label file (``.csv`` or ``.csv.gz``).
    image_root
        The folder holding PadChest's numbered image folders (``0/``, ``1/``, ...); default: the CSV's folder.
    class_names
        ``None`` for every finding name the file uses (sorted), or a selection in the order wanted.
    frontal_only, unknown_view
        Keep frontal films (``Projection`` PA, AP, AP_horizontal); ``UNK`` or blank is an unknown view, dropped
        unless ``unknown_view="keep"``.
    blank
        What every label of a row without a ``Labels`` list becomes: ``"negative"``, ``"positive"`` or ``"mask"``.
    check_files
        Verify that every kept film exists.

    Returns
    -------
    LabelTable
        Kept rows in file order; ``dicom_id`` is the ``ImageID``, ``subject_id`` the ``PatientID``, ``study_id``
        the ``StudyID``.

    Raises
    ------
    ValueError
        For a missing column, an empty identifier, a repeated ``ImageID``, a ``Labels`` cell that is not a list
        of quoted names, an unknown ``Projection`` or class name; each names the file and the line or column.
    """
    if blank not in LABEL_POLICIES:
        raise ValueError(f"blank={blank!r} is not a label policy: use one of {list(LABEL_POLICIES)}.")
    csv_path = Path(csv_path)
    root = csv_path.parent if image_root is None else Path(image_root)
    frame, lines = read_csv_columns(csv_path, PADCHEST_REQUIRED_COLUMNS, text=PADCHEST_REQUIRED_COLUMNS,
                                    hint="Is this PadChest's PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv?")
    require_values(frame, ["ImageID", "ImageDir", "PatientID", "StudyID"], csv_path, lines)
    require_unique(frame, "ImageID", csv_path, lines)
    unknown = ~frame["Projection"].isin(_VIEWS).to_numpy()
    if unknown.any():
        raise ValueError(
            f"{csv_path} line {lines[unknown][0]}, column 'Projection': {frame['Projection'][unknown].iat[0]!r} is "
            f"not a PadChest projection ({int(unknown.sum())} such row(s)); expected one of "
            f"{sorted(k for k in _VIEWS if k)}."
        )
    findings = python_lists(frame["Labels"], csv_path, lines, "Labels")
    available = label_vocabulary(findings)
    try:
        names = available if class_names is None else resolve_class_names(class_names, available)
    except ValueError as error:
        raise ValueError(f"{csv_path}: {error}") from None
    labels = multi_hot(findings, names)
    mask = np.ones(labels.shape, dtype=bool)
    missing = findings.isna().to_numpy()
    if blank == "positive":
        labels[missing] = True
    elif blank == "mask":
        mask[missing] = False
    _log_label_lists(csv_path, findings, missing, blank)
    view = frame["Projection"].map(_VIEWS)
    frontal = frame["Projection"].isin(PADCHEST_FRONTAL_PROJECTIONS).to_numpy()
    keep = select_views(view, frontal_only, unknown_view, csv_path, frontal=frontal)
    table = frame[["ImageID", "PatientID", "StudyID"]].rename(
        columns={"ImageID": "dicom_id", "PatientID": "subject_id", "StudyID": "study_id"})
    table["view"] = view
    table["image"] = resolve_image_paths(frame["ImageDir"] + "/" + frame["ImageID"], root)
    return make_label_table(table, labels.astype(np.float32), mask, names, str(csv_path), lines, keep, check_files,
                            f" ({root})")


def _log_label_lists(csv_path: Path, findings, missing: np.ndarray, blank: str) -> None:
    empty = int(sum(1 for items in findings if items is not None and not items))
    if missing.any():
        logger.warning("%s: %d row(s) have no Labels list (blank or nan): every label of them is %s (blank=%r).",
                       csv_path, int(missing.sum()), "unknown" if blank == "mask" else blank, blank)
    if empty:
        logger.info("%s: %d row(s) list no finding ([] or ['']): all negative.", csv_path, empty)
