"""A CXR-LT 2024 label file of MIMIC's size: ``train_labeled.csv``'s schema, row count, patients and prevalences.

The rows are drawn, not real: ``rows`` images (default 258,871, CXR-LT 2024's training file) of ``patients``
patients (45,480) in ``studies`` studies (155,823), each patient with at least one study and each study with at
least one image, the rest spread at random; views PA / AP / LATERAL / LL with MIMIC's shares (70% frontal, so
~181k frontal films at full size), ``ViewPosition`` empty on 4% of the rows (``ViewCodeSequence_CodeMeaning``
then tells the view); study-level labels drawn per class with its real CXR-LT 2024 prevalence
(``data/cxrlt2024_classes.csv`` count / 258,871), shared by the films of a study. ``fpath`` follows the
MIMIC-CXR-JPG layout; the films need not exist (the reader's ``check_files`` is off by default).

    python benchmarks/mimic_table.py OUT.csv [--rows 258871] [--patients 45480] [--seed 0]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from monai_cxrcml.data.classes import CXRLT2024_CLASSES, CXRLT2024_TRAIN_COUNTS, CXRLT2024_TRAIN_SIZE
from monai_cxrcml.data.mimic import mimic_relative_paths

CXRLT_ROWS = CXRLT2024_TRAIN_SIZE
CXRLT_PATIENTS = 45_480
CXRLT_STUDIES = 155_823
"""CXR-LT 2024 ``train_labeled.csv``: images, patients and studies (shared/FACTS.md)."""

VIEW_SHARES = {"PA": 0.30, "AP": 0.40, "LATERAL": 0.27, "LL": 0.03}
"""Share of each ``ViewPosition`` among the films (frontal = PA + AP = 70%)."""

VIEW_MEANINGS = {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral", "LL": "left lateral"}
EMPTY_VIEW_POSITION = 0.04


@dataclass
class TableSummary:
    """What :func:`write_cxrlt_table` wrote: counts of rows, patients, studies and frontal films, and bytes."""

    path: Path
    rows: int
    patients: int
    studies: int
    frontal: int
    bytes: int


def draw_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    """``int8 [n, 40]`` labels, each class positive with its CXR-LT 2024 prevalence (count / 258,871)."""
    prevalence = np.array([CXRLT2024_TRAIN_COUNTS[c] / CXRLT_ROWS for c in CXRLT2024_CLASSES])
    return (rng.random((n, len(prevalence))) < prevalence).astype(np.int8)


def _sorted_owner(n_items: int, n_owners: int, rng: np.random.Generator) -> np.ndarray:
    """Owner index of each of ``n_items`` items ``[n_items]``, sorted: every owner gets one item, the rest at random."""
    if n_items < n_owners:
        raise ValueError(f"{n_items} items cannot give each of {n_owners} owners one: lower the owners.")
    return np.sort(np.r_[np.arange(n_owners), rng.integers(0, n_owners, n_items - n_owners)])


def cxrlt_frame(rows: int = CXRLT_ROWS, patients: int = CXRLT_PATIENTS, studies: int | None = None,
                seed: int = 0) -> pd.DataFrame:
    """The label table ``[rows, 6 + 40]`` in ``train_labeled.csv``'s column order (see the module docstring).

    Parameters
    ----------
    rows, patients
        Images and patients.
    studies
        Studies; default ``rows`` scaled by CXR-LT's 155,823 studies per 258,871 images.
    seed
        Seed of every draw.
    """
    studies = studies or max(patients, round(rows * CXRLT_STUDIES / CXRLT_ROWS))
    rng = np.random.default_rng(seed)
    patient_of_study = _sorted_owner(studies, patients, rng)
    study_of_image = _sorted_owner(rows, studies, rng)
    subject_ids = np.sort(rng.choice(9_000_000, patients, replace=False) + 10_000_000)
    study_ids = rng.choice(10_000_000, studies, replace=False) + 50_000_000
    words = rng.integers(0, 2**32, (rows, 5), dtype=np.uint64)
    dicom_ids = pd.Series(["-".join(f"{w:08x}" for w in row) for row in words.tolist()])
    views = rng.choice(list(VIEW_SHARES), size=rows, p=list(VIEW_SHARES.values()))
    view_position = np.where(rng.random(rows) < EMPTY_VIEW_POSITION, "", views)
    study_labels = draw_labels(studies, rng)
    subject = pd.Series(subject_ids[patient_of_study[study_of_image]].astype(str))
    study = pd.Series(study_ids[study_of_image].astype(str))
    frame = pd.DataFrame({
        "dicom_id": dicom_ids,
        "subject_id": subject,
        "study_id": "s" + study,
        "ViewPosition": view_position,
        "ViewCodeSequence_CodeMeaning": pd.Series(views).map(VIEW_MEANINGS),
        "fpath": mimic_relative_paths(subject, study, dicom_ids),
    })
    labels = pd.DataFrame(study_labels[study_of_image], columns=list(CXRLT2024_CLASSES))
    return pd.concat([frame, labels], axis=1)


def write_cxrlt_table(path: str | Path, rows: int = CXRLT_ROWS, patients: int = CXRLT_PATIENTS,
                      seed: int = 0) -> TableSummary:
    """Write :func:`cxrlt_frame` to ``path`` (``.csv``; ``.csv.gz`` compresses) and summarise it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = cxrlt_frame(rows, patients, seed=seed)
    frame.to_csv(path, index=False)
    frontal = int(frame["ViewCodeSequence_CodeMeaning"].isin([VIEW_MEANINGS["PA"], VIEW_MEANINGS["AP"]]).sum())
    return TableSummary(path, len(frame), frame["subject_id"].nunique(), frame["study_id"].nunique(), frontal,
                        path.stat().st_size)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=CXRLT_ROWS)
    parser.add_argument("--patients", type=int, default=CXRLT_PATIENTS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    summary = write_cxrlt_table(args.out, args.rows, args.patients, args.seed)
    print(f"{summary.path}: {summary.rows:,} rows, {summary.patients:,} patients, {summary.studies:,} studies, "
          f"{summary.frontal:,} frontal, {summary.bytes / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
