"""Resize a square, normalised film tensor to the model's input size, as CheXzero's zero-shot code does."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from torchvision.transforms import InterpolationMode
from torchvision.transforms.functional import resize

__all__ = ["ResizeFilm", "ResizeFilmd"]


class ResizeFilm(Transform):
    """``torchvision.transforms.Resize(size, interpolation=BICUBIC, antialias=antialias)`` of a ``[C, H, W]`` tensor.

    CheXzero applies it after normalisation, to its 320 x 320 film (``zero_shot.make``); the shorter side becomes
    ``size``. torchvision >= 0.17 antialiases tensors by default (``antialias=True``, what CheXzero's code does with
    current torchvision); CheXzero's pinned torchvision 0.11 did not (``antialias=False``).

    Parameters
    ----------
    size
        Side of the output (the shorter side of a non-square input).
    antialias
        Antialiased bicubic downscaling.
    """

    def __init__(self, size: int, antialias: bool = True) -> None:
        if int(size) < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        self.size = int(size)
        self.antialias = bool(antialias)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """float ``[C, H, W]`` -> float ``[C, size, size]`` for a square input (a MetaTensor keeps its meta)."""
        if tuple(img.shape[-2:]) == (self.size, self.size):
            return img
        return resize(img, self.size, interpolation=InterpolationMode.BICUBIC, antialias=self.antialias)


class ResizeFilmd(MapTransform):
    """Dictionary version of :class:`ResizeFilm` (default key ``"image"``)."""

    def __init__(
        self, keys: KeysCollection = "image", size: int = 224, antialias: bool = True, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.resizer = ResizeFilm(size, antialias)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.resizer(d[key])
        return d
