"""Cluster-balanced batches over pseudo-labels."""

from __future__ import annotations

import pytest
import torch

from monai_cxrcml.data.sampler import ClusterBalancedSampler


def test_random_order_before_the_first_fit():
    sampler = ClusterBalancedSampler(lambda: None, num_samples=50, batch_size=8, samples_per_cluster=4)
    assert sorted(sampler) == list(range(50))


def test_batches_hold_m_films_of_each_chosen_cluster():
    labels = torch.arange(60) % 6  # 6 clusters of 10
    labels[:3] = -1  # films without a label are never drawn
    sampler = ClusterBalancedSampler(lambda: labels, num_samples=60, batch_size=12, samples_per_cluster=4, seed=1)
    indices = list(sampler)
    assert len(indices) == len(sampler) == 60
    assert all(labels[i] >= 0 for i in indices)
    for start in range(0, 48, 12):
        counts = torch.bincount(labels[indices[start : start + 12]], minlength=6)
        assert sorted(counts[counts > 0].tolist()) == [4, 4, 4]
    assert list(sampler) != indices  # a new draw each epoch
    again = ClusterBalancedSampler(lambda: labels, num_samples=60, batch_size=12, samples_per_cluster=4, seed=1)
    assert list(again) == indices  # repeatable by seed


def test_few_clusters_fill_the_batch_evenly():
    labels = torch.tensor([0] * 3 + [1] * 30)
    sampler = ClusterBalancedSampler(lambda: labels, num_samples=33, batch_size=16, samples_per_cluster=4)
    first = list(sampler)[:16]
    assert torch.bincount(labels[first]).tolist() == [8, 8]  # the 3-film cluster is drawn with replacement


def test_invalid_sizes_are_refused():
    with pytest.raises(ValueError, match="multiple of samples_per_cluster"):
        ClusterBalancedSampler(lambda: None, 10, batch_size=10, samples_per_cluster=4)
    with pytest.raises(ValueError, match="at least 2"):
        ClusterBalancedSampler(lambda: None, 10, batch_size=8, samples_per_cluster=1)
