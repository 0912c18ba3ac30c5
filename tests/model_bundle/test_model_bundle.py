"""A trained model is a MONAI bundle: it carries its settings, passes model-zoo's verification, and inference,
evaluation, calibration and export take it alone."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from _bundle_runs import CONFIGS
from monai.bundle import ckpt_export, create_workflow, verify_metadata, verify_net_in_out
from PIL import Image

from monai_cxrcml.cli.inference import main as inference_main
from monai_cxrcml.model_bundle import load_model

SCHEMA = CONFIGS.parent / "docs" / "meta_schema_20240725.json"


@pytest.fixture(scope="module")
def bundle(trained: Path) -> Path:
    return trained / "bundle"


def test_training_leaves_a_bundle_with_its_settings_metrics_and_provenance(trained: Path, bundle: Path,
                                                                           phantom_dir: Path):
    for name in ("LICENSE", "configs/metadata.json", "configs/inference.yaml", "configs/logging.conf",
                 "configs/provenance.json", "models/model.pt", "models/model.ts", "models/text.pt",
                 "docs/README.md", "docs/data_license.txt"):
        assert (bundle / name).is_file(), name
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    model = metadata["cxrcml_model"]
    assert (model["model_name"], model["image_size"]) == ("cxrcml-cnn", 64)
    assert model["protocol"]["name"] == "present_absent_pooled" and model["protocol"]["normalization"] == "clip"
    outputs = metadata["network_data_format"]["outputs"]["pred"]
    assert list(outputs["channel_def"].values()) == model["class_names"] and outputs["num_channels"] == 40
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metadata["eval_metrics"]["macro_auc"] == metrics["macro_auc"]
    assert metrics["protocol"]["name"] == "present_absent_pooled"  # the protocol is written with the metrics
    provenance = json.loads((bundle / "configs" / "provenance.json").read_text())
    train_csv = phantom_dir / "train_labeled.csv"
    assert provenance["training_data"]["sha256"] == hashlib.sha256(train_csv.read_bytes()).hexdigest()
    assert provenance["settings"]["fold"] == 0 and provenance["settings"]["epochs"] == 1
    assert provenance["packages"]["monai"] and provenance["metrics"]["macro_auc"] == metrics["macro_auc"]
    card = (bundle / "docs" / "README.md").read_text()
    assert "## Intended use and limits" in card and "synthetic" in card and f"{metrics['macro_auc']:.3f}" in card


def test_model_zoo_verification_of_the_trained_bundle(bundle: Path, tmp_path: Path):
    """The steps of Project-MONAI/model-zoo's ci/verify_bundle.py (full mode), on the bundle as written."""
    bundle = Path(shutil.copytree(bundle, tmp_path / "cxrcml_demo"))
    for name in ("configs/metadata.json", "LICENSE", "models/model.pt", "configs/inference.yaml"):
        assert (bundle / name).exists(), name  # necessary and preferred files
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert metadata["version"] in metadata["changelog"]  # the version is in the changelog
    large = {p.relative_to(bundle).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
             for p in bundle.rglob("*") if p.is_file() and p.stat().st_size > 25 * 2**20}
    listed = yaml.safe_load((bundle / "large_files.yml").read_text())["large_files"] if large else []
    assert {entry["path"]: entry["hash_val"] for entry in listed} == large  # files over 25 MB are listed
    (bundle / "eval").mkdir()
    shutil.copy(SCHEMA, bundle / "eval" / "schema.json")  # the schema, as model-zoo prepares it (no download)
    verify_metadata(meta_file=str(bundle / "configs/metadata.json"), filepath=str(bundle / "eval/schema.json"))
    config = str(bundle / "configs" / "inference.yaml")
    meta = str(bundle / "configs" / "metadata.json")
    workflow = create_workflow(workflow_type="inference", config_file=config, meta_file=meta,
                               logging_file=str(bundle / "configs/logging.conf"), bundle_root=str(bundle))
    assert workflow.check_properties() == []
    verify_net_in_out(net_id="network_def", meta_file=meta, config_file=config, bundle_root=str(bundle),
                      device="cpu")
    ckpt_export(net_id="network_def", filepath=str(bundle / "models/verify_model.ts"),
                ckpt_file=str(bundle / "models/model.pt"), meta_file=meta, config_file=config,
                bundle_root=str(bundle))
    shipped, exported = (torch.jit.load(str(bundle / "models" / name)) for name in ("model.ts", "verify_model.ts"))
    images = torch.randn(3, 3, 64, 64)
    classifier = load_model(bundle).scorer().network
    with torch.no_grad():
        torch.testing.assert_close(shipped(images), classifier(images))
        torch.testing.assert_close(exported(images), classifier(images))


def test_inference_with_the_run_folder_alone_reproduces_its_test_evaluation(trained, phantom_dir, run_films,
                                                                            tmp_path):
    films, saved = run_films
    output = tmp_path / "s.csv"
    assert 0 == inference_main([str(films), "--image-root", str(phantom_dir), "--model", str(trained),
                                "--output", str(output), "--num-workers", "0", "--device", "cpu"])
    submission = pd.read_csv(output)
    assert submission["dicom_id"].tolist() == saved["dicom_id"].tolist()
    assert submission.columns[1:].tolist() == saved["class_names"].tolist()
    np.testing.assert_allclose(submission.iloc[:, 1:].to_numpy(), saved["pred"], atol=1e-5, rtol=0)
    assert json.loads(output.with_suffix(".protocol.json").read_text())["name"] == "present_absent_pooled"


@pytest.mark.parametrize(("flag", "value", "ours"), [("--image-size", "128", "64"),
                                                     ("--normalization", "chexzero", "'clip'"),
                                                     ("--model-name", "cxrcml-tiny", "'cxrcml-cnn'")])
def test_settings_that_define_the_model_cannot_be_contradicted(trained, run_films, tmp_path, capsys, flag, value,
                                                               ours):
    films, _ = run_films
    status = inference_main([str(films), "--model", str(trained), flag, value, "--output", str(tmp_path / "s.csv"),
                             "--num-workers", "0", "--device", "cpu"])
    message = capsys.readouterr().err
    assert status == 2 and value in message and ours in message and "contradicts" in message
    assert not (tmp_path / "s.csv").exists()


def test_overrides_are_scored_and_logged(trained, phantom_dir, run_films, tmp_path, caplog):
    films, _ = run_films
    output = tmp_path / "task3.csv"
    with caplog.at_level(logging.INFO, logger="monai_cxrcml"):
        assert 0 == inference_main([str(films), "--image-root", str(phantom_dir), "--model", str(trained),
                                    "--classes", "Bulla", "Hilum", "--protocol", "chexzero_corrected", "--output",
                                    str(output), "--num-workers", "0", "--device", "cpu"])
    assert pd.read_csv(output).columns.tolist() == ["dicom_id", "Bulla", "Hilum"]  # unseen classes: the text tower
    log = caplog.text
    assert "protocol 'chexzero_corrected' instead of the model's 'present_absent_pooled'" in log
    assert "the model keeps its own 'clip'" in log and "scoring 2 classes instead of the model's 40" in log
    assert json.loads(output.with_suffix(".protocol.json").read_text())["normalization"] == "clip"


def test_monai_bundle_run_of_the_model_bundle_scores_like_the_cli(bundle, phantom_dir, run_films, tmp_path):
    films, saved = run_films
    command = [sys.executable, "-m", "monai.bundle", "run", "--bundle_root", str(bundle), "--config_file",
               str(bundle / "configs" / "inference.yaml"), "--input", str(films), "--dataset_dir", str(phantom_dir),
               "--output_dir", str(tmp_path), "--num_workers", "0", "--device", "$torch.device('cpu')"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    submission = pd.read_csv(tmp_path / "submission.csv")
    np.testing.assert_allclose(submission.iloc[:, 1:].to_numpy(), saved["pred"], atol=1e-5, rtol=0)


def test_a_bundle_without_weights_and_a_bare_checkpoint_without_model_name_are_explained(tmp_path, capsys):
    films = tmp_path / "films"
    films.mkdir()
    Image.fromarray(np.full((64, 64), 128, dtype=np.uint8)).save(films / "film.jpg")
    assert inference_main([str(films), "--model", str(CONFIGS.parent), "--output", str(tmp_path / "s.csv")]) == 2
    assert "without trained weights" in capsys.readouterr().err
    torch.save({"model": {}}, tmp_path / "model.pt")
    assert inference_main([str(films), "--model", str(tmp_path / "model.pt"), "--output", str(tmp_path / "s.csv")]) == 2
    assert "--model-name" in capsys.readouterr().err
