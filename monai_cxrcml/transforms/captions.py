"""Captions of training films: the meta-label recipe (CXR-CML, arXiv 2507.19398), report text, or a mix.

:class:`MetaLabelCaptiond` writes a caption per call (per epoch), drawn from ``self.R``. The meta-label caption
(:mod:`monai_cxrcml.data.meta_labels`) names the positive findings ("adenopathy is present, ..."), with knobs:
``shuffle`` (random order), ``positive_subset`` (a random non-empty subset, so the text tower reads one finding
alone as a zero-shot prompt names it), ``negative_probability`` / ``max_negatives`` ("x is absent" phrases for
known negatives, the form the negative prompt uses). Measured on the phantom (../BENCHMARKS.md, "Zero-shot from
scratch"): subsets plus absent phrases close most of the gap between zero-shot AUC and a linear probe.
With ``report_probability`` p > 0 the caption is, with probability p, the film's report text instead
(:func:`report_caption`: the impression by default, as CheXzero trains on impressions; items carry ``findings``
and ``impression`` from :func:`~monai_cxrcml.data.reports.attach_reports`); a film without report text keeps
its meta-label caption. p = 1 trains on reports alone.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from monai.transforms import MapTransform, Randomizable
from monai.utils import convert_to_numpy

from monai_cxrcml.data.classes import resolve_class_names
from monai_cxrcml.data.meta_labels import check_template, finding_phrases, join_phrases, meta_label_caption

__all__ = ["REPORT_SECTIONS", "finding_phrases", "join_phrases", "meta_label_caption", "report_caption",
           "MetaLabelCaptiond"]

REPORT_SECTIONS: tuple[str, ...] = ("impression", "findings", "both")
"""What :func:`report_caption` takes from a report."""


def report_caption(findings: str, impression: str, section: str = "impression") -> str:
    """The caption a report gives: its ``"impression"`` (else its findings), its ``"findings"`` (else its
    impression), or ``"both"`` (findings, then impression); ``""`` for a report with neither.

    The tokenizer truncates a long caption at its context length, as CheXzero's does.
    """
    if section not in REPORT_SECTIONS:
        raise ValueError(f"section={section!r}: use one of {list(REPORT_SECTIONS)}.")
    findings, impression = " ".join(str(findings or "").split()), " ".join(str(impression or "").split())
    if section == "both":
        return " ".join(t for t in (findings, impression) if t)
    first, second = (impression, findings) if section == "impression" else (findings, impression)
    return first or second


class MetaLabelCaptiond(MapTransform, Randomizable):
    """Write the meta-label caption of ``data[label_key]`` to ``data[caption_key]``.

    Random choices (order, subset, absent phrases, report or labels) are drawn from ``self.R`` on every call, so
    each epoch sees a new caption; ``set_random_state`` (or MONAI's ``DataLoader`` worker seeding) makes it
    repeatable.

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
    report_probability, report_section
        With this probability the caption is :func:`report_caption` of the item's ``findings_key`` and
        ``impression_key`` texts (``report_section`` of them) where it has any; 0 (default) never.
    findings_key, impression_key
        Keys of the report sections in the item.
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
        report_probability: float = 0.0,
        report_section: str = "impression",
        findings_key: str = "findings",
        impression_key: str = "impression",
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
        check_template(template)
        check_template(negative_template)
        if not 0 <= report_probability <= 1:
            raise ValueError(f"report_probability must be in [0, 1], got {report_probability}.")
        report_caption("", "", report_section)  # refuses an unknown section here rather than at the first film
        self.report_probability = report_probability
        self.report_section = report_section
        self.report_keys = (findings_key, impression_key)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            if self.report_probability > 0:
                report = report_caption(d.get(self.report_keys[0], ""), d.get(self.report_keys[1], ""),
                                        self.report_section)
                if report and self.R.random_sample() < self.report_probability:
                    d[self.caption_key] = report
                    continue
            mask = d.get(self.mask_key) if self.mask_key is not None else None
            d[self.caption_key] = meta_label_caption(
                convert_to_numpy(d[key]),
                self.class_names,
                mask=None if mask is None else convert_to_numpy(mask),
                shuffle=self.shuffle,
                rng=self.R,
                empty_caption=self.empty_caption,
                template=self.template,
                separator=self.separator,
                **self.recipe,
            )
        return d
