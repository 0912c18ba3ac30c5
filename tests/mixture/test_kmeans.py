"""Seeding of the mixture fits (monai_cxrcml.mixture.kmeans)."""

from __future__ import annotations

import pytest
import torch

from monai_cxrcml.mixture import KMeansSettings, kmeans, kmeans_plusplus


def test_kmeans_plusplus_stops_at_distinct_rows():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]).repeat(5, 1)
    rows = kmeans_plusplus(x, 4, torch.Generator().manual_seed(0))
    assert rows.numel() == 2 and not torch.equal(x[rows[0]], x[rows[1]])


def _separated(n_per_cluster: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of 6 well separated spherical clusters in 8 dimensions, and the cluster centres."""
    g = torch.Generator().manual_seed(seed)
    centres = 10.0 * torch.randn(6, 8, generator=g, dtype=torch.float64)
    x = (centres[:, None, :] + torch.randn(6, n_per_cluster, 8, generator=g, dtype=torch.float64)).reshape(-1, 8)
    return x[torch.randperm(x.shape[0], generator=g)], centres


def _matched_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest distance from a centre of ``a`` to the nearest centre of ``b``."""
    return float(torch.cdist(a, b).min(1).values.max())


def test_kmeans_same_seed_same_centres():
    x, _ = _separated(500)
    first = kmeans(x, 6, torch.Generator().manual_seed(3), 1024)
    again = kmeans(x, 6, torch.Generator().manual_seed(3), 1024)
    assert torch.equal(first, again)


def test_kmeans_on_a_subsample_finds_the_full_data_centres():
    x, centres = _separated(2000)  # 12000 rows; the default screens on 200 x 6 = 1200 of them
    sub = kmeans(x, 6, torch.Generator().manual_seed(0), 1024)
    full = kmeans(x, 6, torch.Generator().manual_seed(0), 1024, KMeansSettings(screen_rows_per_cluster=10**6))
    assert sub.shape == full.shape == (6, 8)
    assert _matched_distance(sub, full) < 1e-6 and _matched_distance(full, sub) < 1e-6
    assert _matched_distance(sub, centres) < 0.2 and _matched_distance(centres, sub) < 0.2


def test_kmeans_fewer_distinct_rows_fewer_centres():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]).repeat(4, 1)
    assert kmeans(x, 5, torch.Generator().manual_seed(0), 64).shape == (3, 2)
    # a distinct row the screening subsample (200 rows) most likely misses is still found
    rare = torch.cat([torch.zeros(5000, 2), torch.ones(5000, 2), torch.tensor([[9.0, 9.0]])])
    centres = kmeans(rare, 3, torch.Generator().manual_seed(0), 4096, KMeansSettings(screen_rows_per_cluster=50))
    assert centres.shape == (3, 2) and (centres == 9.0).all(1).any()


def test_kmeans_settings_are_checked():
    with pytest.raises(ValueError, match="screen_iter"):
        KMeansSettings(screen_iter=0)
