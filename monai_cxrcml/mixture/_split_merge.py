"""Split-and-merge moves after a converged Gaussian mixture fit (after Ueda et al. 2000, "SMEM"), on rows ``[N, d]``.

A move merges two components ``i, j`` into their moment-matched Gaussian and splits a third one ``k`` into a core and
a tail (same mean, scale matrices ``c_1 S_k`` and ``c_2 S_k``), so ``K`` stays. Both are predicted from the
expected complete-data log-likelihood at the current responsibilities: the merge loss in closed form from the
fitted parameters (``[K, K]``), the split gain by a one-dimensional EM over each component's squared Mahalanobis
distances (one data pass). The core and the tail start from one M-step on the split component's rows with the
one-dimensional model's responsibilities; EM then runs from the best predicted move, which is kept only if it ends
at a higher log-likelihood. Why (a Gaussian fit of heavy-tailed data gains by spending two components on one
cluster's core and tail, an optimum no k-means start reaches) and what it measured: docs/design.md, "Student-t
mixture EM".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._covariance import CovarianceModel
from ._degenerate import repair_covariances
from ._em import MixtureParameters, prepare_operands
from ._em_loop import EMRun, run_em
from ._fit_context import FitContext

__all__ = [
    "Pairs", "Move", "significant_pairs", "merge_losses", "split_gains", "best_move", "apply_move", "split_merge",
]

SPLIT_EM_ITER = 30
"""Iteration cap of the one-dimensional EM that predicts a split."""

SPLIT_RTOL = 1e-3
"""The one-dimensional EM stops once no scale factor changes by more than this share in an iteration."""

SPLIT_START_SCALES = (0.5, 2.0)
"""Start scale factors ``c_1, c_2`` of the core and the tail (weights start at 1/2 each)."""


@dataclass(frozen=True)
class Pairs:
    """The (row, component) pairs of one E-step pass whose responsibility exceeds ``eps^2`` (about ``N`` of them).

    Attributes
    ----------
    row, comp
        Row and component indices, long ``[M]``.
    resp, delta
        Responsibility and squared Mahalanobis distance, ``[M]`` (accumulation dtype).
    """

    row: torch.Tensor
    comp: torch.Tensor
    resp: torch.Tensor
    delta: torch.Tensor


@dataclass(frozen=True)
class Move:
    """One proposed split-and-merge move.

    Attributes
    ----------
    gain
        Predicted change of the total log-likelihood (split gain minus merge loss).
    merge
        Components ``(i, j)``, ``i < j``, merged into component ``i``.
    split
        Component ``k`` split into itself (the core) and ``j`` (the tail).
    split_weights, split_scales
        ``[2]``: shares of ``k``'s weight and factors of its scale matrix for the core and the tail.
    """

    gain: float
    merge: tuple[int, int]
    split: int
    split_weights: torch.Tensor
    split_scales: torch.Tensor


def significant_pairs(ctx: FitContext, params: MixtureParameters) -> Pairs:
    """One pass over ``ctx.x`` with the Gaussian components of ``params``: the pairs that carry responsibility."""
    x, model, acc = ctx.x, ctx.model, ctx.center.dtype
    ops = prepare_operands(params, model, ctx.center, x.dtype, gaussian=True)
    rows, comps, resps, deltas = [], [], [], []
    for start in range(0, x.shape[0], ctx.chunk):
        delta = model.mahalanobis(x[start : start + ctx.chunk] - ops.center, ops.covariance)
        resp = torch.softmax(ops.log_offset - 0.5 * delta, dim=1)
        row, comp = (resp > torch.finfo(resp.dtype).eps ** 2).nonzero(as_tuple=True)
        rows.append(row + start)
        comps.append(comp)
        resps.append(resp[row, comp].to(acc))
        deltas.append(delta[row, comp].to(acc))
    return Pairs(torch.cat(rows), torch.cat(comps), torch.cat(resps), torch.cat(deltas))


def _merged(
    params: MixtureParameters, model: CovarianceModel, i: int, others: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weights ``[m]``, means ``[m, d]`` and moment-matched covariances of component ``i`` merged with each of
    ``others`` ``[m]``."""
    w, mu, cov = params.weights, params.means, params.covariances
    wi, wj = w[i], w[others]
    weight = wi + wj
    mean = (wi * mu[i] + wj[:, None] * mu[others]) / weight[:, None]
    shape = (-1,) + (1,) * (cov.ndim - 1)
    spread_i = cov[i] + model.outer(mu[i] - mean)
    spread_j = cov[others] + model.outer(mu[others] - mean)
    covariance = (wi * spread_i + wj.view(shape) * spread_j) / weight.view(shape)
    return weight, mean, covariance


def merge_losses(params: MixtureParameters, model: CovarianceModel, n: int) -> torch.Tensor:
    """Predicted loss of total log-likelihood of merging each pair, ``[K, K]`` (``inf`` on and below the diagonal).

    With hard-assignment statistics, a Gaussian component of ``n_k = w_k N`` rows at its moment-matched parameters
    contributes ``n_k (log w_k - 1/2 log|S_k|)`` plus terms that cancel between a pair and its merger.
    """
    k = params.weights.shape[0]
    half_log_det = model.half_log_det(params.factor)
    own = n * params.weights * (params.weights.log() - half_log_det)
    losses = torch.full((k, k), math.inf, dtype=params.weights.dtype, device=params.weights.device)
    for i in range(k - 1):
        others = torch.arange(i + 1, k, device=params.weights.device)
        weight, _, covariance = _merged(params, model, i, others)
        factor, ok = model.factorize(covariance)
        merged = n * weight * (weight.log() - model.half_log_det(factor))
        losses[i, i + 1 :] = torch.where(ok, own[i] + own[others] - merged, math.inf)
    return losses


def _tail_log_odds(delta: torch.Tensor, weights: torch.Tensor, scales: torch.Tensor, d: int) -> torch.Tensor:
    """Log-odds of the tail ``c_2`` against the core ``c_1`` for squared distances ``delta``,
    ``log(a_2/a_1) - d/2 log(c_2/c_1) - delta/2 (1/c_2 - 1/c_1)``, for per-row ``weights``/``scales`` ``[..., 2]``."""
    log_odds = (weights[..., 1] / weights[..., 0]).log() - 0.5 * d * (scales[..., 1] / scales[..., 0]).log()
    return log_odds - 0.5 * delta * (1.0 / scales[..., 1] - 1.0 / scales[..., 0])


def split_gains(pairs: Pairs, k: int, d: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Predicted gain of splitting each of ``k`` components into a core and a tail: ``(gain [k], weights [k, 2],
    scales [k, 2])``, by a one-dimensional EM of the two-scale mixture ``sum_m a_m N(x; mu, c_m S)`` on the pairs'
    distances, weighted by their responsibilities."""
    comp, resp, delta = pairs.comp, pairs.resp, pairs.delta
    acc, device = resp.dtype, resp.device
    tiny = torch.finfo(acc).tiny

    def per_component(values: torch.Tensor) -> torch.Tensor:  # [M] -> sums per component [k]
        return torch.zeros(k, dtype=acc, device=device).index_add_(0, comp, values)

    mass, spread = per_component(resp), per_component(resp * delta)
    weights = torch.full((k, 2), 0.5, dtype=acc, device=device)
    scales = torch.tensor(SPLIT_START_SCALES, dtype=acc, device=device).expand(k, 2).clone()
    for _ in range(SPLIT_EM_ITER):
        tail = torch.sigmoid(_tail_log_odds(delta, weights[comp], scales[comp], d)) * resp
        tail_mass, tail_spread = per_component(tail), per_component(tail * delta)
        masses = torch.stack([mass - tail_mass, tail_mass], 1).clamp_min(0.0)
        spreads = torch.stack([spread - tail_spread, tail_spread], 1).clamp_min(0.0)
        weights = (masses / mass.clamp_min(tiny)[:, None]).clamp_min(tiny)
        previous = scales
        scales = torch.where(masses > tiny, spreads / (d * masses).clamp_min(tiny), scales).clamp_min(tiny)
        if float((scales / previous - 1.0).abs().max()) < SPLIT_RTOL:
            break
    # log sum_m a_m N(x; mu, c_m S) - log N(x; mu, S) = log(a_1 c_1^(-d/2)) - delta/2 (1/c_1 - 1) + softplus(odds)
    core = (weights[:, 0].log() - 0.5 * d * scales[:, 0].log())[comp] - 0.5 * delta * (1.0 / scales[comp, 0] - 1.0)
    odds = _tail_log_odds(delta, weights[comp], scales[comp], d)
    gain = per_component(resp * (core + torch.nn.functional.softplus(odds)))
    return gain, weights, scales


def best_move(ctx: FitContext, params: MixtureParameters, pairs: Pairs) -> Move | None:
    """The move of highest predicted gain, or None when none predicts more than ``tol x N`` (or ``K < 3``)."""
    k, n = params.weights.shape[0], ctx.x.shape[0]
    if k < 3:
        return None
    losses = merge_losses(params, ctx.model, n)
    gains, weights, scales = split_gains(pairs, k, params.means.shape[1])
    total = gains[:, None, None] - losses[None]  # [split, i, j]
    index = torch.arange(k, device=total.device)
    total[index, index, :] = -math.inf
    total[index, :, index] = -math.inf
    best = int(total.argmax())
    split, i, j = best // (k * k), (best // k) % k, best % k
    gain = float(total[split, i, j])
    if not gain > ctx.tol * n:
        return None
    return Move(gain, (i, j), split, weights[split], scales[split])


def _split_start(
    ctx: FitContext, params: MixtureParameters, move: Move, pairs: Pairs
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weights ``[2]``, means ``[2, d]`` and covariances of the core and the tail: one M-step on the split
    component's rows with responsibilities ``tau_ik`` times the one-dimensional model's core/tail shares."""
    model, k = ctx.model, move.split
    mine = pairs.comp == k
    rows, resp = pairs.row[mine], pairs.resp[mine]
    odds = _tail_log_odds(pairs.delta[mine], move.split_weights, move.split_scales, params.means.shape[1])
    tail = torch.sigmoid(odds) * resp
    w = torch.stack([resp - tail, tail], 1).to(ctx.x.dtype)  # [n_k, 2]
    x = ctx.x[rows]
    moments = model.zero_moments(2, ctx.center.dtype, x.device)
    model.accumulate(moments, x - ctx.center.to(x.dtype), w)
    weight_sum = w.sum(0, dtype=ctx.center.dtype) + 10 * torch.finfo(ctx.center.dtype).eps
    if model.needs_weights:
        model.scatter(moments, x, w, w, model.new_means(moments, weight_sum, ctx.center), ctx.chunk)
    means, covariances = model.m_step(moments, weight_sum, ctx.center, ctx.reg, ctx.prior)
    return weight_sum / ctx.x.shape[0], means, covariances


def apply_move(ctx: FitContext, params: MixtureParameters, move: Move, pairs: Pairs) -> MixtureParameters:
    """The parameters after ``move`` (new tensors): the merger in ``i``, the core in ``k``, the tail in ``j``."""
    (i, j), k = move.merge, move.split
    merged = _merged(params, ctx.model, i, torch.tensor([j], device=params.means.device))
    split = _split_start(ctx, params, move, pairs)
    weights, means, covariances = params.weights.clone(), params.means.clone(), params.covariances.clone()
    weights[i], means[i], covariances[i] = (value[0] for value in merged)
    weights[k], means[k], covariances[k] = (value[0] for value in split)
    weights[j], means[j], covariances[j] = (value[1] for value in split)
    weights /= weights.sum()
    factor, ok = ctx.model.factorize(covariances)
    if not bool(ok.all()):
        covariances, factor = repair_covariances(ctx, covariances, ok)
    return MixtureParameters(weights, means, covariances, factor, params.dofs.clone())


def split_merge(ctx: FitContext, run: EMRun, max_moves: int) -> EMRun:
    """Up to ``max_moves`` moves after ``run``: each runs EM from the best predicted move and is kept if its
    log-likelihood is higher; the first move predicted not to gain, or not kept, ends the search.

    The returned run's ``n_iter`` and ``lower_bounds`` cover ``run`` and every kept move.
    """
    for _ in range(max_moves):
        pairs = significant_pairs(ctx, run.params)
        move = best_move(ctx, run.params, pairs)
        if move is None:
            break
        trial = run_em(ctx, apply_move(ctx, run.params, move, pairs))
        if ctx.verbose:
            per_sample = move.gain / ctx.x.shape[0]
            print(
                f"  split-and-merge: merge {move.merge}, split {move.split} (predicted {per_sample:+.4f} per sample): "
                f"mean log-likelihood {run.lower_bound:.6f} -> {trial.lower_bound:.6f}"
            )
        if not trial.lower_bound > run.lower_bound:
            break
        run = trial.after(run)
    return run
