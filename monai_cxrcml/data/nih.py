"""Reader of NIH ChestX-ray14 label files (``Data_Entry_2017_v2020.csv``, also ``Data_Entry_2017.csv``).

Schema: ``Image Index, Finding Labels, Follow-up #, Patient ID, Patient Age, Patient Gender, View Position, ...``;
``Finding Labels`` joins the image's findings with ``|`` (``"Cardiomegaly|Effusion"``; ``"No Finding"`` for none).
Classes are the 14 findings and ``No Finding``, in :data:`NIH_CLASSES` order, plus any other name the file uses.
Every image is a study of its own (NIH labels images, not studies): ``study_id`` is the image name without its
extension. NIH holds frontal films only (``View Position`` PA or AP). A finding is known for every image: there
is no uncertain or blank label. The film is ``<image_root>/<Image Index>``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .classes import resolve_class_names
from .csv_reading import read_csv_columns, require_unique, require_values
from .label_sets import delimited_lists, label_vocabulary, multi_hot
from .mimic import select_views
from .table import LabelTable, make_label_table, resolve_image_paths

__all__ = ["NIH_CLASSES", "NIH_REQUIRED_COLUMNS", "read_nih_csv"]

NIH_REQUIRED_COLUMNS: tuple[str, ...] = ("Image Index", "Finding Labels", "Patient ID", "View Position")
"""Columns every NIH label file must have."""

NIH_CLASSES: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Effusion",
    "Emphysema",
    "Fibrosis",
    "Hernia",
    "Infiltration",
    "Mass",
    "No Finding",
    "Nodule",
    "Pleural_Thickening",
    "Pneumonia",
    "Pneumothorax",
)
"""The names of NIH ChestX-ray14's ``Finding Labels`` (14 findings and ``No Finding``), as the file spells them."""


def read_nih_csv(
    csv_path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
    frontal_only: bool = True,
    unknown_view: str = "drop",
    check_files: bool = False,
) -> LabelTable:
    """Read an NIH ChestX-ray14 label file into a :class:`~monai_cxrcml.data.table.LabelTable`.

    Parameters
    ----------
    csv_path
        The label file (``.csv`` or ``.csv.gz``).
    image_root
        The folder holding the films (NIH's ``images/``); default: the folder of ``csv_path``.
    class_names
        ``None`` for :data:`NIH_CLASSES` and any other name the file uses, or a selection of them in the order
        wanted.
    frontal_only, unknown_view
        Keep PA and AP films (``View Position``); a blank ``View Position`` is an unknown view, dropped unless
        ``unknown_view="keep"``.
    check_files
        Verify that every kept film exists.

    Returns
    -------
    LabelTable
        Kept rows in file order; ``dicom_id`` is the ``Image Index``, ``subject_id`` the ``Patient ID``.

    Raises
    ------
    ValueError
        For a missing column, an empty identifier or ``Finding Labels`` cell, a repeated ``Image Index``, or an
        unknown class name; each names the file and the line or column.
    """
    csv_path = Path(csv_path)
    root = csv_path.parent if image_root is None else Path(image_root)
    frame, lines = read_csv_columns(csv_path, NIH_REQUIRED_COLUMNS, text=NIH_REQUIRED_COLUMNS,
                                    hint="Is this NIH ChestX-ray14's Data_Entry_2017_v2020.csv?")
    require_values(frame, ["Image Index", "Finding Labels", "Patient ID"], csv_path, lines)
    require_unique(frame, "Image Index", csv_path, lines)
    findings = delimited_lists(frame["Finding Labels"], "|")
    available = tuple(dict.fromkeys([*NIH_CLASSES, *label_vocabulary(findings)]))
    try:
        names = available if class_names is None else resolve_class_names(class_names, available)
    except ValueError as error:
        raise ValueError(f"{csv_path}: {error}") from None
    labels = multi_hot(findings, names).astype(np.float32)
    view = frame["View Position"].str.upper()
    keep = select_views(view, frontal_only, unknown_view, csv_path)
    table = frame[["Image Index", "Patient ID"]].rename(columns={"Image Index": "dicom_id", "Patient ID": "subject_id"})
    table["study_id"] = frame["Image Index"].str.replace(r"\.[^.]*$", "", regex=True)
    table["view"] = view
    table["image"] = resolve_image_paths(frame["Image Index"], root)
    mask = np.ones(labels.shape, dtype=bool)
    return make_label_table(table, labels, mask, names, str(csv_path), lines, keep, check_files, f" ({root})")
