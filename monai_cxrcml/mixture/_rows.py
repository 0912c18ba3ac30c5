"""Input rows of the mixture estimators: ``X`` as a 2-D float tensor, its non-finite rows found and reported."""

from __future__ import annotations

import numpy as np
import torch

from ._warnings import warn

__all__ = ["as_rows", "finite_rows", "scatter_rows"]


def as_rows(X: object, owner: str, where: str, device: str | torch.device | None) -> torch.Tensor:
    """``X`` as a detached 2-D float32/float64 tensor ``[N, d]`` on ``device`` (None: where it is).

    numpy arrays and array-likes are accepted; other dtypes are cast to float32.
    """
    x = torch.from_numpy(np.ascontiguousarray(X)) if isinstance(X, np.ndarray) else torch.as_tensor(X)
    if x.ndim != 2:
        raise ValueError(
            f"{owner}.{where}: X must be 2-D [n_samples, n_features], got shape {tuple(x.shape)}; reshape a single "
            "feature with X.reshape(-1, 1) or a single sample with X.reshape(1, -1)."
        )
    if x.dtype not in (torch.float32, torch.float64):
        x = x.to(torch.float32)
    if device is not None:
        x = x.to(device)
    return x.detach()


def finite_rows(x: torch.Tensor, owner: str, where: str) -> torch.Tensor | None:
    """Mask ``[N]`` of the rows of ``x`` without NaN or inf, or None when all are finite; warns about the others.

    Raises a ValueError when no row is finite.
    """
    finite = torch.isfinite(x).all(1)
    n_bad = x.shape[0] - int(finite.sum())
    if n_bad == 0:
        return None
    first = (~finite).nonzero()[:10, 0].tolist()
    if n_bad == x.shape[0]:
        raise ValueError(
            f"{owner}.{where}: every row of X holds NaN or inf (rows {first}...); nothing to fit. "
            "Check the embeddings (e.g. a diverged model or an unfilled memory bank)."
        )
    consequence = (
        "left out of the fit" if where == "fit" else "given label -1, zero responsibilities and NaN log-likelihood"
    )
    warn(
        f"{owner}.{where}: {n_bad} of {x.shape[0]} rows of X hold NaN or inf (first rows {first}); "
        f"they are {consequence}.",
        RuntimeWarning,
    )
    return finite


def scatter_rows(values: torch.Tensor, mask: torch.Tensor, fill: float) -> torch.Tensor:
    """Rows of ``values`` placed at ``mask`` ``[N]`` in a tensor of ``N`` rows filled with ``fill``."""
    out = torch.full((mask.numel(), *values.shape[1:]), fill, dtype=values.dtype, device=values.device)
    out[mask] = values
    return out
