"""E-step and M-step of a Student-t mixture (Peel & McLachlan 2000); a Gaussian one is ``nu_k = inf`` (``u_ik = 1``).
E-step (log domain, per chunk of rows ``[n, d]``, in the compute dtype), ``delta_ik`` from ``_covariance.py``::

    log t_ik = lgamma((nu+d)/2) - lgamma(nu/2) - d/2 log(nu pi) - 1/2 log|S_k| - (nu+d)/2 log1p(delta_ik / nu)
    log tau_ik = log pi_k + log t_ik - logsumexp_k(...)                   u_ik = (nu_k + d) / (nu_k + delta_ik)

M-step (sufficient statistics ``[K]``, ``[K, d]``, ``[K, d, d]`` summed over chunks in the accumulation dtype)::

    pi_k = sum_i tau_ik / N       W_k = sum_i tau_ik u_ik       mu_k = sum_i tau_ik u_ik x_i / W_k
    S_k = sum_i tau_ik u_ik (x_i - mu_k)(x_i - mu_k)^T / W_k + reg I

``nu_k`` (optional) solves the ECM equation by bisection in ``log nu`` for all components at once, within
``[1, max_dof]``. Why ``W_k`` and not ``n_k``: docs/design.md, "Student-t mixture EM".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._covariance import CovarianceModel
from ._fit_context import FitContext

__all__ = [
    "MixtureParameters",
    "EStepOperands",
    "EStepResult",
    "prepare_operands",
    "e_step",
    "m_step",
    "update_dofs",
    "log_normaliser",
]

MIN_DOF = 1.0
"""Lower end of the degrees-of-freedom search (as ``studenttmixture``: below 1 the mean does not exist)."""


@dataclass
class MixtureParameters:
    """Parameters of a ``K``-component mixture in ``d`` dimensions (all in the parameter dtype, one device).

    Attributes
    ----------
    weights
        Mixing proportions ``[K]``.
    means
        Locations ``[K, d]``.
    covariances
        Scale matrices ``[K, d, d]`` (full) or variances ``[K, d]`` (diag).
    factor
        Cholesky factors ``L_k`` ``[K, d, d]`` or standard deviations ``[K, d]``.
    dofs
        Degrees of freedom ``[K]``; ``inf`` for Gaussian components.
    """

    weights: torch.Tensor
    means: torch.Tensor
    covariances: torch.Tensor
    factor: torch.Tensor
    dofs: torch.Tensor

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None, copy: bool = False) -> MixtureParameters:
        """The parameters on ``device`` (and ``dtype``); ``copy=True`` never aliases ``self``."""
        fields = (self.weights, self.means, self.covariances, self.factor, self.dofs)
        return MixtureParameters(*(t.to(device, dtype, copy=copy) for t in fields))


@dataclass
class EStepOperands:
    """Everything one E-step needs, precomputed once per iteration in the compute dtype."""

    center: torch.Tensor  # [d], subtracted from every row (numerical conditioning only)
    log_offset: torch.Tensor  # [K], log pi_k + log-normaliser_k
    half_dof_d: torch.Tensor | None  # [K], (nu_k + d) / 2; None for a Gaussian mixture
    dofs: torch.Tensor | None  # [K]; None for a Gaussian mixture
    covariance: tuple[torch.Tensor, ...]  # CovarianceModel.operands


@dataclass
class EStepResult:
    """Outcome of one pass over the data.

    Attributes
    ----------
    log_lik
        ``log p(x_i)`` per row ``[N]`` (compute dtype).
    log_resp
        ``log tau`` ``[N, K]`` when requested, else None.
    resp_sum, weight_sum, dof_term
        ``n_k``, ``W_k``, ``sum_i tau_ik (log u_ik - u_ik)`` (``[K]``, accumulation dtype) when statistics were
        requested (``dof_term`` only for estimated ``nu``).
    moments
        Covariance-structure moments (see ``_covariance.py``).
    resp, weights
        ``tau`` and ``w = tau * u`` ``[N, K]`` (compute dtype) for structures whose M-step needs a second pass.
    """

    log_lik: torch.Tensor
    log_resp: torch.Tensor | None = None
    resp_sum: torch.Tensor | None = None
    weight_sum: torch.Tensor | None = None
    dof_term: torch.Tensor | None = None
    moments: tuple[torch.Tensor, ...] | None = None
    resp: torch.Tensor | None = None
    weights: torch.Tensor | None = None


def log_normaliser(dofs: torch.Tensor, half_log_det: torch.Tensor, d: int, gaussian: bool) -> torch.Tensor:
    """Log normalising constant of each component, ``[K]``: Student-t, or Gaussian when ``gaussian``."""
    if gaussian:
        return -0.5 * d * math.log(2 * math.pi) - half_log_det
    half = 0.5 * dofs
    return torch.lgamma(half + 0.5 * d) - torch.lgamma(half) - 0.5 * d * torch.log(dofs * math.pi) - half_log_det


def prepare_operands(
    params: MixtureParameters, model: CovarianceModel, center: torch.Tensor, dtype: torch.dtype, gaussian: bool
) -> EStepOperands:
    """Precompute the E-step constants of ``params`` in the compute ``dtype`` (``gaussian``: all ``nu = inf``)."""
    d = params.means.shape[1]
    log_weights = params.weights.clamp_min(torch.finfo(params.weights.dtype).tiny).log()
    log_offset = log_weights + log_normaliser(params.dofs, model.half_log_det(params.factor), d, gaussian)
    return EStepOperands(
        center=center.to(dtype),
        log_offset=log_offset.to(dtype),
        half_dof_d=None if gaussian else (0.5 * (params.dofs + d)).to(dtype),
        dofs=None if gaussian else params.dofs.to(dtype),
        covariance=model.operands(params.means, params.factor, center, dtype),
    )


def e_step(
    x: torch.Tensor,
    ops: EStepOperands,
    model: CovarianceModel,
    chunk_size: int,
    *,
    statistics: bool = False,
    dof_term: bool = False,
    keep_log_resp: bool = False,
    accumulate_dtype: torch.dtype | None = None,
) -> EStepResult:
    """One pass over ``x`` ``[N, d]`` in chunks of ``chunk_size`` rows.

    Parameters
    ----------
    x
        Data in the compute dtype (not centred; ``ops.center`` is subtracted per chunk).
    ops
        From :func:`prepare_operands`.
    model
        The covariance structure.
    chunk_size
        Rows per chunk; the full structure holds ``K x (d / b) x chunk_size`` values at a time (``_covariance.py``).
    statistics
        Accumulate the M-step sufficient statistics.
    dof_term
        Also accumulate ``sum_i tau_ik (log u_ik - u_ik)`` (for estimating ``nu``).
    keep_log_resp
        Return ``log tau`` ``[N, K]``.
    accumulate_dtype
        Dtype of the summed statistics (default: ``x``'s dtype).

    Returns
    -------
    EStepResult
    """
    n, d = x.shape
    k = ops.log_offset.shape[0]
    acc = accumulate_dtype or x.dtype
    log_lik = torch.empty(n, dtype=x.dtype, device=x.device)
    out = EStepResult(log_lik=log_lik)
    if keep_log_resp:
        out.log_resp = torch.empty(n, k, dtype=x.dtype, device=x.device)
    if statistics:
        out.resp_sum = torch.zeros(k, dtype=acc, device=x.device)
        out.weight_sum = torch.zeros(k, dtype=acc, device=x.device)
        out.dof_term = torch.zeros(k, dtype=acc, device=x.device) if dof_term else None
        out.moments = model.zero_moments(k, acc, x.device)
        if model.needs_weights:
            out.resp = torch.empty(n, k, dtype=x.dtype, device=x.device)
            out.weights = torch.empty(n, k, dtype=x.dtype, device=x.device)
    for start in range(0, n, chunk_size):
        xc = x[start : start + chunk_size] - ops.center
        rows = slice(start, start + xc.shape[0])
        delta = model.mahalanobis(xc, ops.covariance)
        if ops.dofs is None:
            log_prob = ops.log_offset - 0.5 * delta
        else:
            log_prob = ops.log_offset - ops.half_dof_d * torch.log1p(delta / ops.dofs)
        lse = torch.logsumexp(log_prob, dim=1)
        log_lik[rows] = lse
        log_resp = log_prob.sub_(lse[:, None])
        if keep_log_resp:
            out.log_resp[rows] = log_resp
        if not statistics:
            continue
        resp = log_resp.exp()
        out.resp_sum += resp.sum(0).to(acc)
        if ops.dofs is None:
            w = resp
        else:
            u = (2 * ops.half_dof_d) / (ops.dofs + delta)
            w = resp * u
            if dof_term:
                out.dof_term += (resp * (u.log() - u)).sum(0).to(acc)
        out.weight_sum += w.sum(0).to(acc)
        model.accumulate(out.moments, xc, w)
        if model.needs_weights:
            out.resp[rows], out.weights[rows] = resp, w
    return out


def m_step(
    stats: EStepResult, params: MixtureParameters, ctx: FitContext, estimate_dof: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """New ``(weights, means, covariances, dofs)`` from the statistics of an E-step of ``params`` on ``ctx.x``.

    With ``ctx.prior`` the covariances are the MAP update (shrinkage, see ``_covariance.py``); ``estimate_dof``
    adds the ECM update of ``nu`` (capped at ``ctx.density.max_dof``).

    ``W_k`` gets ``10 eps`` added (as scikit-learn and ``studenttmixture`` do) so an empty component yields a
    finite (regulariser-only) covariance instead of 0/0; such components are then re-seeded by the caller.
    """
    weight_sum = stats.weight_sum + 10 * torch.finfo(stats.weight_sum.dtype).eps
    weights = stats.resp_sum / stats.resp_sum.sum()
    model, center = ctx.model, ctx.center
    if model.needs_weights:
        new_means = model.new_means(stats.moments, weight_sum, center)
        model.scatter(stats.moments, ctx.x, stats.resp, stats.weights, new_means, ctx.chunk)
    means, covariances = model.m_step(stats.moments, weight_sum, center, ctx.reg, ctx.prior)
    dofs = params.dofs
    if estimate_dof:
        dofs = update_dofs(params.dofs, stats.resp_sum, stats.dof_term, params.means.shape[1], ctx.density.max_dof)
    return weights, means, covariances, dofs


def update_dofs(
    dofs: torch.Tensor, resp_sum: torch.Tensor, dof_term: torch.Tensor, d: int, max_dof: float, n_bisect: int = 64
) -> torch.Tensor:
    """ECM update of every ``nu_k`` at once: bisection in ``log nu`` on ``[1, max_dof]`` (no host sync).

    The root of ``f(nu) = c_k + log(nu/2) - psi(nu/2)`` with
    ``c_k = 1 + dof_term_k / n_k + psi((nu_k+d)/2) - log((nu_k+d)/2)``; ``log x - psi(x)`` decreases from
    ``+inf`` to 0, so the root is unique; it is clipped to the interval (``max_dof`` on near-Gaussian
    components). Components with ``n_k`` below one point keep their ``nu``.
    """
    half = 0.5 * (dofs + d)
    c = 1.0 + dof_term / resp_sum.clamp_min(torch.finfo(resp_sum.dtype).tiny) + torch.digamma(half) - torch.log(half)
    lo = torch.full_like(dofs, math.log(MIN_DOF))
    hi = torch.full_like(dofs, math.log(max_dof))
    for _ in range(n_bisect):
        mid = 0.5 * (lo + hi)
        half_nu = 0.5 * mid.exp()
        positive = c + torch.log(half_nu) - torch.digamma(half_nu) > 0  # root lies above mid
        lo = torch.where(positive, mid, lo)
        hi = torch.where(positive, hi, mid)
    new = (0.5 * (lo + hi)).exp()
    return torch.where(resp_sum >= 1.0, new, dofs)
