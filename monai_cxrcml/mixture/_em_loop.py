"""The EM loop of a mixture fit: iterations from one start until the mean log-likelihood settles.

Each iteration is one E-step and one M-step (``_em.py``) on ``ctx.x`` ``[N, d]``, one host synchronisation, and
re-seeding of components left empty (``_degenerate.py``). With ``density.gaussian_start`` a start that is not
warm is first fitted as a Gaussian mixture and then refined by Student-t EM.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from ._degenerate import repair_covariances, reseed, reseed_threshold
from ._em import MixtureParameters, e_step, m_step, prepare_operands
from ._fit_context import FitContext

__all__ = ["EMRun", "run_em", "fit_from_start"]


@dataclass
class EMRun:
    """Outcome of EM from one start.

    Attributes
    ----------
    params
        Parameters after the last M-step.
    converged, n_iter
        Whether the change of the mean log-likelihood fell below ``tol``, and the iterations run.
    lower_bounds
        Mean log-likelihood per sample of the parameters entering each iteration.
    n_reseeded
        Components re-seeded.
    reseed_below, last_change
        Re-seeding threshold used and the last change of the mean log-likelihood (for messages).
    """

    params: MixtureParameters
    converged: bool
    n_iter: int
    lower_bounds: list[float]
    n_reseeded: int
    reseed_below: float
    last_change: float

    @property
    def lower_bound(self) -> float:
        """The last mean log-likelihood (``-inf`` when no iteration ran)."""
        return self.lower_bounds[-1] if self.lower_bounds else -math.inf

    def after(self, first: EMRun) -> EMRun:
        """This run as the second stage of ``first`` (iterations, log-likelihoods and re-seeds of both)."""
        return EMRun(self.params, self.converged, first.n_iter + self.n_iter, first.lower_bounds + self.lower_bounds,
                     first.n_reseeded + self.n_reseeded, self.reseed_below, self.last_change)


def run_em(ctx: FitContext, params: MixtureParameters, gaussian: bool = False) -> EMRun:
    """EM iterations from ``params`` (MAP covariance updates under ``ctx.prior`` when given).

    ``gaussian`` runs them with every ``nu = inf`` whatever ``ctx.density`` says.
    """
    x = ctx.x
    n = x.shape[0]
    k, acc = params.means.shape[0], ctx.center.dtype
    reseed_below = reseed_threshold(n, k)
    lower_bounds: list[float] = []
    previous, change = -math.inf, math.inf
    converged, n_iter = False, 0
    reseeded = torch.zeros(k, dtype=torch.bool, device=x.device)
    gaussian = gaussian or ctx.density.gaussian
    estimate_dof = ctx.density.estimate_dof and not gaussian
    tick = time.perf_counter()
    for n_iter in range(1, ctx.max_iter + 1):
        ops = prepare_operands(params, ctx.model, ctx.center, x.dtype, gaussian)
        stats = e_step(x, ops, ctx.model, ctx.chunk, statistics=True, dof_term=estimate_dof, accumulate_dtype=acc)
        weights, means, covariances, dofs = m_step(stats, params, ctx, estimate_dof)
        factor, ok = ctx.model.factorize(covariances)
        small = (stats.resp_sum < reseed_below) & ~reseeded
        # the one host synchronisation of the iteration
        lower_bound, any_small, all_ok = torch.stack(
            [stats.log_lik.sum(dtype=acc) / n, small.any().to(acc), ok.all().to(acc)]
        ).tolist()
        if not all_ok:
            covariances, factor = repair_covariances(ctx, covariances, ok)
        params = MixtureParameters(weights, means, covariances, factor, dofs)
        lower_bounds.append(lower_bound)
        change, previous = lower_bound - previous, lower_bound
        if ctx.verbose:
            print(
                f"  iteration {n_iter}: mean log-likelihood {lower_bound:.6f} (change {change:.3e}, "
                f"{time.perf_counter() - tick:.2f} s)"
            )
        if abs(change) < ctx.tol:
            converged = True
            break
        if any_small and n_iter < ctx.max_iter:
            reseed(ctx, params, small, stats.log_lik)
            reseeded |= small
            previous = -math.inf
    return EMRun(params, converged, n_iter, lower_bounds, int(reseeded.sum()), reseed_below, change)


def fit_from_start(ctx: FitContext, params: MixtureParameters, warm: bool) -> EMRun:
    """EM from a start, with the Gaussian stage first when ``ctx.density.gaussian_start`` and the start is not
    ``warm`` (the previous fit's parameters)."""
    if warm or not ctx.density.gaussian_start or ctx.density.gaussian:
        return run_em(ctx, params)
    gaussian = run_em(ctx, params, gaussian=True)
    return run_em(ctx, gaussian.params).after(gaussian)
