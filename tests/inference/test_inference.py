"""Inference acceptance: CXR-LT submissions, real-world film folders with broken files, any classes, aggregation,
calibration, the CLI."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _bundle_runs import CONFIGS
from _films import write_dicom, write_png16
from PIL import Image
from sklearn.metrics import roc_auc_score

from monai_cxrcml.cli.inference import main
from monai_cxrcml.data import CXRLT2024_CLASSES, CXRLT2024_UNSEEN_CLASSES
from monai_cxrcml.inference import NoReadableFilmError, predict
from monai_cxrcml.metrics import Calibration

MODEL = "cxrcml-tiny"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny CLIP saved as a training checkpoint: enough for shapes, order and plumbing."""
    from monai_cxrcml.networks import create_clip

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save({"model": create_clip(MODEL).state_dict()}, path)
    return path


def _predict(source, checkpoint, **kwargs) -> pd.DataFrame:
    return predict(source, checkpoint, MODEL, **{"normalization": "clip", "device": "cpu", "batch_size": 32, **kwargs})


@pytest.fixture(scope="module")
def test_csv(phantom_dir: Path) -> Path:
    return phantom_dir / "test_labeled_task1.csv"


@pytest.fixture(scope="module")
def scored(checkpoint: Path, test_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    """The phantom's CXR-LT test CSV scored once (all 40 classes): the returned table and the written file."""
    output = tmp_path_factory.mktemp("submission") / "submission.csv"
    return _predict(test_csv, checkpoint, output=output), output


@pytest.fixture(scope="module")
def small_csv(test_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first studies of the test CSV (about 30 films, several studies with more than one film), elsewhere."""
    frame = pd.read_csv(test_csv, dtype=str)
    studies = frame["study_id"].drop_duplicates().head(12)
    path = tmp_path_factory.mktemp("small") / "small.csv"
    frame[frame["study_id"].isin(studies)].to_csv(path, index=False)
    return path


def _film(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth chest-like film [H, W] in [0, 1] (bright mediastinum, dark lungs)."""
    rows, cols = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(seed).random((height, width)) * 0.1
    return np.clip(0.3 + 0.5 * np.exp(-(((cols - width / 2) / (width / 6)) ** 2)) + 0.1 * rows / height + noise, 0, 1)


@pytest.fixture(scope="module")
def real_world_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Readable films in the formats users bring, plus three broken files, some in a sub-folder."""
    root = tmp_path_factory.mktemp("films")
    (root / "ward").mkdir()
    Image.fromarray((_film(1201, 1500) * 255).astype(np.uint8), "L").save(root / "large_8bit.jpg", quality=90)
    rgb = (_film(300, 240, 1)[..., None] * [255, 250, 245]).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(root / "ward" / "colour.JPEG", quality=90)
    write_png16(root / "ward" / "export_16bit.png", np.rint(_film(256, 200, 2) * 4095))
    stored = np.rint((1 - _film(256, 256, 3)) * 4095).astype(np.uint16)
    write_dicom(root / "ward" / "IM0001", stored, "MONOCHROME1", WindowCenter=2048, WindowWidth=4096)  # no suffix
    (root / "empty.jpg").write_bytes(b"")
    data = (root / "large_8bit.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (root / "notes.png").write_text("this is not an image\n")
    return root


READABLE = ["large_8bit.jpg", "ward/IM0001", "ward/colour.JPEG", "ward/export_16bit.png"]
BROKEN = ["empty.jpg", "notes.png", "truncated.jpg"]


def test_cxrlt_csv_gives_a_submission_in_cxrlt_column_order_and_csv_row_order(scored, test_csv):
    returned, output = scored
    written = pd.read_csv(output)
    expected_ids = pd.read_csv(test_csv)["dicom_id"].tolist()
    assert written.columns.tolist() == ["dicom_id", *CXRLT2024_CLASSES]
    assert written["dicom_id"].tolist() == expected_ids  # every row, every view, in file order
    assert returned["dicom_id"].tolist() == expected_ids
    probabilities = written[list(CXRLT2024_CLASSES)].to_numpy()
    assert np.isfinite(probabilities).all() and ((probabilities > 0) & (probabilities < 1)).all()
    np.testing.assert_allclose(probabilities, returned[list(CXRLT2024_CLASSES)].to_numpy(), atol=1e-6)
    assert not output.with_suffix(".unreadable.csv").exists() and returned.attrs["unreadable"] == []


def test_a_csv_row_whose_film_cannot_be_read_keeps_its_row_with_empty_probabilities(
    checkpoint, small_csv, phantom_dir, tmp_path
):
    frame = pd.read_csv(small_csv, dtype=str)
    frame.loc[1, "fpath"] = "files/p10/p10000000/s50000000/missing.jpg"
    csv = tmp_path / "with_missing.csv"
    frame.to_csv(csv, index=False)
    output = tmp_path / "submission.csv"
    returned = _predict(csv, checkpoint, image_root=phantom_dir, output=output)
    written = pd.read_csv(output)
    assert written["dicom_id"].tolist() == frame["dicom_id"].tolist()  # every row of the CSV, in its order
    probabilities = written[list(CXRLT2024_CLASSES)]
    assert probabilities.iloc[1].isna().all() and np.isfinite(probabilities.drop(index=1).to_numpy()).all()
    unreadable = pd.read_csv(tmp_path / "submission.unreadable.csv", dtype=str)
    assert unreadable["dicom_id"].tolist() == [frame.loc[1, "dicom_id"]] and "missing.jpg" in unreadable["image"][0]
    assert [r["dicom_id"] for r in returned.attrs["unreadable"]] == [frame.loc[1, "dicom_id"]]


def test_folder_of_real_world_films_gives_one_row_per_readable_file_and_names_the_broken_ones(
    checkpoint, real_world_folder, tmp_path, caplog
):
    output = tmp_path / "folder.csv"
    with caplog.at_level(logging.WARNING):
        # batches of two: the second (notes.png, truncated.jpg) has no readable film at all
        returned = _predict(real_world_folder, checkpoint, output=output, batch_size=2)
    written = pd.read_csv(output)
    assert written.columns.tolist() == ["path", *CXRLT2024_CLASSES]
    assert written["path"].tolist() == READABLE
    assert np.isfinite(written[list(CXRLT2024_CLASSES)].to_numpy()).all()
    unreadable = pd.read_csv(tmp_path / "folder.unreadable.csv")
    assert unreadable["path"].tolist() == BROKEN
    assert unreadable["image"].tolist() == [str(real_world_folder / name) for name in BROKEN]
    reasons = dict(zip(unreadable["path"], unreadable["reason"].str.lower()))
    assert "empty" in reasons["empty.jpg"] and "truncated" in reasons["truncated.jpg"]
    assert all(isinstance(r, str) and r for r in reasons.values())
    assert [r["path"] for r in returned.attrs["unreadable"]] == BROKEN
    for name in BROKEN:
        assert name in caplog.text


def test_a_list_of_files_is_scored_in_the_given_order(checkpoint, real_world_folder):
    files = [str(real_world_folder / name) for name in reversed(READABLE)]
    returned = _predict(files, checkpoint, class_names=["Edema"])
    assert returned.columns.tolist() == ["path", "Edema"] and returned["path"].tolist() == files


def test_unseen_task3_classes_and_custom_prompts_give_those_columns(checkpoint, small_csv, phantom_dir):
    unseen = list(CXRLT2024_UNSEEN_CLASSES)
    preset = _predict(small_csv, checkpoint, class_names=unseen, image_root=phantom_dir)
    custom = _predict(small_csv, checkpoint, class_names=unseen, image_root=phantom_dir,
                      prompts={"positive": ["findings of {}"], "negative": ["no findings of {}"]})
    for frame in (preset, custom):
        assert frame.columns.tolist() == ["dicom_id", *unseen]
        assert frame["dicom_id"].tolist() == pd.read_csv(small_csv)["dicom_id"].tolist()
    assert not np.allclose(preset[unseen].to_numpy(), custom[unseen].to_numpy())


def test_without_classes_a_csv_gives_its_own_class_columns_in_its_order(checkpoint, small_csv, phantom_dir, tmp_path,
                                                                         capsys):
    frame = pd.read_csv(small_csv, dtype=str)
    tasks = {  # a task-2-like subset in another order; task 3's unseen findings (labels of no consequence here)
        "task2": ["Pneumothorax", "Edema", "Normal", "Round(ed) Atelectasis"],
        "task3": list(CXRLT2024_UNSEEN_CLASSES),
    }
    for task, classes in tasks.items():
        csv = tmp_path / f"test_labeled_{task}.csv"
        labelled = frame[["dicom_id", "subject_id", "study_id", "fpath"]].assign(**{c: "0" for c in classes})
        labelled.to_csv(csv, index=False)
        assert _predict(csv, checkpoint, image_root=phantom_dir).columns.tolist() == ["dicom_id", *classes]
        output = tmp_path / f"{task}_submission.csv"
        assert 0 == main([str(csv), "--image-root", str(phantom_dir), "--checkpoint", str(checkpoint), "--model-name",
                          MODEL, "--normalization", "clip", "--device", "cpu", "--num-workers", "0", "--output",
                          str(output)])
        assert pd.read_csv(output).columns.tolist() == ["dicom_id", *classes]
    unlabelled = tmp_path / "unlabelled.csv"
    frame[["dicom_id", "fpath"]].to_csv(unlabelled, index=False)
    assert _predict(unlabelled, checkpoint, image_root=phantom_dir).columns.tolist() == ["dicom_id", *CXRLT2024_CLASSES]


@pytest.mark.parametrize("aggregate", ["max", "mean"])
def test_study_aggregation_gives_every_film_of_a_study_the_study_value(checkpoint, scored, small_csv, phantom_dir,
                                                                      aggregate):
    studies = pd.read_csv(small_csv, dtype=str)["study_id"]
    assert studies.duplicated().any()  # some studies have several films
    columns = list(CXRLT2024_CLASSES)
    films = scored[0].set_index("dicom_id").loc[pd.read_csv(small_csv)["dicom_id"]].reset_index()
    pooled = _predict(small_csv, checkpoint, aggregate=aggregate, image_root=phantom_dir)
    assert pooled["dicom_id"].tolist() == films["dicom_id"].tolist()
    expected = films[columns].groupby(studies.to_numpy()).transform(aggregate)
    np.testing.assert_allclose(pooled[columns].to_numpy(), expected.to_numpy(), atol=1e-6)
    assert (pooled[columns].groupby(studies.to_numpy()).nunique() == 1).all().all()


def test_aggregation_without_study_ids_is_refused(checkpoint, real_world_folder):
    with pytest.raises(ValueError, match="study_id"):
        _predict(real_world_folder, checkpoint, aggregate="mean")


def test_calibration_changes_probabilities_but_not_the_ranking_of_any_class(checkpoint, scored, test_csv, tmp_path):
    labels = pd.read_csv(test_csv)
    classes = [c for c in CXRLT2024_CLASSES if 0 < labels[c].sum() < len(labels)]
    rng = np.random.default_rng(0)
    calibration = Calibration(tuple(classes), rng.uniform(0.2, 5.0, len(classes)), rng.uniform(-2, 2, len(classes)),
                              fallback_temperature=1.0)
    path = calibration.save(tmp_path / "calibration.json")
    raw = scored[0]
    calibrated = _predict(test_csv, checkpoint, calibration=path)
    p = raw[classes].to_numpy(np.float64)
    expected = 1 / (1 + np.exp(-(np.log(p / (1 - p)) / calibration.temperature + calibration.bias)))
    np.testing.assert_allclose(calibrated[classes].to_numpy(), expected, atol=1e-4)  # each class its own T, b
    assert (np.abs(calibrated[classes].to_numpy() - p).max(axis=0) > 1e-2).all()
    for c in classes:
        assert roc_auc_score(labels[c], calibrated[c]) == pytest.approx(roc_auc_score(labels[c], raw[c]), abs=1e-9)


def test_no_readable_film_is_an_error_that_still_lists_the_films(checkpoint, real_world_folder, tmp_path):
    output = tmp_path / "none.csv"
    with pytest.raises(NoReadableFilmError, match="image root"):
        _predict([str(real_world_folder / name) for name in BROKEN], checkpoint, output=output)
    assert len(pd.read_csv(tmp_path / "none.unreadable.csv")) == len(BROKEN)


def test_cli_scores_a_csv_with_chosen_classes_and_a_prompt_file(checkpoint, small_csv, phantom_dir, tmp_path, capsys):
    prompt_file = tmp_path / "prompts.yaml"
    prompt_file.write_text("positive: ['{} is seen']\nnegative: ['{} is not seen']\n")
    output = tmp_path / "task3.csv"
    assert 0 == main([str(small_csv), "--image-root", str(phantom_dir), "--checkpoint", str(checkpoint),
                      "--model-name", MODEL,
          "--normalization", "clip", "--device", "cpu", "--num-workers", "0", "--classes", *CXRLT2024_UNSEEN_CLASSES,
          "--prompts", str(prompt_file), "--aggregate", "mean", "--output", str(output)])
    written = pd.read_csv(output)
    assert written.columns.tolist() == ["dicom_id", *CXRLT2024_UNSEEN_CLASSES]
    assert written["dicom_id"].tolist() == pd.read_csv(small_csv)["dicom_id"].tolist()
    assert "written to" in capsys.readouterr().out


def test_cli_scores_files_given_one_by_one(checkpoint, real_world_folder, tmp_path):
    output = tmp_path / "files.csv"
    assert 0 == main([str(real_world_folder / "large_8bit.jpg"), str(real_world_folder / "empty.jpg"), "--checkpoint",
                      str(checkpoint), "--model-name", MODEL, "--normalization", "clip", "--device", "cpu",
                      "--num-workers", "0", "--output", str(output)])
    assert pd.read_csv(output)["path"].tolist() == [str(real_world_folder / "large_8bit.jpg")]
    assert pd.read_csv(tmp_path / "files.unreadable.csv")["path"].tolist() == [str(real_world_folder / "empty.jpg")]


def test_cli_reports_a_usage_error_in_one_line(checkpoint, real_world_folder, tmp_path, capsys):
    status = main([str(real_world_folder), "--checkpoint", str(checkpoint), "--model-name", MODEL, "--device", "cpu",
                   "--aggregate", "max", "--output", str(tmp_path / "x.csv")])
    assert status == 2 and "study_id" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_bundle_inference_config_scores_a_folder(checkpoint, real_world_folder, tmp_path):
    """The same folder through bundle/configs/inference.yaml, as `python -m monai.bundle run` runs it."""
    from monai.bundle import ConfigWorkflow

    config = CONFIGS / "inference.yaml"
    workflow = ConfigWorkflow(config_file=str(config), workflow_type="infer", input=str(real_world_folder),
                              output_dir=str(tmp_path), model=str(checkpoint), model_name=MODEL,
                              normalization="clip", num_workers=0, batch_size=2)
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    written = pd.read_csv(tmp_path / "submission.csv")
    assert written.columns.tolist() == ["path", *CXRLT2024_CLASSES] and written["path"].tolist() == READABLE
    assert pd.read_csv(tmp_path / "submission.unreadable.csv")["path"].tolist() == BROKEN
