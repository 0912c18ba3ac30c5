"""Meta-label captions (CXR-CML, arXiv 2507.19398): one phrase per positive finding.

``[0, 1, 0, ..., 1]`` over ``("Adenopathy", ..., "Pleural Effusion")`` ->
``"adenopathy is present, pleural effusion is present"``; an image with no positive finding gets an explicit
caption (``"no finding"``). :func:`finding_phrases` and :func:`join_phrases` are the two steps;
:func:`meta_label_caption` is the paper's recipe plus three training-time augmentations, each a knob:

``shuffle``
    phrases in random order;
``positive_subset``
    a random non-empty subset of the positive findings (its size uniform in 1..n, so single phrases are common)
    instead of all of them, so the text tower learns to read one finding alone, as a zero-shot prompt names it;
``negative_probability`` / ``max_negatives``
    with this probability, 1..``max_negatives`` phrases for random *known negative* findings
    (``negative_template``, "x is absent"), so the text tower meets the negated form the negative prompt uses.

Measured on the phantom (../BENCHMARKS.md, "Zero-shot from scratch"): with the paper's full captions a tiny CLIP
trained from scratch learns the image signs but scores near chance zero-shot; subsets plus absent phrases close
most of the gap to a linear probe. :class:`MetaLabelCaptiond` applies the recipe to a MONAI data dictionary,
re-drawing it on every call (every epoch).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.transforms import MapTransform, Randomizable
from monai.utils import convert_to_numpy

from monai_cxrcml.data.classes import finding_phrase, resolve_class_names

__all__ = ["finding_phrases", "join_phrases", "meta_label_caption", "MetaLabelCaptiond"]


def _vector(values: Any, size: int, what: str) -> np.ndarray:
    vector = np.asarray(convert_to_numpy(values), dtype=np.float64).reshape(-1)
    if vector.size != size:
        raise ValueError(f"{what} has {vector.size} values but there are {size} class names.")
    return vector


def _integer(rng: np.random.Generator | np.random.RandomState, low: int, high: int) -> int:
    """A uniform integer in [low, high) from either numpy generator (MONAI's ``Randomizable.R`` is a RandomState)."""
    return int(rng.integers(low, high) if isinstance(rng, np.random.Generator) else rng.randint(low, high))


def _check_template(template: str) -> None:
    if "{}" not in template:
        raise ValueError(f"caption template {template!r} has no '{{}}' for the finding name.")


def finding_phrases(
    label: Any,
    class_names: Sequence[str],
    mask: Any | None = None,
    template: str = "{} is present",
) -> list[str]:
    """Phrases of the known positive findings, in class order.

    Parameters
    ----------
    label
        ``[C]`` array-like (numpy, torch or list); a finding is positive where the value is > 0.5.
    class_names
        The ``C`` class names; each is written with :func:`~monai_cxrcml.data.classes.finding_phrase`
        (``"Round(ed) Atelectasis"`` -> ``"rounded atelectasis"``).
    mask
        Optional ``[C]``: findings whose mask is 0/False are unknown and never named.
    template
        Format string with one ``{}`` for the finding.

    Raises
    ------
    ValueError
        For a length mismatch, a NaN label that is not masked, or a template without ``{}``.
    """
    _check_template(template)
    values = _vector(label, len(class_names), "label")
    known = np.ones(values.shape, dtype=bool) if mask is None else _vector(mask, len(class_names), "mask") > 0
    if np.isnan(values[known]).any():
        raise ValueError("label has NaN values where the mask says the label is known: fix the labels or the mask.")
    return [template.format(finding_phrase(class_names[i])) for i in np.flatnonzero(known & (values > 0.5))]


def join_phrases(phrases: Sequence[str], separator: str = ", ", empty_caption: str = "no finding") -> str:
    """``separator``-joined phrases, or ``empty_caption`` when there are none."""
    return separator.join(phrases) if phrases else empty_caption


def meta_label_caption(
    label: Any,
    class_names: Sequence[str],
    mask: Any | None = None,
    shuffle: bool = False,
    rng: np.random.Generator | np.random.RandomState | None = None,
    empty_caption: str = "no finding",
    template: str = "{} is present",
    separator: str = ", ",
    positive_subset: bool = False,
    negative_probability: float = 0.0,
    max_negatives: int = 2,
    negative_template: str = "{} is absent",
) -> str:
    """The meta-label caption of one image.

    Parameters
    ----------
    label
        ``[C]`` 0/1 labels (numpy, torch or list).
    class_names
        The ``C`` class names.
    mask
        Optional ``[C]`` known-label mask; unknown findings are not named.
    shuffle
        Put the phrases in random order (training-time augmentation); class order otherwise.
    rng
        Source of the order when shuffling (``np.random.Generator`` or ``RandomState``); a fresh unseeded
        generator when ``None``.
    empty_caption
        Caption of an image without a known positive finding.
    template, separator
        Phrase format and the text between phrases.
    positive_subset
        Name a random non-empty subset of the positive findings (size uniform in 1..n) instead of all.
    negative_probability, max_negatives, negative_template
        With probability ``negative_probability``, add 1..``max_negatives`` phrases (``negative_template``) for
        findings randomly drawn among the known negatives.

    Examples
    --------
    >>> meta_label_caption([1, 0, 1], ["Adenopathy", "Edema", "Pleural Effusion"])
    'adenopathy is present, pleural effusion is present'
    """
    phrases = finding_phrases(label, class_names, mask, template)
    randomised = shuffle or positive_subset or negative_probability > 0
    rng = (np.random.default_rng() if rng is None else rng) if randomised else None
    if positive_subset and len(phrases) > 1:
        keep = rng.choice(len(phrases), size=_integer(rng, 1, len(phrases) + 1), replace=False)
        phrases = [phrases[i] for i in sorted(keep)]
    if negative_probability > 0 and rng.random() < negative_probability:
        _check_template(negative_template)
        values = _vector(label, len(class_names), "label")
        known = np.ones(values.shape, dtype=bool) if mask is None else _vector(mask, len(class_names), "mask") > 0
        negatives = np.flatnonzero(known & (values <= 0.5))
        if len(negatives):
            drawn = rng.choice(negatives, size=min(len(negatives), _integer(rng, 1, max_negatives + 1)), replace=False)
            phrases += [negative_template.format(finding_phrase(class_names[i])) for i in sorted(drawn)]
    if shuffle and len(phrases) > 1:
        order = rng.permutation(len(phrases))
        phrases = [phrases[i] for i in order]
    return join_phrases(phrases, separator, empty_caption)


class MetaLabelCaptiond(MapTransform, Randomizable):
    """Write the meta-label caption of ``data[label_key]`` to ``data[caption_key]``.

    Random choices (order, subset, absent phrases) are drawn from ``self.R`` on every call, so each epoch sees a
    new caption; ``set_random_state`` (or MONAI's ``DataLoader`` worker seeding) makes it repeatable.

    Parameters
    ----------
    label_key
        Key of the ``[C]`` label vector (numpy or torch).
    caption_key
        Key the caption is written to (overwritten when present).
    class_names
        The ``C`` class names, or ``"cxrlt2024"`` / ``"chexpert"`` / ``None`` (= ``"cxrlt2024"``).
    mask_key
        Key of the ``[C]`` known-label mask; used when the dictionary has it (``LabelTable.to_datalist`` items
        do), all labels count as known otherwise. ``None`` ignores masks.
    shuffle, empty_caption, template, separator, positive_subset, negative_probability, max_negatives,
    negative_template
        As in :func:`meta_label_caption` (the recipe knobs, re-drawn on every call).
    allow_missing_keys
        Skip dictionaries without ``label_key`` instead of raising ``KeyError``.
    """

    def __init__(
        self,
        label_key: str = "label",
        caption_key: str = "caption",
        class_names: Sequence[str] | str | None = None,
        mask_key: str | None = "label_mask",
        shuffle: bool = False,
        empty_caption: str = "no finding",
        template: str = "{} is present",
        separator: str = ", ",
        positive_subset: bool = False,
        negative_probability: float = 0.0,
        max_negatives: int = 2,
        negative_template: str = "{} is absent",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, label_key, allow_missing_keys)
        self.caption_key = caption_key
        self.class_names = resolve_class_names(class_names)
        self.mask_key = mask_key
        self.shuffle = shuffle
        self.empty_caption = empty_caption
        self.template = template
        self.separator = separator
        if not 0 <= negative_probability <= 1:
            raise ValueError(f"negative_probability must be in [0, 1], got {negative_probability}.")
        if max_negatives < 1:
            raise ValueError(f"max_negatives must be >= 1, got {max_negatives}.")
        self.recipe = {
            "positive_subset": positive_subset,
            "negative_probability": negative_probability,
            "max_negatives": max_negatives,
            "negative_template": negative_template,
        }
        _check_template(template)
        _check_template(negative_template)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            mask = d.get(self.mask_key) if self.mask_key is not None else None
            d[self.caption_key] = meta_label_caption(
                d[key],
                self.class_names,
                mask=mask,
                shuffle=self.shuffle,
                rng=self.R,
                empty_caption=self.empty_caption,
                template=self.template,
                separator=self.separator,
                **self.recipe,
            )
        return d
