"""Meta-label captions (CXR-CML, arXiv 2507.19398): one phrase per positive finding, the text of a label vector.

``[0, 1, 0, ..., 1]`` over ``("Adenopathy", ..., "Pleural Effusion")`` ->
``"adenopathy is present, pleural effusion is present"``; an image with no positive finding gets an explicit
caption (``"no finding"``). :func:`finding_phrases` and :func:`join_phrases` are the two steps;
:func:`meta_label_caption` is the paper's recipe plus the training-time augmentations that
:class:`~monai_cxrcml.transforms.captions.MetaLabelCaptiond` draws anew on every call (shuffled order, a random
subset of the positives, "x is absent" phrases; reasons in that module). Labels are numpy arrays, lists or CPU
tensors (anything ``np.asarray`` takes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .classes import finding_phrase

__all__ = ["check_template", "finding_phrases", "join_phrases", "meta_label_caption"]


def _vector(values: Any, size: int, what: str) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float64).reshape(-1)
    if vector.size != size:
        raise ValueError(f"{what} has {vector.size} values but there are {size} class names.")
    return vector


def _integer(rng: np.random.Generator | np.random.RandomState, low: int, high: int) -> int:
    """A uniform integer in [low, high) from either numpy generator API (``Randomizable.R`` is a RandomState)."""
    return int(rng.integers(low, high) if isinstance(rng, np.random.Generator) else rng.randint(low, high))


def check_template(template: str) -> None:
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
    check_template(template)
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
        check_template(negative_template)
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
