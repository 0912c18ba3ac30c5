"""Train a tiny CLIP with CXRCMLTrainer + PseudoLabelHandler on in-memory batches; one process or under torchrun.

    python tests/_ddp_engine_run.py OUT [--overlap N]                     # one process, global batches
    torchrun --nproc_per_node=2 tests/_ddp_engine_run.py OUT [--overlap N] # each rank takes its share of every batch

Every process writes ``OUT/rank<r>.pt``: the loss of every iteration, the final weights, the memory bank and the
pseudo-labels, and (under torchrun) what the row gather and the set-up checks did. tests/test_distributed.py
compares the files.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from ignite.engine import Events

from monai_cxrcml.data import ClusterBalancedSampler
from monai_cxrcml.distributed import all_gather_rows, get_rank, get_world_size
from monai_cxrcml.engines import CXRCMLTrainer
from monai_cxrcml.handlers import PseudoLabelHandler
from monai_cxrcml.losses import CXRCMLLoss, PseudoLabelTripletLoss
from monai_cxrcml.mixture import StudentTMixture
from monai_cxrcml.networks import create_clip, get_tokenizer

MODEL = "cxrcml-tiny"
N, GLOBAL_BATCH, EPOCHS = 48, 16, 2


def global_batches() -> list[dict]:
    """N films whose brightness pattern follows their 3 labels, with matching captions, in batches of 16."""
    gen = torch.Generator().manual_seed(0)
    labels = (torch.rand(N, 3, generator=gen) < 0.4).float()
    images = torch.randn(N, 3, 64, 64, generator=gen) * 0.1
    for c in range(3):
        images[labels[:, c] > 0, :, 20 * c : 20 * c + 16, :] += 1.0
    names = ("cardiomegaly", "effusion", "edema")
    captions = [", ".join(f"{n} is present" for n, y in zip(names, row) if y) or "no finding" for row in labels]
    text = get_tokenizer(MODEL)(captions)
    return [{"image": images[i : i + GLOBAL_BATCH], "text": text[i : i + GLOBAL_BATCH],
             "sample_id": torch.arange(i, i + GLOBAL_BATCH)} for i in range(0, N, GLOBAL_BATCH)]


def local_share(batch: dict, rank: int, world: int) -> dict:
    """Rows rank, rank + world, ... of a global batch (what a DistributedSampler without shuffling hands a rank)."""
    return {k: v[rank::world] for k, v in batch.items()}


def setup_errors(model: torch.nn.Module, loss: CXRCMLLoss) -> dict[str, str]:
    """The messages of the set-ups the trainer must refuse under torchrun."""
    dataset = list(range(N))
    cases = {
        "balanced_sampler": dict(train_data_loader=torch.utils.data.DataLoader(
            dataset, batch_size=8, sampler=ClusterBalancedSampler(lambda: None, N, 8, 4))),
        "random_sampler": dict(train_data_loader=torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=True)),
        "not_ddp": dict(network=model.module),
        "loss_gathers": dict(loss_function=CXRCMLLoss(rank=get_rank(), world_size=get_world_size())),
    }
    errors = {}
    for name, override in cases.items():
        kwargs = {"device": "cpu", "max_epochs": 1, "train_data_loader": [], "network": model,
                  "optimizer": torch.optim.AdamW(model.parameters()), "loss_function": loss, **override}
        try:
            CXRCMLTrainer(**kwargs)
        except ValueError as e:
            errors[name] = str(e)
    return errors


def gather_check() -> dict[str, torch.Tensor]:
    """all_gather_rows of rank r's r + 1 rows, and the gradient each rank's rows receive."""
    rank = get_rank()
    rows = torch.full((rank + 1, 2), float(rank), requires_grad=True)
    gathered = all_gather_rows(rows, with_grad=True)
    (gathered * torch.arange(1.0, gathered.shape[0] + 1)[:, None]).sum().backward()
    return {"gathered": gathered.detach(), "grad": rows.grad}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--overlap", type=int, default=0)
    args = parser.parse_args()
    distributed = "WORLD_SIZE" in os.environ
    if distributed:
        dist.init_process_group("gloo")
    torch.set_num_threads(1)
    rank, world = get_rank(), get_world_size()
    torch.manual_seed(0)
    model = create_clip(MODEL)
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(model)
    loss = CXRCMLLoss(PseudoLabelTripletLoss(margin=0.2))
    mixture = StudentTMixture(n_components=4, covariance_type="diag", dof=4.0, random_state=0)
    handler = PseudoLabelHandler(N, mixture, overlap_iterations=args.overlap)
    batches = [local_share(b, rank, world) for b in global_batches()]
    trainer = CXRCMLTrainer(
        device="cpu", max_epochs=EPOCHS, train_data_loader=batches, network=model,
        optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True), loss_function=loss,
        train_handlers=[handler], grad_clip_norm=1.0,
    )
    losses: list[float] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"].item()))
    trainer.run()
    result = {
        "losses": losses,
        "weights": {k: v.detach().clone() for k, v in (model.module if distributed else model).state_dict().items()},
        "bank": handler.bank.embeddings,
        "pseudo_labels": handler.pseudo_labels,
        "n_fits": handler.n_fits,
        "guard_on_device": trainer.guard_on_device,
    }
    if distributed:
        result["gather"] = gather_check()
        result["setup_errors"] = setup_errors(model, loss)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(result, args.out / f"rank{rank}.pt")
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
