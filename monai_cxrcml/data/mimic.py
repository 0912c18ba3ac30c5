"""MIMIC-CXR-JPG conventions: image path layout, view positions, and the ``-chexpert.csv`` + ``-metadata.csv`` reader.

Which films count as frontal (:func:`view_positions`, :func:`select_views`): docs/design.md, "MIMIC-CXR views".
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .classes import resolve_class_names
from .csv_reading import csv_header, read_csv_columns, require_unique, require_values
from .table import LabelTable, label_matrix, make_label_table, resolve_image_paths

__all__ = [
    "FRONTAL_VIEWS",
    "UNKNOWN_VIEW_POLICIES",
    "VIEW_CODE_MEANINGS",
    "VIEW_COLUMNS",
    "mimic_relative_path",
    "mimic_relative_paths",
    "study_key",
    "view_positions",
    "select_views",
    "read_mimic_chexpert",
]

logger = logging.getLogger(__name__)

FRONTAL_VIEWS: tuple[str, ...] = ("PA", "AP")
"""``ViewPosition`` values of frontal films."""

UNKNOWN_VIEW_POLICIES: tuple[str, ...] = ("drop", "keep")

VIEW_COLUMNS: tuple[str, ...] = ("ViewPosition", "ViewCodeSequence_CodeMeaning")
"""The columns the view is read from, in order of precedence."""

VIEW_CODE_MEANINGS: dict[str, str] = {
    "postero-anterior": "PA",
    "antero-posterior": "AP",
    "lateral": "LATERAL",
    "left lateral": "LL",
    "right lateral": "RL",
}


def study_key(study_id: pd.Series) -> pd.Series:
    """Study ids in CXR-LT's form: ``"50414267"`` and ``"s50414267"`` both become ``"s50414267"``."""
    study_id = study_id.astype(str).str.strip()
    return study_id.where(study_id.str.startswith("s"), "s" + study_id)


def mimic_relative_paths(subject_id: pd.Series, study_id: pd.Series, dicom_id: pd.Series) -> pd.Series:
    """Vectorised :func:`mimic_relative_path` over aligned ``str`` series."""
    subject_id = subject_id.astype(str).str.strip()
    folder = "files/p" + subject_id.str.slice(0, 2) + "/p" + subject_id + "/" + study_key(study_id)
    return folder + "/" + dicom_id + ".jpg"


def mimic_relative_path(subject_id: int | str, study_id: int | str, dicom_id: str) -> str:
    """Path of a MIMIC-CXR-JPG image relative to the data set root.

    ``mimic_relative_path(10000032, 50414267, "02aa804e-...")`` ->
    ``"files/p10/p10000032/s50414267/02aa804e-....jpg"``; ``study_id`` may carry the ``"s"`` prefix.
    """
    subject, study = str(subject_id).strip(), str(study_id).strip()
    if not subject.isdigit() or not study.removeprefix("s").isdigit() or not str(dicom_id).strip():
        raise ValueError(
            f"not a MIMIC-CXR image id: subject_id={subject_id!r}, study_id={study_id!r}, dicom_id={dicom_id!r}; "
            "expected digits, digits (optionally 's'-prefixed) and a DICOM id."
        )
    return mimic_relative_paths(pd.Series([subject]), pd.Series([study]), pd.Series([str(dicom_id).strip()])).iloc[0]


def view_positions(frame: pd.DataFrame, source: str | os.PathLike = "", required: bool = False) -> pd.Series:
    """The view of each row: ``ViewPosition`` upper-cased, else the view named by ``ViewCodeSequence_CodeMeaning``.

    Parameters
    ----------
    frame
        Rows with either or both of ``VIEW_COLUMNS`` (blank cells ``""`` or NaN).
    source
        File name, for the error.
    required
        Raise when ``frame`` has neither column (the view filter needs one); otherwise every view is unknown.

    Returns
    -------
    ``str`` series, ``""`` where the view is unknown (see the module docstring for the rule).
    """
    view = pd.Series("", index=frame.index, dtype=str)
    if not any(c in frame.columns for c in VIEW_COLUMNS):
        if required:
            raise ValueError(
                f"{source}: has neither a ViewPosition nor a ViewCodeSequence_CodeMeaning column, so frontal views "
                "cannot be told apart. Add one, or pass frontal_only=False to keep every row."
            )
        return view
    if "ViewCodeSequence_CodeMeaning" in frame.columns:
        meaning = frame["ViewCodeSequence_CodeMeaning"].fillna("").astype(str).str.strip().str.lower()
        view = meaning.map(VIEW_CODE_MEANINGS).fillna("").astype(str)
    if "ViewPosition" in frame.columns:
        position = frame["ViewPosition"].fillna("").astype(str).str.strip().str.upper()
        view = position.where(position != "", view)
    return view


def select_views(
    view: pd.Series,
    frontal_only: bool,
    unknown_view: str,
    source: str | os.PathLike,
    frontal: np.ndarray | None = None,
) -> np.ndarray:
    """Rows to keep by view: ``np.bool_ [N]``. All rows when ``frontal_only`` is False; logs what it drops.

    ``frontal`` (``np.bool_ [N]``) says which rows are frontal when a format's own field decides it (CheXpert's
    ``Frontal/Lateral``, PadChest's ``Projection``); by default a row is frontal when its view is PA or AP. A row
    whose ``view`` is ``""`` is of unknown view either way.
    """
    if unknown_view not in UNKNOWN_VIEW_POLICIES:
        raise ValueError(f"unknown_view={unknown_view!r}: use one of {list(UNKNOWN_VIEW_POLICIES)}.")
    if not frontal_only:
        return np.ones(len(view), dtype=bool)
    unknown = (view == "").to_numpy()
    frontal = view.isin(FRONTAL_VIEWS).to_numpy() if frontal is None else np.asarray(frontal, dtype=bool) & ~unknown
    keep = frontal | (unknown if unknown_view == "keep" else False)
    other = view[~frontal & ~unknown].value_counts()
    dropped_unknown = 0 if unknown_view == "keep" else int(unknown.sum())
    logger.info(
        "%s: kept %d frontal rows%s; dropped %d of other views (%s) and %d of unknown view%s.",
        source,
        int(frontal.sum()),
        f" and {int(unknown.sum())} of unknown view" if unknown_view == "keep" else "",
        int(other.sum()),
        ", ".join(f"{k} {v}" for k, v in other.items()) or "none",
        dropped_unknown,
        " (unknown_view='keep' keeps them)" if dropped_unknown else "",
    )
    return keep


def read_mimic_chexpert(
    chexpert_csv: str | os.PathLike,
    metadata_csv: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    class_names: Sequence[str] | str | None = "chexpert",
    frontal_only: bool = True,
    unknown_view: str = "drop",
    uncertain: str = "negative",
    blank: str = "negative",
    check_files: bool = False,
) -> LabelTable:
    """Image-level table from MIMIC-CXR's study-level ``-chexpert.csv`` (or ``-negbio.csv``) and ``-metadata.csv``.

    Every image of ``metadata_csv`` takes the labels of its study (joined on ``subject_id`` and ``study_id``;
    ``study_id`` has no ``"s"`` prefix in these files and gets one in the table). Images whose study has no
    label row are dropped, with a logged count.

    Parameters
    ----------
    chexpert_csv
        ``mimic-cxr-2.0.0-chexpert.csv`` (``.csv.gz`` works): ``subject_id, study_id`` + 14 label columns.
    metadata_csv
        ``mimic-cxr-2.0.0-metadata.csv``: ``dicom_id, subject_id, study_id, ..., ViewPosition, ...``.
    image_root
        The MIMIC-CXR-JPG folder holding ``files/``; default: the folder of ``metadata_csv`` (where PhysioNet
        puts it).
    class_names
        ``"chexpert"`` (the 14 columns) or any subset/order of the file's label columns.
    frontal_only, unknown_view
        View filter, see the module docstring.
    uncertain, blank
        Policies for -1 and blank labels: ``"negative"``, ``"positive"`` or ``"mask"``.
    check_files
        Verify that every image exists; all missing ones are reported in one error.

    Returns
    -------
    LabelTable
        One row per image, in metadata order.
    """
    chexpert_csv, metadata_csv = Path(chexpert_csv), Path(metadata_csv)
    root = metadata_csv.parent if image_root is None else Path(image_root)
    ids = ["subject_id", "study_id"]
    available = [c for c in csv_header(chexpert_csv) if c not in ids]
    try:
        names = resolve_class_names(class_names, available)
    except ValueError as error:
        raise ValueError(f"{chexpert_csv}: {error} To read some classes only, pass class_names=[...].") from None
    labels_frame, label_lines = read_csv_columns(
        chexpert_csv, [*ids, *names], text=ids, hint="Is this mimic-cxr-2.0.0-chexpert.csv?"
    )
    require_values(labels_frame, ids, chexpert_csv, label_lines)
    labels_frame["study_id"] = study_key(labels_frame["study_id"])
    require_unique(labels_frame, ids, chexpert_csv, label_lines)
    labels, mask = label_matrix(labels_frame, names, chexpert_csv, label_lines, uncertain, blank)

    meta, lines = read_csv_columns(
        metadata_csv,
        ["dicom_id", *ids],
        optional=VIEW_COLUMNS,
        text=["dicom_id", *ids, *VIEW_COLUMNS],
        hint="Is this mimic-cxr-2.0.0-metadata.csv?",
    )
    require_values(meta, ["dicom_id", *ids], metadata_csv, lines)
    require_unique(meta, "dicom_id", metadata_csv, lines)
    meta["study_id"] = study_key(meta["study_id"])
    view = view_positions(meta, metadata_csv, required=frontal_only)
    row = meta[ids].merge(labels_frame[ids].assign(_row=np.arange(len(labels_frame))), on=ids, how="left")["_row"]
    labelled = row.notna().to_numpy()
    if not labelled.any():
        raise ValueError(
            f"no image of {metadata_csv} has a label row in {chexpert_csv} (joined on subject_id and study_id): "
            "are these files from the same MIMIC-CXR release?"
        )
    if not labelled.all():
        logger.warning(
            "%s: %d image(s) belong to studies without a row in %s and are dropped.",
            metadata_csv,
            int((~labelled).sum()),
            chexpert_csv,
        )
    row = row.fillna(0).to_numpy(dtype=np.int64)
    keep = labelled & select_views(view, frontal_only, unknown_view, metadata_csv)
    frame = meta[["dicom_id", *ids]].assign(view=view)
    relative = mimic_relative_paths(meta["subject_id"], meta["study_id"], meta["dicom_id"])
    frame["image"] = resolve_image_paths(relative, root)
    return make_label_table(
        frame,
        labels[row],
        mask[row],
        names,
        f"{chexpert_csv} + {metadata_csv}",
        lines,
        keep,
        check_files,
        root_hint=f" ({root})",
    )
