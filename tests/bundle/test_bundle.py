"""The MONAI bundle end to end on a small phantom: train through ConfigWorkflow and the CLI, evaluate, infer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from _bundle_runs import CONFIGS, REPO, TRAIN, cli_args
from _bundle_runs import small_run as _small
from _real_tables import requires_tables
from monai.bundle import ConfigWorkflow

from monai_cxrcml.data import CXRLT2024_CLASSES
from monai_cxrcml.phantom import phantom_label_file

METADATA = str(CONFIGS / "metadata.json")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "monai.bundle", *args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _metrics(output_dir: Path) -> dict:
    return json.loads((output_dir / "metrics.json").read_text())


def test_training_writes_metrics_of_all_40_classes_and_checkpoints(trained: Path):
    metrics = _metrics(trained)
    for key in ("macro_auc", "base_auc", "rare_auc", "macro_ap", "per_class"):
        assert key in metrics
    assert list(metrics["per_class"]) == list(CXRLT2024_CLASSES)
    assert {"auc", "ap", "n_pos", "group", "ci"} <= set(metrics["per_class"]["Atelectasis"])
    assert 0.0 <= metrics["macro_auc"] <= 1.0
    per_class = pd.read_csv(trained / "per_class.csv")
    assert per_class["class"].tolist() == list(CXRLT2024_CLASSES)
    assert (trained / "models" / "model.pt").is_file()
    assert list((trained / "models").glob("last_checkpoint_epoch=1.pt"))


def test_lowercase_switches_from_the_command_line_are_refused(phantom_dir: Path, tmp_path: Path):
    """MONAI's CLI hands 'false' over as text, which Python would take as on: the run stops and says what to type."""
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(TRAIN),
         *cli_args(_small(phantom_dir, tmp_path)), "--augmentation", "false", "--resume", "true"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "resume='true', augmentation='false'" in result.stderr and "capitalised" in result.stderr
    assert not (tmp_path / "metrics.json").exists()


def test_mixture_diagnostics_reach_the_log_and_tensorboard(trained: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in trained.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    wanted = {"mixture_size_min", "mixture_size_max", "mixture_entropy", "mixture_dof_mean", "mixture_log_likelihood",
              "mixture_ami", "mixture_ami_findings", "mixture_seconds", "train_loss_contrastive", "macro_auc"}
    assert wanted <= tags, wanted - tags


def test_evaluate_config_scores_the_saved_checkpoint(trained: Path, phantom_dir: Path, tmp_path: Path):
    workflow = ConfigWorkflow(
        config_file=[*TRAIN, str(CONFIGS / "evaluate.yaml")], workflow_type="train", run_id="evaluating",
        **{**_small(phantom_dir, tmp_path), "ckpt_path": str(trained / "models" / "model.pt")},
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    assert _metrics(tmp_path)["macro_auc"] == pytest.approx(_metrics(trained)["macro_auc"], abs=1e-6)


@pytest.mark.parametrize("run_id", ["training", "run"])
def test_cli_trains_with_either_entry_id(run_id: str, phantom_dir: Path, tmp_path: Path):
    overrides = _small(phantom_dir, tmp_path / "out")
    result = _cli("run", run_id, "--config_file", str(TRAIN), *cli_args(overrides), cwd=tmp_path)
    assert set(_metrics(tmp_path / "out")["per_class"]) == set(CXRLT2024_CLASSES)
    log = result.stdout + result.stderr
    for diagnostic in ("mixture fit 1 (epoch 1", "clusters used, sizes min/median/max", "assignment entropy",
                       "AMI vs finding combinations", "mean AMI vs each finding"):
        assert diagnostic in log


def test_inference_writes_a_cxrlt_submission(trained: Path, phantom_dir: Path, tmp_path: Path):
    test_csv = phantom_dir / "test_labeled_task1.csv"
    overrides = {
        "dataset_dir": str(phantom_dir),
        "input": str(test_csv),
        "output_dir": str(tmp_path),
        "model": str(trained),  # the run folder: its bundle/ carries the model's settings
        "num_workers": 0,
    }
    workflow = ConfigWorkflow(config_file=str(CONFIGS / "inference.yaml"), workflow_type="infer", **overrides)
    workflow.initialize()
    assert workflow.check_properties() == []
    workflow.run()
    workflow.finalize()
    submission = pd.read_csv(tmp_path / "submission.csv")
    assert submission.columns.tolist() == ["dicom_id", *CXRLT2024_CLASSES]
    assert submission["dicom_id"].tolist() == pd.read_csv(test_csv)["dicom_id"].tolist()  # every row, every view
    probabilities = submission[list(CXRLT2024_CLASSES)].to_numpy()
    assert ((probabilities >= 0) & (probabilities <= 1)).all()


def test_metadata_and_network_io_verify(tmp_path: Path):
    schema = CONFIGS.parent / "docs" / "meta_schema_20240725.json"
    _cli("verify_metadata", "--meta_file", METADATA, "--filepath", str(schema), cwd=tmp_path)
    _cli("verify_net_in_out", "network_def", "--meta_file", METADATA, "--config_file", str(CONFIGS / "inference.yaml"),
         "--device", "cpu", cwd=tmp_path)


EXPERIMENTS = sorted(p for p in (REPO / "configs").rglob("*.yaml") if p.name != "demo.yaml")


@pytest.mark.parametrize("config", EXPERIMENTS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_experiment_config_builds_a_trainer(config: Path, phantom_dir: Path, tmp_path: Path):
    workflow = ConfigWorkflow(config_file=[*TRAIN, str(config)], workflow_type="train", **_small(phantom_dir, tmp_path))
    workflow.initialize()
    assert workflow.check_properties() == []
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.state.max_epochs == 1


def test_pretrained_baseline_is_scored_without_training(phantom_dir: Path, tmp_path: Path):
    workflow = ConfigWorkflow(
        config_file=[*TRAIN, str(REPO / "configs" / "ablations" / "chexzero_zeroshot.yaml")], workflow_type="train",
        **_small(phantom_dir, tmp_path),
    )
    workflow.initialize()
    workflow.run()
    assert set(_metrics(tmp_path)["per_class"]) == set(CXRLT2024_CLASSES)
    assert not (tmp_path / "models").exists()  # nothing was trained or saved


def test_balanced_sampler_reads_the_pseudo_label_handler(phantom_dir: Path, tmp_path: Path):
    """balanced_sampler: true wires the handler's labels into the batch sampler, without a lambda in the config."""
    from monai_cxrcml.data import ClusterBalancedSampler
    from monai_cxrcml.handlers import PseudoLabelHandler

    workflow = ConfigWorkflow(config_file=TRAIN, workflow_type="train",
                              **{**_small(phantom_dir, tmp_path), "balanced_sampler": True})
    workflow.initialize()
    sampler = workflow.parser.get_parsed_content("train#dataloader").sampler
    handler = workflow.parser.get_parsed_content("train#pseudo_labels")
    assert isinstance(sampler, ClusterBalancedSampler) and isinstance(handler, PseudoLabelHandler)
    assert sampler.label_source() is None  # no fit yet: a plain permutation
    handler.pseudo_labels = torch.zeros(sampler.num_samples, dtype=torch.long)
    assert sampler.label_source() is handler.pseudo_labels  # each epoch reads the handler's current labels
    workflow.finalize()


@pytest.mark.parametrize("extra", [
    pytest.param([], id="demo"),
    pytest.param(["demo_padchest.yaml"], id="padchest", marks=requires_tables),
])
def test_the_demo_configs_write_their_phantom_in_a_fresh_process(extra: list[str], tmp_path: Path):
    """The README's demo commands start from nothing: initialize's first step writes the phantom before the data
    are read, in a process that has imported nothing of ours beforehand."""
    configs = [*TRAIN, *(str(REPO / "configs" / name) for name in extra)]
    phantom = tmp_path / "phantom"
    _cli("run", "prepare_data", "--config_file", str(configs), "--phantom_dir", str(phantom),
         "--phantom_patients", "20", "--phantom_size", "64", "--output_dir", str(tmp_path / "run"), cwd=tmp_path)
    manifest = json.loads((phantom / "phantom.json").read_text())
    assert manifest["patients"] == 20 and manifest["size"] == 64
    assert phantom_label_file(phantom).is_file()
