"""Free-text reports of a phantom: MIMIC-CXR layout, read by the project's report reader, deterministic by seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monai_cxrcml.cli.phantom import main as phantom_main
from monai_cxrcml.data import read_label_table
from monai_cxrcml.data.classes import finding_phrase
from monai_cxrcml.data.reports import attach_reports, mimic_report_paths, read_report_file, report_sections
from monai_cxrcml.phantom import phantom_report, write_phantom_reports


@pytest.fixture(scope="module")
def reports(phantom_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_phantom_reports(phantom_dir, reports_dir=tmp_path_factory.mktemp("reports"))


def _studies(phantom_dir: Path) -> pd.DataFrame:
    labels = pd.read_csv(phantom_dir / "labels.csv", dtype={"subject_id": str, "study_id": str})
    return labels.drop_duplicates(["subject_id", "study_id"]).reset_index(drop=True)


def test_every_study_has_a_report_that_the_reader_splits(phantom_dir: Path, reports: Path):
    studies = _studies(phantom_dir)
    paths = mimic_report_paths(studies["subject_id"], studies["study_id"])
    assert len(paths) == len(list(reports.rglob("s*.txt")))
    classes = read_label_table(phantom_dir / "labels.csv").class_names
    for (_, study), path in zip(studies.iterrows(), paths):
        sections = read_report_file(reports / path)
        assert sections["findings"] and sections["impression"]
        named = [finding_phrase(c) for c in classes if study[c] == 1 and c != "Normal"]
        for phrase in named:  # every positive is named in both sections
            assert phrase in sections["findings"].lower() and phrase in sections["impression"].lower()
        if not named:
            assert "normal" in sections["impression"].lower()


def test_attach_reports_reads_them_beside_the_label_table(phantom_dir: Path, reports: Path):
    table = attach_reports(read_label_table(phantom_dir / "train_labeled.csv"), reports)
    assert (table.frame["impression"].str.len() > 0).all() and (table.frame["findings"].str.len() > 0).all()


def test_reports_are_deterministic_by_seed(phantom_dir: Path, reports: Path, tmp_path: Path):
    again = write_phantom_reports(phantom_dir, reports_dir=tmp_path / "again")
    other = write_phantom_reports(phantom_dir, seed=123, reports_dir=tmp_path / "other")
    files = sorted(p.relative_to(reports) for p in reports.rglob("*.txt"))
    assert all((reports / f).read_bytes() == (again / f).read_bytes() for f in files)
    assert any((reports / f).read_bytes() != (other / f).read_bytes() for f in files)


def test_report_wording_varies_and_names_negatives_only_from_the_pool():
    texts = {phantom_report(["Pleural Effusion", "Cardiomegaly"], ["Pneumothorax"], np.random.default_rng(s))
             for s in range(20)}
    assert len(texts) > 5
    for text in texts:
        sections = report_sections(text)
        assert "pleural effusion" in sections["impression"].lower()
        assert "edema" not in text.lower()


def test_phantom_command_line_writes_reports(tmp_path: Path):
    out = tmp_path / "phantom"
    assert phantom_main([str(out), "--patients", "6", "--size", "64", "--reports"]) == 0
    assert len(list((out / "files").rglob("s*.txt"))) == len(_studies(out))
