"""Degenerate components during a fit: empty components re-seeded, non-positive-definite covariances repaired.

See docs/design.md, "Student-t mixture EM" (re-seeding).
"""

from __future__ import annotations

import torch

from ._em import MixtureParameters
from ._fit_context import FitContext
from ._warnings import warn

__all__ = ["RESEED_BELOW", "RESEED_FRACTION", "reseed_threshold", "reseed", "repair_covariances"]

RESEED_BELOW = 1.5
"""A component whose responsibility mass ``sum_i tau_ik`` falls below this is re-seeded (empty or one point)..."""

RESEED_FRACTION = 0.1
"""... or below this fraction of the mean mass ``N / K'``, whichever is smaller: in per-batch fits with a few rows
per component, one-point components are sampling noise, and only (nearly) empty ones are re-seeded."""


def reseed_threshold(n: int, k: int) -> float:
    """Responsibility mass below which one of ``k`` components fitted to ``n`` rows is re-seeded."""
    return min(RESEED_BELOW, RESEED_FRACTION * n / k)


def reseed(ctx: FitContext, params: MixtureParameters, small: torch.Tensor, log_lik: torch.Tensor) -> None:
    """Move the components flagged in ``small`` ``[K]`` to the rows of lowest ``log_lik`` ``[N]`` (in place).

    They get weight ``1/K``, the weighted mean covariance of the other components and the start ``nu``.
    """
    targets = small.nonzero()[:, 0]
    keep = (~small).to(params.weights.dtype) * params.weights
    if float(keep.sum()) <= 0:
        keep = params.weights
    shape = (keep.view(-1, *[1] * (params.covariances.ndim - 1)) * params.covariances).sum(0) / keep.sum()
    rows = torch.topk(log_lik, targets.numel(), largest=False).indices
    params.means[targets] = ctx.x[rows].to(params.means.dtype)
    params.covariances[targets] = shape
    params.weights[targets] = 1.0 / params.weights.numel()
    params.weights /= params.weights.sum()
    params.dofs[targets] = float(ctx.density.dof)
    factor, ok = ctx.model.factorize(params.covariances)
    if not bool(ok.all()):
        params.covariances, factor = repair_covariances(ctx, params.covariances, ok)
    params.factor = factor


def repair_covariances(
    ctx: FitContext, covariances: torch.Tensor, ok: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Add growing diagonal jitter to the components whose factorisation failed (``~ok`` ``[K]``), with a warning.

    Returns the repaired covariances and their factor; raises FloatingPointError when 1e9 x the jitter base fails.
    """
    bad = ~ok
    dtype = covariances.dtype
    base = max(ctx.reg, torch.finfo(dtype).eps * ctx.mean_var, torch.finfo(dtype).tiny)
    for power in range(1, 10):
        amount = bad.to(dtype) * (base * 10.0**power)
        trial = ctx.model.add_to_diagonal(covariances, amount)
        factor, trial_ok = ctx.model.factorize(trial)
        if bool(trial_ok.all()):
            warn(
                f"{ctx.owner}: covariance of component(s) {bad.nonzero()[:, 0].tolist()} was not positive definite "
                f"in {dtype}; added {base * 10.0**power:.3g} to its diagonal. A larger reg_covar or "
                "accumulate_dtype=torch.float64 avoids this.",
                RuntimeWarning,
            )
            return trial, factor
    raise FloatingPointError(
        f"{ctx.owner}: covariance of component(s) {bad.nonzero()[:, 0].tolist()} stays singular after adding up to "
        f"{base * 1e9:.3g} to the diagonal; X probably holds huge values. Standardise X or pass a larger reg_covar."
    )
