"""``python -m monai_cxrcml.data.summary``: format, rows, frontal rows, patients, per-class counts and groups."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from _cxrlt_fixtures import write_csv
from _format_fixtures import chexpert_frame
from _real_tables import NIH, requires_tables, table

from monai_cxrcml.cli.summary import main
from monai_cxrcml.data.summary import summarize_label_file

REPO = Path(__file__).resolve().parents[2]


def test_summary_counts_and_groups_of_a_chexpert_file(tmp_path):
    frame = chexpert_frame(patients=30)
    summary = summarize_label_file(write_csv(frame, tmp_path / "train.csv"), uncertain="positive")
    assert (summary["format"], summary["rows"], summary["patients"]) == ("chexpert", 90, 30)
    frontal = frame["Frontal/Lateral"] == "Frontal"
    assert summary["frontal_rows"] == int(frontal.sum()) and summary["views"] == {"AP": 30, "LATERAL": 30, "PA": 30}
    edema = next(c for c in summary["classes"] if c["name"] == "Edema")
    assert edema["positive"] == int(frame["Edema"].isin([1, -1]).sum())  # uncertain=positive
    assert edema["frontal_positive"] == int(frame.loc[frontal, "Edema"].isin([1, -1]).sum())
    assert (edema["uncertain"], edema["blank"]) == (int((frame["Edema"] == -1).sum()), int(frame["Edema"].isna().sum()))
    assert summary["group_rule"] == "scaled_counts" and summary["policies"] == {"uncertain": "positive",
                                                                                 "blank": "negative"}
    assert {c["group"] for c in summary["classes"]} == {"base"}  # every class is common on 60 frontal films


def test_cli_json_and_table(tmp_path, capsys):
    path = write_csv(chexpert_frame(), tmp_path / "train.csv")
    assert main([str(path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(summarize_label_file(path)))
    assert main([str(path)]) == 0
    text = capsys.readouterr().out
    assert "format: chexpert (CheXpert)" in text and "rows 36, frontal rows 24; patients 12" in text
    assert "Pleural Effusion" in text and "group" in text


def test_cli_refuses_a_file_of_no_format(tmp_path, capsys):
    path = write_csv(pd.DataFrame({"file": ["a.png"], "label": [1]}), tmp_path / "mine.csv")
    assert main([str(path)]) == 2
    error = capsys.readouterr().err
    assert "not a label file" in error and "nih      NIH ChestX-ray14: Image Index, Finding Labels" in error


@requires_tables
def test_module_command_on_the_real_nih_table():
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "monai_cxrcml.data.summary", str(table(NIH))], capture_output=True,
                            text=True, env=environment, check=True)
    assert "format: nih (NIH ChestX-ray14)" in result.stdout
    assert "rows 112,120, frontal rows 112,120; patients 30,805" in result.stdout
    assert any(line.split()[:3] == ["Effusion", "13,317", "13,317"] for line in result.stdout.splitlines())
    assert any(line.split()[0] == "Hernia" and line.split()[-2:] == ["rare", "rare"]
               for line in result.stdout.splitlines())
