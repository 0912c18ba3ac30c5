"""Seeding for mixture fits: greedy k-means++, Lloyd's k-means and a best-of-n k-means, in torch on the data's device.

Random draws come from a CPU ``torch.Generator`` (a handful of uniforms per centre) and are mapped to rows on the
data's device by inverse-CDF search, so one seed picks the same rows on the CPU and on a GPU.

Squared distances use the expansion ``|x|^2 - 2 x.c + |c|^2`` (one matrix product); values below the rounding
noise of that expansion are set to zero, so duplicated rows are recognised as such and a data set with fewer
distinct rows than requested centres yields fewer centres instead of duplicated ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["squared_distances", "kmeans_plusplus", "lloyd", "kmeans", "KMeansSettings"]


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
        cum = closest.cumsum(0, dtype=torch.float64)
        if cum[-1].item() <= 0.0:  # every point coincides with a centre: no further distinct centre exists
            break
        candidates = _draw_rows(cum, generator, n_local_trials)
        trial = torch.minimum(closest[:, None], squared_distances(x, x[candidates], x_sq))
        best = trial.sum(0, dtype=torch.float64).argmin()
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
    x_sq = (x * x).sum(1)
    for _ in range(max_iter):
        sums = torch.zeros(k, x.shape[1], dtype=torch.float64, device=x.device)
        counts = torch.zeros(k, dtype=torch.long, device=x.device)
        total = torch.zeros((), dtype=torch.float64, device=x.device)
        labels = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
        for start in range(0, x.shape[0], chunk_size):
            block = x[start : start + chunk_size]
            nearest, block_labels = squared_distances(block, centers, x_sq[start : start + chunk_size]).min(1)
            labels[start : start + block.shape[0]] = block_labels
            total += nearest.sum(dtype=torch.float64)
            # per-cluster sums as one product (deterministic on GPUs, unlike a scatter-add)
            sums += (torch.nn.functional.one_hot(block_labels, k).to(x.dtype).T @ block).to(torch.float64)
            counts += torch.bincount(block_labels, minlength=k)
        inertia = float(total)
        if previous is not None and torch.equal(labels, previous):
            break
        moved = sums / counts.clamp_min(1)[:, None]
        centers = torch.where(counts[:, None] > 0, moved.to(x.dtype), centers)
        previous = labels
    return centers, inertia


@dataclass(frozen=True)
class KMeansSettings:
    """How :func:`kmeans` searches (defaults chosen by measurement: docs/design.md, "Student-t mixture EM").

    Attributes
    ----------
    n_init
        Number of runs; each is greedy k-means++ seeding and ``screen_iter`` Lloyd rounds on a random subsample.
    n_local_trials
        Candidates per centre of the seeding (:func:`kmeans_plusplus`'s default when None).
    screen_iter
        Lloyd rounds per run before the run of lowest inertia is chosen: runs heading for a poor partition only
        converge slowly, so a few rounds tell them apart.
    screen_rows_per_cluster
        The runs use ``screen_rows_per_cluster x n_clusters`` random rows (all rows when there are fewer).
    max_iter
        Lloyd iteration cap of the refinement of the chosen run on all rows.
    """

    n_init: int = 5
    n_local_trials: int | None = 16
    screen_iter: int = 3
    screen_rows_per_cluster: int = 200
    max_iter: int = 100

    def __post_init__(self) -> None:
        if self.n_init < 1 or self.screen_iter < 1 or self.screen_rows_per_cluster < 1 or self.max_iter < 0:
            raise ValueError(f"{self}: n_init, screen_iter and screen_rows_per_cluster must be >= 1, max_iter >= 0.")


def kmeans(
    x: torch.Tensor,
    n_clusters: int,
    generator: torch.Generator,
    chunk_size: int,
    settings: KMeansSettings = KMeansSettings(),
) -> torch.Tensor:
    """k-means: the best of ``settings.n_init`` short runs on a subsample by inertia, refined on all rows.

    Parameters
    ----------
    x
        Points ``[N, d]``.
    n_clusters
        Number of centres wanted.
    generator
        CPU generator for the subsample and the seeding draws (runs use consecutive draws).
    chunk_size
        Rows per distance block.
    settings
        Runs, seeding trials, screening rounds and subsample size, refinement cap.

    Returns
    -------
    torch.Tensor
        Centres ``[k, d]``; ``k < n_clusters`` exactly when ``x`` has only ``k`` distinct rows (a subsample with
        fewer distinct rows than ``n_clusters`` falls back to seeding on all rows; see :func:`kmeans_plusplus`).
    """
    n = x.shape[0]
    rows = settings.screen_rows_per_cluster * n_clusters
    sample = x if rows >= n else x[torch.randperm(n, generator=generator)[:rows].to(x.device)]
    best, best_inertia = None, math.inf
    for _ in range(settings.n_init):
        seeds = sample[kmeans_plusplus(sample, n_clusters, generator, settings.n_local_trials)]
        centers, inertia = lloyd(sample, seeds, settings.screen_iter, chunk_size)
        if inertia < best_inertia:
            best, best_inertia = centers, inertia
    if best.shape[0] < n_clusters and sample is not x:  # the subsample missed distinct rows: seed on all of them
        best = x[kmeans_plusplus(x, n_clusters, generator, settings.n_local_trials)]
    return lloyd(x, best, settings.max_iter, chunk_size)[0]
