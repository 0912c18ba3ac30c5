"""Are the mixture's pseudo-labels clusters or a degenerate fit? Warm against fresh starts, shrinkage, covariances.

Takes a finished training run of the demo (its best checkpoint, ``RUN/models/model.pt``) and its untrained start
(the same model config, seed 0), embeds the training films of fold 0 with both, and fits the Student-t mixture of
the handler (K = 40, nu = 4) to the trained embeddings in three ways:

* ``fresh``: from k-means, as ``PseudoLabelHandler`` refits by default;
* ``warm from epoch 1``: warm-started from a fit to the untrained embeddings, which is what a refit warm-started from
  the previous epoch inherits from the first epochs (``warm_start=True``);
* each with ``shrinkage`` 0 and 5 (inverse-Wishart prior pseudo-points), full and diagonal covariances.

For every fit: cluster sizes (min / median / max), the adjusted mutual information (AMI) of the clusters with the
films' finding combinations and its mean over the single findings (the handler's ``ami`` and ``ami_findings``).

A second table asks how the paper's "GMM refined by Student-t" should be read, on the same trained embeddings and
over k-means seeds 0-4: Student-t EM straight from k-means (the default), a Gaussian mixture fitted from k-means
and then refined by Student-t EM (``gaussian_start=True``), and the Gaussian mixture alone; each with its mean
Student-t log-likelihood per film (nu = 4; the Gaussian fit is scored as a t mixture with its parameters), EM
iterations, seconds and AMI.

    python benchmarks/bench_pseudo_labels.py runs/studies/contrastive/fold0-seed0 --threads 2
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from monai.data import DataLoader, Dataset

from monai_cxrcml.data import load_fold
from monai_cxrcml.engines import encode_images
from monai_cxrcml.handlers import cluster_purity
from monai_cxrcml.mixture import StudentTMixture
from monai_cxrcml.networks import create_clip
from monai_cxrcml.transforms import chest_film_transforms, skip_unreadable_collate

REPO = Path(__file__).resolve().parents[1]


def embed(model: torch.nn.Module, datalist: list[dict], image_size: int, cache_dir: Path) -> torch.Tensor:
    transform = chest_film_transforms(train=False, image_size=image_size, normalization="clip", cache_dir=cache_dir)
    loader = DataLoader(Dataset(datalist, transform), batch_size=128, collate_fn=skip_unreadable_collate)
    features = torch.as_tensor(encode_images(model.eval(), loader, "cpu").features).float()
    return torch.nn.functional.normalize(features, dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished demo run (its models/model.pt and the demo's phantom)")
    parser.add_argument("--phantom", type=Path, default=REPO / "runs" / "phantom")
    parser.add_argument("--model", default="cxrcml-cnn")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    fold = load_fold(args.phantom / "train_labeled.csv", image_root=args.phantom, fold=0)
    datalist = fold.datalist("train")
    findings = fold.train.labels > 0.5
    torch.manual_seed(0)
    untrained = embed(create_clip(args.model), datalist, args.image_size, args.phantom / "cache")
    trained = embed(create_clip(args.model, checkpoint=args.run / "models" / "model.pt"), datalist,
                    args.image_size, args.phantom / "cache")
    print(f"$ python {shlex.join(sys.argv)}")
    print(f"{len(datalist)} training films, d = {trained.shape[1]}; total variance of the embeddings: untrained "
          f"{untrained.var(0).sum():.4f}, trained {trained.var(0).sum():.4f}\n")
    print("| start | covariance | shrinkage | sizes min/median/max | AMI vs combinations | mean AMI vs findings |")
    print("| --- | --- | ---: | --- | ---: | ---: |")
    for covariance in ("full", "diag"):
        for shrinkage in (0.0, 5.0):
            for start in ("fresh", "warm from epoch 1"):
                mixture = StudentTMixture(40, covariance_type=covariance, dof=4.0, shrinkage=shrinkage,
                                          random_state=0)
                if start != "fresh":
                    mixture.fit(untrained)
                    mixture.warm_start = True
                labels = mixture.fit(trained).predict(trained).numpy()
                sizes = np.bincount(labels, minlength=40)
                purity = cluster_purity(labels, findings)
                print(f"| {start} | {covariance} | {shrinkage:g} | {sizes.min()}/{int(np.median(sizes))}/"
                      f"{sizes.max()} | {purity['ami']:.3f} | {purity['ami_findings']:.4f} |")
    gaussian_start_table(trained, findings)


def gaussian_start_table(embeddings: torch.Tensor, findings: np.ndarray, seeds: range = range(5)) -> None:
    """Student-t from k-means, GMM then Student-t, GMM alone: mean +- sd over k-means seeds."""
    print("\n| covariance | fit | mean t log-lik | EM iterations | s | AMI vs combinations | mean AMI vs findings |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for covariance in ("diag", "full"):
        for fit in ("t from k-means", "GMM, then t", "GMM alone"):
            rows = []
            for seed in seeds:
                mixture = StudentTMixture(40, covariance_type=covariance, dof=4.0 if fit != "GMM alone" else
                                          float("inf"), gaussian_start=fit == "GMM, then t", random_state=seed)
                started = time.perf_counter()
                labels = mixture.fit(embeddings).predict(embeddings).numpy()
                seconds = time.perf_counter() - started
                scored = mixture if fit != "GMM alone" else StudentTMixture(  # the Gaussian parameters as a t mixture
                    40, covariance_type=covariance, dof=4.0, max_iter=0, means_init=mixture.means_,
                    weights_init=mixture.weights_, covariances_init=mixture.covariances_).fit(embeddings)
                purity = cluster_purity(labels, findings)
                rows.append((scored.score(embeddings), mixture.n_iter_, seconds, purity["ami"],
                             purity["ami_findings"]))
            mean, sd = np.mean(rows, 0), np.std(rows, 0, ddof=1)
            cells = " | ".join(f"{m:.{p}f} ± {s:.{p}f}" for m, s, p in zip(mean, sd, (2, 1, 2, 3, 4)))
            print(f"| {covariance} | {fit} | {cells} |")


if __name__ == "__main__":
    main()
