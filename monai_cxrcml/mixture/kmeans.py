"""Seeding for mixture fits: greedy k-means++, Lloyd's k-means and best-of-n k-means, in torch on the data's device.

Random draws come from a CPU ``torch.Generator`` (a handful of uniforms per centre) and are mapped to rows on the
data's device by inverse-CDF search, so one seed picks the same rows on the CPU and on a GPU.

Squared distances use the expansion ``|x|^2 - 2 x.c + |c|^2`` (one matrix product); values below the rounding
noise of that expansion are set to zero, so duplicated rows are recognised as such and a data set with fewer
distinct rows than requested centres yields fewer centres instead of duplicated ones.
"""

from __future__ import annotations

import math

import torch

__all__ = ["squared_distances", "kmeans_plusplus", "lloyd", "kmeans"]


def squared_distances(x: torch.Tensor, centers: torch.Tensor, x_sq: torch.Tensor | None = None) -> torch.Tensor:
    """Squared Euclidean distances between rows, with rounding noise clipped to exact zeros.

    Parameters
    ----------
    x
        Points ``[N, d]``.
    centers
        Centres ``[k, d]`` (same dtype and device as ``x``).
    x_sq
        Optional precomputed ``(x * x).sum(1)``, ``[N]``.

    Returns
    -------
    torch.Tensor
        ``[N, k]``, non-negative; entries smaller than the expansion's rounding error are exactly 0.
    """
    if x_sq is None:
        x_sq = (x * x).sum(1)
    c_sq = (centers * centers).sum(1)
    d2 = torch.addmm(x_sq[:, None] + c_sq[None, :], x, centers.T, alpha=-2.0)
    noise = 64 * torch.finfo(x.dtype).eps * (x_sq[:, None] + c_sq[None, :])
    return torch.where(d2 > noise, d2, torch.zeros((), dtype=d2.dtype, device=d2.device))


def _draw_rows(cum_weight: torch.Tensor, generator: torch.Generator, count: int) -> torch.Tensor:
    """Rows drawn with probability proportional to the increments of ``cum_weight`` ``[N]`` (float64)."""
    uniforms = torch.rand(count, generator=generator, dtype=torch.float64).to(cum_weight.device)
    rows = torch.searchsorted(cum_weight, uniforms * cum_weight[-1], right=True)
    return rows.clamp_(max=cum_weight.numel() - 1)


def kmeans_plusplus(
    x: torch.Tensor, n_clusters: int, generator: torch.Generator, n_local_trials: int | None = None
) -> torch.Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; the greedy variant of scikit-learn).

    Each new centre is the best of ``n_local_trials`` candidates drawn with probability proportional to the
    squared distance to the nearest centre chosen so far ("best" = lowest total squared distance afterwards).

    Parameters
    ----------
    x
        Points ``[N, d]``, float.
    n_clusters
        Number of centres wanted, ``>= 1``.
    generator
        CPU generator for the random draws.
    n_local_trials
        Candidates per centre; default ``2 + int(log(n_clusters))`` like scikit-learn.

    Returns
    -------
    torch.Tensor
        Row indices of the centres, long ``[k]`` on ``x.device``, ``k <= n_clusters``. ``k`` is smaller than
        ``n_clusters`` exactly when ``x`` holds only ``k`` distinct rows (all points coincide with a centre).
    """
    n = x.shape[0]
    if n_local_trials is None:
        n_local_trials = 2 + int(math.log(n_clusters))
    x_sq = (x * x).sum(1)
    first = torch.randint(n, (1,), generator=generator).to(x.device)
    indices = [first]
    closest = squared_distances(x, x[first], x_sq)[:, 0]
    for _ in range(1, n_clusters):
        cum = closest.to(torch.float64).cumsum(0)
        if cum[-1].item() <= 0.0:  # every point coincides with a centre: no further distinct centre exists
            break
        candidates = _draw_rows(cum, generator, n_local_trials)
        trial = torch.minimum(closest[:, None], squared_distances(x, x[candidates], x_sq))
        best = trial.to(torch.float64).sum(0).argmin()
        indices.append(candidates[best].view(1))
        closest = trial[:, best]
    return torch.cat(indices)


def lloyd(x: torch.Tensor, centers: torch.Tensor, max_iter: int, chunk_size: int) -> tuple[torch.Tensor, float]:
    """Lloyd's k-means iterations from given centres, until no assignment changes or ``max_iter``.

    A centre that loses all its points stays where it was.

    Parameters
    ----------
    x
        Points ``[N, d]``.
    centers
        Starting centres ``[k, d]``.
    max_iter
        Maximum assignment/update rounds.
    chunk_size
        Rows per distance block (bounds memory at ``chunk_size x k``).

    Returns
    -------
    tuple[torch.Tensor, float]
        Refined centres ``[k, d]`` in ``x``'s dtype and the inertia (sum of squared distances of the points to
        their nearest centre) of the last assignment.
    """
    k, previous, inertia = centers.shape[0], None, math.inf
    for _ in range(max_iter):
        sums = torch.zeros(k, x.shape[1], dtype=torch.float64, device=x.device)
        counts = torch.zeros(k, dtype=torch.float64, device=x.device)
        total = torch.zeros((), dtype=torch.float64, device=x.device)
        labels = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
        for start in range(0, x.shape[0], chunk_size):
            block = x[start : start + chunk_size]
            nearest, block_labels = squared_distances(block, centers).min(1)
            labels[start : start + block.shape[0]] = block_labels
            total += nearest.sum(dtype=torch.float64)
            sums.index_add_(0, block_labels, block.to(torch.float64))
            counts.index_add_(0, block_labels, torch.ones_like(nearest, dtype=torch.float64))
        inertia = float(total)
        if previous is not None and torch.equal(labels, previous):
            break
        moved = sums / counts.clamp_min(1.0)[:, None]
        centers = torch.where(counts[:, None] > 0, moved.to(x.dtype), centers)
        previous = labels
    return centers, inertia


def kmeans(
    x: torch.Tensor, n_clusters: int, generator: torch.Generator, n_init: int, max_iter: int, chunk_size: int
) -> torch.Tensor:
    """Best of ``n_init`` k-means runs (greedy k-means++ seeds, then :func:`lloyd`) by inertia.

    Parameters
    ----------
    x
        Points ``[N, d]``.
    n_clusters
        Number of centres wanted.
    generator
        CPU generator for the seeding draws (runs use consecutive draws).
    n_init
        Number of runs.
    max_iter
        Lloyd iteration cap per run.
    chunk_size
        Rows per distance block.

    Returns
    -------
    torch.Tensor
        Centres ``[k, d]``; ``k < n_clusters`` when ``x`` has fewer distinct rows (see :func:`kmeans_plusplus`).
    """
    best, best_inertia = None, math.inf
    for _ in range(n_init):
        centers, inertia = lloyd(x, x[kmeans_plusplus(x, n_clusters, generator)], max_iter, chunk_size)
        if inertia < best_inertia:
            best, best_inertia = centers, inertia
    return best
