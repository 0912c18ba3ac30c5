"""Multi-label classification metrics for long-tailed findings: per-class AUC and AP, group means, bootstrap CIs.

A class whose evaluated split holds a single label value (no positive or no negative image) has no AUC: it is
reported as undefined (``None`` in JSON, empty in CSV), left out of every mean, and named in a warning. Means
over a group with no defined class are ``None``; no summary is ever NaN.

Confidence intervals come from a bootstrap over patients when subject ids are given (images of one patient are
correlated, so resampling images would make the intervals too narrow) and over images otherwise. Every class
and every group mean is computed on the same resamples, so the interval of a mean is that of the mean, not a
combination of per-class intervals. The AUC of each resample is computed exactly (ties count one half) from
multiplicity weights over the sorted scores, which costs O(resamples x images) per class instead of a full
``roc_auc_score`` call per resample.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

__all__ = ["SUMMARY_MEANS", "MultiLabelReport", "bootstrap_auc", "multilabel_report"]

SUMMARY_MEANS: tuple[tuple[str, str, str | None], ...] = (
    ("macro_auc", "AUC, all classes", None),
    ("base_auc", "AUC, base classes (>= 1000 training images)", "base"),
    ("rare_auc", "AUC, rare classes (< 1000 training images)", "rare"),
    ("common_auc", "AUC, common classes (> 10000)", "common"),
    ("medium_auc", "AUC, medium classes (1000-10000)", "medium"),
    ("macro_ap", "mean average precision (CXR-LT leaderboard)", None),
)
"""The summary means of a report: (``metrics.json`` key, label, the ``per_class`` group it averages over, if any)."""


@dataclass
class MultiLabelReport:
    """Scores of one evaluation.

    Attributes
    ----------
    per_class
        One row per class (index = class name): ``auc``, ``auc_ci_low``, ``auc_ci_high``, ``ap``, ``n_pos``,
        ``n_neg``, ``group`` (base/rare), ``prevalence_group`` (common/medium/rare); NaN marks an undefined score.
    summary
        ``macro_auc``, ``base_auc``, ``rare_auc``, ``common_auc``, ``medium_auc``, ``macro_ap`` (float or None),
        and ``<key>_ci`` ([low, high] or None) for each AUC mean.
    n_images, n_bootstrap, ci_level, bootstrap_unit
        What was evaluated and how the intervals were drawn.
    undefined
        Classes without a defined AUC.
    class_info
        Optional extra columns per class (index = class name), e.g. the name each class was scored under and how
        it was mapped; written beside the scores in ``per_class.csv`` and ``metrics.json``.
    """

    per_class: pd.DataFrame
    summary: dict[str, float | list[float] | None]
    n_images: int
    n_bootstrap: int
    ci_level: float
    bootstrap_unit: str
    undefined: list[str] = field(default_factory=list)
    class_info: pd.DataFrame | None = None

    def with_class_info(self, class_info: pd.DataFrame | None) -> MultiLabelReport:
        """This report with ``class_info`` (one row per class, indexed by class name) attached."""
        if class_info is not None and set(class_info.index) != set(self.per_class.index):
            raise ValueError(f"class_info is indexed by {sorted(class_info.index)}; the report's classes are "
                             f"{sorted(self.per_class.index)}.")
        return dataclasses.replace(self, class_info=class_info)

    def _per_class_with_info(self) -> pd.DataFrame:
        return self.per_class if self.class_info is None else self.per_class.join(self.class_info)

    def to_dict(self) -> dict:
        """The ``metrics.json`` document: summary keys at top level and ``per_class`` by class name."""
        per_class = {}
        info = {} if self.class_info is None else self.class_info.to_dict("index")
        for name, row in self.per_class.iterrows():
            ci = [_none_if_nan(row.auc_ci_low), _none_if_nan(row.auc_ci_high)]
            per_class[name] = {
                "auc": _none_if_nan(row.auc),
                "ap": _none_if_nan(row.ap),
                "n_pos": int(row.n_pos),
                "n_neg": int(row.n_neg),
                "group": row.group,
                "prevalence_group": row.prevalence_group,
                "ci": None if ci[0] is None else ci,
                **info.get(name, {}),
            }
        return {
            **self.summary,
            "n_images": self.n_images,
            "n_classes": len(self.per_class),
            "undefined_classes": list(self.undefined),
            "bootstrap": {"resamples": self.n_bootstrap, "ci_level": self.ci_level, "unit": self.bootstrap_unit},
            "per_class": per_class,
        }

    def save(self, output_dir: str | Path, extra: Mapping | None = None) -> tuple[Path, Path]:
        """Write ``metrics.json`` (with the entries of ``extra`` added) and ``per_class.csv`` into ``output_dir``."""
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        json_path, csv_path = out / "metrics.json", out / "per_class.csv"
        json_path.write_text(json.dumps({**self.to_dict(), **dict(extra or {})}, indent=2) + "\n")
        self._per_class_with_info().rename_axis("class").to_csv(csv_path, float_format="%.6f")
        return json_path, csv_path

    def format_table(self, title: str = "Zero-shot AUC") -> str:
        """A short plain-text table of the group means, for logs and the console."""
        s = self.summary
        counts = self.per_class.loc[~self.per_class.auc.isna()]
        n_in = {"macro_auc": len(counts), "base_auc": int((counts.group == "base").sum()),
                "rare_auc": int((counts.group == "rare").sum())}
        lines = [
            f"{title}: {self.n_images} images, {len(self.per_class)} classes"
            + (f" ({len(self.undefined)} undefined)" if self.undefined else ""),
            f"{'':8}{'AUC':>7}  {int(self.ci_level * 100)}% CI ({self.n_bootstrap} {self.bootstrap_unit} resamples)",
        ]
        for label, key in (("all", "macro_auc"), ("base", "base_auc"), ("rare", "rare_auc")):
            value, ci = s.get(key), s.get(f"{key}_ci")
            ci_text = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
            value_text = f"{value:.3f}" if value is not None else "  n/a"
            lines.append(f"  {label:6}{value_text:>7}  {ci_text:18} {n_in[key]} classes")
        if s.get("macro_ap") is not None:
            lines.append(f"  {'mAP':6}{s['macro_ap']:>7.3f}")
        if self.class_info is not None and "mapping" in self.class_info:
            how = self.class_info["mapping"].value_counts()
            lines.append("  classes scored: " + ", ".join(f"{how[k]} {k.replace('_', ' ')}" for k in how.index)
                         + " (per_class.csv: scored_name, mapping)")
        return "\n".join(lines)


def multilabel_report(
    y_true: np.ndarray,
    y_score: np.ndarray,
    class_names: Sequence[str],
    groups: Mapping[str, str] | None = None,
    prevalence_groups: Mapping[str, str] | None = None,
    mask: np.ndarray | None = None,
    subject_ids: Sequence | None = None,
    n_bootstrap: int = 1000,
    ci_level: float = 0.95,
    seed: int = 0,
) -> MultiLabelReport:
    """Score multi-label predictions class by class and summarise them by group.

    Parameters
    ----------
    y_true
        Binary labels, [N, C].
    y_score
        Scores or probabilities, [N, C]; must be finite.
    class_names
        C names, in column order.
    groups, prevalence_groups
        Class name -> "base"/"rare" and -> "common"/"medium"/"rare" (see :mod:`monai_cxrcml.data.groups`);
        classes missing from a mapping get no group there.
    mask
        Optional [N, C] bool, True where a label is known; masked entries are left out of that class's scores.
    subject_ids
        Optional [N] patient ids: the bootstrap then resamples patients instead of images.
    n_bootstrap
        Number of bootstrap resamples; 0 disables confidence intervals.
    ci_level
        Coverage of the percentile intervals.
    seed
        Seed of the bootstrap resampling.
    """
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    n, c = y_true.shape if y_true.ndim == 2 else (len(y_true), -1)
    if y_true.ndim != 2 or y_score.shape != y_true.shape or c != len(class_names):
        raise ValueError(
            f"y_true {tuple(y_true.shape)} and y_score {tuple(y_score.shape)} must both be [N, C] with "
            f"C = len(class_names) = {len(class_names)}."
        )
    if not np.isfinite(y_score).all():
        bad = sorted({class_names[j] for j in np.nonzero(~np.isfinite(y_score))[1]})
        raise ValueError(f"y_score holds NaN or inf for class(es) {bad}: the model's output is not finite.")
    known = np.ones_like(y_true, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    labels = y_true > 0.5
    groups = dict(groups or {})
    prevalence_groups = dict(prevalence_groups or {})

    rows = []
    for j, name in enumerate(class_names):
        y, s = labels[known[:, j], j], y_score[known[:, j], j]
        n_pos = int(y.sum())
        n_neg = int(len(y) - n_pos)
        defined = n_pos > 0 and n_neg > 0
        rows.append(
            {
                "class": name,
                "auc": roc_auc_score(y, s) if defined else math.nan,
                "ap": average_precision_score(y, s) if defined else math.nan,
                "n_pos": n_pos,
                "n_neg": n_neg,
                "group": groups.get(name),
                "prevalence_group": prevalence_groups.get(name),
            }
        )
    per_class = pd.DataFrame(rows).set_index("class")
    undefined = per_class.index[per_class.auc.isna()].tolist()
    if undefined:
        warnings.warn(
            f"AUC undefined for {len(undefined)} class(es) with a single label value in this split "
            f"(no positive or no negative image): {undefined}. They are left out of every mean.",
            stacklevel=2,
        )

    members = _group_members(per_class)
    summary: dict[str, float | list[float] | None] = {
        key: _mean_or_none(per_class.auc[idx]) for key, idx in members.items()
    }
    summary["macro_ap"] = _mean_or_none(per_class.ap)

    unit = "patient" if subject_ids is not None else "image"
    per_class["auc_ci_low"] = math.nan
    per_class["auc_ci_high"] = math.nan
    if n_bootstrap > 0:
        samples = bootstrap_auc(labels, y_score, known, n_bootstrap, seed, subject_ids)  # [R, C]
        q = ((1 - ci_level) / 2, 1 - (1 - ci_level) / 2)
        defined_cols = ~per_class.auc.isna().to_numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns of undefined classes
            low, high = np.nanquantile(samples, q, axis=0)
        per_class.loc[defined_cols, "auc_ci_low"] = low[defined_cols]
        per_class.loc[defined_cols, "auc_ci_high"] = high[defined_cols]
        for key, idx in members.items():
            cols = np.flatnonzero(per_class.index.isin(idx) & defined_cols)
            summary[f"{key}_ci"] = _mean_ci(samples[:, cols], q) if len(cols) else None
    else:
        summary.update({f"{key}_ci": None for key in members})
    per_class = per_class[["auc", "auc_ci_low", "auc_ci_high", "ap", "n_pos", "n_neg", "group", "prevalence_group"]]
    return MultiLabelReport(per_class, summary, n, n_bootstrap, ci_level, unit, undefined)


def bootstrap_auc(
    labels: np.ndarray,
    scores: np.ndarray,
    known: np.ndarray,
    n_bootstrap: int,
    seed: int = 0,
    subject_ids: Sequence | None = None,
    max_chunk_bytes: int = 1 << 28,
) -> np.ndarray:
    """Per-class AUC of ``n_bootstrap`` resamples, [R, C]; NaN where a resample has a single label value.

    Parameters
    ----------
    labels, scores, known
        [N, C] bool labels, float scores and bool "label known" mask.
    n_bootstrap
        Number of resamples R.
    seed
        Seed of the resampling; the same seed gives the same resamples.
    subject_ids
        Optional [N] cluster ids: whole clusters are resampled (cluster bootstrap).
    max_chunk_bytes
        Memory bound of one block of resample weights.
    """
    rng = np.random.default_rng(seed)
    n, c = labels.shape
    if subject_ids is not None:
        _, cluster = np.unique(np.asarray(subject_ids).astype(str), return_inverse=True)
    else:
        cluster = np.arange(n)
    n_clusters = int(cluster.max()) + 1 if n else 0
    order = [np.argsort(scores[:, j], kind="stable") for j in range(c)]
    out = np.full((n_bootstrap, c), np.nan)
    chunk = max(1, min(n_bootstrap, max_chunk_bytes // max(1, 8 * (n + n_clusters))))
    for start in range(0, n_bootstrap, chunk):
        r = min(chunk, n_bootstrap - start)
        weights = rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=r)[:, cluster]  # [r, N]
        for j in range(c):
            idx = order[j][known[order[j], j]]
            out[start : start + r, j] = _weighted_auc(labels[idx, j], scores[idx, j], weights[:, idx])
    return out


def _weighted_auc(y: np.ndarray, s_sorted: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Exact AUC with ties = 1/2 under integer multiplicities.

    Parameters
    ----------
    y
        [n] bool labels ordered by ascending score.
    s_sorted
        [n] the ascending scores.
    w
        [R, n] multiplicities of each item in each resample.
    """
    if len(y) == 0:
        return np.full(w.shape[0], np.nan)
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])  # first index of each tie group
    wp = np.add.reduceat(w * y, starts, axis=1).astype(np.float64)  # [R, G] positive weight per tie group
    wn = np.add.reduceat(w * ~y, starts, axis=1).astype(np.float64)
    below = np.cumsum(wn, axis=1) - wn
    num = (wp * (below + 0.5 * wn)).sum(axis=1)
    den = wp.sum(axis=1) * wn.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _group_members(per_class: pd.DataFrame) -> dict[str, list[str]]:
    """Summary key -> classes it averages over (rare is the same set in both groupings)."""
    names = per_class.index
    return {
        "macro_auc": names.tolist(),
        "base_auc": names[per_class.group == "base"].tolist(),
        "rare_auc": names[per_class.group == "rare"].tolist(),
        "common_auc": names[per_class.prevalence_group == "common"].tolist(),
        "medium_auc": names[per_class.prevalence_group == "medium"].tolist(),
    }


def _mean_or_none(values: pd.Series) -> float | None:
    values = values.dropna()
    return float(values.mean()) if len(values) else None


def _mean_ci(samples: np.ndarray, q: tuple[float, float]) -> list[float] | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(samples, axis=1)
    means = means[np.isfinite(means)]
    return [float(v) for v in np.quantile(means, q)] if len(means) else None


def _none_if_nan(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
