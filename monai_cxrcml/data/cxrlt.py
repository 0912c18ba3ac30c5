"""Reader of CXR-LT 2024 label files (``train_labeled.csv``, ``development_labeled_task*.csv``,
``test_labeled_task*.csv``, ``labels.csv``) and of any file that follows their schema.

Schema: ``dicom_id, subject_id, study_id ("s"-prefixed), ViewPosition, ViewCodeSequence_CodeMeaning, fpath``,
then one column per class with 1 / 0 (also -1 = uncertain, blank; see :func:`~monai_cxrcml.data.table.label_matrix`);
``labels.csv`` adds ``split``. Class columns are found by name, in any order; other extra columns are ignored.
Views follow the rule in :mod:`monai_cxrcml.data.mimic`; ``fpath`` is resolved against the MIMIC-CXR-JPG root as
in :func:`~monai_cxrcml.data.table.resolve_image_paths`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .classes import resolve_class_names
from .csv_reading import csv_header, read_csv_columns, require_unique, require_values
from .mimic import VIEW_COLUMNS, select_views, study_key, view_positions
from .table import LabelTable, label_matrix, make_label_table, resolve_image_paths

__all__ = ["CXRLT_REQUIRED_COLUMNS", "read_cxrlt_csv"]

CXRLT_REQUIRED_COLUMNS: tuple[str, ...] = ("dicom_id", "subject_id", "study_id", "fpath")
"""Columns every CXR-LT label file must have (with the class columns)."""

_NOT_CLASSES = {*CXRLT_REQUIRED_COLUMNS, *VIEW_COLUMNS, "split"}


def read_cxrlt_csv(
    csv_path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    class_names: Sequence[str] | str | None = None,
    frontal_only: bool = True,
    unknown_view: str = "drop",
    uncertain: str = "negative",
    blank: str = "negative",
    split: str | Sequence[str] | None = None,
    check_files: bool = False,
) -> LabelTable:
    """Read a CXR-LT label file into a :class:`~monai_cxrcml.data.table.LabelTable`.

    Parameters
    ----------
    csv_path
        The label file (``.csv`` or ``.csv.gz``).
    image_root
        The MIMIC-CXR-JPG folder that ``fpath`` (``files/p10/p10000032/s50414267/<dicom_id>.jpg``) is relative to,
        i.e. the one holding ``files/``; giving ``files/`` itself works too. Default: the folder of ``csv_path``
        (the phantom data set's layout). Absolute ``fpath`` values are used as they are.
    class_names
        ``None`` for the 40 CXR-LT 2024 classes, ``"chexpert"``, or any subset of the file's class columns in the
        order wanted (e.g. ``CXRLT2024_UNSEEN_CLASSES`` for a task-3 file).
    frontal_only
        Keep PA and AP films only (``ViewPosition``, else ``ViewCodeSequence_CodeMeaning``; rule in
        :mod:`monai_cxrcml.data.mimic`).
    unknown_view
        With ``frontal_only``: ``"drop"`` (default) or ``"keep"`` rows whose view neither column tells.
    uncertain, blank
        What -1 and blank cells become: ``"negative"`` (default), ``"positive"`` or ``"mask"`` (unknown: 0 with
        ``mask`` False).
    split
        For ``labels.csv``: keep the rows whose ``split`` is this value or one of these values (case-insensitive,
        e.g. ``"train"``). ``None`` keeps every row.
    check_files
        Verify that every kept image exists; all missing files are reported in one error.

    Returns
    -------
    LabelTable
        Kept rows in file order; the ``split`` column is carried when the file has one.

    Raises
    ------
    FileNotFoundError
        For a missing label file, or (``check_files``) missing images.
    ValueError
        For a missing column, an unknown class name, an empty identifier, a duplicate ``dicom_id``, a cell that is
        not a label, or a ``split`` value that the file does not have; each names the file and the line/column.
    """
    csv_path = Path(csv_path)
    root = csv_path.parent if image_root is None else Path(image_root)
    header = csv_header(csv_path)
    try:
        names = resolve_class_names(class_names, [c for c in header if c not in _NOT_CLASSES])
    except ValueError as error:
        raise ValueError(f"{csv_path}: {error} To read some classes only, pass class_names=[...].") from None
    frame, lines = read_csv_columns(
        csv_path,
        [*CXRLT_REQUIRED_COLUMNS, *(["split"] if split is not None else []), *names],
        optional=[*VIEW_COLUMNS, "split"],
        text=[*CXRLT_REQUIRED_COLUMNS, *VIEW_COLUMNS, "split"],
        hint="split= selects rows of labels.csv by its 'split' column." if split is not None else "",
    )
    require_values(frame, CXRLT_REQUIRED_COLUMNS, csv_path, lines)
    require_unique(frame, "dicom_id", csv_path, lines)
    labels, mask = label_matrix(frame, names, csv_path, lines, uncertain, blank)
    view = view_positions(frame, csv_path, required=frontal_only)

    keep = np.ones(len(frame), dtype=bool)
    if split is not None:
        wanted = [split] if isinstance(split, str) else list(split)
        values = frame["split"].str.lower()
        found = set(values)
        absent = [s for s in wanted if str(s).lower() not in found]
        if absent:
            present = ", ".join(f"{k!r} ({v} rows)" for k, v in frame["split"].value_counts().items())
            raise ValueError(f"{csv_path}: no row has split {absent}; the split column holds {present}.")
        keep = values.isin([str(s).lower() for s in wanted]).to_numpy(copy=True)
    keep[keep] = select_views(view[keep], frontal_only, unknown_view, csv_path)

    table = frame[["dicom_id", "subject_id"]].assign(study_id=study_key(frame["study_id"]), view=view)
    table["image"] = resolve_image_paths(frame["fpath"], root)
    if "split" in frame.columns:
        table["split"] = frame["split"]
    return make_label_table(table, labels, mask, names, str(csv_path), lines, keep, check_files, f" ({root})")
