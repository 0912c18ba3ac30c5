"""Free-text reports for a phantom data set: MIMIC-CXR's ``files/pXX/pSUBJECT/sSTUDY.txt`` built from the labels.

CheXzero trained on report impressions, not label captions; to stand in for that pretraining on the phantom,
:func:`write_phantom_reports` writes one report per study (from its ``labels.csv``) in MIMIC-CXR's layout and
section style (``FINDINGS:`` / ``IMPRESSION:``), read by :func:`~monai_cxrcml.data.reports.attach_reports` as
MIMIC-CXR's are. Every positive finding is named in varied report-like sentences with 0-2 pertinent negatives; the
impression names the positives or reads normal. The text depends only on the study's labels and ``seed``.

Command line: ``python -m monai_cxrcml.phantom OUT --reports``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.classes import finding_phrase
from ..data.reports import mimic_report_paths
from .generator import CXRLT_ID_COLUMNS

__all__ = ["phantom_report", "write_phantom_reports"]

_FINDING_SENTENCES = (
    "There is {}.",
    "{} is noted.",
    "{} is seen.",
    "Findings are consistent with {}.",
    "Evidence of {}.",
    "{} is again demonstrated.",
    "There is evidence of {}.",
    "{} is present.",
)
_NEGATIVE_SENTENCES = ("No {}.", "There is no {}.", "No evidence of {}.", "{} is not seen.")
_FILLERS = (
    "The lungs are otherwise clear.",
    "Osseous structures are unremarkable.",
    "No other acute abnormality.",
    "The visualized upper abdomen is unremarkable.",
    "",
)
_NORMAL_FINDINGS = (
    "The lungs are clear. The cardiomediastinal silhouette is normal.",
    "Heart size is normal. The lungs are clear without focal consolidation.",
    "Lungs are well expanded and clear. Normal cardiomediastinal contours.",
)
_NORMAL_IMPRESSIONS = ("Normal chest radiograph.", "No acute cardiopulmonary process. Normal study.",
                       "Normal chest.")
_IMPRESSION_FORMS = ("{}.", "Findings consistent with {}.", "{}, as described above.")
_NORMAL_CLASSES = ("Normal", "No Finding")


def _sentence(template: str, phrase: str) -> str:
    text = template.format(phrase)
    return text[0].upper() + text[1:]


def _join(phrases: Sequence[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def phantom_report(positive: Sequence[str], negative_pool: Sequence[str], rng: np.random.Generator,
                   examination: str = "CHEST (PA AND LAT)") -> str:
    """The report text of one study with the ``positive`` class names; pertinent negatives come from
    ``negative_pool`` (class names the study does not have). Normal classes among ``positive`` are not named as
    findings: a study with nothing else reads as a normal chest."""
    findings = [finding_phrase(c) for c in positive if c not in _NORMAL_CLASSES]
    order = rng.permutation(len(findings))
    findings = [findings[i] for i in order]
    negatives = [finding_phrase(c) for c in negative_pool if c not in _NORMAL_CLASSES]
    chosen = rng.choice(len(negatives), size=min(int(rng.integers(0, 3)), len(negatives)), replace=False) \
        if negatives else []
    if findings:
        body = [_sentence(_FINDING_SENTENCES[rng.integers(len(_FINDING_SENTENCES))], f) for f in findings]
    else:
        body = [_NORMAL_FINDINGS[rng.integers(len(_NORMAL_FINDINGS))]]
    body += [_sentence(_NEGATIVE_SENTENCES[rng.integers(len(_NEGATIVE_SENTENCES))], negatives[i]) for i in chosen]
    body.append(_FILLERS[rng.integers(len(_FILLERS))])
    if findings:
        impression = _sentence(_IMPRESSION_FORMS[rng.integers(len(_IMPRESSION_FORMS))], _join(findings))
    else:
        impression = _NORMAL_IMPRESSIONS[rng.integers(len(_NORMAL_IMPRESSIONS))]
    return (f"                                 FINAL REPORT\n EXAMINATION:  {examination}\n\n"
            f" FINDINGS:\n {' '.join(s for s in body if s)}\n\n IMPRESSION:\n {impression}\n")


def write_phantom_reports(phantom_dir: str | os.PathLike, seed: int | None = None,
                          reports_dir: str | os.PathLike | None = None) -> Path:
    """Write a report for every study of a phantom (its ``labels.csv``); return the reports root.

    Parameters
    ----------
    phantom_dir
        A phantom written by :func:`~monai_cxrcml.phantom.make_phantom` (its ``labels.csv`` and
        ``phantom.json``).
    seed
        Seed of the wording; None: the phantom's own seed (``phantom.json``).
    reports_dir
        Reports root to write ``files/pXX/pSUBJECT/sSTUDY.txt`` under; None: ``phantom_dir`` itself (beside the
        films' study folders, as MIMIC-CXR's reports sit beside MIMIC-CXR-JPG's in one tree).
    """
    phantom_dir = Path(phantom_dir)
    labels_csv = phantom_dir / "labels.csv"
    if not labels_csv.is_file():
        raise FileNotFoundError(f"{labels_csv}: not a phantom data set (write one with "
                                "`python -m monai_cxrcml.phantom`).")
    if seed is None:
        seed = int(json.loads((phantom_dir / "phantom.json").read_text())["seed"])
    root = Path(reports_dir) if reports_dir is not None else phantom_dir
    table = pd.read_csv(labels_csv, dtype={"subject_id": str, "study_id": str})
    meta = {*CXRLT_ID_COLUMNS, "split"}
    classes = [c for c in table.columns if c not in meta]
    studies = table.drop_duplicates(["subject_id", "study_id"]).reset_index(drop=True)
    paths = mimic_report_paths(studies["subject_id"], studies["study_id"])
    portable = set(table.loc[table["ViewPosition"] == "AP", "study_id"])
    values = studies[classes].to_numpy() > 0.5
    for i, (row, path) in enumerate(zip(studies.itertuples(index=False), paths)):
        number = int(str(row.study_id).removeprefix("s"))
        rng = np.random.default_rng([seed, number])
        positive = [c for c, v in zip(classes, values[i]) if v]
        absent = [c for c, v in zip(classes, values[i]) if not v]
        exam = "CHEST (PORTABLE AP)" if row.study_id in portable else "CHEST (PA AND LAT)"
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(phantom_report(positive, absent, rng, exam), encoding="utf-8")
    return root
