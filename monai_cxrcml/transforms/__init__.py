"""MONAI transforms for chest films: loading, normalisation, augmentation, meta-label captions, tokenisation."""

from __future__ import annotations

from monai_cxrcml.transforms.captions import MetaLabelCaptiond, meta_label_caption
from monai_cxrcml.transforms.intensity import (
    CHEXZERO_MEAN,
    CHEXZERO_STD,
    CLIP_MEAN,
    CLIP_STD,
    CLIPNormalize,
    CLIPNormalized,
    film_augmentation,
)
from monai_cxrcml.transforms.io import LoadFilm, LoadFilmd, pad_to_square, skip_unreadable_collate
from monai_cxrcml.transforms.pipelines import chest_film_transforms
from monai_cxrcml.transforms.tokenize import Tokenized

__all__ = [
    "CHEXZERO_MEAN",
    "CHEXZERO_STD",
    "CLIP_MEAN",
    "CLIP_STD",
    "CLIPNormalize",
    "CLIPNormalized",
    "LoadFilm",
    "LoadFilmd",
    "MetaLabelCaptiond",
    "Tokenized",
    "chest_film_transforms",
    "film_augmentation",
    "meta_label_caption",
    "pad_to_square",
    "skip_unreadable_collate",
]
