"""torchrun on the CPU (gloo, 2 processes): training over the global batch equals one process with that batch.

What may legitimately differ between the two runs, and the tolerances that follow from it:

- The global batch: both see the same films per step (the one-process loader holds rows 16 i .. 16 i + 15, a
  DistributedSampler without shuffling gives rank r the rows r, r + 2, ...), only in another order. The loss is
  invariant to the order of its rows, so losses agree up to float32 summation order: relative 1e-4.
- The weights: Adam divides by the root of the second moment, so an element whose gradient is at rounding-noise
  level can step up to lr = 1e-3 in either direction per step; after 6 steps: absolute 2e-3 (seen: ~1e-4).
- The pseudo-labels: identical on both ranks (rank 0 fits and broadcasts), and those of the one-process run unless
  an embedding sits on a cluster boundary to within rounding (at least 95% agreement; seen: 100%).
- The bundle's zero-shot AUCs: computed from the same weights up to the above, they change only when two scores
  swap order: absolute 1e-3 (seen: equal to every printed digit).

Shuffling, augmentation and caption shuffling are off in these runs; the tiny CLIP has no dropout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _bundle_runs import SHORT_RUN, cli_args

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "tests" / "_ddp_engine_run.py"
CONFIGS = REPO / "bundle" / "configs"


def _run(args: list[str], timeout: int = 600) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]


def _engine_runs(out: Path, overlap: int) -> tuple[dict, dict, dict]:
    """(one process, rank 0, rank 1) results of tests/_ddp_engine_run.py."""
    flags = ["--overlap", str(overlap)]
    _run([sys.executable, str(RUN), str(out / "single"), *flags])
    _run(_torchrun(str(RUN), str(out / "ddp"), *flags))
    return tuple(torch.load(path, weights_only=False) for path in
                 (out / "single" / "rank0.pt", out / "ddp" / "rank0.pt", out / "ddp" / "rank1.pt"))


def _assert_same_training(single: dict, rank0: dict, rank1: dict) -> None:
    assert rank0["losses"] == rank1["losses"]  # every rank computes the loss of the same global batch
    torch.testing.assert_close(torch.tensor(rank0["losses"]), torch.tensor(single["losses"]), rtol=1e-4, atol=0)
    for key, value in single["weights"].items():
        torch.testing.assert_close(rank0["weights"][key], value, atol=2e-3, rtol=0, msg=key)
    assert torch.equal(rank0["bank"], rank1["bank"])
    torch.testing.assert_close(rank0["bank"], single["bank"], atol=1e-4, rtol=0)
    assert rank0["n_fits"] == rank1["n_fits"] == single["n_fits"] == 2
    assert torch.equal(rank0["pseudo_labels"], rank1["pseudo_labels"])
    assert (rank0["pseudo_labels"] == single["pseudo_labels"]).float().mean() >= 0.95


def test_ddp_training_equals_one_process_with_the_global_batch(tmp_path: Path):
    single, rank0, rank1 = _engine_runs(tmp_path, overlap=0)
    _assert_same_training(single, rank0, rank1)
    assert rank0["guard_on_device"]  # fused AdamW: the non-finite guard never reads the loss on the host

    # rows of different counts per rank, gathered in rank order; each row's gradient summed over the ranks' losses
    for result in (rank0, rank1):
        torch.testing.assert_close(result["gather"]["gathered"], torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]))
    torch.testing.assert_close(rank0["gather"]["grad"], torch.tensor([[2.0, 2.0]]))
    torch.testing.assert_close(rank1["gather"]["grad"], torch.tensor([[4.0, 4.0], [6.0, 6.0]]))

    errors = rank0["setup_errors"]
    assert "balanced_sampler: false" in errors["balanced_sampler"]
    assert "DistributedSampler" in errors["random_sampler"]
    assert "DistributedDataParallel" in errors["not_ddp"]
    assert "remove train#loss#rank" in errors["loss_gathers"]


@pytest.mark.slow
def test_background_refit_under_ddp_publishes_the_same_labels_on_every_rank(tmp_path: Path):
    _assert_same_training(*_engine_runs(tmp_path, overlap=1))


EQUIVALENCE = """\
caption_shuffle: false
train#preprocessing#augment: false
train#shuffle_sampler#shuffle: false
+run:
  - "$torch.save(@train#pseudo_labels.pseudo_labels.cpu(), os.path.join(@output_dir, 'pseudo_labels_rank' \
    + str(torch.distributed.get_rank() if torch.distributed.is_initialized() else 0) + '.pt'))"
"""


@pytest.mark.slow
def test_multi_gpu_bundle_under_torchrun_matches_one_process(phantom_dir: Path, tmp_path: Path):
    """train.yaml + demo.yaml + multi_gpu_train.yaml, 2 x batch 8, against train.yaml + demo.yaml with batch 16."""
    extra = tmp_path / "equivalence.yaml"
    extra.write_text(EQUIVALENCE)
    # the ViT: BatchNorm (the demo's convolutional tower) normalises each rank's share on the CPU, where SyncBatchNorm
    # has no kernel, so only a BatchNorm-free model matches one process with the global batch there. Four clusters:
    # the demo's 40 on ~180 films (~4 per cluster) turn rounding-level differences of the bank into other partitions.
    common = ["--dataset_dir", str(phantom_dir), "--cache_dir", "$None", "--epochs", "2", "--num_workers", "0",
              "--n_bootstrap", "20", "--model_name", "cxrcml-tiny", "--num_clusters", "4", *cli_args(SHORT_RUN)]
    files = [str(CONFIGS / "train.yaml"), str(REPO / "configs" / "demo.yaml")]
    _run(_torchrun("-m", "monai.bundle", "run", "training", "--config_file",
                   str([*files, str(CONFIGS / "multi_gpu_train.yaml"), str(extra)]),
                   "--output_dir", str(tmp_path / "ddp"), "--batch_size", "8", *common))
    _run([sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str([*files, str(extra)]),
          "--output_dir", str(tmp_path / "single"), "--batch_size", "16", *common])

    labels = [torch.load(tmp_path / "ddp" / f"pseudo_labels_rank{r}.pt") for r in (0, 1)]
    assert torch.equal(labels[0], labels[1]) and (labels[0] >= 0).any()
    single_labels = torch.load(tmp_path / "single" / "pseudo_labels_rank0.pt")
    assert (labels[0] == single_labels).float().mean() >= 0.95
    ddp, single = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("ddp", "single"))
    for key in ("macro_auc", "base_auc", "rare_auc", "macro_ap"):
        assert ddp[key] == pytest.approx(single[key], abs=1e-3), key
    # rank 0 alone wrote TensorBoard events and checkpoints
    assert len({path.name.split(".")[4] for path in (tmp_path / "ddp").glob("events.out.tfevents.*")}) == 1
    assert (tmp_path / "ddp" / "models" / "model.pt").is_file()
