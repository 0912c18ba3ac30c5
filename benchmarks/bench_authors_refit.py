"""The authors' per-batch mixture refit against ours, as total refit seconds per training epoch.

The authors' public code (shared/FACTS.md) refits scikit-learn's ``BayesianGaussianMixture(covariance_type="diag",
n_init=3, max_iter=300)`` on the image embeddings of every batch of 32, on the CPU, before the batch's loss: N / 32
fits per epoch, on the critical path of every iteration. Ours refits one Student-t mixture (K = 40, nu = 4) per
epoch on the memory bank of all N embeddings (from k-means, the handler's default; or warm-started from the previous
epoch), on the training device.

Both see the same embeddings (synthetic CLIP-like unit rows, ``bench_mixture.make_data``). The authors' K is not
given; scikit-learn needs at least as many samples as components, so the default is ``min(40, 32) = 32``
(``--authors-k``). Their time is measured on ``--batches`` batches and multiplied by the batches of an epoch;
ours is one refit on the whole bank, from k-means (the default) and warm-started.

    python benchmarks/bench_authors_refit.py --n 200000 --batches 100 --covariance full --device cuda
    python benchmarks/bench_authors_refit.py --n 200000 --batches 50 --covariance diag --threads 2
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_refit_share import synthetic_bank, time_refits  # noqa: E402


def authors_seconds_per_batch(bank: np.ndarray, batch: int, batches: int, k: int, seed: int = 0) -> float:
    """Mean seconds of one per-batch BayesianGaussianMixture fit (+ predict, as their loss needs the labels)."""
    order = np.random.default_rng(seed).permutation(len(bank))
    total = 0.0
    for i in range(batches):
        x = bank[order[i * batch : (i + 1) * batch]]
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            mixture = BayesianGaussianMixture(n_components=k, covariance_type="diag", n_init=3, max_iter=300,
                                              random_state=seed + i)
            mixture.fit(x)
            mixture.predict(x)
        total += time.perf_counter() - start
    return total / batches


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000, help="films per epoch (bank size)")
    parser.add_argument("--d", type=int, default=512)
    parser.add_argument("--k", type=int, default=40, help="our components")
    parser.add_argument("--authors-k", type=int, default=None, help="their components (default min(k, batch))")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=50, help="batches timed for the authors' refit")
    parser.add_argument("--covariance", choices=("full", "diag"), default="full", help="ours")
    parser.add_argument("--max-iter", type=int, default=100, help="ours")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="ours (theirs is CPU-only)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("skipped: no CUDA")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    authors_k = args.authors_k or min(args.k, args.batch)
    bank = synthetic_bank(args.n, args.d, args.k)
    per_batch = authors_seconds_per_batch(bank, args.batch, args.batches, authors_k)
    fits = math.ceil(args.n / args.batch)
    theirs = per_batch * fits
    ours = time_refits(bank, args.k, args.covariance, args.device, args.max_iter)
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"\nN={args.n:,} embeddings, d={args.d}, batch {args.batch}; ours on {where}")
    print("| refit | fits per epoch | s per fit | s per epoch | authors / this |")
    print("|---|---:|---:|---:|---:|")
    print(f"| authors: sklearn BayesianGaussianMixture diag, K={authors_k}, n_init=3, max_iter=300, every batch "
          f"(CPU; {args.batches} batches timed) | {fits:,} | {per_batch:.3f} | {theirs:,.1f} | 1.0x |")
    print(f"| ours: StudentTMixture {args.covariance}, K={args.k}, nu=4, bank, from k-means (default; "
          f"{ours.cold_iter} EM it.) | 1 | {ours.cold_s:.2f} | {ours.cold_s:.2f} | {theirs / ours.cold_s:,.1f}x |")
    print(f"| ours: the same, warm start ({ours.warm_iter} EM it.) | 1 | {ours.warm_s:.2f} | {ours.warm_s:.2f} | "
          f"{theirs / ours.warm_s:,.1f}x |")
    print(f"\nratio of total refit time per epoch, authors / ours: {theirs / ours.cold_s:,.1f} "
          f"(warm start: {theirs / ours.warm_s:,.1f})")
    print(f"\ncommand: python {shlex.join(sys.argv)}")


if __name__ == "__main__":
    main()
