"""Load chest films as square, aspect-kept MONAI tensors; a skip policy for unreadable films.

Skip policy (``on_error="skip"``)
    :class:`LoadFilmd` logs a warning naming the film and returns an empty list instead of the sample. MONAI's
    ``Compose`` maps every later transform over a list, so the empty list passes through untouched (the same
    mechanism as a crop transform that yields a variable number of samples). :func:`skip_unreadable_collate`, used as
    the DataLoader's ``collate_fn``, drops the empty samples, collates the rest and records how many were dropped in
    ``batch["num_skipped"]`` (a 0-d int64 tensor) so the trainer can count them; a batch whose films were all
    skipped is ``{"num_skipped": k}`` with no data keys, which the engine must skip. Everything happens inside the
    DataLoader workers, so it works for any number of workers and for plain ``monai.data.Dataset`` or
    ``CacheDataset``. The default, ``on_error="raise"``, fails fast with :class:`FilmReadError`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.data.utils import list_data_collate
from monai.transforms import MapTransform, Transform

from monai_cxrcml.data.cache import FILM_LOADERS, FilmCache
from monai_cxrcml.data.films import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIZE, FilmReadError, Intensity

__all__ = ["LoadFilm", "LoadFilmd", "pad_to_square", "skip_unreadable_collate"]

logger = logging.getLogger(__name__)


def pad_to_square(film: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad ``[h, w]`` (``max(h, w) <= size``) to a centred ``[size, size]`` (extra pixel at bottom/right)."""
    h, w = film.shape
    if (h, w) == (size, size):
        return film
    out = film.new_zeros((size, size))
    top, left = (size - h) // 2, (size - w) // 2
    out[top : top + h, left : left + w] = film
    return out


class LoadFilm(Transform):
    """Read a film file into a MONAI tensor ``[1, S, S]`` (longest side ``S``, aspect kept, zero-padded square).

    Rows are top to bottom and columns left to right as the film is displayed (no ``PILReader`` transposition);
    intensities in ``[0, 1]`` (see :mod:`monai_cxrcml.data.films` for every format and scaling rule).

    Parameters
    ----------
    image_size
        Side ``S`` of the square output; ``None`` keeps the full film ``[1, H, W]`` (no resize, no padding).
    cache_dir
        Read through a :class:`~monai_cxrcml.data.cache.FilmCache` in this folder (needs ``image_size``).
    resize
        ``"longest_side"`` (bicubic, antialiased) or ``"chexzero"`` (CheXzero's 8-bit LANCZOS square, see
        :mod:`~monai_cxrcml.data.chexzero_films`; ``draft`` and ``intensity`` do not apply).
    draft
        Decode JPEGs at 1/2, 1/4 or 1/8 scale when that stays >= ``image_size`` (much faster; about 1/255 mean
        difference after resizing).
    intensity
        ``"auto"`` (bit depth / DICOM VOI) or ``"minmax"``.
    max_pixels, min_size
        Decompression-bomb guard and smallest accepted side.
    cache_dtype
        ``"uint16"`` or ``"uint8"`` storage of cache entries.

    Raises
    ------
    FilmReadError
        The film cannot be read; the message names the path and the fix.
    """

    def __init__(
        self,
        image_size: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        *,
        resize: str = "longest_side",
        draft: bool = True,
        intensity: Intensity = "auto",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        min_size: int = DEFAULT_MIN_SIZE,
        cache_dtype: Literal["uint8", "uint16"] = "uint16",
    ) -> None:
        if image_size is not None and int(image_size) < 1:
            raise ValueError(f"image_size must be a positive int or None, got {image_size!r}")
        if cache_dir is not None and image_size is None:
            raise ValueError("cache_dir needs image_size: the cache stores resized films")
        if intensity not in ("auto", "minmax"):
            raise ValueError(f"intensity={intensity!r}; expected 'auto' or 'minmax'")
        if resize not in FILM_LOADERS:
            raise ValueError(f"resize={resize!r}; expected one of {tuple(FILM_LOADERS)}")
        if resize == "chexzero" and image_size is None:
            raise ValueError("resize='chexzero' needs image_size, the side of CheXzero's square (320)")
        self.image_size = None if image_size is None else int(image_size)
        self.load = FILM_LOADERS[resize]
        self.load_kwargs = {"max_pixels": max_pixels, "min_size": min_size}
        if resize == "longest_side":
            self.load_kwargs.update(draft=draft, intensity=intensity)
        self.cache = (
            None
            if cache_dir is None
            else FilmCache(cache_dir, self.image_size, dtype=cache_dtype, resize=resize, **self.load_kwargs)
        )

    def __call__(self, path: str | os.PathLike) -> MetaTensor | torch.Tensor:
        """Return ``MetaTensor`` float32 ``[1, S, S]`` (or ``[1, H, W]``) with ``filename_or_obj`` in its meta; a
        plain tensor under ``monai.data.set_track_meta(False)`` (the training config: MONAI's random transforms then
        skip the metadata bookkeeping, ~25% of the training pipeline's time)."""
        if self.cache is not None:
            film = self.cache.get(path)
        else:
            film = self.load(path, self.image_size, **self.load_kwargs)
        content_shape = film.shape
        image = torch.from_numpy(np.ascontiguousarray(film))
        if self.image_size is not None:
            image = pad_to_square(image, self.image_size)
        if not get_track_meta():
            return image[None]
        meta = {"filename_or_obj": os.fspath(path), "film_shape": content_shape}
        return MetaTensor(image[None], meta=meta)


class LoadFilmd(MapTransform):
    """Dictionary version of :class:`LoadFilm`, with a fail-fast or skip policy for unreadable films.

    Parameters
    ----------
    keys
        Keys holding film paths (default ``"image"``); each is replaced by a float32 ``[1, S, S]`` MetaTensor.
    image_size, cache_dir, resize, draft, intensity, max_pixels, min_size, cache_dtype
        See :class:`LoadFilm`.
    on_error
        ``"raise"`` (default): :class:`FilmReadError`. ``"skip"``: log a warning naming the film and return ``[]``
        instead of the sample; the DataLoader must then use :func:`skip_unreadable_collate` (module notes).
    allow_missing_keys
        Do not raise when a key is absent.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        image_size: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        on_error: Literal["raise", "skip"] = "raise",
        *,
        resize: str = "longest_side",
        draft: bool = True,
        intensity: Intensity = "auto",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        min_size: int = DEFAULT_MIN_SIZE,
        cache_dtype: Literal["uint8", "uint16"] = "uint16",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error={on_error!r}; expected 'raise' or 'skip'")
        self.on_error = on_error
        self.loader = LoadFilm(
            image_size,
            cache_dir,
            resize=resize,
            draft=draft,
            intensity=intensity,
            max_pixels=max_pixels,
            min_size=min_size,
            cache_dtype=cache_dtype,
        )

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any] | list:
        d = dict(data)
        for key in self.key_iterator(d):
            try:
                d[key] = self.loader(d[key])
            except FilmReadError as e:
                if self.on_error == "raise":
                    raise
                logger.warning("skipping unreadable film (on_error='skip'): %s", e)
                return []
        return d


def skip_unreadable_collate(batch: Sequence[Any]) -> Any:
    """``collate_fn`` for ``on_error="skip"``: drop skipped samples, collate the rest, count the dropped ones.

    Samples that are lists (skipped samples are ``[]``; multi-sample transforms yield longer lists) are flattened as
    ``monai.data.utils.list_data_collate`` does. A dict batch gets ``"num_skipped"``: 0-d int64 tensor.

    When every film of a batch was skipped (a final batch of one broken film, or a wrong image root), the batch is
    ``{"num_skipped": k}`` alone, with no data keys: an engine must count it and skip the iteration, and should stop
    when the skipped fraction is implausible (each skipped film was logged with its path).
    """
    samples: list[Any] = []
    skipped = 0
    for item in batch:
        if isinstance(item, list):
            skipped += not item
            samples.extend(item)
        else:
            samples.append(item)
    if not samples:
        return {"num_skipped": torch.tensor(skipped, dtype=torch.int64)}
    collated = list_data_collate(samples)
    if isinstance(collated, dict):
        collated["num_skipped"] = torch.tensor(skipped, dtype=torch.int64)
    return collated
