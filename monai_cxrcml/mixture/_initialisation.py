"""Start parameters of a mixture fit: explicit ones where given, the rest seeded from the rows.

Seeding (``ctx.init_params``): ``"k-means"`` (:func:`~monai_cxrcml.mixture.kmeans.kmeans`, default settings),
``"k-means++"`` (the seeds alone) or ``"random"`` rows. Every seeded component starts with weight ``1/K`` and the
isotropic covariance ``(mean variance + reg) I``. Why: docs/design.md, "Student-t mixture EM".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ._degenerate import repair_covariances
from ._em import MixtureParameters
from ._fit_context import FitContext
from .kmeans import kmeans, kmeans_plusplus

__all__ = ["seeded_start"]


def seeded_start(ctx: FitContext, k: int, generator: torch.Generator) -> MixtureParameters:
    """Start parameters of ``k`` components (factorised), in the accumulation dtype on the fit device.

    May return fewer than ``k`` components when ``ctx.x`` has fewer distinct rows.
    """
    x = ctx.x
    n, d = x.shape
    acc, device = ctx.center.dtype, x.device
    if ctx.means_init is not None:
        means = _start_parameter(ctx.means_init, (k, d), "means_init", acc, device)
    else:
        xc = x - ctx.center.to(x.dtype)
        if ctx.init_params == "k-means":
            seeds = kmeans(xc, k, generator, ctx.chunk)
        elif ctx.init_params == "random":
            seeds = xc[torch.randperm(n, generator=generator)[:k].to(device)]
        else:
            seeds = xc[kmeans_plusplus(xc, k, generator)]
        k = seeds.shape[0]
        means = seeds.to(acc) + ctx.center
    if ctx.weights_init is not None:
        weights = _start_parameter(ctx.weights_init, (k,), "weights_init", acc, device)
    else:
        weights = torch.full((k,), 1.0 / k, dtype=acc, device=device)
    if ctx.covariances_init is not None:
        shape = (k, d, d) if ctx.model.name == "full" else (k, d)
        covariances = _start_parameter(ctx.covariances_init, shape, "covariances_init", acc, device)
    else:
        covariances = ctx.model.isotropic(k, torch.tensor(ctx.mean_var + ctx.reg, dtype=acc, device=device))
    factor, ok = ctx.model.factorize(covariances)
    if not bool(ok.all()):
        if ctx.covariances_init is not None:
            bad = (~ok).nonzero()[:, 0].tolist()
            raise ValueError(f"{ctx.owner}: covariances_init of component(s) {bad} is not positive definite.")
        covariances, factor = repair_covariances(ctx, covariances, ok)
    dofs = torch.full((k,), float(ctx.density.dof), dtype=acc, device=device)
    return MixtureParameters(weights, means, covariances, factor, dofs)


def _start_parameter(
    value: object, shape: Sequence[int], name: str, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """A user-given start parameter as a tensor of ``shape`` (an error naming ``name`` otherwise)."""
    tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.array(value, dtype=np.float64))
    if tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(tensor.shape)}.")
    return tensor.to(dtype=dtype, device=device).clone()
