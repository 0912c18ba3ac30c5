"""Batches balanced over pseudo-label clusters: ``m`` films from each of ``batch_size / m`` clusters.

A triplet needs a positive (same cluster) and a negative in the batch. With K = 40 clusters and batches of 32
drawn at random, most anchors have no positive in the batch and contribute nothing; rare-finding clusters are
seldom drawn at all. This sampler is pytorch-metric-learning's ``MPerClassSampler`` over the mixture's current
pseudo-labels: each batch takes ``batch_size // m`` distinct clusters, uniformly, and ``m`` films from each
(with replacement when a cluster is smaller than ``m``; with fewer clusters than that, the batch is split evenly
over all of them), so the index stream lines up with the DataLoader's batches. The labels are read anew at the start
of every epoch; before the first mixture fit (no labels yet) it yields a plain random permutation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["ClusterBalancedSampler"]


class ClusterBalancedSampler(Sampler[int]):
    """Sample indices so that every batch holds ``samples_per_cluster`` films of each of several clusters.

    Parameters
    ----------
    label_source
        Called at the start of every epoch; returns the current pseudo-labels (long [N], -1 = none) or None
        before the first fit, e.g. ``lambda: mixture_handler.pseudo_labels``.
    num_samples
        N, the length of the training data set.
    batch_size
        The DataLoader's batch size (a multiple of ``samples_per_cluster``).
    samples_per_cluster
        m, films per cluster in a batch.
    seed
        Seed; epoch e uses ``seed + e`` so runs are repeatable. The epoch is set by :meth:`set_epoch` (as on a
        ``DistributedSampler``; :class:`~monai_cxrcml.handlers.EpochSeeding` calls it at every epoch start), else
        counted up by each pass.
    """

    def __init__(
        self,
        label_source: Callable[[], torch.Tensor | None],
        num_samples: int,
        batch_size: int,
        samples_per_cluster: int = 4,
        seed: int = 0,
    ) -> None:
        if samples_per_cluster < 2:
            raise ValueError(f"samples_per_cluster={samples_per_cluster}: a triplet needs at least 2 per cluster.")
        if batch_size % samples_per_cluster or batch_size < 2 * samples_per_cluster:
            raise ValueError(
                f"batch_size={batch_size} must be a multiple of samples_per_cluster={samples_per_cluster} holding at "
                "least two clusters (a triplet needs a negative)."
            )
        self.label_source = label_source
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.samples_per_cluster = samples_per_cluster
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Draw the next pass with the generator of ``epoch`` (a resumed run then draws what the first one did)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        labels = self.label_source()
        if labels is None or int((labels >= 0).sum()) == 0:
            return iter(torch.randperm(self.num_samples, generator=generator).tolist())
        labels = labels.detach().cpu()
        clusters = [torch.nonzero(labels == c).squeeze(1) for c in torch.unique(labels[labels >= 0]).tolist()]
        per_batch = min(self.batch_size // self.samples_per_cluster, len(clusters))
        # split each batch evenly over its clusters (m each when there are clusters enough)
        counts = [self.batch_size // per_batch + (i < self.batch_size % per_batch) for i in range(per_batch)]
        indices: list[int] = []
        while len(indices) < self.num_samples:
            chosen = torch.randperm(len(clusters), generator=generator)[:per_batch]
            for c, count in zip(chosen.tolist(), counts):
                members = clusters[c]
                if len(members) < count:
                    draw = torch.randint(len(members), (count,), generator=generator)
                else:
                    draw = torch.randperm(len(members), generator=generator)[:count]
                indices.extend(members[draw].tolist())
        return iter(indices[: self.num_samples])
