"""Small label files in the real CXR-LT 2024 and MIMIC-CXR schemas, written by the tests themselves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from monai_cxrcml.data.classes import CHEXPERT_CLASSES, CXRLT2024_CLASSES
from monai_cxrcml.data.mimic import mimic_relative_path
from monai_cxrcml.data.table import LabelTable

# (ViewPosition, ViewCodeSequence_CodeMeaning) of the films of each study, cycled over studies
VIEW_PATTERN: tuple[tuple[str, str], ...] = (
    ("PA", "postero-anterior"),
    ("LATERAL", "lateral"),
    ("AP", "antero-posterior"),
    ("", "antero-posterior"),  # empty ViewPosition: the code meaning decides (frontal)
    ("", "lateral"),
    ("LL", "left lateral"),
    ("", ""),  # unknown view
    ("AP AXIAL", "antero-posterior"),
)


def cxrlt_frame(
    patients: int = 4, studies: int = 2, class_names: Sequence[str] = CXRLT2024_CLASSES, seed: int = 0
) -> pd.DataFrame:
    """A CXR-LT label table: ``patients`` x ``studies`` x 2 films, views cycling through ``VIEW_PATTERN``.

    Labels are study level and random (0/1) with a fixed seed; subject ids are 8 digits, study ids "s"-prefixed,
    ``fpath`` in the MIMIC-CXR-JPG layout.
    """
    rng = np.random.default_rng(seed)
    rows, film = [], 0
    for p in range(patients):
        subject = 10_000_032 + 1_000_000 * (p % 3) + p
        for s in range(studies):
            study = 50_000_000 + 1000 * p + s
            labels = (rng.random(len(class_names)) < 0.3).astype(int)
            for _ in range(2):
                view, meaning = VIEW_PATTERN[film % len(VIEW_PATTERN)]
                dicom = f"{film:08x}-bde0afdd-112c0b34-7bc16630-4e384014"
                rows.append(
                    {
                        "dicom_id": dicom,
                        "subject_id": subject,
                        "study_id": f"s{study}",
                        "ViewPosition": view,
                        "ViewCodeSequence_CodeMeaning": meaning,
                        "fpath": mimic_relative_path(subject, study, dicom),
                        **dict(zip(class_names, labels.tolist())),
                    }
                )
                film += 1
    return pd.DataFrame(rows)


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write without the index (compression inferred from the name, e.g. ``.csv.gz``)."""
    frame.to_csv(path, index=False)
    return path


def mimic_frames(patients: int = 3, studies: int = 2, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(chexpert, metadata)`` tables in MIMIC-CXR's schema: study ids without "s", labels 1.0/0.0/-1.0/blank."""
    rng = np.random.default_rng(seed)
    chexpert, metadata, film = [], [], 0
    for p in range(patients):
        subject = 10_000_032 + p
        for s in range(studies):
            study = 50_000_000 + 1000 * p + s
            values = rng.choice([1.0, 0.0, -1.0, np.nan], size=len(CHEXPERT_CLASSES))
            chexpert.append({"subject_id": subject, "study_id": study, **dict(zip(CHEXPERT_CLASSES, values))})
            for view in ("PA", "LATERAL"):
                metadata.append(
                    {
                        "dicom_id": f"{film:08x}-aaaaaaaa-bbbbbbbb-cccccccc-dddddddd",
                        "subject_id": subject,
                        "study_id": study,
                        "PerformedProcedureStepDescription": "CHEST (PA AND LAT)",
                        "ViewPosition": view,
                        "Rows": 3056,
                        "Columns": 2544,
                        "ViewCodeSequence_CodeMeaning": "postero-anterior" if view == "PA" else "lateral",
                    }
                )
                film += 1
    return pd.DataFrame(chexpert), pd.DataFrame(metadata)


def make_table(subjects: Sequence[str], labels: np.ndarray, class_names: Sequence[str] | None = None) -> LabelTable:
    """A ``LabelTable`` with the given patient of each image and ``[N, C]`` 0/1 labels (all known)."""
    labels = np.asarray(labels, dtype=np.float32)
    n, c = labels.shape
    frame = pd.DataFrame(
        {
            "dicom_id": [f"d{i}" for i in range(n)],
            "subject_id": [str(s) for s in subjects],
            "study_id": [f"s{i}" for i in range(n)],
            "view": "PA",
            "image": [f"/data/{i}.jpg" for i in range(n)],
        }
    )
    names = tuple(class_names) if class_names is not None else tuple(f"class {j}" for j in range(c))
    return LabelTable(frame=frame, labels=labels, mask=np.ones((n, c), dtype=bool), class_names=names)
