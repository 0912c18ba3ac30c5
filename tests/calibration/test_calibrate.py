"""Calibration of a trained model: fitted on the validation part of its fold, written as JSON, from the command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_cxrcml.calibration import calibrate
from monai_cxrcml.cli.calibration import main
from monai_cxrcml.metrics import Calibration
from monai_cxrcml.model_bundle import load_model

# ---------------------------------------------------------------------------------------------- from a trained run


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from monai_cxrcml.networks import create_clip

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save({"model": create_clip("cxrcml-tiny").state_dict()}, path)
    return path


def test_calibrate_fits_a_checkpoint_on_the_validation_part_and_writes_json(checkpoint: Path, phantom_dir: Path,
                                                                         tmp_path: Path):
    from monai_cxrcml.data import load_fold

    csv = phantom_dir / "train_labeled.csv"
    output = tmp_path / "calibration.json"
    calibration = calibrate(checkpoint, csv, model_name="cxrcml-tiny", fold=0, num_folds=5, normalization="clip",
                            per_class=True, device="cpu", output=output, batch_size=32)
    val = load_fold(csv, fold=0, num_folds=5).val
    saved = json.loads(output.read_text())
    assert saved["fitted_on"]["films"] == len(val) and saved["fitted_on"]["part"] == "val"
    assert len(saved["class_names"]) == 40 and saved["ece_after"]["ece"] <= saved["ece_before"]["ece"]
    assert np.isfinite(calibration.temperature).all()


def test_cli_writes_the_calibration_file(checkpoint: Path, phantom_dir: Path, tmp_path: Path, capsys):
    output = tmp_path / "calib.json"
    assert 0 == main(["--checkpoint", str(checkpoint), "--model-name", "cxrcml-tiny",
                      "--csv", str(phantom_dir / "train_labeled.csv"), "--normalization", "clip", "--bias",
                      "--bins", "10", "--num-workers", "0", "--device", "cpu", "--classes", "Atelectasis", "Normal",
                      "--output", str(output)])
    saved = Calibration.load(output)
    assert saved.class_names == ("Atelectasis", "Normal") and saved.fit_bias and saved.after["n_bins"] == 10
    assert "ece" in capsys.readouterr().out


def test_calibration_of_the_run_goes_into_its_bundle(trained, tmp_path):
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    before = load_model(run).scorer().network
    calibration = calibrate(run, per_class=True, device="cpu", batch_size=32)
    metadata = json.loads((run / "bundle" / "configs" / "metadata.json").read_text())
    assert metadata["version"] == "0.1.1" and "temperature calibration" in metadata["changelog"]["0.1.1"]
    assert metadata["cxrcml_model"]["protocol"]["calibration"] == "models/calibration.json"
    assert calibration.fitted_on["part"] == "val" and calibration.fitted_on["fold"] == 0  # the run's own fold
    after = load_model(run).scorer().network
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = torch.sigmoid(before.logits(images) / torch.as_tensor(calibration.temperature).float()
                                 + torch.as_tensor(calibration.bias).float())
        torch.testing.assert_close(after(images), expected)
        torch.testing.assert_close(torch.jit.load(str(run / "bundle/models/model.ts"))(images), expected)
