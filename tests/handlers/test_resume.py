"""Resume after SIGKILL and run-to-run determinism of the bundle's training on the CPU.

Three epochs of the demo config on the test phantom, with the mixture term on from epoch 1, augmentation and
caption recipes on: every source of randomness an epoch has. The metrics must be bit-identical between

- two runs of the same seed with 0 and 2 data-loader workers (EpochSeededDataset seeds each film per epoch);
- a run killed with SIGKILL during its second epoch and restarted with ``--resume True``, and the uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _bundle_runs import REPO, cli_args

FILES = str([str(REPO / "bundle" / "configs" / "train.yaml"), str(REPO / "configs" / "demo.yaml")])


def _command(phantom_dir: Path, output_dir: Path, workers: int, *extra: str) -> list[str]:
    overrides = {"dataset_dir": str(phantom_dir), "output_dir": str(output_dir), "cache_dir": "$None", "epochs": "3",
                 "batch_size": "16", "num_workers": str(workers), "n_bootstrap": "20", "warmup_steps": "5"}
    return [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", FILES, *cli_args(overrides),
            *extra]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _train(command: list[str]) -> str:
    result = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def _metrics(output_dir: Path) -> dict:
    return json.loads((output_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(phantom_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    _train(_command(phantom_dir, out, workers=0))
    return out


def test_same_seed_gives_the_same_metrics_whatever_the_workers(uninterrupted: Path, phantom_dir: Path,
                                                               tmp_path: Path):
    _train(_command(phantom_dir, tmp_path, workers=2))
    assert _metrics(tmp_path) == _metrics(uninterrupted)
    # the run did learn something to compare: a different seed gives different metrics
    _train(_command(phantom_dir, tmp_path / "seed1", 0, "--seed", "1", "--epochs", "1"))
    _train(_command(phantom_dir, tmp_path / "seed0", 0, "--epochs", "1"))
    assert _metrics(tmp_path / "seed1")["per_class"] != _metrics(tmp_path / "seed0")["per_class"]


def test_sigkill_then_resume_ends_with_the_uninterrupted_metrics(uninterrupted: Path, phantom_dir: Path,
                                                                 tmp_path: Path):
    command = _command(phantom_dir, tmp_path, workers=2)
    process = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    first = tmp_path / "models" / "last_checkpoint_epoch=1.pt"
    deadline = time.monotonic() + 300
    while not first.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.is_file(), "the run never wrote its first checkpoint"
    time.sleep(1.0)  # well into epoch 2
    os.killpg(process.pid, signal.SIGKILL)  # the trainer and its data-loader workers, no clean-up
    process.wait()
    assert not (tmp_path / "metrics.json").exists(), "the run finished before it was killed: kill it earlier"

    log = _train(command + ["--resume", "True"])
    assert "resume: continuing from" in log and "epoch 1" in log
    assert _metrics(tmp_path) == _metrics(uninterrupted)
    assert [p.name for p in (tmp_path / "models").glob("last_checkpoint_epoch=*.pt")] == ["last_checkpoint_epoch=3.pt"]


def test_resume_without_a_checkpoint_starts_a_new_run_and_a_finished_run_trains_no_more(
    uninterrupted: Path, phantom_dir: Path, tmp_path: Path
):
    log = _train(_command(phantom_dir, tmp_path, 0, "--epochs", "1", "--resume", "True"))
    assert "starting a new run" in log and (tmp_path / "metrics.json").is_file()
    log = _train(_command(phantom_dir, tmp_path, 0, "--epochs", "1", "--resume", "True"))
    assert "nothing left to train" in log


def test_latest_checkpoint_is_the_highest_epoch_not_the_last_name(tmp_path: Path):
    from monai_cxrcml.handlers import latest_checkpoint

    assert latest_checkpoint(tmp_path) is None
    for epoch in (2, 9, 10):
        (tmp_path / f"last_checkpoint_epoch={epoch}.pt").write_bytes(b"")
    (tmp_path / "model.pt").write_bytes(b"")
    assert latest_checkpoint(tmp_path).name == "last_checkpoint_epoch=10.pt"


def test_resume_refuses_a_checkpoint_carrying_code_without_running_it(tmp_path: Path):
    import torch
    from _checkpoints import PickledCode
    from ignite.engine import Engine

    from monai_cxrcml.handlers import resume_training
    from monai_cxrcml.networks import CheckpointError

    marker = tmp_path / "code_ran"
    trainer = Engine(lambda engine, batch: None)
    path = tmp_path / "last_checkpoint_epoch=3.pt"
    torch.save({"trainer": trainer.state_dict(), "hook": PickledCode(marker)}, path)
    with pytest.raises(CheckpointError, match="refused for safety"):
        resume_training(trainer, {"trainer": trainer}, tmp_path)
    assert not marker.exists()
    torch.save({"model": {}}, path)  # written by another config
    with pytest.raises(KeyError, match=r"holds no \['trainer'\].*config that wrote it"):
        resume_training(trainer, {"trainer": trainer}, tmp_path)
