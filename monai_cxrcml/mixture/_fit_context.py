"""What one mixture fit works with: the component density, the data's constants and the start settings.

:class:`FitContext` is built once per :meth:`~monai_cxrcml.mixture.base.BaseMixture.fit` from the finite rows
``x`` ``[N, d]`` and read by initialisation, the EM loop and re-seeding. ``center`` ``[d]`` and the parameters are in
the accumulation dtype; ``x`` stays in the compute dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._covariance import CovarianceModel, CovariancePrior

__all__ = ["AUTO_REG", "ComponentDensity", "FitContext", "chunk_rows", "data_moments", "regulariser"]

AUTO_REG = 1e-3
"""``reg_covar="auto"``: this share of the mean per-feature variance of the fitted rows when the components hold
about as many rows as there are features, less in proportion when they hold more."""

_CHUNK_BYTES = {"cuda": 1 << 30}
_CHUNK_BYTES_DEFAULT = 1 << 23


@dataclass(frozen=True)
class ComponentDensity:
    """The component family EM fits.

    Attributes
    ----------
    dof
        Degrees of freedom ``nu`` every component starts with; ``inf`` = Gaussian components.
    estimate_dof
        Whether ``nu_k`` is estimated per component (ECM step, within ``[1, max_dof]``).
    max_dof
        Cap of estimated ``nu``.
    gaussian_start
        Fit a Gaussian mixture from each seeded start first, then Student-t EM from its parameters.
    """

    dof: float
    estimate_dof: bool = False
    max_dof: float = math.inf
    gaussian_start: bool = False

    @property
    def gaussian(self) -> bool:
        """Whether every component is Gaussian (``nu = inf``)."""
        return math.isinf(self.dof)


@dataclass
class FitContext:
    """Everything initialisation, EM and re-seeding need for one fit.

    Attributes
    ----------
    x
        Finite rows ``[N, d]`` in the compute dtype, on the fit device.
    model
        Covariance structure.
    center
        Column means ``[d]`` (accumulation dtype), subtracted for numerical conditioning.
    mean_var, reg
        Mean per-feature variance of ``x`` and the regulariser added to every covariance diagonal.
    chunk
        Rows per E-step block.
    prior
        Inverse-Wishart prior of the covariance M-step, or None (maximum likelihood).
    density
        The component family.
    tol, max_iter, verbose
        Convergence threshold, iteration cap and per-iteration printing of the EM loop.
    init_params, means_init, weights_init, covariances_init
        Seeding method and explicit start parameters (array-likes or None).
    owner
        Class name of the estimator, for messages.
    """

    x: torch.Tensor
    model: CovarianceModel
    center: torch.Tensor
    mean_var: float
    reg: float
    chunk: int
    prior: CovariancePrior | None
    density: ComponentDensity
    tol: float
    max_iter: int
    verbose: bool
    init_params: str
    means_init: object | None
    weights_init: object | None
    covariances_init: object | None
    owner: str

    @property
    def explicit_start(self) -> bool:
        """Whether any start parameter was given explicitly."""
        return self.means_init is not None or self.weights_init is not None or self.covariances_init is not None


def chunk_rows(chunk_size: int | None, k: int, model: CovarianceModel, x: torch.Tensor) -> int:
    """Rows per E-step block: ``chunk_size``, or as many as keep the block near 8 MiB (CPU) / 1 GiB (CUDA)."""
    if chunk_size is not None:
        return chunk_size
    budget = _CHUNK_BYTES.get(x.device.type, _CHUNK_BYTES_DEFAULT)
    return max(1, min(x.shape[0], budget // model.bytes_per_row(k, x.element_size())))


def data_moments(x: torch.Tensor, chunk: int, acc: torch.dtype) -> tuple[torch.Tensor, float, float]:
    """Column means ``[d]`` (``acc`` dtype), mean per-feature variance and mean square of ``x`` ``[N, d]``."""
    n = x.shape[0]
    center = x.sum(0, dtype=acc) / n
    sq = torch.zeros((), dtype=acc, device=x.device)
    for start in range(0, n, chunk):
        sq += (x[start : start + chunk].to(acc) - center).square().sum()
    mean_var = float(sq) / (n * x.shape[1])
    return center, mean_var, mean_var + float(center.square().mean())


def regulariser(reg_covar: float | str, x: torch.Tensor, k: int, mean_var: float, mean_sq: float) -> float:
    """The covariance regulariser of a fit of ``k`` components to ``x`` ``[N, d]``: ``reg_covar``, or for ``"auto"``
    ``AUTO_REG x min(1, d k / N) x mean_var`` with an ``eps^2 x mean_sq`` floor (``eps`` of ``x``'s dtype).

    See docs/design.md, "Student-t mixture EM".
    """
    if reg_covar != "auto":
        return float(reg_covar)
    n, d = x.shape
    eps = torch.finfo(x.dtype).eps
    return max(AUTO_REG * min(1.0, d * k / n) * mean_var, eps * eps * mean_sq) or eps * eps
