"""Films to score at inference: a CXR-LT-style CSV, another data set's label file, a folder, or a list of files.

Every item has ``image`` (absolute path) and ``id``, the value the submission's first column holds:

- a CSV with ``dicom_id`` and ``fpath`` (CXR-LT's ``test_labeled_task1.csv``, ``development_labeled_task*.csv``
  or an unlabelled test list): one item per row, in file order, all views kept (a submission must answer every
  row); ``id`` = ``dicom_id``, and ``study_id`` is carried when the file has it (for study-level aggregation).
  Label columns, if any, are ignored.
- a label file of another format (NIH, PadChest, CheXpert, VinDr-CXR; :mod:`~monai_cxrcml.data.formats`): one
  item per image, all views kept, ``id`` = the format's image id, ``study_id`` carried.
- a folder: every image under it (:func:`~monai_cxrcml.data.folder.list_image_folder`); ``id`` = the path
  relative to the folder.
- a list of files: ``id`` = each path as given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .csv_reading import csv_header, read_csv_columns, require_unique, require_values
from .folder import list_image_folder
from .formats import read_label_table
from .table import resolve_image_paths

__all__ = ["read_image_list", "ID_COLUMN_OF"]

ID_COLUMN_OF = {"csv": "dicom_id", "folder": "path", "files": "path"}
"""Name of the submission's id column for each kind of source."""


def read_image_list(
    source: str | os.PathLike | Sequence[str | os.PathLike], image_root: str | os.PathLike | None = None
) -> tuple[list[dict[str, str]], str]:
    """Datalist of the films in ``source`` and the kind of source (``"csv"``, ``"folder"`` or ``"files"``).

    Parameters
    ----------
    source
        A ``.csv``/``.csv.gz`` label or image-list file, a folder, or a sequence of image files.
    image_root
        For a CSV: the folder its ``fpath`` values are relative to (default: the CSV's folder).

    Raises
    ------
    FileNotFoundError
        For a missing CSV or folder, or a listed file that does not exist (all such files are named).
    ValueError
        For a CSV that is neither a ``dicom_id``/``fpath`` list nor a label file of a known format (the message
        lists the formats), with an empty identifier, or with a duplicate id.
    """
    if not isinstance(source, (str, os.PathLike)):
        paths = [Path(p) for p in source]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} of {len(paths)} files do not exist: {missing[:5]}.")
        return [{"image": str(p.absolute()), "id": str(p)} for p in paths], "files"
    path = Path(source)
    if path.is_dir():
        return [{"image": item["image"], "id": item["path"]} for item in list_image_folder(path)], "folder"
    if not path.name.lower().endswith((".csv", ".csv.gz")):
        raise FileNotFoundError(
            f"{path}: not a folder and not a .csv file. Pass a CXR-LT-style CSV (dicom_id, fpath), a folder of films "
            "or a list of image files."
        )
    if not {"dicom_id", "fpath"} <= set(csv_header(path)):
        table = read_label_table(path, image_root=image_root, frontal_only=False)
        return [{"image": image, "id": dicom_id, "study_id": study}
                for image, dicom_id, study in table.frame[["image", "dicom_id", "study_id"]].itertuples(index=False)
                ], "csv"
    frame, lines = read_csv_columns(
        path, ["dicom_id", "fpath"], optional=["study_id"], text=["dicom_id", "fpath", "study_id"],
        hint="An inference list needs dicom_id and fpath (the path of each film relative to image_root).",
    )
    require_values(frame, ["dicom_id", "fpath"], path, lines)
    require_unique(frame, "dicom_id", path, lines)
    images = resolve_image_paths(frame["fpath"], path.parent if image_root is None else image_root)
    columns = ["dicom_id", *(["study_id"] if "study_id" in frame.columns else [])]
    items = [
        {"image": image, "id": row["dicom_id"], **row}
        for image, row in zip(images.tolist(), frame[columns].to_dict("records"))
    ]
    return items, "csv"
