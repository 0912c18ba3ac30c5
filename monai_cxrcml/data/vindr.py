"""Reader of VinDr-CXR annotation files (VinBigData's ``train.csv``; PhysioNet's ``annotations_train.csv``).

Schema: one row per box (or "No finding" verdict) and radiologist: ``image_id, class_name, class_id, rad_id,
x_min, y_min, x_max, y_max``; each training image was read by three of 17 radiologists (``R1``..``R17``).
Image-level labels (``rule``), with ``k`` the radiologists who drew a class on an image and ``n`` those who read it
(distinct ``rad_id``): ``"any"`` (default, as torchxrayvision reads the file) ``k >= 1``; ``"majority"``
``k > n / 2`` (2 of 3). ``No finding`` is positive exactly when no other class is: the verdict of the aggregated
labels, not a vote. A file without ``rad_id`` (a consensus file) counts each image as read once. A radiologist
marking ``No finding`` and a finding on one image is an error naming both lines.
VinDr-CXR has no patient ids and no studies: ``subject_id`` and ``study_id`` are the ``image_id`` (folds are then
image-level). It holds frontal films only (``view`` ``"FRONTAL"``). The film is ``<image_root>/<image_id>.dicom``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .classes import resolve_class_names
from .csv_reading import read_csv_columns, require_unique, require_values
from .mimic import select_views
from .table import LabelTable, make_label_table, resolve_image_paths

__all__ = ["VINDR_CLASSES", "VINDR_NO_FINDING", "VINDR_REQUIRED_COLUMNS", "VINDR_RULES", "read_vindr_csv"]

VINDR_REQUIRED_COLUMNS: tuple[str, ...] = ("image_id", "class_name")
"""Columns every VinDr-CXR annotation file must have (``rad_id`` too, for per-radiologist files)."""

VINDR_RULES: tuple[str, ...] = ("any", "majority")

VINDR_NO_FINDING = "No finding"

VINDR_CLASSES: tuple[str, ...] = (
    "Aortic enlargement",
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Consolidation",
    "ILD",
    "Infiltration",
    "Lung Opacity",
    "Nodule/Mass",
    "Other lesion",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumothorax",
    "Pulmonary fibrosis",
    VINDR_NO_FINDING,
)
"""The 15 ``class_name`` values of VinBigData's ``train.csv``, in ``class_id`` order (0..14)."""

_BOX = ["x_min", "y_min", "x_max", "y_max"]


def read_vindr_csv(
    csv_path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
    rule: str = "any",
    frontal_only: bool = True,
    unknown_view: str = "drop",
    check_files: bool = False,
) -> LabelTable:
    """Read a VinDr-CXR annotation file into a one-row-per-image :class:`~monai_cxrcml.data.table.LabelTable`.

    Parameters
    ----------
    csv_path
        The annotation file (``.csv`` or ``.csv.gz``).
    image_root
        The folder holding ``<image_id>.dicom`` (VinDr's ``train/``); default: the CSV's folder.
    class_names
        ``None`` for :data:`VINDR_CLASSES` and any other class the file names (sorted), or a selection.
    rule
        ``"any"`` or ``"majority"`` of the image's radiologists (module docstring).
    frontal_only, unknown_view
        Accepted for a uniform reader interface; every VinDr-CXR film is frontal.
    check_files
        Verify that every film exists.

    Returns
    -------
    LabelTable
        One row per image in order of first appearance; all labels known.

    Raises
    ------
    ValueError
        For an unknown rule, a missing column, an empty cell, a row repeated exactly, a radiologist marking
        "No finding" beside a finding, or an unknown class name; each names the file and the line or column.
    """
    if rule not in VINDR_RULES:
        raise ValueError(f"rule={rule!r}: use one of {list(VINDR_RULES)} (see monai_cxrcml.data.vindr).")
    csv_path = Path(csv_path)
    root = csv_path.parent if image_root is None else Path(image_root)
    frame, lines = read_csv_columns(csv_path, VINDR_REQUIRED_COLUMNS, optional=["rad_id", *_BOX],
                                    text=[*VINDR_REQUIRED_COLUMNS, "rad_id", *_BOX],
                                    hint="Is this VinDr-CXR's train.csv / annotations_train.csv?")
    if "rad_id" not in frame.columns:
        frame["rad_id"] = "consensus"
    require_values(frame, ["image_id", "class_name", "rad_id"], csv_path, lines)
    require_unique(frame, list(frame.columns), csv_path, lines)
    _check_no_finding(frame, csv_path, lines)
    others = sorted(set(frame["class_name"]) - set(VINDR_CLASSES), key=lambda n: (n.lower(), n))
    available = (*VINDR_CLASSES, *others)
    try:
        names = available if class_names is None else resolve_class_names(class_names, available)
    except ValueError as error:
        raise ValueError(f"{csv_path}: {error}") from None
    image_codes, images = pd.factorize(frame["image_id"])
    first_line = lines[np.unique(image_codes, return_index=True)[1]]
    positive = _aggregate(frame, image_codes, len(images), names, rule)
    table = pd.DataFrame({"dicom_id": images, "subject_id": images, "study_id": images, "view": "FRONTAL"})
    table["image"] = resolve_image_paths(table["dicom_id"] + ".dicom", root)
    keep = select_views(table["view"], frontal_only, unknown_view, csv_path, frontal=np.ones(len(table), bool))
    mask = np.ones(positive.shape, dtype=bool)
    return make_label_table(table, positive.astype(np.float32), mask, names, str(csv_path), first_line, keep,
                            check_files, f" ({root})")


def _aggregate(frame: pd.DataFrame, image_codes: np.ndarray, n_images: int, names: Sequence[str],
               rule: str) -> np.ndarray:
    """``np.bool_ [n_images, C]`` image labels from the per-radiologist rows under ``rule``."""
    marks = frame.assign(image=image_codes)[["image", "rad_id", "class_name"]].drop_duplicates()
    readers = marks.groupby("image")["rad_id"].nunique().reindex(range(n_images)).to_numpy()
    every = sorted(set(frame["class_name"]) - {VINDR_NO_FINDING})
    votes = pd.crosstab(marks["image"], marks["class_name"]).reindex(index=range(n_images), fill_value=0)
    votes = votes.reindex(columns=every, fill_value=0).to_numpy()  # [images, every finding of the file]
    found = votes >= 1 if rule == "any" else votes > readers[:, None] / 2
    positive = np.zeros((n_images, len(names)), dtype=bool)
    for j, name in enumerate(names):
        if name == VINDR_NO_FINDING:
            positive[:, j] = ~found.any(axis=1)
        elif name in every:
            positive[:, j] = found[:, every.index(name)]
    return positive


def _check_no_finding(frame: pd.DataFrame, csv_path: Path, lines: np.ndarray) -> None:
    """Raise when one radiologist marks "No finding" and a finding on the same image."""
    verdict = (frame["class_name"] == VINDR_NO_FINDING).to_numpy()
    reading = pd.MultiIndex.from_frame(frame[["image_id", "rad_id"]])
    clash = reading.isin(reading[verdict]) & reading.isin(reading[~verdict])
    if clash.any():
        image, reader = reading[clash][0]
        both = lines[((frame["image_id"] == image) & (frame["rad_id"] == reader)).to_numpy()]
        raise ValueError(
            f"{csv_path}: radiologist {reader} marks both 'No finding' and a finding on image {image} (lines "
            f"{', '.join(map(str, both[:5]))}; {int(clash.sum())} such row(s)). Fix or drop the contradicting rows."
        )
