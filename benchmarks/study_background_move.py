"""Study (not in the package): a second kind of split-and-merge move for the Gaussian limit, a background component.

``GaussianMixture``'s move splits one component into a core and a tail around the same mean. On some heavy-tailed
data scikit-learn's default reaches a higher likelihood with a broad component shared by the tails of all clusters;
this script measures the move that would create it: after plain EM (``split_merge_moves=0``), merge the pair of
lowest predicted loss (``merge_losses``) and put in its slot a component at the data mean with covariance ``c S``
(``S`` the data covariance) and weight ``eps``, both from a one-dimensional EM over every row's mixture likelihood
and Mahalanobis distance; then EM from there. Printed: the predictions, the log-likelihood and EM iterations after
the move, and scikit-learn's best of three seeds. Findings and why it is not in the package: docs/design.md,
"Student-t mixture EM", split-and-merge.

    python benchmarks/study_background_move.py --threads 2
"""

from __future__ import annotations

import argparse
import math
import warnings

import numpy as np
import torch
from bench_mixture import CASES, SURVEY, Case, make_data

from monai_cxrcml.mixture import GaussianMixture
from monai_cxrcml.mixture._split_merge import _merged, merge_losses


def background_move(x: np.ndarray, case: Case, kind: str, seed: int = 0) -> None:
    """Print plain EM, the background move's predictions and outcome, and scikit-learn's best of 3 seeds."""
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    n, d = x.shape
    k = case.k
    plain = GaussianMixture(k, covariance_type=kind, random_state=seed, split_merge_moves=0).fit(x)
    ctx, params = plain._fit_context(torch.tensor(x), k), plain._params
    log_p = plain.score_samples(x).numpy()
    mean, cov = x.mean(0), np.cov(x, rowvar=False, bias=True)
    if kind == "diag":
        cov = np.diag(np.diag(cov))
    diff = x - mean
    delta = np.einsum("nd,nd->n", diff @ np.linalg.inv(cov), diff)
    normaliser = -0.5 * (d * math.log(2 * math.pi) + np.linalg.slogdet(cov)[1])
    eps, scale = 0.05, 1.0

    def background(eps: float, scale: float) -> np.ndarray:
        return math.log(eps) + normaliser - 0.5 * d * math.log(scale) - 0.5 * delta / scale

    for _ in range(100):
        share = np.exp(background(eps, scale) - np.logaddexp(math.log(1 - eps) + log_p, background(eps, scale)))
        eps, scale = share.mean(), (share * delta).sum() / (d * share.sum())
    gain = (np.logaddexp(math.log(1 - eps) + log_p, background(eps, scale)) - log_p).sum()
    losses = merge_losses(params, ctx.model, n)
    i, j = divmod(int(losses.argmin()), k)
    weights, means, covs = (t.numpy().copy() for t in (params.weights, params.means, params.covariances))
    merged = [t[0].numpy() for t in _merged(params, ctx.model, i, torch.tensor([j]))]
    weights[i], means[i], covs[i] = merged
    weights *= 1 - eps
    weights[j], means[j], covs[j] = eps, mean, scale * (cov if kind == "full" else np.diag(cov))
    moved = GaussianMixture(k, covariance_type=kind, means_init=means, weights_init=weights,
                            covariances_init=covs).fit(x)
    peer = max(float(SkGaussianMixture(k, covariance_type=kind, random_state=s).fit(x).score(x)) for s in range(3))
    print(f"| {case.name} | {kind} | {gain / n:.4f} | {float(losses[i, j]) / n:.4f} | {plain.score(x):.4f} | "
          f"{moved.score(x):.4f} | {moved.n_iter_} | {peer:.4f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("| data | covariance | predicted gain / N | merge loss / N | EM alone | after the move | EM iterations | "
          "scikit-learn, best of 3 seeds |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for case in [CASES["1"], *SURVEY[1:]]:
            x, _ = make_data(case)
            for kind in ("full", "diag"):
                background_move(x, case, kind)


if __name__ == "__main__":
    main()
