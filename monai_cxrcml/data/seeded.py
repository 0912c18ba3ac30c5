"""A MONAI ``Dataset`` whose random transforms draw from a seed fixed by (run seed, epoch, item).

Why and how each item is re-seeded from ``(seed, epoch, index)``: docs/design.md, "Seeded augmentation".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import Dataset
from monai.transforms import Randomizable

__all__ = ["EpochSeededDataset", "item_seed"]


def item_seed(seed: int, epoch: int, index: int | None = None) -> int:
    """A 32-bit seed for item ``index`` in ``epoch`` of a run seeded with ``seed``; ``index=None``: the epoch's own
    stream (global generators). Every (seed, epoch, index) gets an independent stream (``numpy.random.SeedSequence``).
    """
    entropy = [int(seed), int(epoch)] + ([] if index is None else [int(index)])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


class EpochSeededDataset(Dataset):
    """``monai.data.Dataset`` that seeds its transform per (seed, epoch, index) before transforming an item.

    Parameters
    ----------
    data
        The datalist.
    transform
        A MONAI transform (usually a ``Compose``); its random parts must draw from their ``R`` generator (all MONAI
        random transforms and :class:`~monai_cxrcml.transforms.MetaLabelCaptiond` do). They are switched to the
        dataset's generator.
    seed
        The run's seed.
    """

    def __init__(self, data: Sequence, transform: Callable | None = None, seed: int = 0) -> None:
        super().__init__(data, transform)
        self.seed = int(seed)
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._generator = np.random.RandomState(self.seed)
        _share_generator(transform, self._generator)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Seed the items of ``epoch`` from now on (in this process and in every data-loader worker)."""
        self._epoch[0] = int(epoch)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> None:
        """Ignored: the items' seeds come from (seed, epoch, index). MONAI's data-loader worker initialisation
        calls this instead of re-seeding the transforms one by one (which would detach them from the generator)."""

    def _transform(self, index: int):
        self._generator.seed(item_seed(self.seed, self.epoch, index))
        return super()._transform(index)


def _share_generator(transform: Any, generator: np.random.RandomState) -> None:
    """Make every random transform in ``transform`` (a ``Compose`` tree or a single transform) draw from
    ``generator``; ``set_random_state(state=...)`` also reaches a transform's inner random parts (``RandAffined``)."""
    if isinstance(transform, Randomizable):
        Randomizable.set_random_state(transform, state=generator)  # a Compose would re-seed its children
    for child in getattr(transform, "transforms", ()):
        if isinstance(child, Randomizable) and not hasattr(child, "transforms"):
            child.set_random_state(state=generator)
        else:
            _share_generator(child, generator)
