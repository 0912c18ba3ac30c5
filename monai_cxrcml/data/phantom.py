"""Phantom CXR-LT 2024 data set: chest-like films in the MIMIC-CXR-JPG layout with the real label files.

Nobody can share MIMIC-CXR, so the demo and every test run on this generated stand-in. It writes, under one
folder, exactly the files a CXR-LT 2024 user holds::

    files/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg   8-bit grayscale JPEG
    train_labeled.csv  development_labeled_task1.csv  test_labeled_task1.csv  labels.csv (with `split`)
    mimic-cxr-2.0.0-metadata.csv  mimic-cxr-2.0.0-chexpert.csv  README.txt

Command line: ``python -m monai_cxrcml.data.phantom OUT_DIR --patients 800 --size 256 --seed 0 [--jobs 2]``.
The same arguments give byte-identical CSVs and images, whatever ``--jobs`` is.

With ``--labels FILE`` (:func:`make_table_phantom`) the labels, patients and views are instead those of patients
drawn from a real label table of any format (NIH, PadChest, CheXpert, VinDr-CXR, CXR-LT); their rows are copied
into a file of the same format and name, and only the films are drawn (the rules below are the CXR-LT phantom's).

Cohort
------
Patients are split disjointly into train / development / test (default 70/10/20 %). Each patient has 1-8
studies (mean ~2.6); a study is a PA+lateral exam (PA, PA + LATERAL or LL, sometimes a repeat PA) or a portable
AP exam (mostly one AP film), portable exams being more likely in intensive-care-like studies (support
devices). About 4 % of films have an empty ``ViewPosition`` while ``ViewCodeSequence_CodeMeaning`` is filled.
Labels are study level: every film of a study carries its study's labels.

Prevalence
----------
Real CXR-LT 2024 counts ``n_c`` (:data:`~monai_cxrcml.data.classes.CXRLT2024_TRAIN_COUNTS`, max ``n_max`` =
Support Devices 86,079 of ``N`` = 258,871 images) are compressed to a study-level prevalence

    ``p_c = (n_max / N) * (n_c / n_max) ** alpha``, ``alpha`` = ``compression`` (default 0.5),

a monotone map, so the class ranking stays the real one: Support Devices keeps its real 33 %, Lobar
Atelectasis (129 images, 0.05 %) becomes 1.3 %, i.e. ~25 positive studies (~45 images) at 800 patients.
``alpha = 1`` keeps the real prevalences. Within each split, class ``c`` is positive in exactly
``max(min_positive_studies, round(p_c * studies_in_split))`` studies (more only where an implication below
forces it), so every split is stratified and, with the default ``min_positive_studies=1``, every class has a
positive in every split even at test sizes. Which studies are positive follows a latent Gaussian model: seven
shared factors (intensive care, heart failure, age, infection, air leak/trauma, neoplasm, vascular; loadings
in ``_FACTORS``) give realistic co-occurrence (edema, cardiomegaly and effusion together; devices with
intensive-care findings; ...), and a per-class persistence (``_PERSISTENCE``) makes chronic findings and
anatomical variants recur across a patient's studies. The top-scoring eligible studies are positive.

Rules that always hold
----------------------
- Lobar Atelectasis and Round(ed) Atelectasis imply Atelectasis; Rib Fracture and Clavicle Fracture imply
  Fracture; Hydropneumothorax implies Pneumothorax and Pleural Effusion (:data:`IMPLIES`).
- Normal is CheXpert's "No Finding" (CXR-LT built its labels on the CheXpert labeler): it excludes every
  pathology and allows Support Devices. Anatomical variants and incidental age-related findings that the
  CheXpert labeler does not extract (Azygos Lobe, Calcification of the Aorta, Tortuous Aorta, Kyphosis) may
  also accompany Normal (:data:`NORMAL_COMPATIBLE`); every other class excludes Normal.

Films
-----
Each positive class draws its own sign (:data:`~monai_cxrcml.data.phantom_signs.SIGN_CATALOGUE`), also where
an implication made it positive, with a per-study severity (some faint) varied per film; lateral films carry
the signs at half strength. Portrait films (height = ``size``, aspect 1.15-1.25), per-patient anatomy, a few
degrees of rotation, exposure and noise make the task not trivial.

MIMIC-CXR files
---------------
``mimic-cxr-2.0.0-metadata.csv`` has one row per film (``Rows``/``Columns`` = the JPEG's height/width);
``mimic-cxr-2.0.0-chexpert.csv`` one row per study with the 14 CheXpert labels derived from the study's
CXR-LT labels (``No Finding`` = Normal; the other 13 by name): a positive is ``1.0`` (88 %) or uncertain
``-1.0`` (12 %); a negative is blank (72 %), ``0.0`` (24 %) or ``-1.0`` (4 %, never on a Normal study).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import importlib.util
import json
import logging
import math
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .classes import CHEXPERT_CLASSES, CXRLT2024_CLASSES, CXRLT2024_TRAIN_COUNTS, CXRLT2024_TRAIN_SIZE
from .formats import detect_label_format, read_label_table
from .mimic import VIEW_CODE_MEANINGS, mimic_relative_paths
from .phantom_signs import SIGN_CATALOGUE, render_film, sample_anatomy, sign_for, vary_anatomy
from .table import OPENERS

__all__ = [
    "IMPLIES",
    "NORMAL_COMPATIBLE",
    "SPLIT_FILES",
    "CXRLT_ID_COLUMNS",
    "METADATA_COLUMNS",
    "MANIFEST",
    "TABLE_ID_COLUMNS",
    "compressed_prevalence",
    "ensure_phantom",
    "make_phantom",
    "make_table_phantom",
    "phantom_label_file",
    "torchxrayvision_table",
    "main",
]

logger = logging.getLogger(__name__)

SPLIT_FILES: dict[str, str] = {
    "train": "train_labeled.csv",
    "development": "development_labeled_task1.csv",
    "test": "test_labeled_task1.csv",
}
"""CXR-LT 2024 task-1 label file of each split (``labels.csv`` holds all rows with a ``split`` column)."""

CXRLT_ID_COLUMNS: tuple[str, ...] = (
    "dicom_id",
    "subject_id",
    "study_id",
    "ViewPosition",
    "ViewCodeSequence_CodeMeaning",
    "fpath",
)
"""Columns of the CXR-LT label files before the 40 class columns."""

METADATA_COLUMNS: tuple[str, ...] = (
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)
"""Columns of MIMIC-CXR-JPG's ``mimic-cxr-2.0.0-metadata.csv``."""

IMPLIES: dict[str, tuple[str, ...]] = {
    "Lobar Atelectasis": ("Atelectasis",),
    "Round(ed) Atelectasis": ("Atelectasis",),
    "Rib Fracture": ("Fracture",),
    "Clavicle Fracture": ("Fracture",),
    "Hydropneumothorax": ("Pneumothorax", "Pleural Effusion"),
}
"""A positive key makes each listed class positive in the same study."""

NORMAL_COMPATIBLE: tuple[str, ...] = (
    "Support Devices",
    "Azygos Lobe",
    "Calcification of the Aorta",
    "Tortuous Aorta",
    "Kyphosis",
)
"""Classes that may be positive in a Normal study; all other classes exclude Normal."""

_VIEW_MEANING = {view: meaning for meaning, view in VIEW_CODE_MEANINGS.items()}  # PA -> "postero-anterior", ...
_PROCEDURE = {"PA": "CHEST (PA AND LAT)", "AP": "CHEST (PORTABLE AP)"}

# Latent factors of the label model: factor -> {class: loading}. A class's latent score is the sum of its
# loadings times the study's factor scores plus an idiosyncratic part (unit variance in total).
_FACTORS: dict[str, dict[str, float]] = {
    "intensive care": {
        "Support Devices": 0.65,
        "Edema": 0.3,
        "Pleural Effusion": 0.35,
        "Atelectasis": 0.4,
        "Consolidation": 0.25,
        "Lung Opacity": 0.3,
        "Enlarged Cardiomediastinum": 0.25,
        "Pneumothorax": 0.25,
        "Lobar Atelectasis": 0.3,
        "Subcutaneous Emphysema": 0.25,
        "Pneumomediastinum": 0.25,
        "Pneumoperitoneum": 0.3,
        "Normal": -0.5,
    },
    "heart failure": {
        "Cardiomegaly": 0.6,
        "Edema": 0.55,
        "Pleural Effusion": 0.4,
        "Enlarged Cardiomediastinum": 0.4,
        "Pulmonary Hypertension": 0.4,
        "Normal": -0.3,
    },
    "age": {
        "Calcification of the Aorta": 0.6,
        "Tortuous Aorta": 0.6,
        "Kyphosis": 0.45,
        "Emphysema": 0.35,
        "Fibrosis": 0.35,
        "Granuloma": 0.3,
        "Hernia": 0.35,
        "Cardiomegaly": 0.25,
        "Pleural Thickening": 0.3,
        "Pleural Other": 0.2,
        "Fracture": 0.2,
        "Normal": -0.25,
    },
    "infection": {
        "Pneumonia": 0.6,
        "Consolidation": 0.55,
        "Infiltration": 0.5,
        "Lung Opacity": 0.5,
        "Tuberculosis": 0.3,
        "Atelectasis": 0.2,
        "Normal": -0.3,
    },
    "air leak and trauma": {
        "Pneumothorax": 0.55,
        "Subcutaneous Emphysema": 0.55,
        "Pneumomediastinum": 0.5,
        "Hydropneumothorax": 0.5,
        "Rib Fracture": 0.45,
        "Fracture": 0.4,
        "Clavicle Fracture": 0.4,
        "Support Devices": 0.15,
    },
    "neoplasm": {
        "Mass": 0.55,
        "Nodule": 0.5,
        "Lung Lesion": 0.55,
        "Adenopathy": 0.45,
        "Granuloma": 0.2,
        "Pleural Effusion": 0.1,
        "Round(ed) Atelectasis": 0.2,
    },
    "vascular": {"Pulmonary Embolism": 0.6, "Infarction": 0.6, "Pulmonary Hypertension": 0.35},
}
_FACTOR_PERSISTENCE = 0.6
"""Share of the factor scores' variance that is the patient's (the rest is the study's)."""

_PERSISTENCE: dict[str, float] = {
    "Azygos Lobe": 1.0,
    "Kyphosis": 0.95,
    "Calcification of the Aorta": 0.9,
    "Tortuous Aorta": 0.9,
    "Granuloma": 0.9,
    "Emphysema": 0.85,
    "Fibrosis": 0.85,
    "Hernia": 0.8,
    "Pleural Thickening": 0.8,
    "Pleural Other": 0.8,
    "Cardiomegaly": 0.7,
    "Support Devices": 0.6,
    "Fissure": 0.6,
    "Tuberculosis": 0.6,
    "Mass": 0.6,
    "Nodule": 0.6,
    "Lung Lesion": 0.6,
    "Adenopathy": 0.6,
    "Pulmonary Hypertension": 0.7,
    "Normal": 0.5,
}
"""Share of a class's idiosyncratic latent variance that is the patient's (default 0.3: acute findings)."""

# Films of a study: (views, probability) for the PA+lateral exam and the portable AP exam.
_PA_EXAMS = ((("PA", "LATERAL"), 0.68), (("PA",), 0.12), (("PA", "LL"), 0.12), (("PA", "LATERAL", "PA"), 0.08))
_AP_EXAMS = ((("AP",), 0.85), (("AP", "AP"), 0.09), (("AP", "LATERAL"), 0.06))
_EMPTY_VIEW_POSITION = 0.04


def compressed_prevalence(
    compression: float = 0.5,
    counts: dict[str, int] | None = None,
    total: int = CXRLT2024_TRAIN_SIZE,
) -> dict[str, float]:
    """Study-level prevalence of each class: ``(n_max / N) * (n_c / n_max) ** compression``.

    Parameters
    ----------
    compression
        Exponent in (0, 1]: 1 keeps the real prevalences, smaller values lift rare classes (ranking kept).
    counts
        Class -> training count; CXR-LT 2024's by default.
    total
        Number of training images the counts come from.
    """
    counts = dict(CXRLT2024_TRAIN_COUNTS if counts is None else counts)
    if not 0 < compression <= 1:
        raise ValueError(f"compression={compression} must lie in (0, 1]: 1 keeps the real CXR-LT prevalences.")
    top = max(counts.values())
    return {name: (top / total) * (n / top) ** compression for name, n in counts.items()}


def _loadings(classes: Sequence[str]) -> np.ndarray:
    """Loading matrix [C, F] of the latent factors."""
    loadings = np.zeros((len(classes), len(_FACTORS)))
    for f, table in enumerate(_FACTORS.values()):
        for name, value in table.items():
            loadings[classes.index(name), f] = value
    return loadings


def _allocate_labels(
    scores: np.ndarray, split_of_study: np.ndarray, prevalence: np.ndarray, min_positive_studies: int
) -> np.ndarray:
    """Binary study labels [S, C]: within each split the top-scoring eligible studies of each class.

    Normal is allocated first, then the classes that imply others, then the rest; an implied class starts from
    the studies its implying classes force and adds top-scoring studies up to its count.
    """
    classes = list(CXRLT2024_CLASSES)
    normal = classes.index("Normal")
    compatible = {classes.index(n) for n in NORMAL_COMPATIBLE}
    order = (
        [normal]
        + [classes.index(n) for n in IMPLIES]
        + [c for c in range(len(classes)) if c != normal and classes[c] not in IMPLIES]
    )
    implied_by: dict[int, list[int]] = {}
    for child, parents in IMPLIES.items():
        for parent in parents:
            implied_by.setdefault(classes.index(parent), []).append(classes.index(child))
    labels = np.zeros(scores.shape, np.uint8)
    for split in np.unique(split_of_study):
        rows = np.flatnonzero(split_of_study == split)
        for c in order:
            target = max(min_positive_studies, int(round(prevalence[c] * len(rows))))
            forced = np.zeros(len(rows), bool)
            for child in implied_by.get(c, []):
                forced |= labels[rows, child] == 1
            eligible = ~forced if (c == normal or c in compatible) else ~forced & (labels[rows, normal] == 0)
            extra = max(target - int(forced.sum()), 0)
            candidates = np.flatnonzero(eligible)
            chosen = candidates[np.argsort(-scores[rows[candidates], c], kind="stable")[:extra]]
            labels[rows[forced], c] = 1
            labels[rows[chosen], c] = 1
    return labels


def _draw_cohort(
    patients: int, seed: int, split_fractions: Sequence[float], compression: float, min_positive_studies: int
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """Patients, studies and films with ids, views, dates and labels (no images).

    Returns
    -------
    studies
        One row per study: patient index, split, subject/study ids, exam type, date and time.
    films
        One row per film: study index, film index in the study, dicom_id, view, ViewPosition, size.
    labels
        uint8 [S, 40] study labels in :data:`CXRLT2024_CLASSES` order.
    severity
        float32 [S, 40] sign strength in (0, 1] of each positive (0 elsewhere).
    """
    rng = np.random.default_rng([seed, 0])
    classes = list(CXRLT2024_CLASSES)
    # patients -> splits (disjoint), ids
    fractions = np.asarray(split_fractions, float)
    sizes = np.floor(fractions * patients + 0.5).astype(int)
    sizes[0] = patients - sizes[1:].sum()
    split_of_patient = np.empty(patients, object)
    split_of_patient[rng.permutation(patients)] = np.repeat(list(SPLIT_FILES), sizes)
    subject_ids = np.sort(rng.choice(10_000_000, patients, replace=False) + 10_000_000)
    studies_per_patient = 1 + np.minimum(rng.poisson(1.6, patients), 7)
    patient_of_study = np.repeat(np.arange(patients), studies_per_patient)
    n_studies = len(patient_of_study)
    # latent label scores
    loadings = _loadings(classes)
    unique = np.sqrt(np.clip(1.0 - (loadings**2).sum(1), 0.05, 1.0))
    persistence = np.array([_PERSISTENCE.get(c, 0.3) for c in classes])
    factors = math.sqrt(_FACTOR_PERSISTENCE) * rng.standard_normal((patients, len(_FACTORS)))[
        patient_of_study
    ] + math.sqrt(1 - _FACTOR_PERSISTENCE) * rng.standard_normal((n_studies, len(_FACTORS)))
    own = np.sqrt(persistence) * rng.standard_normal((patients, len(classes)))[patient_of_study] + np.sqrt(
        1 - persistence
    ) * rng.standard_normal((n_studies, len(classes)))
    scores = factors @ loadings.T + unique * own
    split_of_study = split_of_patient[patient_of_study]
    prevalence = np.array([compressed_prevalence(compression)[c] for c in classes])
    labels = _allocate_labels(scores, split_of_study, prevalence, min_positive_studies)
    severity = np.where(labels == 1, 0.15 + 0.85 * rng.beta(2.0, 1.3, labels.shape), 0.0).astype(np.float32)
    # exams: portable AP more likely with devices and intensive-care-like studies
    devices = labels[:, classes.index("Support Devices")]
    p_portable = 1.0 / (1.0 + np.exp(-(-1.0 + 1.8 * devices + 0.6 * factors[:, 0])))
    portable = rng.random(n_studies) < p_portable
    exam_views = []
    for is_ap in portable:
        exams = _AP_EXAMS if is_ap else _PA_EXAMS
        exam_views.append(exams[rng.choice(len(exams), p=[p for _, p in exams])][0])
    # study ids, dates (MIMIC shifts dates into 2110-2200), times
    study_ids = rng.choice(10_000_000, n_studies, replace=False) + 50_000_000
    first_day = rng.integers(0, 80 * 365, patients)
    gaps = np.where(portable, rng.integers(0, 4, n_studies), rng.integers(20, 500, n_studies))
    day = np.empty(n_studies, int)
    start = 0
    for p, count in enumerate(studies_per_patient):
        day[start : start + count] = first_day[p] + np.cumsum(np.r_[0, gaps[start + 1 : start + count]])
        start += count
    epoch = datetime.date(2110, 1, 1)
    dates = [int((epoch + datetime.timedelta(days=int(d))).strftime("%Y%m%d")) for d in day]
    seconds = rng.integers(0, 86_400_000, n_studies) / 1000.0
    times = [float(f"{int(s // 3600):02d}{int(s % 3600 // 60):02d}{s % 60:06.3f}") for s in seconds]
    studies = pd.DataFrame(
        {
            "patient": patient_of_study,
            "split": split_of_study,
            "subject_id": subject_ids[patient_of_study],
            "study_id": study_ids,
            "portable": portable,
            "StudyDate": dates,
            "StudyTime": times,
        }
    )
    # films
    study_of_film = np.repeat(np.arange(n_studies), [len(v) for v in exam_views])
    views = [view for exam in exam_views for view in exam]
    n_films = len(views)
    film_in_study = np.concatenate([np.arange(len(v)) for v in exam_views])
    words = rng.integers(0, 2**32, (n_films, 5), dtype=np.uint64)
    dicom_ids = ["-".join(f"{w:08x}" for w in row) for row in words]
    if len(set(dicom_ids)) != n_films:  # 160 random bits: never in practice
        raise RuntimeError(f"duplicate dicom_id drawn with seed={seed}; use another seed.")
    view_position = np.where(rng.random(n_films) < _EMPTY_VIEW_POSITION, "", np.asarray(views, object))
    aspect = rng.uniform(1.15, 1.25, n_films)
    films = pd.DataFrame(
        {
            "study": study_of_film,
            "film": film_in_study,
            "dicom_id": dicom_ids,
            "view": views,
            "ViewPosition": view_position,
            "aspect": aspect,
        }
    )
    return studies, films, labels, severity


def _chexpert_table(studies: pd.DataFrame, labels: np.ndarray, seed: int) -> pd.DataFrame:
    """MIMIC-CXR ``-chexpert.csv`` rows (one per study) derived from the CXR-LT labels."""
    rng = np.random.default_rng([seed, 5])
    classes = list(CXRLT2024_CLASSES)
    normal = labels[:, classes.index("Normal")] == 1
    table = pd.DataFrame({"subject_id": studies["subject_id"].to_numpy(), "study_id": studies["study_id"].to_numpy()})
    for name in CHEXPERT_CLASSES:
        if name == "No Finding":
            table[name] = np.where(normal, 1.0, np.nan)
            continue
        positive = labels[:, classes.index(name)] == 1
        draw = rng.random(len(table))
        on_positive = np.where(draw < 0.88, 1.0, -1.0)
        on_negative = np.where(draw < 0.72, np.nan, np.where((draw < 0.96) | normal, 0.0, -1.0))
        table[name] = np.where(positive, on_positive, on_negative)
    return table


def _render_one(task: tuple) -> None:
    """Render and write one film (runs in worker processes).

    ``positives`` holds ``(class name, sign key, strength)``: the sign key seeds where the class's sign sits in the
    study. The file format follows the name (``.png`` PNG; anything else JPEG, which the film reader finds from the
    content whatever the name, e.g. VinDr-CXR's ``.dicom``).
    """
    path, height, width, view, seed, patient, study, film, positives, quality = task
    anatomy = sample_anatomy(np.random.default_rng([seed, 1, patient]))
    rng = np.random.default_rng([seed, 4, study, film])
    anatomy = vary_anatomy(anatomy, rng, view)
    strengths = {name: float(min(1.0, s * rng.uniform(0.85, 1.15))) for name, _, s in positives}
    sign_rngs = {name: np.random.default_rng([seed, 3, study, key]) for name, key, _ in positives}
    pixels = render_film(height, width, view, anatomy, strengths, sign_rngs, rng)
    if str(path).lower().endswith(".png"):
        Image.fromarray(pixels).save(path, format="PNG")
    else:
        Image.fromarray(pixels).save(path, format="JPEG", quality=quality)


def _render_all(tasks: list[tuple], jobs: int) -> None:
    """Render ``tasks`` (see :func:`_render_one`) with ``jobs`` worker processes; the files do not depend on it."""
    if jobs == 1:
        for task in tasks:
            _render_one(task)
        return
    context = multiprocessing.get_context(
        "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    )
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        list(pool.map(_render_one, tasks, chunksize=max(1, len(tasks) // (8 * jobs))))


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse to mix a new phantom into a folder holding other files; with ``overwrite`` replace an old phantom.

    A table phantom lists what it wrote in its manifest (``written``); a CXR-LT phantom writes the fixed set below.
    Anything else in the folder (e.g. a film cache) stays.
    """
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return
    readme = out_dir / "README.txt"
    is_phantom = readme.is_file() and readme.read_text(errors="replace").startswith(_README_TITLES)
    if not is_phantom:
        raise FileExistsError(
            f"{out_dir} is not empty and holds no phantom data set (no {readme.name} written by this generator): "
            "choose an empty or new folder."
        )
    if not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds a phantom data set: pass overwrite=True (--overwrite) to replace it, "
            "or choose another folder."
        )
    manifest = out_dir / MANIFEST
    written = json.loads(manifest.read_text()).get("written") if manifest.is_file() else None
    fixed = ["files", *SPLIT_FILES.values(), "labels.csv", "mimic-cxr-2.0.0-metadata.csv",
             "mimic-cxr-2.0.0-chexpert.csv"]
    for name in [*(written or fixed), MANIFEST, "README.txt"]:
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


_README_TITLE = "Phantom CXR-LT 2024 data set (monai-cxrcml)"
_TABLE_README_TITLE = "Phantom data set shaped by a real label table (monai-cxrcml)"
_README_TITLES = (_README_TITLE, _TABLE_README_TITLE)


def _readme(args: dict, counts: pd.DataFrame, n_films: int, n_studies: int, patients: int) -> str:
    lines = [
        _README_TITLE,
        "=" * len(_README_TITLE),
        "",
        "Synthetic chest films in the MIMIC-CXR-JPG layout with CXR-LT 2024 label files. NOT real data: every",
        "film is drawn by monai_cxrcml.data.phantom; signs, prevalences and co-occurrences are made up to",
        "exercise the CXR-CML pipeline (see the module docstring for the rules).",
        "",
        "Regenerate: python -m monai_cxrcml.data.phantom OUT_DIR "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in args.items()),
        f"Patients {patients}, studies {n_studies}, films {n_films}.",
        "Prevalence: p_c = (n_max / N) * (n_c / n_max) ** compression (n_c: real CXR-LT 2024 training count).",
        "Normal = CheXpert 'No Finding': no pathology; Support Devices and "
        + ", ".join(NORMAL_COMPATIBLE[1:])
        + " allowed.",
        "Implications: " + "; ".join(f"{k} -> {', '.join(v)}" for k, v in IMPLIES.items()) + ".",
        "",
        "Files: train_labeled.csv, development_labeled_task1.csv, test_labeled_task1.csv, labels.csv (split column),",
        "mimic-cxr-2.0.0-metadata.csv, mimic-cxr-2.0.0-chexpert.csv, files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg.",
        "",
        "Positive images per class and split, and the visual sign of each class:",
        counts.to_string(),
        "",
    ]
    return "\n".join(lines)


def make_phantom(
    out_dir: str | os.PathLike,
    patients: int = 800,
    size: int = 256,
    seed: int = 0,
    split_fractions: Sequence[float] = (0.7, 0.1, 0.2),
    compression: float = 0.5,
    min_positive_studies: int = 1,
    jpeg_quality: int = 95,
    jobs: int = 1,
    overwrite: bool = False,
) -> Path:
    """Write a phantom CXR-LT 2024 + MIMIC-CXR-JPG data set (see the module docstring).

    Parameters
    ----------
    out_dir
        Folder to write (created; must be empty, new, or an earlier phantom with ``overwrite=True``).
    patients
        Number of patients (~2.6 studies and ~4.1 films each).
    size
        Longest side (height) of every film in pixels; widths follow an aspect of 1.15-1.25.
    seed
        Seed of everything; the same arguments give byte-identical files.
    split_fractions
        Share of patients in train, development and test (sums to 1).
    compression
        Prevalence exponent ``alpha`` of :func:`compressed_prevalence`.
    min_positive_studies
        Positive studies of each class at least in each split (0 lets rare classes vanish from small splits).
    jpeg_quality
        JPEG quality (1-100).
    jobs
        Worker processes drawing films (the output does not depend on it). With ``jobs > 1`` a script that calls
        this function must do so under ``if __name__ == "__main__":`` (processes are started, not forked).
    overwrite
        Replace a phantom data set already in ``out_dir``.

    Returns
    -------
    Path
        ``out_dir``.
    """
    out_dir = Path(out_dir)
    _validate(patients, size, split_fractions, min_positive_studies, jpeg_quality, jobs)
    _check_out_dir(out_dir, overwrite)
    started = time.perf_counter()
    studies, films, labels, severity = _draw_cohort(patients, seed, split_fractions, compression, min_positive_studies)
    study_rows = studies.iloc[films["study"].to_numpy()].reset_index(drop=True)
    films["subject_id"] = study_rows["subject_id"].astype(str)
    films["study_id"] = "s" + study_rows["study_id"].astype(str)
    films["fpath"] = mimic_relative_paths(films["subject_id"], films["study_id"], films["dicom_id"])
    films["height"] = size
    films["width"] = np.maximum(np.rint(size / films["aspect"].to_numpy()).astype(int), 1)
    # images
    for folder in sorted({str(Path(p).parent) for p in films["fpath"]}):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    tasks = [
        (
            str(out_dir / row.fpath),
            size,
            int(row.width),
            row.view,
            seed,
            int(studies.at[row.study, "patient"]),
            int(row.study),
            int(row.film),
            [(CXRLT2024_CLASSES[c], int(c), float(severity[row.study, c])) for c in np.flatnonzero(labels[row.study])],
            jpeg_quality,
        )
        for row in films.itertuples()
    ]
    _render_all(tasks, jobs)
    # CXR-LT label files
    label_frame = pd.DataFrame(labels[films["study"].to_numpy()], columns=list(CXRLT2024_CLASSES))
    cxrlt = pd.concat(
        [
            films[["dicom_id", "subject_id", "study_id", "ViewPosition"]],
            pd.DataFrame({"ViewCodeSequence_CodeMeaning": films["view"].map(_VIEW_MEANING), "fpath": films["fpath"]}),
            label_frame,
        ],
        axis=1,
    )
    split_of_film = study_rows["split"].to_numpy()
    for split, name in SPLIT_FILES.items():
        cxrlt[split_of_film == split].to_csv(out_dir / name, index=False)
    cxrlt.assign(split=split_of_film).to_csv(out_dir / "labels.csv", index=False)
    # MIMIC-CXR files
    procedure = np.where(study_rows["portable"], _PROCEDURE["AP"], _PROCEDURE["PA"])
    orientation = np.where(study_rows["portable"] & (films["film"].to_numpy() % 2 == 0), "Recumbent", "Erect")
    metadata = pd.DataFrame(
        {
            "dicom_id": films["dicom_id"],
            "subject_id": films["subject_id"],
            "study_id": study_rows["study_id"].astype(str),
            "PerformedProcedureStepDescription": procedure,
            "ViewPosition": films["ViewPosition"],
            "Rows": films["height"],
            "Columns": films["width"],
            "StudyDate": study_rows["StudyDate"],
            "StudyTime": study_rows["StudyTime"],
            "ProcedureCodeSequence_CodeMeaning": procedure,
            "ViewCodeSequence_CodeMeaning": films["view"].map(_VIEW_MEANING),
            "PatientOrientationCodeSequence_CodeMeaning": orientation,
        }
    )
    metadata.to_csv(out_dir / "mimic-cxr-2.0.0-metadata.csv", index=False)
    _chexpert_table(studies, labels, seed).to_csv(out_dir / "mimic-cxr-2.0.0-chexpert.csv", index=False)
    counts = pd.DataFrame(
        {split: cxrlt[split_of_film == split][list(CXRLT2024_CLASSES)].sum() for split in SPLIT_FILES}
    )
    counts["sign"] = pd.Series(SIGN_CATALOGUE)
    args = _manifest(patients, size, seed, split_fractions, compression, min_positive_studies, jpeg_quality)
    (out_dir / MANIFEST).write_text(json.dumps(args, indent=1) + "\n")
    (out_dir / "README.txt").write_text(_readme(args, counts, len(films), len(studies), patients))  # written last
    logger.info(
        "phantom: %d patients, %d studies, %d films written to %s in %.1f s",
        patients,
        len(studies),
        len(films),
        out_dir,
        time.perf_counter() - started,
    )
    return out_dir


TABLE_ID_COLUMNS: dict[str, str] = {"cxrlt": "dicom_id", "nih": "Image Index", "padchest": "ImageID",
                                    "chexpert": "Path", "vindr": "image_id"}
"""The column of each label format that names the film: the rows of the sampled films are copied by it."""

_UNCERTAIN_STRENGTH = 0.35
"""Sign strength of an uncertain (-1) label relative to a positive one: a faint sign."""

_TORCHXRAYVISION_TABLES = {
    "nih": "Data_Entry_2017_v2020.csv.gz",
    "padchest": "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz",
    "chexpert": "chexpert_train.csv.gz",
    "vindr": "vinbigdata-train.csv.gz",
}


def torchxrayvision_table(name: str) -> Path:
    """A real label table shipped in the torchxrayvision wheel (``nih``, ``padchest``, ``chexpert``, ``vindr``).

    The package is located, not imported. Raises ``FileNotFoundError`` saying how to install it when it is absent.
    """
    if name not in _TORCHXRAYVISION_TABLES:
        raise ValueError(f"{name!r}: torchxrayvision ships the tables {sorted(_TORCHXRAYVISION_TABLES)}.")
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the real {name} label table comes with torchxrayvision: pip install "
                                "torchxrayvision==1.5.7 (or this project's test extra), or pass the file itself.")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / _TORCHXRAYVISION_TABLES[name]


def phantom_label_file(out_dir: str | os.PathLike) -> Path:
    """The label file training reads in the phantom at ``out_dir``: a table phantom's copy of its source (named as
    the source, without compression suffix), a CXR-LT phantom's ``train_labeled.csv``."""
    manifest = Path(out_dir) / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"{out_dir} holds no phantom (no {MANIFEST}): make one with python -m "
                                "monai_cxrcml.data.phantom OUT [--labels FILE].")
    return Path(out_dir) / json.loads(manifest.read_text()).get("label_file", SPLIT_FILES["train"])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _table_manifest(labels: Path, label_format: str, patients: int, size: int, seed: int, jpeg_quality: int) -> dict:
    return dict(version=PHANTOM_VERSION, labels=labels.name, labels_sha256=_sha256(labels), label_format=label_format,
                patients=patients, size=size, seed=seed, jpeg_quality=jpeg_quality)


def _copy_rows(source: Path, target: Path, id_column: str, ids: set[str]) -> int:
    """Copy the header and the rows whose ``id_column`` is in ``ids`` from ``source`` to ``target``, cells verbatim."""
    with OPENERS.get(source.suffix.lower(), open)(source, "rt", newline="") as f_in, \
            open(target, "w", newline="") as f_out:
        reader, writer = csv.reader(f_in), csv.writer(f_out, lineterminator="\n")
        header = next(reader)
        column = [c.strip() for c in header].index(id_column)
        writer.writerow(header)
        copied = 0
        for row in reader:
            if row and row[column].strip() in ids:
                writer.writerow(row)
                copied += 1
    return copied


def make_table_phantom(
    out_dir: str | os.PathLike,
    labels: str | os.PathLike,
    patients: int = 300,
    size: int = 256,
    seed: int = 0,
    label_format: str | None = None,
    jpeg_quality: int = 95,
    jobs: int = 1,
    overwrite: bool = False,
) -> Path:
    """Write a phantom whose labels, patients and views are those of a real label table (synthetic films).

    ``patients`` patients are drawn at random (seeded) from ``labels``; all their rows are copied verbatim into a
    label file of the same format and name (:func:`phantom_label_file`), and one film is drawn per row where the
    format's reader expects it, with the row's view (frontal or lateral) and a sign per known positive label
    (faint for an uncertain one; signs by :func:`~monai_cxrcml.data.phantom_signs.sign_for`). So the phantom has the
    table's prevalences, co-occurrences, patients and views; only the films are made up.

    Parameters
    ----------
    out_dir
        Folder to write (new, empty, or an earlier phantom with ``overwrite=True``).
    labels
        A label file of any format of :data:`~monai_cxrcml.data.formats.LABEL_FORMATS`.
    patients
        Patients to draw.
    size, jpeg_quality, jobs, overwrite
        As in :func:`make_phantom`; ``seed`` draws the patients and the films.
    label_format
        The format of ``labels`` (default: from its header).

    Returns
    -------
    Path
        ``out_dir``.
    """
    out_dir, labels = Path(out_dir), Path(labels)
    _validate_films(size, jpeg_quality, jobs)
    if patients < 1:
        raise ValueError(f"patients={patients}: draw at least one patient.")
    fmt = label_format or detect_label_format(labels)
    _check_out_dir(out_dir, overwrite)
    started = time.perf_counter()
    source = read_label_table(labels, fmt, image_root=out_dir, frontal_only=False, uncertain="mask")
    subjects = np.sort(source.frame["subject_id"].unique())
    if patients > len(subjects):
        raise ValueError(f"{labels} holds {len(subjects)} patients: patients={patients} cannot be drawn from it.")
    chosen = set(subjects[np.random.default_rng([seed, 10]).choice(len(subjects), patients, replace=False)])
    table = source.subset(source.frame["subject_id"].isin(chosen).to_numpy())
    frontal_ids = set(read_label_table(labels, fmt, frontal_only=True, class_names=source.class_names[:1],
                                       uncertain="mask").frame["dicom_id"])
    frame = table.frame
    frontal = frame["dicom_id"].isin(frontal_ids).to_numpy()
    views = np.where(frontal, np.where(frame["view"].str.startswith("AP"), "AP", "PA"), "LATERAL")
    patient = pd.factorize(frame["subject_id"], sort=True)[0]
    study = pd.factorize(frame["study_id"], sort=True)[0]
    film = frame.groupby("study_id").cumcount().to_numpy()
    rng = np.random.default_rng([seed, 11])
    severity = 0.15 + 0.85 * rng.beta(2.0, 1.3, (study.max() + 1, len(table.class_names)))
    strength = np.where(table.mask, table.labels, _UNCERTAIN_STRENGTH) * severity[study]
    widths = np.maximum(np.rint(size / rng.uniform(1.15, 1.25, len(frame))).astype(int), 1)
    keys = [int.from_bytes(hashlib.sha256(n.encode()).digest()[:4], "little") for n in table.class_names]
    for folder in sorted({str(Path(p).parent) for p in frame["image"]}):
        Path(folder).mkdir(parents=True, exist_ok=True)
    tasks = [
        (image, size, int(widths[i]), views[i], seed, int(patient[i]), int(study[i]), int(film[i]),
         [(table.class_names[c], keys[c], float(strength[i, c])) for c in np.flatnonzero(strength[i] > 0)],
         jpeg_quality)
        for i, image in enumerate(frame["image"])
    ]
    _render_all(tasks, jobs)
    compressed = labels.suffix.lower() in OPENERS
    label_file = out_dir / (labels.name[: -len(labels.suffix)] if compressed else labels.name)
    copied = _copy_rows(labels, label_file, TABLE_ID_COLUMNS[fmt], set(frame["dicom_id"]))
    root = Path(os.path.abspath(out_dir))
    written = sorted({Path(p).relative_to(root).parts[0] for p in frame["image"]} | {label_file.name})
    manifest = {**_table_manifest(labels, fmt, patients, size, seed, jpeg_quality), "label_file": label_file.name,
                "written": written}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    (out_dir / "README.txt").write_text(_table_readme(manifest, labels, table, frontal, copied))  # written last
    logger.info("table phantom: %d patients, %d films (%d frontal) of %s written to %s in %.1f s", patients,
                len(frame), int(frontal.sum()), labels.name, out_dir, time.perf_counter() - started)
    return out_dir


def _table_readme(manifest: dict, labels: Path, table, frontal: np.ndarray, copied: int) -> str:
    counts = pd.DataFrame({"positive": table.positives(),
                           "frontal": pd.Series(table.subset(frontal).positives())})
    counts["sign"] = [sign_for(name).describe for name in counts.index]
    lines = [
        _TABLE_README_TITLE,
        "=" * len(_TABLE_README_TITLE),
        "",
        "Synthetic chest films, NOT real images: every film is drawn by monai_cxrcml.data.phantom. The labels,",
        f"patients and views are real: {manifest['patients']} patients drawn at random (seed {manifest['seed']}) from "
        f"{labels.name}",
        f"({manifest['label_format']} format, sha256 {manifest['labels_sha256'][:16]}...), whose {copied} rows are "
        f"copied verbatim into {manifest['label_file']}.",
        "Each class draws a visual sign: its CXR-LT 2024 sign where the class is, or maps to, a CXR-LT class",
        "(monai_cxrcml.data.vocabulary), else a sign generated from its name; uncertain labels draw a faint sign.",
        "",
        f"Regenerate: python -m monai_cxrcml.data.phantom OUT_DIR --labels {labels.name} --patients "
        f"{manifest['patients']} --size {manifest['size']} --seed {manifest['seed']}",
        f"Films {len(table)} ({int(frontal.sum())} frontal).",
        "",
        "Positive films per class (all views, frontal) and the sign of each class:",
        counts.to_string(),
        "",
    ]
    return "\n".join(lines)


def ensure_phantom(
    out_dir: str | os.PathLike,
    patients: int = 800,
    size: int = 256,
    seed: int = 0,
    split_fractions: Sequence[float] = (0.7, 0.1, 0.2),
    compression: float = 0.5,
    min_positive_studies: int = 1,
    jpeg_quality: int = 95,
    jobs: int = 1,
    labels: str | os.PathLike | None = None,
    label_format: str | None = None,
) -> Path:
    """The phantom data set in ``out_dir``: reused when it was made with the same arguments, else (re)written.

    This is what configs call (``dataset_dir: $monai_cxrcml.data.ensure_phantom(...)``) so that the first run
    writes the data set and later runs start at once. A folder holding anything but a phantom is refused as in
    :func:`make_phantom`, whose parameters these are. With ``labels``, the phantom is :func:`make_table_phantom`'s
    (``split_fractions``, ``compression`` and ``min_positive_studies`` do not apply; its label file is
    :func:`phantom_label_file`).
    """
    out_dir = Path(out_dir)
    if labels is None:
        wanted = _manifest(patients, size, seed, split_fractions, compression, min_positive_studies, jpeg_quality)
    else:
        labels = Path(labels)
        label_format = label_format or detect_label_format(labels)
        wanted = _table_manifest(labels, label_format, patients, size, seed, jpeg_quality)
    manifest = out_dir / MANIFEST
    complete = manifest.is_file() and (out_dir / "README.txt").is_file()
    found = json.loads(manifest.read_text()) if complete else {}
    if complete and {k: v for k, v in found.items() if k not in ("label_file", "written")} == wanted:
        return out_dir
    if labels is not None:
        return make_table_phantom(out_dir, labels, patients, size, seed, label_format, jpeg_quality, jobs,
                                  overwrite=True)
    return make_phantom(out_dir, patients, size, seed, split_fractions, compression, min_positive_studies,
                        jpeg_quality, jobs, overwrite=True)


MANIFEST = "phantom.json"
"""File in a phantom folder recording the generator version and the arguments it was made with."""

PHANTOM_VERSION = 1
"""Bumped whenever the generator's output changes for the same arguments."""


def _manifest(
    patients: int,
    size: int,
    seed: int,
    split_fractions: Sequence[float],
    compression: float,
    min_positive_studies: int,
    jpeg_quality: int,
) -> dict:
    return dict(
        version=PHANTOM_VERSION,
        patients=patients,
        size=size,
        seed=seed,
        split_fractions=" ".join(map(str, split_fractions)),
        compression=compression,
        min_positive_studies=min_positive_studies,
        jpeg_quality=jpeg_quality,
    )


def _validate(
    patients: int, size: int, split_fractions: Sequence[float], min_positive_studies: int, jpeg_quality: int, jobs: int
) -> None:
    fractions = list(split_fractions)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"split_fractions={fractions} must be three non-negative shares (train, development, test) summing to 1, "
            "e.g. 0.7 0.1 0.2."
        )
    if patients < 3:
        raise ValueError(f"patients={patients}: at least 3 are needed (one per split).")
    if min_positive_studies < 0:
        raise ValueError(f"min_positive_studies={min_positive_studies} must be >= 0.")
    _validate_films(size, jpeg_quality, jobs)


def _validate_films(size: int, jpeg_quality: int, jobs: int) -> None:
    if size < 32:
        raise ValueError(f"size={size}: films need a longest side of at least 32 pixels for the signs to be drawn.")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality={jpeg_quality} must lie in 1..100.")
    if jobs < 1:
        raise ValueError(f"jobs={jobs} must be >= 1.")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m monai_cxrcml.data.phantom OUT_DIR [--patients N] [--size S] [--seed K] ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m monai_cxrcml.data.phantom",
        description="Write a phantom CXR-LT 2024 data set (MIMIC-CXR-JPG layout, CXR-LT and MIMIC label files), or "
        "with --labels a phantom with the labels, patients and views of a real label table (synthetic films).",
    )
    parser.add_argument("out_dir", help="folder to write (new or empty)")
    parser.add_argument("--patients", type=int, default=800, help="number of patients (default 800)")
    parser.add_argument("--size", type=int, default=256, help="longest side of the films in pixels (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--split-fractions",
        type=float,
        nargs=3,
        default=(0.7, 0.1, 0.2),
        metavar=("TRAIN", "DEV", "TEST"),
        help="patient shares of train/development/test (default 0.7 0.1 0.2)",
    )
    parser.add_argument(
        "--compression", type=float, default=0.5, help="prevalence exponent alpha in (0, 1] (default 0.5)"
    )
    parser.add_argument(
        "--min-positive-studies", type=int, default=1, help="positive studies per class and split at least (default 1)"
    )
    parser.add_argument("--jpeg-quality", type=int, default=95, help="JPEG quality (default 95)")
    parser.add_argument(
        "--jobs", type=int, default=1, help="worker processes (default 1; output does not depend on it)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a phantom data set already in OUT_DIR")
    parser.add_argument("--labels", help="a real label file (NIH, PadChest, CheXpert, VinDr-CXR, CXR-LT): draw "
                        "--patients of its patients, copy their rows and draw their films (--split-fractions, "
                        "--compression, --min-positive-studies do not apply)")
    parser.add_argument("--label-format", help="the format of --labels (default: from its header)")
    parser.add_argument("--reports", action="store_true", help="also write a free-text report per study "
                        "(files/pXX/pSUBJECT/sSTUDY.txt, monai_cxrcml.data.phantom_reports)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.labels is not None:
            make_table_phantom(args.out_dir, args.labels, patients=args.patients, size=args.size, seed=args.seed,
                               label_format=args.label_format, jpeg_quality=args.jpeg_quality, jobs=args.jobs,
                               overwrite=args.overwrite)
            return 0
        make_phantom(
            args.out_dir,
            patients=args.patients,
            size=args.size,
            seed=args.seed,
            split_fractions=args.split_fractions,
            compression=args.compression,
            min_positive_studies=args.min_positive_studies,
            jpeg_quality=args.jpeg_quality,
            jobs=args.jobs,
            overwrite=args.overwrite,
        )
        if args.reports:
            from .phantom_reports import write_phantom_reports

            write_phantom_reports(args.out_dir)
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
