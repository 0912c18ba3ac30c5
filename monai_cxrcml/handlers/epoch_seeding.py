"""Seed every epoch of a training run from (seed, epoch), so that a run resumed at any epoch repeats the original.

At each ``EPOCH_STARTED`` the handler seeds Python's, numpy's and torch's global generators with
:func:`~monai_cxrcml.data.item_seed` ``(seed, epoch)`` and calls ``set_epoch(epoch)`` on its targets (an
:class:`~monai_cxrcml.data.EpochSeededDataset`, a ``DistributedSampler``, a
:class:`~monai_cxrcml.data.ClusterBalancedSampler`). What an epoch draws (the shuffled order of a ``RandomSampler``,
data-loader worker seeds, augmentations, captions, any random op in the step) then depends on the seed and the
epoch only, not on what earlier epochs drew: a training resumed from the checkpoint of epoch ``e`` trains epoch
``e + 1`` as the uninterrupted run did (identical on the CPU; on CUDA up to the non-determinism of its kernels).
It seeds nothing at ``STARTED``: model initialisation stays with the run's ``set_determinism(seed)``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_cxrcml.data.seeded import item_seed

__all__ = ["EpochSeeding"]


class EpochSeeding:
    """Seed the global generators and the ``set_epoch`` of ``targets`` at every epoch start.

    Parameters
    ----------
    seed
        The run's seed.
    targets
        Objects with ``set_epoch(epoch)`` (datasets, samplers); ``None`` entries are skipped, so a config can pass
        an optional sampler.
    """

    def __init__(self, seed: int, targets: Sequence[Any] = ()) -> None:
        self.seed = int(seed)
        self.targets = [t for t in targets if t is not None]
        missing = [type(t).__name__ for t in self.targets if not callable(getattr(t, "set_epoch", None))]
        if missing:
            raise TypeError(f"EpochSeeding targets must have set_epoch(epoch); {missing} do not.")

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        seed = item_seed(self.seed, epoch)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        for target in self.targets:
            target.set_epoch(epoch)
