"""Class vocabularies of CXR-LT 2024 and MIMIC-CXR, and the readable phrase of each finding.

The CXR-LT 2024 table (``resources/cxrlt2024_classes.csv``) lists the 40 task-1 classes in the column order of
``train_labeled.csv`` (alphabetical) with their counts in the official training set (258,871 images).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from importlib import resources

__all__ = [
    "CXRLT2024_CLASSES",
    "CXRLT2024_TRAIN_COUNTS",
    "CXRLT2024_TRAIN_SIZE",
    "CXRLT2024_UNSEEN_CLASSES",
    "CHEXPERT_CLASSES",
    "class_selection",
    "finding_phrase",
    "resolve_class_names",
]


def _read_class_table() -> dict[str, int]:
    with resources.files("monai_cxrcml.data").joinpath("resources/cxrlt2024_classes.csv").open() as f:
        return {row["name"]: int(row["train_count"]) for row in csv.DictReader(f)}


CXRLT2024_TRAIN_COUNTS: dict[str, int] = _read_class_table()
"""Training-set image count of each CXR-LT 2024 class (``train_labeled.csv``)."""

CXRLT2024_CLASSES: tuple[str, ...] = tuple(CXRLT2024_TRAIN_COUNTS)
"""The 40 CXR-LT 2024 task-1 classes in CSV column order."""

CXRLT2024_TRAIN_SIZE: int = 258_871
"""Number of images in the CXR-LT 2024 ``train_labeled.csv``."""

CXRLT2024_UNSEEN_CLASSES: tuple[str, ...] = ("Bulla", "Cardiomyopathy", "Hilum", "Osteopenia", "Scoliosis")
"""CXR-LT 2024 task 3: findings never seen in training, scored zero-shot."""

CHEXPERT_CLASSES: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)
"""The 14 label columns of MIMIC-CXR's ``mimic-cxr-2.0.0-chexpert.csv`` / ``-negbio.csv``."""

_PHRASE_EXCEPTIONS: dict[str, str] = {"Round(ed) Atelectasis": "rounded atelectasis"}


def finding_phrase(name: str) -> str:
    """Readable lower-case phrase of a class name, as used in captions and prompts.

    ``"Pleural Effusion"`` -> ``"pleural effusion"``, ``"Round(ed) Atelectasis"`` -> ``"rounded atelectasis"``.
    """
    return _PHRASE_EXCEPTIONS.get(name, name).strip().lower()


def resolve_class_names(
    class_names: Sequence[str] | str | None, available: Sequence[str] | None = None
) -> tuple[str, ...]:
    """Resolve a class selection to a tuple of names.

    Parameters
    ----------
    class_names
        ``None`` or ``"cxrlt2024"`` for the 40 CXR-LT 2024 classes, ``"chexpert"`` for the 14 MIMIC-CXR CheXpert
        labels, or an explicit sequence of names in the order wanted.
    available
        Names that exist in the source (e.g. a CSV's columns). Every requested name must be among them.

    Raises
    ------
    ValueError
        For an empty selection, a duplicate name, or a name missing from ``available``; the message lists the
        names that are there.
    """
    if class_names is None or class_names == "cxrlt2024":
        names = CXRLT2024_CLASSES
    elif class_names == "chexpert":
        names = CHEXPERT_CLASSES
    elif isinstance(class_names, str):
        raise ValueError(
            f"class_names={class_names!r} is not a known vocabulary: pass 'cxrlt2024', 'chexpert' or a list of names."
        )
    else:
        names = tuple(str(n) for n in class_names)
    if not names:
        raise ValueError("class_names is empty: pass at least one class name.")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"class_names lists {duplicates} more than once: give each class once.")
    if available is not None:
        missing = [n for n in names if n not in available]
        if missing:
            raise ValueError(
                f"unknown class name(s) {missing}: the source has {list(available)}. "
                "Check the spelling (names are case-sensitive, e.g. 'Round(ed) Atelectasis')."
            )
    return names


def class_selection(values: Sequence[str] | str | None) -> str | list[str] | None:
    """A class selection written as text: one vocabulary name (``cxrlt2024``, ``chexpert``) or class names.

    ``values`` is a list of names (a command line's ``--classes``) or one comma-separated string (a MONAI Label
    ``--conf``); None stays None (the model's own classes).
    """
    if values is None:
        return None
    names = [n.strip() for n in values.split(",")] if isinstance(values, str) else [str(n) for n in values]
    names = [n for n in names if n]
    return names[0] if len(names) == 1 and names[0] in ("cxrlt2024", "chexpert") else names
