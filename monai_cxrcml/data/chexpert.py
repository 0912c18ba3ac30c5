"""Reader of CheXpert label files: ``train.csv`` / ``valid.csv`` of CheXpert-v1.0 (and -small), and test lists.

Schema: ``Path, Sex, Age, Frontal/Lateral, AP/PA``, then one column per observation (the 14 of
:data:`~monai_cxrcml.data.classes.CHEXPERT_CLASSES`) with 1 / 0 / -1 (uncertain) / blank; every column other than
those five is a class. Only ``Path`` is required: test lists without ``Sex``/``Age``/``Frontal/Lateral`` work.
``Path`` (``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg``) names the patient and the study,
and is resolved against the image root like CXR-LT's ``fpath`` (the root may be the folder holding
``CheXpert-v1.0-small/`` or that folder itself).

Views: ``Frontal/Lateral`` decides what is frontal (the format's own field); ``view`` is then ``AP/PA``'s value
(``AP``, ``PA``, and 17 frontal films marked ``LL``/``RL`` in the training file), ``FRONTAL`` when it is blank, or
``LATERAL``. Without a ``Frontal/Lateral`` column the file name decides (``..._frontal.jpg``, ``..._lateral.jpg``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .classes import resolve_class_names
from .csv_reading import csv_header, read_csv_columns, require_unique, require_values
from .mimic import select_views
from .table import LabelTable, label_matrix, make_label_table, resolve_image_paths

__all__ = ["CHEXPERT_INFO_COLUMNS", "CHEXPERT_REQUIRED_COLUMNS", "chexpert_class_columns", "read_chexpert_csv"]

CHEXPERT_REQUIRED_COLUMNS: tuple[str, ...] = ("Path",)
"""Columns every CheXpert label file must have (with at least one class column)."""

CHEXPERT_INFO_COLUMNS: tuple[str, ...] = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")
"""The columns of a CheXpert label file that are not classes."""

_PATIENT_STUDY = r"(?P<study>(?P<subject>patient\d+)/study\d+)/"


def chexpert_class_columns(header: Sequence[str]) -> list[str]:
    """The class columns of a CheXpert header: all but :data:`CHEXPERT_INFO_COLUMNS`, in file order."""
    return [c for c in header if c not in CHEXPERT_INFO_COLUMNS and c]


def read_chexpert_csv(
    csv_path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    class_names: Sequence[str] | str | None = None,
    frontal_only: bool = True,
    unknown_view: str = "drop",
    uncertain: str = "negative",
    blank: str = "negative",
    check_files: bool = False,
) -> LabelTable:
    """Read a CheXpert label file into a :class:`~monai_cxrcml.data.table.LabelTable`.

    Parameters
    ----------
    csv_path
        ``train.csv``, ``valid.csv`` or a test list with ``Path`` and class columns (``.csv.gz`` works).
    image_root
        The folder ``Path`` is relative to; default: the CSV's folder.
    class_names
        ``None`` for the file's class columns in file order, ``"chexpert"`` for the 14, or a selection.
    frontal_only, unknown_view
        Keep frontal films (``Frontal/Lateral``); a blank cell is an unknown view, dropped unless
        ``unknown_view="keep"``.
    uncertain, blank
        What -1 and blank cells become: ``"negative"`` (default), ``"positive"`` or ``"mask"``.
    check_files
        Verify that every kept film exists.

    Returns
    -------
    LabelTable
        Kept rows in file order; ``dicom_id`` is the ``Path``, ``subject_id`` ``"patient00001"``, ``study_id``
        ``"patient00001/study1"``.

    Raises
    ------
    ValueError
        For a missing column, a ``Path`` without ``patientN/studyM/``, a repeated ``Path``, a cell that is not a
        label, or an unknown class name; each names the file and the line or column.
    """
    csv_path = Path(csv_path)
    root = csv_path.parent if image_root is None else Path(image_root)
    available = chexpert_class_columns(csv_header(csv_path))
    try:
        names = tuple(available) if class_names is None else resolve_class_names(class_names, available)
    except ValueError as error:
        raise ValueError(f"{csv_path}: {error}") from None
    if not names:
        raise ValueError(f"{csv_path}: no class column besides {list(CHEXPERT_INFO_COLUMNS)}: is this a CheXpert "
                         "label file?")
    frame, lines = read_csv_columns(csv_path, [*CHEXPERT_REQUIRED_COLUMNS, *names],
                                    optional=["Frontal/Lateral", "AP/PA"], text=["Path", "Frontal/Lateral", "AP/PA"],
                                    hint="Is this CheXpert's train.csv / valid.csv?")
    require_values(frame, ["Path"], csv_path, lines)
    require_unique(frame, "Path", csv_path, lines)
    ids = frame["Path"].str.replace("\\", "/", regex=False).str.extract(_PATIENT_STUDY)
    no_id = ids["study"].isna().to_numpy()
    if no_id.any():
        raise ValueError(
            f"{csv_path} line {lines[no_id][0]}, column 'Path': {frame['Path'][no_id].iat[0]!r} names no "
            f"patientN/studyM/ folder ({int(no_id.sum())} such row(s)); CheXpert paths look like "
            "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg."
        )
    labels, mask = label_matrix(frame, names, csv_path, lines, uncertain, blank)
    view, frontal = _views(frame)
    keep = select_views(view, frontal_only, unknown_view, csv_path, frontal=frontal)
    table = pd.DataFrame({"dicom_id": frame["Path"], "subject_id": ids["subject"], "study_id": ids["study"],
                          "view": view, "image": resolve_image_paths(frame["Path"], root)})
    return make_label_table(table, labels, mask, names, str(csv_path), lines, keep, check_files, f" ({root})")


def _views(frame: pd.DataFrame) -> tuple[pd.Series, np.ndarray]:
    """``view`` of each row and whether it is frontal, from ``Frontal/Lateral`` (else the file name) and ``AP/PA``."""
    if "Frontal/Lateral" in frame.columns:
        kind = frame["Frontal/Lateral"].str.lower()
    else:
        name = frame["Path"].str.lower()
        kind = pd.Series(np.where(name.str.contains("_frontal."), "frontal",
                                  np.where(name.str.contains("_lateral."), "lateral", "")), index=frame.index)
    position = frame["AP/PA"].str.upper() if "AP/PA" in frame.columns else pd.Series("", index=frame.index)
    frontal = (kind == "frontal").to_numpy()
    view = np.where(frontal, np.where(position != "", position, "FRONTAL"), np.where(kind == "lateral", "LATERAL", ""))
    return pd.Series(view, index=frame.index, dtype=str), frontal
