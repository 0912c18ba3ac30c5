"""Report text as captions: the IU reports of the torchxrayvision wheel, MIMIC-CXR report files, the caption recipe."""

from __future__ import annotations

import json
import logging
import tarfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
from _bundle_runs import TRAIN, small_run
from _real_tables import IU_REPORTS, requires_tables, table
from monai.bundle import ConfigWorkflow

from monai_cxrcml.data import load_fold, read_label_table
from monai_cxrcml.data.reports import attach_reports, mimic_report_paths, read_iu_reports, report_sections
from monai_cxrcml.transforms.captions import MetaLabelCaptiond, report_caption

MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 COMPARISON:  None.

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows.

 IMPRESSION:

 No acute cardiopulmonary process.
"""


@pytest.fixture(scope="module")
def iu_reports():
    return read_iu_reports(table(IU_REPORTS))


@pytest.fixture(scope="module")
def iu_xml_sections() -> dict[str, dict[str, str]]:
    """Each report's AbstractText sections and image ids, parsed here with ElementTree alone."""
    sections = {}
    with tarfile.open(table(IU_REPORTS)) as archive:
        for member in archive.getmembers():
            if member.name.endswith(".xml"):
                root = ElementTree.parse(archive.extractfile(member)).getroot()
                texts = {e.get("Label"): " ".join((e.text or "").split()) for e in root.iter("AbstractText")}
                texts["images"] = [e.get("id") for e in root.findall("parentImage")]
                sections[root.find("uId").get("id")] = texts
    return sections


@requires_tables
def test_iu_sections_match_the_xml(iu_reports, iu_xml_sections):
    assert len(iu_reports) == len(iu_xml_sections) == 3955 and iu_reports["report_id"].is_unique
    for row in iu_reports.itertuples():
        xml = iu_xml_sections[row.report_id]
        assert (row.findings, row.impression, row.indication, row.comparison) == (
            xml["FINDINGS"], xml["IMPRESSION"], xml["INDICATION"], xml["COMPARISON"]), row.report_id
        assert row.images == xml["images"]
    assert sum(len(images) for images in iu_reports["images"]) == 7470
    assert iu_reports.set_index("report_id").loc["CXR1", "mesh_major"] == ["normal"]


@requires_tables
def test_every_iu_report_with_text_gives_a_caption_and_the_others_are_named(iu_reports, caplog):
    textless = (iu_reports["findings"] == "") & (iu_reports["impression"] == "")
    assert int(textless.sum()) == 28 and len(iu_reports) - int(textless.sum()) == 3927
    with caplog.at_level(logging.INFO, logger="monai_cxrcml.data.reports"):
        read_iu_reports(table(IU_REPORTS))
    assert "28 of 3955 reports have neither findings nor impression" in caplog.text
    for row in iu_reports[~textless].itertuples():
        caption = report_caption(row.findings, row.impression)
        assert caption == (row.impression or row.findings) and caption.strip()
        assert report_caption(row.findings, row.impression, "findings") == (row.findings or row.impression)
    assert report_caption("", "", "both") == ""


@requires_tables
def test_caption_recipe_on_iu_reports_mixes_reports_and_meta_labels(iu_reports):
    items = [{"label": np.array([1.0, 0.0], np.float32), "findings": row.findings, "impression": row.impression}
             for row in iu_reports.head(400).itertuples()]
    only_reports = MetaLabelCaptiond(class_names=["Cardiomegaly", "Edema"], report_probability=1.0)
    for item, row in zip(items, iu_reports.head(400).itertuples()):
        expected = row.impression or row.findings or "cardiomegaly is present"  # a textless report: its labels
        assert only_reports(item)["caption"] == expected
    mixed = MetaLabelCaptiond(class_names=["Cardiomegaly", "Edema"], report_probability=0.5, report_section="both")
    mixed.set_random_state(0)
    captions = [mixed(item)["caption"] for item in items]
    from_labels = sum(c == "cardiomegaly is present" for c in captions)
    assert 150 < from_labels < 250  # about half of the films with report text
    mixed.set_random_state(0)
    assert [mixed(item)["caption"] for item in items] == captions  # seeded: repeatable


def test_mimic_report_sections_and_synonyms():
    sections = report_sections(MIMIC_REPORT)
    assert sections["preamble"] == "FINAL REPORT" and sections["examination"] == "CHEST (PA AND LAT)"
    assert sections["findings"] == ("There is no focal consolidation, pleural effusion or pneumothorax. Bilateral "
                                    "nodular opacities that most likely represent nipple shadows.")
    assert sections["impression"] == "No acute cardiopulmonary process."
    conclusion = report_sections("FINDINGS: Clear lungs.\nCONCLUSION: Normal.")
    assert conclusion["impression"] == "Normal." and conclusion["findings"] == "Clear lungs."
    assert report_sections("Portable chest: no change.")["findings"] == ""


def test_reports_of_a_cxrlt_table_reach_the_datalist_and_captions(phantom_dir: Path, tmp_path: Path):
    labels = read_label_table(phantom_dir / "train_labeled.csv")
    paths = mimic_report_paths(labels.frame["subject_id"], labels.frame["study_id"])
    assert paths.iloc[0] == f"files/p{labels.frame['subject_id'].iloc[0][:2]}/p{labels.frame['subject_id'].iloc[0]}/" \
                            f"{labels.frame['study_id'].iloc[0]}.txt"
    for path, study in zip(paths.unique(), labels.frame["study_id"].unique()):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(MIMIC_REPORT.replace("No acute", f"Study {study}: no acute"))
    fold = load_fold(phantom_dir / "train_labeled.csv", reports_dir=tmp_path, num_folds=2, val_fraction=0)
    item = fold.datalist("test")[0]
    assert item["impression"] == f"Study {item['study_id']}: no acute cardiopulmonary process."
    assert item["findings"].startswith("There is no focal consolidation")
    recipe = MetaLabelCaptiond(class_names=fold.class_names, report_probability=1.0)
    assert recipe(item)["caption"] == item["impression"]
    missing = next(iter(paths.unique()))
    (tmp_path / missing).unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of \d+ studies have no report"):
        attach_reports(labels, tmp_path)
    empty = attach_reports(labels, tmp_path, missing="empty")
    assert (empty.frame.loc[paths == missing, ["findings", "impression"]] == "").all().all()


def test_a_bundle_run_trains_on_report_captions(phantom_dir: Path, tmp_path: Path):
    labels = read_label_table(phantom_dir / "labels.csv", split=["train", "development", "test"], frontal_only=False)
    for path in mimic_report_paths(labels.frame["subject_id"], labels.frame["study_id"]).unique():
        (tmp_path / "reports" / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "reports" / path).write_text(MIMIC_REPORT)
    overrides = {**small_run(phantom_dir, tmp_path / "run"), "reports_dir": str(tmp_path / "reports"),
                 "caption_report": 1.0}
    workflow = ConfigWorkflow(config_file=TRAIN, workflow_type="train", run_id="training", **overrides)
    workflow.initialize()
    caption = workflow.parser.get_parsed_content("train#dataset")[0]["caption"]
    assert caption == "No acute cardiopulmonary process."
    workflow.run()
    workflow.finalize()
    settings = json.loads((tmp_path / "run" / "bundle" / "configs" / "provenance.json").read_text())["settings"]
    assert settings["caption_report"] == 1.0 and settings["reports_dir"] == str(tmp_path / "reports")
