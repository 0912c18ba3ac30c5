"""Label file formats: which one a file is (from its header, or named), and one reader call for all of them.

:func:`read_label_table` is what :func:`~monai_cxrcml.data.load_fold`, training, evaluation and calibration call,
so every tool works on every format. Each format keeps its own rules (views, patients, uncertain and missing
labels), documented in its reader's module; the formats and the columns that identify them are
:data:`LABEL_FORMATS`. A header that fits none is refused with the list of formats and the columns each needs.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .chexpert import CHEXPERT_INFO_COLUMNS, read_chexpert_csv
from .csv_reading import csv_header
from .cxrlt import CXRLT_REQUIRED_COLUMNS, read_cxrlt_csv
from .nih import NIH_REQUIRED_COLUMNS, read_nih_csv
from .padchest import PADCHEST_REQUIRED_COLUMNS, read_padchest_csv
from .table import LABEL_POLICIES, LabelTable
from .vindr import read_vindr_csv

__all__ = ["LABEL_FORMATS", "LabelFormat", "detect_label_format", "get_label_format", "read_label_table"]


@dataclass(frozen=True)
class LabelFormat:
    """One label file format.

    Attributes
    ----------
    name
        Short name (``label_format=`` / ``--label-format``).
    title
        What the format is, for messages.
    signature
        Columns that identify it: a header holding all of them is this format.
    columns
        What a file needs, for the refusal message.
    reader
        ``reader(path, image_root=..., class_names=..., frontal_only=..., ...) -> LabelTable``.
    """

    name: str
    title: str
    signature: tuple[str, ...]
    columns: str
    reader: Callable[..., LabelTable]

    def options(self) -> set[str]:
        """Keyword arguments the reader takes."""
        return set(inspect.signature(self.reader).parameters) - {"csv_path"}


LABEL_FORMATS: dict[str, LabelFormat] = {
    f.name: f
    for f in (
        LabelFormat("cxrlt", "CXR-LT 2024 (MIMIC-CXR-JPG)", ("dicom_id", "fpath"),
                    ", ".join(CXRLT_REQUIRED_COLUMNS) + " + one 1/0/-1/blank column per class", read_cxrlt_csv),
        LabelFormat("nih", "NIH ChestX-ray14", ("Image Index", "Finding Labels"), ", ".join(NIH_REQUIRED_COLUMNS)
                    + " (Finding Labels: names joined by |)", read_nih_csv),
        LabelFormat("padchest", "PadChest", ("ImageID", "Labels"), ", ".join(PADCHEST_REQUIRED_COLUMNS)
                    + " (Labels: a list like ['normal'])", read_padchest_csv),
        LabelFormat("chexpert", "CheXpert", ("Path",), "Path (patientN/studyM/ in it), optionally "
                    + ", ".join(CHEXPERT_INFO_COLUMNS[1:]) + ", + one 1/0/-1/blank column per class",
                    read_chexpert_csv),
        LabelFormat("vindr", "VinDr-CXR", ("image_id", "class_name"), "image_id, class_name, rad_id (one row per "
                    "box and radiologist)", read_vindr_csv),
    )
}
"""The formats :func:`read_label_table` reads, by name."""

def get_label_format(name: str) -> LabelFormat:
    """The format called ``name``; an unknown name is refused with the list of formats."""
    if name not in LABEL_FORMATS:
        raise ValueError(f"label_format={name!r} is not a known format: use one of {list(LABEL_FORMATS)} or None "
                         "(found from the header).")
    return LABEL_FORMATS[name]


def _formats_help() -> str:
    return "\n".join(f"  {f.name:9}{f.title}: {f.columns}" for f in LABEL_FORMATS.values())


def detect_label_format(path: str | os.PathLike) -> str:
    """The name of the format of the label file at ``path``, from its header.

    Raises
    ------
    FileNotFoundError
        When ``path`` is not a file.
    ValueError
        When the header fits no format (the message lists the formats and the columns each needs) or several.
    """
    header = set(csv_header(path))
    matches = [f.name for f in LABEL_FORMATS.values() if set(f.signature) <= header]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(f"{path}: the header fits the formats {matches}: name one with label_format= "
                         "(--label-format).")
    mimic = {"subject_id", "study_id"} <= header and "dicom_id" not in header
    raise ValueError(
        f"{path}: not a label file this reader knows; its columns are {sorted(header)[:12]}"
        f"{' ...' if len(header) > 12 else ''}. The formats and the columns each needs:\n{_formats_help()}"
        + ("\nMIMIC-CXR's -chexpert.csv / -negbio.csv has no film ids: read it with its -metadata.csv "
           "(monai_cxrcml.data.read_mimic_chexpert)." if mimic else "")
    )


def read_label_table(
    path: str | os.PathLike,
    label_format: str | None = None,
    image_root: str | os.PathLike | None = None,
    class_names: Sequence[str] | str | None = None,
    frontal_only: bool = True,
    unknown_view: str = "drop",
    uncertain: str = "negative",
    blank: str = "negative",
    split: str | Sequence[str] | None = None,
    check_files: bool = False,
    **options: Any,
) -> LabelTable:
    """Read a label file of any format in :data:`LABEL_FORMATS` into a :class:`~monai_cxrcml.data.table.LabelTable`.

    Parameters
    ----------
    path
        The label file.
    label_format
        A name of :data:`LABEL_FORMATS`, or ``None`` to detect it from the header.
    image_root, class_names, frontal_only, unknown_view, check_files
        As the format's reader takes them (default classes: CXR-LT 2024's 40 for ``cxrlt``, the file's own
        otherwise).
    uncertain, blank
        Policies of -1 and blank cells, for the formats that have them (CXR-LT, CheXpert; PadChest's rows without
        a label list follow ``blank``); formats without such cells are not affected.
    split
        ``labels.csv``'s split (``cxrlt`` only).
    **options
        Options of one format's reader (VinDr's ``rule``).

    Raises
    ------
    ValueError
        For an unknown format, an undetectable file, or an option the format does not take.
    """
    fmt = get_label_format(label_format) if label_format is not None else get_label_format(detect_label_format(path))
    accepted = fmt.options()
    given = {"image_root": image_root, "class_names": class_names, "frontal_only": frontal_only,
             "unknown_view": unknown_view, "check_files": check_files, **options}
    if split is not None:
        given["split"] = split
    wrong = sorted(set(given) - accepted)
    if wrong:
        raise ValueError(f"{Path(path)} is a {fmt.title} file ({fmt.name}), whose reader takes no {wrong}; it takes "
                         f"{sorted(accepted)}.")
    policies = {"uncertain": uncertain, "blank": blank}
    for key, policy in policies.items():
        if policy not in LABEL_POLICIES:
            raise ValueError(f"{key}={policy!r} is not a label policy: use one of {list(LABEL_POLICIES)}.")
    given.update({k: v for k, v in policies.items() if k in accepted})
    return fmt.reader(path, **given)
