"""Seeding of the mixture fits (monai_cxrcml.mixture.kmeans)."""

from __future__ import annotations

import torch

from monai_cxrcml.mixture import kmeans_plusplus


def test_kmeans_plusplus_stops_at_distinct_rows():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]).repeat(5, 1)
    rows = kmeans_plusplus(x, 4, torch.Generator().manual_seed(0))
    assert rows.numel() == 2 and not torch.equal(x[rows[0]], x[rows[1]])
