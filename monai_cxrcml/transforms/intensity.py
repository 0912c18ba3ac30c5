"""CLIP input normalisation of gray chest films, and the train-time augmentation of films.

Normalisation turns a gray film ``[1, S, S]`` in ``[0, 1]`` into the 3-channel input a CLIP image tower expects:

* ``"clip"``: OpenAI CLIP mean/std per channel (what open_clip's ViT-B-32 preprocessing uses);
* ``"chexzero"``: CheXzero's ``Normalize(101.48761, 83.43944)`` on the 0-255 scale, the same for all channels (use
  it with CheXzero weights).

Augmentation is deliberately small and anatomically neutral: a slight affine (rotation, scale, translation, as
patient positioning varies) and intensity scale/shift/contrast (as exposure and processing vary). It never flips:
the heart lies on the patient's left, and dextrocardia or situs inversus is a finding, so a mirrored film is a
different diagnosis, not the same one.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Any, Literal

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data.meta_obj import get_track_meta
from monai.transforms import (
    Compose,
    MapTransform,
    RandAdjustContrastd,
    RandAffined,
    RandScaleIntensityd,
    RandShiftIntensityd,
    Transform,
)
from monai.utils import convert_to_tensor

__all__ = [
    "CHEXZERO_MEAN",
    "CHEXZERO_STD",
    "CLIP_MEAN",
    "CLIP_STD",
    "CLIPNormalize",
    "CLIPNormalized",
    "film_augmentation",
    "normalized_range",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
"""OpenAI CLIP per-channel mean on the [0, 1] scale."""
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""OpenAI CLIP per-channel standard deviation on the [0, 1] scale."""
CHEXZERO_MEAN = 101.48761 / 255
"""CheXzero's mean (101.48761 on the 0-255 scale), on the [0, 1] scale."""
CHEXZERO_STD = 83.43944 / 255
"""CheXzero's standard deviation (83.43944 on the 0-255 scale), on the [0, 1] scale."""

_STATS = {"clip": (CLIP_MEAN, CLIP_STD), "chexzero": ((CHEXZERO_MEAN,) * 3, (CHEXZERO_STD,) * 3)}


def normalized_range(mode: Literal["clip", "chexzero"]) -> tuple[float, float]:
    """Lowest and highest value a film in ``[0, 1]`` takes after normalisation ``mode`` (over the 3 channels)."""
    mean, std = _STATS[mode]
    return min((0 - m) / s for m, s in zip(mean, std)), max((1 - m) / s for m, s in zip(mean, std))


class CLIPNormalize(Transform):
    """Gray ``[1, S, S]`` (or RGB ``[3, S, S]``) in ``[0, 1]`` -> normalised float32 ``[3, S, S]`` (meta kept).

    Parameters
    ----------
    mode
        ``"clip"`` (OpenAI CLIP mean/std) or ``"chexzero"`` (CheXzero's 101.48761/83.43944 on the 0-255 scale).
    """

    def __init__(self, mode: Literal["clip", "chexzero"] = "clip") -> None:
        if mode not in _STATS:
            raise ValueError(f"mode={mode!r}; expected one of {sorted(_STATS)}")
        self.mode = mode
        mean, std = _STATS[mode]
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, img: torch.Tensor | np.ndarray) -> torch.Tensor:
        img = convert_to_tensor(img, dtype=torch.float32, track_meta=get_track_meta())
        if img.ndim != 3 or img.shape[0] not in (1, 3):
            raise ValueError(f"CLIPNormalize expects a [1, H, W] or [3, H, W] film, got shape {tuple(img.shape)}")
        return (img.expand(3, -1, -1) - self.mean) / self.std


class CLIPNormalized(MapTransform):
    """Dictionary version of :class:`CLIPNormalize` (default key ``"image"``)."""

    def __init__(
        self,
        keys: KeysCollection = "image",
        mode: Literal["clip", "chexzero"] = "clip",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalizer = CLIPNormalize(mode)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalizer(d[key])
        return d


def film_augmentation(
    keys: KeysCollection = "image",
    image_size: int = 224,
    *,
    rotate_degrees: float = 7.0,
    scale: float = 0.1,
    translate: float = 0.05,
    affine_prob: float = 0.8,
    intensity_scale: float = 0.1,
    intensity_shift: float = 0.05,
    gamma: tuple[float, float] = (0.8, 1.25),
    intensity_prob: float = 0.5,
) -> Compose:
    """Small random affine + intensity changes for films ``[1, S, S]`` in ``[0, 1]`` (before normalisation); no flips.

    Parameters
    ----------
    keys
        Image keys.
    image_size
        Side ``S`` of the square films (translations are a fraction of it; the affine grid is cached for it).
    rotate_degrees
        Rotation drawn from ``[-rotate_degrees, rotate_degrees]``.
    scale
        Isotropic-range zoom factor drawn from ``[1 - scale, 1 + scale]`` per axis.
    translate
        Shift drawn from ``[-translate, translate]`` of the image side per axis.
    affine_prob
        Probability of applying the affine (zeros fill what moves in from outside).
    intensity_scale, intensity_shift
        ``x * (1 + u)`` with ``u`` in ``[-intensity_scale, intensity_scale]``; ``x + v`` with ``v`` in
        ``[-intensity_shift, intensity_shift]``.
    gamma
        Contrast gamma range.
    intensity_prob
        Probability of each intensity change.

    Returns
    -------
    Compose
        MONAI random transforms, seeded by MONAI's ``DataLoader`` worker initialisation like any other.
    """
    return Compose(
        [
            RandAffined(
                keys,
                prob=affine_prob,
                rotate_range=(math.radians(rotate_degrees),),
                scale_range=(scale, scale),
                translate_range=(translate * image_size, translate * image_size),
                spatial_size=(image_size, image_size),
                cache_grid=True,
                mode="bilinear",
                padding_mode="zeros",
            ),
            RandAdjustContrastd(keys, prob=intensity_prob, gamma=gamma),
            RandScaleIntensityd(keys, factors=intensity_scale, prob=intensity_prob),
            RandShiftIntensityd(keys, offsets=intensity_shift, prob=intensity_prob),
        ]
    )
