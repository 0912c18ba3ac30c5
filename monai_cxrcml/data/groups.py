"""Class groups by training prevalence: base/rare, and the paper's common/medium/rare.

The paper's thresholds and the rule for data sets smaller than MIMIC (``group_by``): docs/design.md,
"Class groups by prevalence".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from .classes import CXRLT2024_TRAIN_COUNTS, CXRLT2024_TRAIN_SIZE
from .table import LabelTable

__all__ = [
    "GROUP_RULES",
    "PAPER_TRAIN_SIZE",
    "AUTO_MIN_TRAIN",
    "group_rule",
    "grouping_counts",
    "base_rare_groups",
    "prevalence_groups",
]

logger = logging.getLogger(__name__)

GROUP_RULES: tuple[str, ...] = ("auto", "train_counts", "scaled_counts", "cxrlt_reference")

PAPER_TRAIN_SIZE: int = round(0.8 * CXRLT2024_TRAIN_SIZE)
"""Training images in the paper's 80% fold of CXR-LT 2024 (207,097): the scale the thresholds refer to."""

AUTO_MIN_TRAIN: int = 100_000
"""``"auto"`` uses the training counts as they are from this many training images up."""

Train = LabelTable | Mapping[str, int]


def _counts(train: Train, num_train: int | None) -> tuple[dict[str, int], int | None]:
    if isinstance(train, LabelTable):
        return train.positives(), len(train) if num_train is None else num_train
    return {str(k): int(v) for k, v in train.items()}, num_train


def group_rule(class_names: Sequence[str], num_train: int | None, group_by: str = "auto") -> str:
    """The rule ``group_by`` stands for (resolves ``"auto"``, see the module docstring)."""
    if group_by not in GROUP_RULES:
        raise ValueError(f"group_by={group_by!r} is not a grouping rule: use one of {list(GROUP_RULES)}.")
    if group_by != "auto":
        return group_by
    if num_train is None:
        raise ValueError("group_by='auto' needs the number of training images: pass num_train with a counts mapping.")
    if num_train >= AUTO_MIN_TRAIN:
        return "train_counts"
    return "cxrlt_reference" if all(c in CXRLT2024_TRAIN_COUNTS for c in class_names) else "scaled_counts"


def grouping_counts(train: Train, group_by: str = "auto", num_train: int | None = None) -> tuple[str, dict[str, float]]:
    """Per-class counts on the scale of the paper's training fold, the numbers the thresholds are applied to.

    Parameters
    ----------
    train
        The training split actually used (a :class:`~monai_cxrcml.data.table.LabelTable`), or a mapping
        ``class -> positive training images``.
    group_by
        One of ``GROUP_RULES``.
    num_train
        Number of training images; taken from the table when ``train`` is one. Needed by ``"auto"`` and
        ``"scaled_counts"`` with a mapping.

    Returns
    -------
    rule, counts
        The rule applied (``"auto"`` resolved) and ``class -> count`` in class order.
    """
    counts, num_train = _counts(train, num_train)
    rule = group_rule(list(counts), num_train, group_by)
    if rule == "train_counts":
        return rule, {c: float(k) for c, k in counts.items()}
    if rule == "scaled_counts":
        if not num_train or num_train <= 0:
            raise ValueError(f"group_by='scaled_counts' needs a positive number of training images, got {num_train}.")
        return rule, {c: k * PAPER_TRAIN_SIZE / num_train for c, k in counts.items()}
    unknown = [c for c in counts if c not in CXRLT2024_TRAIN_COUNTS]
    if unknown:
        raise ValueError(
            f"group_by='cxrlt_reference' has no official CXR-LT 2024 count for {unknown}: use group_by="
            "'train_counts' (counts of your training split) or 'scaled_counts' (the same, scaled to its size)."
        )
    scale = PAPER_TRAIN_SIZE / CXRLT2024_TRAIN_SIZE
    return rule, {c: CXRLT2024_TRAIN_COUNTS[c] * scale for c in counts}


def base_rare_groups(
    train: Train, threshold: float = 1000, group_by: str = "auto", num_train: int | None = None
) -> dict[str, str]:
    """``class -> "base" | "rare"``: rare below ``threshold`` training images (on the scale of ``group_by``).

    Parameters are those of :func:`grouping_counts`, plus the threshold (1000 in the paper).
    """
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}.")
    rule, counts = grouping_counts(train, group_by, num_train)
    groups = {c: "rare" if k < threshold else "base" for c, k in counts.items()}
    logger.info("base/rare groups by %s (threshold %g): %s.", rule, threshold, _summary(groups, ("base", "rare")))
    return groups


def prevalence_groups(
    train: Train,
    thresholds: tuple[float, float] = (1000, 10000),
    group_by: str = "auto",
    num_train: int | None = None,
) -> dict[str, str]:
    """``class -> "common" | "medium" | "rare"``: rare below ``thresholds[0]``, common above ``thresholds[1]``.

    Parameters are those of :func:`grouping_counts`, plus the two thresholds ((1000, 10000) in the paper).
    """
    low, high = thresholds
    if not 0 < low < high:
        raise ValueError(f"thresholds must be two increasing positive numbers, got {thresholds}.")
    rule, counts = grouping_counts(train, group_by, num_train)
    groups = {c: "rare" if k < low else "common" if k > high else "medium" for c, k in counts.items()}
    logger.info("prevalence groups by %s (thresholds %g, %g): %s.", rule, low, high,
                _summary(groups, ("common", "medium", "rare")))
    return groups


def _summary(groups: Mapping[str, str], names: Sequence[str]) -> str:
    return ", ".join(f"{sum(g == name for g in groups.values())} {name}" for name in names)
