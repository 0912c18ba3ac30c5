"""Which image tower learns the phantom's signs from scratch on a CPU: supervised test AUC for a fixed time budget.

Each candidate tower gets a linear head over the 40 classes and is trained with BCE on the frontal training films of
fold 0 (the demo's split and 64 px input, no augmentation) for ``--seconds`` of wall time; the macro AUC over the
classes scorable on the test part is printed after every epoch and at the end. This is the ceiling a tower sets
for the zero-shot AUC of a CLIP trained on the same films in the same time, which is why the demo uses the
convolutional tower (see monai_cxrcml/networks/convnet.py and BENCHMARKS.md, "Image tower").

    python benchmarks/bench_image_tower.py --phantom runs/phantom --seconds 120 --threads 2

Candidates: ``vit`` (the 4-layer ViT of ``cxrcml-tiny``), ``modified-resnet`` (open_clip's RN50 family, layers
(1, 1, 1, 1), width 16), ``convnet`` (``cxrcml_convnet16``, the tower of ``cxrcml-cnn``).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from monai.data import DataLoader, Dataset, set_track_meta
from open_clip.modified_resnet import ModifiedResNet
from sklearn.metrics import roc_auc_score
from torch import nn

from monai_cxrcml.data import load_fold
from monai_cxrcml.networks import create_clip
from monai_cxrcml.phantom import ensure_phantom
from monai_cxrcml.transforms import chest_film_transforms


def towers() -> dict[str, callable]:
    return {
        "vit": lambda: create_clip("cxrcml-tiny").visual,
        "modified-resnet": lambda: ModifiedResNet(layers=(1, 1, 1, 1), output_dim=128, heads=2, image_size=64,
                                                  width=16),
        "convnet": lambda: create_clip("cxrcml-cnn").visual,
    }


def load_part(fold, part: str, transform) -> tuple[torch.Tensor, np.ndarray]:
    loader = DataLoader(Dataset(fold.datalist(part), transform), batch_size=128, num_workers=0)
    images, labels = [], []
    for batch in loader:
        images.append(torch.as_tensor(batch["image"]))
        labels.append(np.asarray(batch["label"]))
    return torch.cat(images), np.concatenate(labels)


def macro_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    scorable = [c for c in range(labels.shape[1]) if 0 < labels[:, c].sum() < len(labels)]
    return float(np.mean([roc_auc_score(labels[:, c], scores[:, c]) for c in scorable]))


def run(name: str, make, train, test, seconds: float, lr: float, seed: int) -> tuple[float, int, int]:
    torch.manual_seed(seed)
    model = nn.Sequential(make(), nn.Linear(128, train[1].shape[1]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    images, labels = train[0], torch.as_tensor(train[1])
    start, epochs, steps, auc = time.perf_counter(), 0, 0, float("nan")
    while time.perf_counter() - start < seconds:
        model.train()
        order = torch.randperm(len(images))
        for i in range(0, len(images) - 63, 64):
            batch = order[i : i + 64]
            loss = nn.functional.binary_cross_entropy_with_logits(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
        epochs += 1
        model.eval()
        with torch.no_grad():
            scores = torch.cat([model(test[0][i : i + 256]) for i in range(0, len(test[0]), 256)]).numpy()
        auc = macro_auc(test[1], scores)
        print(f"  {name}: epoch {epochs}, {time.perf_counter() - start:.0f} s, test macro AUC {auc:.3f}", flush=True)
    return auc, epochs, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phantom", type=Path, default=Path("runs/phantom"), help="phantom folder (made if absent)")
    parser.add_argument("--patients", type=int, default=600)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--towers", nargs="+", default=list(towers()))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    set_track_meta(False)  # plain tensors: the films are stacked and sliced as one batch
    logging.disable(logging.WARNING)
    root = ensure_phantom(args.phantom, patients=args.patients, size=256, seed=0)
    fold = load_fold(root / "train_labeled.csv", image_root=root, fold=0)
    transform = chest_film_transforms(train=False, image_size=64, normalization="clip", cache_dir=root / "cache")
    train, test = load_part(fold, "train", transform), load_part(fold, "test", transform)
    print(f"$ python {shlex.join(sys.argv)}")
    print(f"{len(train[0])} training / {len(test[0])} test films, {args.seconds:.0f} s per tower, "
          f"{args.threads} threads")
    rows = [(name, *run(name, towers()[name], train, test, args.seconds, args.lr, args.seed)) for name in args.towers]
    print("\n| tower | parameters | epochs | test macro AUC |\n| --- | --- | --- | --- |")
    for name, auc, epochs, _ in rows:
        params = sum(p.numel() for p in towers()[name]().parameters())
        print(f"| {name} | {params / 1e6:.2f} M | {epochs} | {auc:.3f} |")


if __name__ == "__main__":
    main()
