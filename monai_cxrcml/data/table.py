"""``LabelTable``, the one in-memory form of a labelled image list, and the steps from checked columns to it.

A reader (``read_cxrlt_csv``, ``read_nih_csv``, ...) turns label files into a :class:`LabelTable`: one row per
image with its identifiers, absolute image path, label matrix and known-label mask. The helpers below turn label
cells (1, 0, -1, blank) into labels and a mask under an explicit policy, resolve image paths and reject missing
image files, naming the file, the CSV line (1-based, header = line 1) and the column at fault. Reading the columns
themselves: :mod:`~monai_cxrcml.data.csv_reading`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .csv_reading import MAX_LISTED
from .meta_labels import meta_label_caption

__all__ = [
    "LABEL_POLICIES",
    "REPORT_COLUMNS",
    "TABLE_COLUMNS",
    "LabelTable",
    "label_matrix",
    "resolve_image_paths",
    "check_image_files",
    "make_label_table",
]

TABLE_COLUMNS: tuple[str, ...] = ("dicom_id", "subject_id", "study_id", "view", "image")
"""Columns every ``LabelTable.frame`` has (extra columns such as ``split`` may follow)."""

REPORT_COLUMNS: tuple[str, ...] = ("findings", "impression")
"""Report sections a table may carry (:func:`~monai_cxrcml.data.reports.attach_reports`); datalist items get them."""

LABEL_POLICIES: tuple[str, ...] = ("negative", "positive", "mask")
"""What an uncertain (-1) or blank label becomes: 0 (known), 1 (known), or 0 with ``mask`` False (unknown)."""

logger = logging.getLogger(__name__)

@dataclass
class LabelTable:
    """A labelled image list: one row per image.

    Attributes
    ----------
    frame
        ``pd.DataFrame`` with a ``RangeIndex`` and at least the columns ``dicom_id, subject_id, study_id, view,
        image`` (all ``str``; ``study_id`` keeps CXR-LT's ``"s"`` prefix, ``view`` is ``"PA"``, ``"AP"``,
        ``"LATERAL"``, ... or ``""`` when unknown, ``image`` is an absolute path).
    labels
        ``np.float32 [N, C]`` of 0/1.
    mask
        ``np.bool_ [N, C]``: True where the label is known. All True unless a reader's uncertain/blank policy
        was ``"mask"``; a masked label is 0 in ``labels``.
    class_names
        The ``C`` class names, in column order.
    source
        The file(s) the table was read from, for messages.
    """

    frame: pd.DataFrame
    labels: np.ndarray
    mask: np.ndarray
    class_names: tuple[str, ...]
    source: str = ""

    def __post_init__(self) -> None:
        self.class_names = tuple(self.class_names)
        missing = [c for c in TABLE_COLUMNS if c not in self.frame.columns]
        if missing:
            raise ValueError(f"LabelTable frame lacks column(s) {missing}; it has {list(self.frame.columns)}.")
        n, c = len(self.frame), len(self.class_names)
        if self.labels.shape != (n, c) or self.labels.dtype != np.float32:
            raise ValueError(
                f"LabelTable labels must be float32 [{n}, {c}], got {self.labels.dtype} {self.labels.shape}."
            )
        if self.mask.shape != (n, c) or self.mask.dtype != np.bool_:
            raise ValueError(f"LabelTable mask must be bool [{n}, {c}], got {self.mask.dtype} {self.mask.shape}.")

    def __len__(self) -> int:
        return len(self.frame)

    def subset(self, indices: Sequence[int] | np.ndarray) -> LabelTable:
        """The rows at ``indices`` (integer positions or a boolean mask ``[N]``), in that order, as a new table."""
        idx = np.asarray(indices)
        if idx.dtype == np.bool_:
            if idx.shape != (len(self),):
                raise ValueError(f"boolean row mask has shape {idx.shape}, the table has {len(self)} rows.")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False)
        return LabelTable(
            frame=self.frame.iloc[idx].reset_index(drop=True),
            labels=self.labels[idx],
            mask=self.mask[idx],
            class_names=self.class_names,
            source=self.source,
        )

    def positives(self) -> dict[str, int]:
        """Number of images with a known positive label, per class (in class order)."""
        counts = ((self.labels > 0.5) & self.mask).sum(axis=0)
        return {name: int(k) for name, k in zip(self.class_names, counts)}

    def to_datalist(self) -> list[dict]:
        """MONAI datalist: one dict per row.

        Each item has ``image`` (absolute path), ``label`` (``np.float32 [C]``), ``label_mask``
        (``np.float32 [C]``, 1 = known), ``caption`` (meta-label caption of the known positives, see
        :func:`monai_cxrcml.data.meta_labels.meta_label_caption`), ``dicom_id``, ``subject_id``, ``study_id``,
        ``view`` and ``sample_id`` (the row position in this table), and the report sections of
        :data:`REPORT_COLUMNS` where the table carries them. Items own their arrays: changing one changes neither
        the table nor another item.
        """
        positive = (self.labels > 0.5) & self.mask
        packed = np.ascontiguousarray(np.packbits(positive, axis=1))  # one caption per distinct label pattern
        patterns = packed.view(f"V{packed.shape[1]}").ravel()
        _, first, inverse = np.unique(patterns, return_index=True, return_inverse=True)
        pattern_captions = [meta_label_caption(positive[i], self.class_names) for i in first]
        captions = [pattern_captions[k] for k in inverse]
        labels = list(self.labels.copy())
        masks = list(self.mask.astype(np.float32))
        keys = ("image", "dicom_id", "subject_id", "study_id", "view",
                *(c for c in REPORT_COLUMNS if c in self.frame.columns))
        rows = zip(*(self.frame[c].fillna("").tolist() if c in REPORT_COLUMNS else self.frame[c].tolist()
                     for c in keys))
        return [
            {"image": row[0], "label": label, "label_mask": mask, "caption": caption,
             **dict(zip(keys[1:], row[1:])), "sample_id": i}
            for i, (label, mask, caption, row) in enumerate(zip(labels, masks, captions, rows))
        ]


def label_matrix(
    frame: pd.DataFrame,
    class_names: Sequence[str],
    source: str | os.PathLike,
    lines: np.ndarray,
    uncertain: str = "negative",
    blank: str = "negative",
) -> tuple[np.ndarray, np.ndarray]:
    """Turn label columns into ``labels`` and ``mask`` under explicit policies.

    Parameters
    ----------
    frame
        Table with one column per class; cells are 1 (positive), 0 (negative), -1 (uncertain) or blank (also
        ``1.0``/``0.0``/``-1.0``).
    class_names
        The ``C`` columns to use, in the order wanted.
    source, lines
        File name and 1-based CSV line of each row, for messages.
    uncertain, blank
        Policy for -1 and blank cells, each one of ``LABEL_POLICIES``: ``"negative"`` -> 0, ``"positive"`` -> 1,
        ``"mask"`` -> 0 with ``mask`` False.

    Returns
    -------
    labels, mask
        ``np.float32 [N, C]`` and ``np.bool_ [N, C]``.

    Raises
    ------
    ValueError
        For an unknown policy, or a cell that is not a label (``2``, ``"yes"``): names the file, the CSV line and
        the column of the first one and counts all of them.
    """
    for name, policy in (("uncertain", uncertain), ("blank", blank)):
        if policy not in LABEL_POLICIES:
            raise ValueError(f"{name}={policy!r} is not a label policy: use one of {list(LABEL_POLICIES)}.")
    raw = frame[list(class_names)]
    values = raw.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    is_blank = raw.isna().to_numpy()
    bad = ~(is_blank | (values == 1) | (values == 0) | (values == -1))
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        col = int(np.flatnonzero(bad[row])[0])
        cell = raw.iat[row, col]
        shown = f"{cell:g}" if isinstance(cell, (float, np.floating)) else str(cell)
        raise ValueError(
            f"{source} line {lines[row]}, column '{class_names[col]}': {shown!r} is not a label "
            f"({int(bad.sum())} such cell(s) in the file). Allowed: 1 (positive), 0 (negative), -1 (uncertain) "
            "or blank. Fix the file; the uncertain= and blank= options choose what -1 and blank mean."
        )
    labels = values == 1
    mask = np.ones_like(labels)
    for cells, policy in ((values == -1, uncertain), (is_blank, blank)):
        if policy == "positive":
            labels |= cells
        elif policy == "mask":
            mask &= ~cells
    return labels.astype(np.float32), mask


def resolve_image_paths(relative: pd.Series, root: str | os.PathLike) -> pd.Series:
    """Absolute image paths from the ``fpath`` column of a label file and an image root (vectorised).

    Rules, in order:

    - an absolute ``fpath`` is kept as it is (``root`` is not applied);
    - a relative one is joined to ``root`` (made absolute, ``~`` expanded), after removing a leading ``./``
      and the part of ``fpath`` that repeats the end of ``root``. So the real CXR-LT ``files/p10/p100.../s.../x.jpg``
      resolves to the same file whether ``root`` is the MIMIC-CXR-JPG folder ``.../mimic-cxr-jpg/2.0.0`` or its
      ``files`` subfolder, and ``mimic-cxr-jpg/2.0.0/files/p10/...`` under root ``.../mimic-cxr-jpg/2.0.0``
      does not double the prefix. The overlap is matched lexically on whole path components, so it is only wrong
      for a root whose own last components repeat as its first subfolders (e.g. ``.../files/files/p10``).

    Backslashes are read as ``/``. Nothing touches the file system (see :func:`check_image_files`).

    Parameters
    ----------
    relative
        ``str`` series of paths.
    root
        The folder the relative paths are relative to.

    Returns
    -------
    ``str`` series of absolute paths, same index.
    """
    root_abs = os.path.abspath(os.path.expanduser(os.fspath(root)))
    paths = relative.str.replace("\\", "/", regex=False)
    absolute = paths.str.startswith("/").to_numpy()
    paths = paths.str.replace(r"^(?:\./)+", "", regex=True)
    parts = [p for p in root_abs.replace("\\", "/").split("/") if p]
    resolved = absolute.copy()
    for j in range(len(parts)):  # longest overlap first
        tail = "/".join(parts[j:]) + "/"
        hit = ~resolved & paths.str.startswith(tail).to_numpy()
        if hit.any():
            paths = paths.where(~hit, paths.str.slice(len(tail)))
            resolved |= hit
    joined = root_abs.rstrip("/\\") + "/" + paths
    return joined.where(~absolute, paths)


def check_image_files(paths: pd.Series, source: str | os.PathLike, lines: np.ndarray, root_hint: str = "") -> None:
    """Raise ``FileNotFoundError`` listing every missing image at once (count, first lines and paths).

    ``paths`` are absolute; ``lines`` the CSV line of each. Existence is checked with a small thread pool, which
    keeps network file systems from dominating the run time.
    """
    values = paths.tolist()
    with ThreadPoolExecutor(max_workers=16) as pool:
        exists = np.fromiter(pool.map(os.path.isfile, values, chunksize=512), dtype=bool, count=len(values))
    if not exists.all():
        missing = np.flatnonzero(~exists)
        shown = "\n".join(f"  line {lines[i]}: {values[i]}" for i in missing[:MAX_LISTED])
        raise FileNotFoundError(
            f"{source}: {len(missing)} of {len(values)} image file(s) not found, e.g.\n{shown}\n"
            f"Check the image root{root_hint}, or drop those rows from the CSV."
        )


def make_label_table(
    frame: pd.DataFrame,
    labels: np.ndarray,
    mask: np.ndarray,
    class_names: Sequence[str],
    source: str,
    lines: np.ndarray,
    keep: np.ndarray,
    check_files: bool,
    root_hint: str = "",
) -> LabelTable:
    """The rows ``keep`` of a reader's full-file arrays as a :class:`LabelTable`, checking files if asked.

    ``frame`` has ``TABLE_COLUMNS`` (and any extra columns to carry) for every row of the file; ``lines`` are the
    rows' CSV lines, quoted when an image is missing. Raises ``ValueError`` when no row is kept: an empty table
    would only fail later, far from its cause.
    """
    if not keep.any():
        raise ValueError(
            f"{source}: no row left out of {len(frame)} after the filters. Check split=, frontal_only= and "
            "unknown_view= (the log lists the views found)."
        )
    frame = frame.loc[keep].reset_index(drop=True)
    if check_files:
        check_image_files(frame["image"], source, lines[keep], root_hint)
    table = LabelTable(frame=frame, labels=labels[keep], mask=mask[keep], class_names=class_names, source=source)
    logger.info(
        "%s: %d images, %d patients, %d studies, %d classes.",
        source,
        len(table),
        frame["subject_id"].nunique(),
        frame["study_id"].nunique(),
        len(table.class_names),
    )
    return table
