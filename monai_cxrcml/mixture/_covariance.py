"""Covariance structures of a mixture (factorisation, Mahalanobis distances, M-step); ``_em.py`` never branches on them.

``full`` (``S_k = L_k L_k^T``, ``[K, d, d]``)
    E-step: a chunk of centred rows ``[n, d]`` is whitened by all ``K`` inverse Cholesky factors at once in ``b``
    block rows that skip the zero upper triangle; only ``[n, K, d / b]`` is ever held. M-step: the scatter about the
    new means is a second pass over, per component, the rows whose responsibility exceeds ``eps^2``.
``diag`` (``S_k = diag(v_k)``, ``[K, d]``)
    Distances by the expansion ``x^2 . (1/v) - 2 x . (mu/v) + mu^2 . (1/v)``; moments ``sum w x`` and
    ``sum w x^2`` summed during the E-step.

Shrinkage (:class:`CovariancePrior`): the MAP update under an inverse-Wishart prior of ``kappa`` pseudo-points of
scale ``Psi``, ``S_k = (sum_i w_ik (x_i - mu_k)(x_i - mu_k)^T + kappa Psi) / (W_k + kappa) + reg I``. Why each
choice: docs/design.md, "Student-t mixture EM".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

__all__ = ["CovarianceModel", "CovariancePrior", "FullCovariance", "DiagCovariance", "covariance_model"]


@dataclass
class CovariancePrior:
    """Inverse-Wishart prior of the M-step: ``points`` pseudo-points (``kappa``) of scale ``scale`` (``Psi``).

    ``scale`` is ``[d, d]`` (full) or ``[d]`` (diag), in the accumulation dtype, from
    :meth:`CovarianceModel.data_scale`.
    """

    points: float
    scale: torch.Tensor


class CovarianceModel(ABC):
    """One covariance structure: how to factor it, measure distances and update it."""

    name: str
    needs_weights: bool
    """Whether :meth:`scatter` needs the E-step weights ``w = tau * u`` of every row (a second data pass)."""

    def __init__(self, d: int) -> None:
        self.d = d

    @abstractmethod
    def factorize(self, covariances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Factor ``covariances``; return ``(factor, ok [K] bool)`` (``factor`` is garbage where not ``ok``)."""

    @abstractmethod
    def half_log_det(self, factor: torch.Tensor) -> torch.Tensor:
        """``0.5 * log|S_k|`` from the factor, ``[K]``."""

    @abstractmethod
    def precisions_cholesky(self, factor: torch.Tensor) -> torch.Tensor:
        """scikit-learn's ``precisions_cholesky_``: ``P_k`` with ``S_k^-1 = P_k P_k^T``."""

    @abstractmethod
    def operands(
        self, means: torch.Tensor, factor: torch.Tensor, center: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, ...]:
        """Per-iteration constants of :meth:`mahalanobis` in the compute ``dtype``."""

    @abstractmethod
    def mahalanobis(self, xc: torch.Tensor, operands: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Squared Mahalanobis distances ``[n, K]`` of centred rows ``xc`` ``[n, d]``."""

    @abstractmethod
    def bytes_per_row(self, k: int, itemsize: int) -> int:
        """Approximate transient memory of the E-step per row of a chunk (for automatic chunk sizes)."""

    @abstractmethod
    def zero_moments(self, k: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Zeroed sufficient statistics."""

    @abstractmethod
    def accumulate(self, moments: tuple[torch.Tensor, ...], xc: torch.Tensor, w: torch.Tensor) -> None:
        """Add one chunk's moments (E-step weights ``w = tau * u`` ``[n, K]``) to ``moments`` in place."""

    def scatter(
        self,
        moments: tuple[torch.Tensor, ...],
        x: torch.Tensor,
        resp: torch.Tensor,
        w: torch.Tensor,
        means: torch.Tensor,
        chunk_size: int,
    ) -> None:
        """Second pass (only when :attr:`needs_weights`): add the scatter about the new ``means`` to ``moments``."""

    @abstractmethod
    def m_step(
        self,
        moments: tuple[torch.Tensor, ...],
        weight_sum: torch.Tensor,
        center: torch.Tensor,
        reg: float,
        prior: CovariancePrior | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """New ``(means [K, d], covariances)`` from the moments and ``W_k = sum_i w_ik`` ``[K]`` (MAP with
        ``prior``)."""

    @abstractmethod
    def data_scale(self, x: torch.Tensor, center: torch.Tensor, chunk_size: int) -> torch.Tensor:
        """Covariance of all rows of ``x`` about ``center`` (``[d, d]`` or ``[d]``, ``center``'s dtype)."""

    @abstractmethod
    def isotropic(self, k: int, variance: torch.Tensor) -> torch.Tensor:
        """``K`` copies of ``variance * I`` (``variance``: a 0-d tensor with the dtype and device)."""

    @abstractmethod
    def add_to_diagonal(self, covariances: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
        """``S_k + amount_k I`` (``amount`` ``[K]``), out of place."""

    @abstractmethod
    def outer(self, v: torch.Tensor) -> torch.Tensor:
        """``v v^T`` in this structure for vectors ``v`` ``[..., d]``: ``[..., d, d]`` (full) or ``[..., d]`` (its
        diagonal)."""

    def new_means(self, moments: tuple[torch.Tensor, ...], weight_sum: torch.Tensor, center: torch.Tensor):
        """``mu_k' = sum_i w_ik x_i / W_k`` (``moments[0]`` holds ``sum_i w_ik (x_i - center)``)."""
        return moments[0] / weight_sum[:, None] + center


def _triangular_blocks(d: int) -> int:
    """Number of block rows for the inverse-factor product: blocks of >= 32 features, at most 8, dividing ``d``."""
    return max(b for b in range(1, max(1, min(8, d // 32)) + 1) if d % b == 0)


class FullCovariance(CovarianceModel):
    """Full covariance matrices ``[K, d, d]``, factor = lower Cholesky ``L_k``."""

    name = "full"
    needs_weights = True

    def factorize(self, covariances):
        factor, info = torch.linalg.cholesky_ex(covariances)
        return factor, info == 0

    def half_log_det(self, factor):
        return factor.diagonal(dim1=-2, dim2=-1).log().sum(-1)

    def _inverse_factor(self, factor: torch.Tensor) -> torch.Tensor:
        # a contiguous right-hand side: LAPACK's trsm on a stride-0 expanded identity is ~1000x slower
        eye = torch.eye(self.d, dtype=factor.dtype, device=factor.device).expand_as(factor).contiguous()
        return torch.linalg.solve_triangular(factor, eye, upper=False)

    def precisions_cholesky(self, factor):
        return self._inverse_factor(factor).mT

    def operands(self, means, factor, center, dtype):
        k, d = means.shape
        inverse = self._inverse_factor(factor)
        neg_shift = -(inverse @ (means - center)[:, :, None])[:, :, 0]
        step = d // _triangular_blocks(d)
        # block row r: features [r*step, (r+1)*step) of every y_k depend on x[:, :(r+1)*step] only
        operands = []
        for lo in range(0, d, step):
            operands.append(neg_shift[:, lo : lo + step].reshape(k * step).to(dtype))
            block = inverse[:, lo : lo + step, : lo + step].reshape(k * step, lo + step)
            operands.append(block.T.contiguous().to(dtype))
        return tuple(operands)

    def mahalanobis(self, xc, operands):
        n, step = xc.shape[0], self.d * 2 // len(operands)
        delta = None
        for r in range(len(operands) // 2):
            bias, block = operands[2 * r], operands[2 * r + 1]
            # [n, K * step]: a slice of every y_k (mm then add: addmm's broadcast of the bias is a slow extra pass)
            y = torch.mm(xc[:, : (r + 1) * step], block).add_(bias)
            part = torch.linalg.vector_norm(y.view(n, -1, step), dim=-1).square_()
            delta = part if delta is None else delta.add_(part)
        return delta

    def bytes_per_row(self, k, itemsize):
        return k * (self.d // _triangular_blocks(self.d) + 4) * itemsize

    def zero_moments(self, k, dtype, device):
        first = torch.zeros(k, self.d, dtype=dtype, device=device)
        return first, torch.zeros(k, self.d, self.d, dtype=dtype, device=device)

    def accumulate(self, moments, xc, w):
        moments[0].add_((w.T @ xc).to(moments[0].dtype))

    def scatter(self, moments, x, resp, w, means, chunk_size):
        s2 = moments[1]
        significant = resp > torch.finfo(resp.dtype).eps ** 2
        counts = significant.sum(0).tolist()
        rows = significant.T.nonzero()[:, 1]  # row indices grouped by component (component-major order)
        means = means.to(x.dtype)
        start = 0
        for k, count in enumerate(counts):
            for lo in range(start, start + count, chunk_size):
                idx = rows[lo : min(lo + chunk_size, start + count)]
                z = (x[idx] - means[k]) * w[idx, k].sqrt()[:, None]
                s2[k] += (z.T @ z).to(s2.dtype)
            start += count

    def m_step(self, moments, weight_sum, center, reg, prior=None):
        scatter = moments[1] if prior is None else moments[1] + prior.points * prior.scale
        cov = scatter / (weight_sum if prior is None else weight_sum + prior.points)[:, None, None]
        cov = 0.5 * (cov + cov.mT)
        cov.diagonal(dim1=-2, dim2=-1).add_(reg)
        return self.new_means(moments, weight_sum, center), cov

    def data_scale(self, x, center, chunk_size):
        scale = torch.zeros(self.d, self.d, dtype=center.dtype, device=x.device)
        for start in range(0, x.shape[0], chunk_size):
            xc = x[start : start + chunk_size].to(center.dtype) - center
            scale += xc.T @ xc
        return scale / x.shape[0]

    def isotropic(self, k, variance):
        eye = torch.eye(self.d, dtype=variance.dtype, device=variance.device)
        return (variance * eye).expand(k, self.d, self.d).clone()

    def add_to_diagonal(self, covariances, amount):
        eye = torch.eye(self.d, dtype=covariances.dtype, device=covariances.device)
        return covariances + amount[:, None, None] * eye

    def outer(self, v):
        return v[..., :, None] * v[..., None, :]


class DiagCovariance(CovarianceModel):
    """Diagonal covariances ``[K, d]`` (variances), factor = standard deviations ``[K, d]``."""

    name = "diag"
    needs_weights = False

    def factorize(self, covariances):
        ok = (covariances > 0).all(-1) & torch.isfinite(covariances).all(-1)
        return covariances.clamp_min(0).sqrt(), ok

    def half_log_det(self, factor):
        return factor.log().sum(-1)

    def precisions_cholesky(self, factor):
        return factor.reciprocal()

    def operands(self, means, factor, center, dtype):
        precision = factor.square().reciprocal()
        mc = means - center
        return precision.T.to(dtype), (mc * precision).T.to(dtype), (mc * mc * precision).sum(1).to(dtype)

    def mahalanobis(self, xc, operands):
        precision_t, scaled_means_t, offset = operands
        delta = torch.addmm(offset, xc * xc, precision_t)
        delta.addmm_(xc, scaled_means_t, alpha=-2.0)
        return delta.clamp_min_(0.0)

    def zero_moments(self, k, dtype, device):
        return torch.zeros(k, self.d, dtype=dtype, device=device), torch.zeros(k, self.d, dtype=dtype, device=device)

    def bytes_per_row(self, k, itemsize):
        return (3 * self.d + 4 * k) * itemsize

    def accumulate(self, moments, xc, w):
        wt, x = w.T.to(moments[0].dtype), xc.to(moments[0].dtype)
        moments[0].add_(wt @ x)
        moments[1].add_(wt @ (x * x))

    def m_step(self, moments, weight_sum, center, reg, prior=None):
        m = moments[0] / weight_sum[:, None]
        var = (moments[1] / weight_sum[:, None] - m * m).clamp_min_(0.0)
        if prior is not None:  # (W var + kappa psi) / (W + kappa): the scatter is W var
            var = (weight_sum[:, None] * var + prior.points * prior.scale) / (weight_sum + prior.points)[:, None]
        return m + center, var + reg

    def data_scale(self, x, center, chunk_size):
        scale = torch.zeros(self.d, dtype=center.dtype, device=x.device)
        for start in range(0, x.shape[0], chunk_size):
            scale += (x[start : start + chunk_size].to(center.dtype) - center).square().sum(0)
        return scale / x.shape[0]

    def isotropic(self, k, variance):
        return variance.expand(k, self.d).clone()

    def add_to_diagonal(self, covariances, amount):
        return covariances + amount[:, None]

    def outer(self, v):
        return v * v


def covariance_model(covariance_type: str, d: int) -> CovarianceModel:
    """The structure named ``covariance_type`` (``"full"`` or ``"diag"``) for ``d`` features."""
    models = {"full": FullCovariance, "diag": DiagCovariance}
    if covariance_type not in models:
        raise ValueError(f"covariance_type={covariance_type!r} is not supported: use 'full' or 'diag'.")
    return models[covariance_type](d)
