"""The standard chest-film pipeline for image + label + caption + text datalist items."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from monai.transforms import Compose

from monai_cxrcml.data.chexzero_films import CHEXZERO_SIZE
from monai_cxrcml.data.films import Intensity
from monai_cxrcml.transforms.captions import MetaLabelCaptiond
from monai_cxrcml.transforms.intensity import CLIPNormalized, film_augmentation
from monai_cxrcml.transforms.io import LoadFilmd
from monai_cxrcml.transforms.spatial import ResizeFilmd
from monai_cxrcml.transforms.tokenize import Tokenized

__all__ = ["chest_film_transforms"]


def chest_film_transforms(
    train: bool,
    image_size: int = 224,
    normalization: Literal["clip", "chexzero"] = "clip",
    augment: bool | Mapping[str, Any] | None = None,
    cache_dir: str | os.PathLike | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    tokenizer: Callable[[list[str]], torch.Tensor] | None = None,
    caption: Mapping[str, Any] | None = None,
    *,
    image_key: str = "image",
    label_key: str = "label",
    caption_key: str = "caption",
    text_key: str = "text",
    draft: bool = True,
    intensity: Intensity = "auto",
    resize: Literal["longest_side", "chexzero"] = "longest_side",
    antialias: bool = True,
    chexzero_size: int = CHEXZERO_SIZE,
) -> Compose:
    """Load, (augment), normalise the film; (re)build the caption; tokenise it.

    The result maps a datalist item ``{"image": path, "label": [C], "caption": str, ...}`` to
    ``{"image": float32 [3, S, S], "label": ..., "caption": str, "text": int64 [L], ...}``; other keys pass through.

    Parameters
    ----------
    train
        Training pipeline (augmentation on by default) or evaluation pipeline (deterministic).
    image_size
        Square side ``S`` (longest film side resized to it, aspect kept, zero-padded).
    normalization
        ``"clip"`` (OpenAI CLIP mean/std) or ``"chexzero"`` (CheXzero's, for CheXzero weights).
    augment
        ``None``: same as ``train``. ``True``/``False``: on/off. A mapping: on, with these keyword arguments of
        :func:`~monai_cxrcml.transforms.intensity.film_augmentation`.
    cache_dir
        Read films through an on-disk :class:`~monai_cxrcml.data.cache.FilmCache` in this folder.
    on_error
        ``"raise"`` (fail fast) or ``"skip"`` (log and drop unreadable films; use
        :func:`~monai_cxrcml.transforms.io.skip_unreadable_collate` as the DataLoader's ``collate_fn``).
    tokenizer
        Texts -> token ids ``[N, L]`` (``monai_cxrcml.networks.get_tokenizer(model_name)``) filling ``text_key``;
        ``None``: no tokenisation.
    caption
        ``None``: keep the datalist's ``caption``. A mapping: rebuild it from ``label_key`` with
        ``MetaLabelCaptiond(label_key=label_key, caption_key=caption_key, **caption)`` (e.g. ``class_names``,
        shuffling and subset options for training), before tokenisation.
    image_key, label_key, caption_key, text_key
        Datalist keys.
    draft, intensity
        See :class:`~monai_cxrcml.transforms.io.LoadFilm` (``resize="longest_side"`` only).
    resize
        ``"longest_side"``: the film's longest side to ``S`` (bicubic, antialiased), zero-padded square.
        ``"chexzero"``: CheXzero's path, a ``chexzero_size`` square (8-bit, LANCZOS, centred), normalised, then
        resized to ``S`` (:class:`~monai_cxrcml.transforms.spatial.ResizeFilm`, bicubic, ``antialias``);
        augmentation, when on, acts on the ``chexzero_size`` square.
    antialias, chexzero_size
        For ``resize="chexzero"``.

    Returns
    -------
    Compose
    """
    if augment is None:
        augment = train
    loaded_size = chexzero_size if resize == "chexzero" else image_size
    transforms: list = [
        LoadFilmd(image_key, loaded_size, cache_dir, on_error, resize=resize, draft=draft, intensity=intensity),
    ]
    if augment:
        options = dict(augment) if isinstance(augment, Mapping) else {}
        transforms.append(film_augmentation(image_key, loaded_size, **options))
    transforms.append(CLIPNormalized(image_key, normalization))
    if resize == "chexzero":
        transforms.append(ResizeFilmd(image_key, image_size, antialias))
    if caption is not None:
        transforms.append(MetaLabelCaptiond(**{"label_key": label_key, "caption_key": caption_key, **caption}))
    if tokenizer is not None:
        transforms.append(Tokenized(caption_key, tokenizer, text_key))
    return Compose(transforms)
