"""A model trained on the CXR-LT phantom, evaluated on an NIH-format phantom with one command (classes mapped);
training on another format through the bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _bundle_runs import TRAIN, small_run
from _real_tables import NIH, requires_tables, table
from monai.bundle import ConfigWorkflow
from monai.data import Dataset
from monai.data.utils import list_data_collate

from monai_cxrcml.cli.evaluation import main
from monai_cxrcml.cli.inference import main as inference_main
from monai_cxrcml.data import load_test_set, read_label_table
from monai_cxrcml.data.nih import NIH_CLASSES
from monai_cxrcml.data.vocabulary import map_class_names
from monai_cxrcml.model_bundle import load_model
from monai_cxrcml.phantom import make_table_phantom, phantom_label_file

pytestmark = requires_tables


@pytest.fixture(scope="module")
def nih_phantom(tmp_path_factory) -> Path:
    """An NIH-format phantom of 40 patients drawn from the real NIH table, at the test phantom's film size."""
    return make_table_phantom(tmp_path_factory.mktemp("nih"), table(NIH), patients=40, size=128, seed=1)


def run(args: list[str]) -> int:
    return main([*args, "--bootstrap", "20", "--num-workers", "0", "--device", "cpu"])


def test_cxrlt_model_on_nih_phantom_in_one_command(trained, nih_phantom, tmp_path, capsys):
    label_file = phantom_label_file(nih_phantom)
    assert run(["--model", str(trained), "--csv", str(label_file), "--output-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "'Effusion' scored as 'Pleural Effusion' (mapped)" in printed
    assert "'No Finding' scored as 'Normal' (mapped)" in printed
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n_images"] == len(read_label_table(label_file))  # the whole file, frontal films
    assert set(metrics["per_class"]) == set(NIH_CLASSES)
    assert metrics["per_class"]["Effusion"]["scored_name"] == "Pleural Effusion"
    assert metrics["per_class"]["Mass"] == {**metrics["per_class"]["Mass"], "scored_name": "Mass",
                                            "mapping": "model_class"}
    per_class = pd.read_csv(tmp_path / "per_class.csv", index_col="class")
    assert per_class.loc["Pleural_Thickening", ["scored_name", "mapping"]].tolist() == ["Pleural Thickening", "mapped"]
    assert set(per_class["group"]) <= {"base", "rare"} and per_class["group"].notna().all()


def test_mapped_classes_are_scored_under_the_model_names(trained, nih_phantom, tmp_path):
    label_file = phantom_label_file(nih_phantom)
    assert run(["--model", str(trained), "--csv", str(label_file), "--output-dir", str(tmp_path)]) == 0
    saved = np.load(tmp_path / "predictions.npz")
    assert saved["class_names"].tolist() == list(NIH_CLASSES)
    model = load_model(trained)
    scored = [m.scored for m in map_class_names(NIH_CLASSES, model.class_names)]
    scorer = model.scorer(scored)
    films = load_test_set(label_file).test.to_datalist()[:6]
    batch = list_data_collate([scorer.transforms(on_error="raise")(item) for item in Dataset(films)])
    with torch.no_grad():
        expected = scorer.network(batch["image"].as_tensor() if hasattr(batch["image"], "as_tensor")
                                  else batch["image"]).numpy()
    rows = [saved["dicom_id"].tolist().index(item["dicom_id"]) for item in films]
    np.testing.assert_allclose(saved["pred"][rows], expected, atol=1e-5)


def test_unknown_class_in_the_mapping_is_named(trained, nih_phantom, tmp_path, capsys):
    class_map = tmp_path / "map.json"
    class_map.write_text(json.dumps({"Efusion": "Pleural Effusion"}))
    code = run(["--model", str(trained), "--csv", str(phantom_label_file(nih_phantom)), "--class-map", str(class_map),
                "--output-dir", str(tmp_path)])
    assert code == 2
    error = capsys.readouterr().err
    assert "the class mapping names ['Efusion'], which the data set does not have" in error and "'Effusion'" in error


def test_training_on_an_nih_format_file_through_the_bundle(nih_phantom, tmp_path):
    label_file = phantom_label_file(nih_phantom)
    workflow = ConfigWorkflow(config_file=TRAIN, workflow_type="train", run_id="training",
                              **{**small_run(nih_phantom, tmp_path), "train_csv": str(label_file)})
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["per_class"]) == set(NIH_CLASSES)
    metadata = json.loads((tmp_path / "bundle" / "configs" / "metadata.json").read_text())
    assert tuple(metadata["cxrcml_model"]["class_names"]) == NIH_CLASSES
    provenance = json.loads((tmp_path / "bundle" / "configs" / "provenance.json").read_text())
    assert provenance["settings"]["train_csv"] == str(label_file) and provenance["settings"]["class_names"] is None
    # the run's own file: evaluated on its test part again, under the classes it was trained on
    assert run(["--model", str(tmp_path), "--output-dir", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["n_images"] == metrics["n_images"]
    assert {c["mapping"] for c in again["per_class"].values()} == {"model_class"}


def test_submission_for_an_nih_file_has_its_columns_scored_under_the_model_names(trained, nih_phantom, tmp_path):
    label_file = phantom_label_file(nih_phantom)
    output = tmp_path / "submission.csv"
    assert inference_main([str(label_file), "--model", str(trained), "--output", str(output), "--num-workers", "0",
                           "--device", "cpu"]) == 0
    submission = pd.read_csv(output)
    assert submission.columns.tolist() == ["dicom_id", *NIH_CLASSES]
    assert len(submission) == len(pd.read_csv(label_file))  # every row, all views
    classes = pd.read_csv(tmp_path / "submission.classes.csv", index_col="class")
    assert classes.loc["Effusion"].tolist() == ["Pleural Effusion", "mapped"]
    assert run(["--model", str(trained), "--csv", str(label_file), "--output-dir", str(tmp_path / "eval")]) == 0
    saved = np.load(tmp_path / "eval" / "predictions.npz")
    rows = submission.set_index("dicom_id").loc[saved["dicom_id"], list(NIH_CLASSES)].to_numpy()
    np.testing.assert_allclose(rows, saved["pred"], atol=1e-5)  # the evaluation scores the same way


def test_bare_checkpoint_with_the_chexzero_protocol_on_nih(trained, nih_phantom, tmp_path):
    assert run(["--checkpoint", str(trained / "models" / "model.pt"), "--model-name", "cxrcml-cnn", "--image-size",
                "64", "--normalization", "clip", "--protocol", "chexzero", "--csv",
                str(phantom_label_file(nih_phantom)), "--output-dir", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["protocol"]["name"] == "chexzero"
    # a bare checkpoint's classes are CXR-LT 2024's: NIH's Effusion is scored as CXR-LT's Pleural Effusion
    assert metrics["per_class"]["Effusion"]["scored_name"] == "Pleural Effusion"
