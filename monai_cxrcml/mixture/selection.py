"""Choosing the number of mixture components K: BIC or held-out log-likelihood over a list of candidates.

The paper fixes K = 40 (one cluster per class, loosely). Whether the embeddings support 40 clusters depends on
the encoder and the data, so K can instead be chosen on the embeddings themselves:

``"bic"``
    Bayesian information criterion, ``-2 log L + p log N`` with ``p`` free parameters (weights, means,
    covariances, and degrees of freedom when estimated). Consistent, but at high dimension with full covariances
    ``p`` grows as ``K d^2 / 2`` and BIC favours very few components.
``"heldout"``
    Mean log-likelihood of a held-out share of the rows under a mixture fitted on the rest: no parameter count,
    directly the question "do more clusters describe unseen embeddings better?".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from sklearn.base import clone

from .base import BaseMixture

__all__ = ["n_parameters", "bic", "select_n_components", "SELECTION_CRITERIA"]

SELECTION_CRITERIA = ("bic", "heldout")


def n_parameters(mixture: BaseMixture) -> int:
    """Free parameters of a fitted mixture: ``K - 1`` weights, ``K d`` means, covariances, estimated dofs."""
    k, d = mixture.n_components_, mixture.n_features_in_
    covariance = k * d * (d + 1) // 2 if mixture.covariance_type == "full" else k * d
    return (k - 1) + k * d + covariance + (k if mixture._component_density().estimate_dof else 0)


def bic(mixture: BaseMixture, x: torch.Tensor) -> float:
    """BIC of a fitted mixture on rows ``x`` [N, d] (lower is better)."""
    n = x.shape[0]
    return -2.0 * mixture.score(x) * n + n_parameters(mixture) * math.log(n)


def select_n_components(
    x: torch.Tensor,
    mixture: BaseMixture,
    candidates: Sequence[int],
    criterion: str = "heldout",
    heldout_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[int, dict[int, float]]:
    """Fit a clone of ``mixture`` with each candidate K and return the best K and every candidate's score.

    Parameters
    ----------
    x
        Embeddings [N, d].
    mixture
        Template estimator: its settings (covariance type, nu, seeds, ...) are kept, ``n_components`` varies.
    candidates
        Values of K to try.
    criterion
        ``"bic"`` (score = BIC, lower is better) or ``"heldout"`` (score = mean held-out log-likelihood per
        row, higher is better); see the module docstring.
    heldout_fraction, seed
        Share of rows held out, and the seed of the split, for ``"heldout"``.
    """
    if criterion not in SELECTION_CRITERIA:
        raise ValueError(f"criterion={criterion!r} is not one of {SELECTION_CRITERIA}.")
    if not candidates:
        raise ValueError("candidates is empty: give the values of K to try, e.g. [10, 20, 40, 80].")
    if criterion == "heldout":
        order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed)).to(x.device)
        n_held = max(1, int(round(heldout_fraction * x.shape[0])))
        fit_rows, held_rows = x[order[n_held:]], x[order[:n_held]]
    scores: dict[int, float] = {}
    for k in candidates:
        candidate = clone(mixture).set_params(n_components=int(k), warm_start=False)
        if criterion == "bic":
            scores[int(k)] = bic(candidate.fit(x), x)
        else:
            scores[int(k)] = candidate.fit(fit_rows).score(held_rows)
    best = min(scores, key=scores.get) if criterion == "bic" else max(scores, key=scores.get)
    return best, scores
