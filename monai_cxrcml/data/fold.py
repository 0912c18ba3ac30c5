"""One experiment's data: a label file split into train/val/test by patient, with the class groups.

This is the single call a bundle config makes to go from a label file to MONAI datalists:
``load_fold(train_csv, image_root, fold=0)`` reads the file (any format of
:data:`~monai_cxrcml.data.formats.LABEL_FORMATS`, frontal films by default), cuts the patient-level
stratified fold (test = fold ``fold`` of ``num_folds``, i.e. the paper's 80:20 with 5 folds; validation carved
from the training patients), groups the classes by their prevalence in the training part, and logs a report
that flags classes too thin to score. With ``test_csv`` (e.g. CXR-LT's ``development_labeled_task1.csv``) the
test films come from that file instead and the whole of ``csv`` is used for training and validation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from .csv_reading import csv_header
from .formats import read_label_table
from .groups import base_rare_groups, prevalence_groups
from .reports import attach_reports
from .splits import fold_report, fold_split, holdout_split
from .table import LabelTable

__all__ = ["FoldData", "load_fold", "load_test_set", "PARTS"]

PARTS = ("train", "val", "test")
Part = Literal["train", "val", "test"]

logger = logging.getLogger(__name__)


@dataclass
class FoldData:
    """The labelled films of one fold.

    Attributes
    ----------
    train, val, test
        The three parts, disjoint by patient (``val`` may be empty).
    groups, prevalence_groups
        Class name -> "base"/"rare" and -> "common"/"medium"/"rare", from the training part.
    report
        Positives per class and part (:func:`~monai_cxrcml.data.splits.fold_report`; column ``part``).
    fold, num_folds
        Which fold this is (``num_folds = 0`` when the test part came from its own file, or is a whole file:
        :func:`load_test_set`).
    """

    train: LabelTable
    val: LabelTable
    test: LabelTable
    groups: dict[str, str]
    prevalence_groups: dict[str, str]
    report: pd.DataFrame
    fold: int
    num_folds: int

    @property
    def class_names(self) -> tuple[str, ...]:
        """The C class names, in label-column order."""
        return self.train.class_names

    def part(self, name: Part) -> LabelTable:
        """The table of part ``name`` ("train", "val" or "test")."""
        if name not in PARTS:
            raise ValueError(f"part {name!r} is not one of {PARTS}.")
        return getattr(self, name)

    def datalist(self, name: Part) -> list[dict]:
        """MONAI datalist of part ``name``; ``sample_id`` runs over 0..len(part)-1."""
        return self.part(name).to_datalist()


def load_fold(
    csv: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    class_names: Sequence[str] | str | None = None,
    fold: int = 0,
    num_folds: int = 5,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_csv: str | os.PathLike | None = None,
    split: str | Sequence[str] | None = None,
    test_split: str | Sequence[str] | None = None,
    frontal_only: bool = True,
    uncertain: str = "negative",
    blank: str = "negative",
    group_by: str = "auto",
    rare_threshold: float = 1000,
    common_threshold: float = 10000,
    min_positives: int = 10,
    check_files: bool = False,
    label_format: str | None = None,
    label_options: Mapping[str, object] | None = None,
    reports_dir: str | os.PathLike | None = None,
) -> FoldData:
    """Read a label file and cut one patient-level fold.

    Parameters
    ----------
    csv
        Label file of any format of :data:`~monai_cxrcml.data.formats.LABEL_FORMATS` (CXR-LT's
        ``train_labeled.csv``, NIH, PadChest, CheXpert, VinDr-CXR).
    image_root
        Folder the file's image paths are relative to (default: the CSV's folder).
    class_names
        Classes to read (default: the 40 CXR-LT 2024 classes for a CXR-LT file, the file's own classes otherwise).
    fold, num_folds, seed
        Test part = fold ``fold`` of ``num_folds`` patient-level stratified folds drawn with ``seed``.
    val_fraction
        Share of the training patients held out for validation (0 = no validation part).
    test_csv
        Take the test part from this file instead of a fold (then ``fold``/``num_folds`` are unused).
    split, test_split
        The rows of ``csv`` / ``test_csv`` to use when the file has a ``split`` column (CXR-LT's ``labels.csv``),
        e.g. ``"train"`` and ``"test"``; such a file without a chosen split is refused, since its rows mix the
        challenge's training, development and test patients.
    frontal_only, uncertain, blank, check_files
        See :func:`~monai_cxrcml.data.formats.read_label_table`.
    group_by, rare_threshold, common_threshold
        See :mod:`~monai_cxrcml.data.groups`.
    min_positives
        Classes with fewer positive patients in a part are flagged "thin" in the report and the log.
    label_format
        The format of ``csv`` and ``test_csv`` (``None``: found from each file's header).
    label_options
        Options of one format's reader (VinDr-CXR's ``rule``: ``"any"`` or ``"majority"``).
    reports_dir
        MIMIC-CXR's reports root (the folder holding ``files/pXX/pSUBJECT/sSTUDY.txt``): every film then carries
        its study's ``findings`` and ``impression`` (:func:`~monai_cxrcml.data.reports.attach_reports`), which the
        caption recipe may use.
    """
    options = dict(label_format=label_format, class_names=class_names, frontal_only=frontal_only,
                   uncertain=uncertain, blank=blank, check_files=check_files, **dict(label_options or {}))
    table = read_label_table(csv, image_root=image_root, **options,
                             split=_chosen_split(csv, split, "split", "train_split"))
    if reports_dir is not None:
        table = attach_reports(table, reports_dir)
    if test_csv is None:
        train_idx, val_idx, test_idx = fold_split(table, fold, num_folds, seed, val_fraction)
        train, val, test = (table.subset(i) for i in (train_idx, val_idx, test_idx))
    else:
        test_rows = _chosen_split(test_csv, test_split, "test_split", "test_split")
        test = read_label_table(test_csv, image_root=image_root, **{**options, "class_names": table.class_names},
                                split=test_rows)
        if reports_dir is not None:
            test = attach_reports(test, reports_dir)
        if val_fraction > 0:
            train_idx, val_idx = holdout_split(table, val_fraction, seed)
        else:
            train_idx, val_idx = np.arange(len(table)), np.zeros(0, dtype=np.int64)
        train, val = table.subset(train_idx), table.subset(val_idx)
        fold, num_folds = 0, 0
        shared = set(train.frame.subject_id) & set(test.frame.subject_id)
        if shared:
            raise ValueError(
                f"{test_csv} shares {len(shared)} patient(s) with {csv} (e.g. {sorted(shared)[:3]}): a test set must "
                "hold unseen patients. Use CXR-LT's development/test files, or leave test_csv unset to cut a fold."
            )
    return _fold_data(train, val, test, train, (rare_threshold, common_threshold), group_by, min_positives, fold,
                      num_folds)


def load_test_set(
    csv: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    class_names: Sequence[str] | str | None = None,
    split: str | Sequence[str] | None = None,
    frontal_only: bool = True,
    uncertain: str = "negative",
    blank: str = "negative",
    group_by: str = "auto",
    rare_threshold: float = 1000,
    common_threshold: float = 10000,
    min_positives: int = 10,
    check_files: bool = False,
    label_format: str | None = None,
    label_options: Mapping[str, object] | None = None,
) -> FoldData:
    """A whole label file as the test part: zero-shot evaluation on a data set the model was not trained on.

    The train and val parts are empty and ``fold = num_folds = 0``; the groups come from the file's own counts
    (``group_by`` applied to the test table), since there is no training part. Parameters as in :func:`load_fold`.
    """
    table = read_label_table(csv, label_format, image_root=image_root, class_names=class_names,
                             frontal_only=frontal_only, uncertain=uncertain, blank=blank, check_files=check_files,
                             split=_chosen_split(csv, split, "split", "train_split"), **dict(label_options or {}))
    empty = table.subset(np.zeros(0, dtype=np.int64))
    return _fold_data(empty, empty, table, table, (rare_threshold, common_threshold), group_by, min_positives, 0, 0)


def _fold_data(
    train: LabelTable,
    val: LabelTable,
    test: LabelTable,
    counted: LabelTable,
    thresholds: tuple[float, float],
    group_by: str,
    min_positives: int,
    fold: int,
    num_folds: int,
) -> FoldData:
    """The parts with the groups of ``counted`` (the training part, or the test set itself) and the fold report."""
    groups = base_rare_groups(counted, thresholds[0], group_by)
    prevalence = prevalence_groups(counted, thresholds, group_by)
    parts = {"train": train, "val": val, "test": test}
    report = pd.concat(
        [fold_report(part, {name: np.arange(len(part))}, min_positives) for name, part in parts.items() if len(part)],
        ignore_index=True,
    ).rename(columns={"fold": "part"})
    _log_fold(parts, report, fold, num_folds)
    return FoldData(train, val, test, groups, prevalence, report, fold, num_folds)


def _chosen_split(
    csv: str | os.PathLike, split: str | Sequence[str] | None, argument: str, bundle_id: str
) -> str | Sequence[str] | None:
    """``split``, after checking that a file with a ``split`` column (``labels.csv``) has one chosen."""
    if split is None and "split" in csv_header(csv):
        raise ValueError(
            f"{csv} has a 'split' column (CXR-LT's labels.csv mixes the challenge's train, development and test "
            f"patients): choose its rows with {argument}='train' (or 'development', 'test'; in the bundle "
            f"--{bundle_id} train), or pass train_labeled.csv / development_labeled_task1.csv."
        )
    return split


def _log_fold(parts: dict[str, LabelTable], report: pd.DataFrame, fold: int, num_folds: int) -> None:
    sizes = ", ".join(
        f"{name} {len(t)} films / {t.frame.subject_id.nunique()} patients" for name, t in parts.items()
    )
    where = f"fold {fold} of {num_folds}" if num_folds else "separate test file" if len(parts["train"]) else \
        "the whole file as the test part"
    logger.info("data (%s): %s.", where, sizes)
    for (part, status), rows in report[report.status != "ok"].groupby(["part", "status"], sort=False):
        why = "no positive or no negative film: AUC undefined" if status == "unscorable" else "few positive patients"
        logger.warning("%s part: %d class(es) %s (%s): %s.", part, len(rows), status, why, ", ".join(
            f"{r['class']} ({r.positive_patients} patients)" for _, r in rows.iterrows()))
