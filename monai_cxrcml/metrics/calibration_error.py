"""Calibration error of multi-label probabilities: reliability bins, pooled and class-wise ECE, NLL.

Equal-width bins over ``[0, 1]`` (bin ``i`` holds ``i/n <= p < (i+1)/n``, the last bin also ``p = 1``); only the
known (film, class) labels count. ``docs/design.md`` ("Calibration") says why both the pooled and the class-wise ECE
are reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = [
    "ArrayLike",
    "as_float64",
    "calibration_summary",
    "classwise_ece",
    "expected_calibration_error",
    "prepare_labelled_scores",
    "reliability_bins",
]

ArrayLike = np.ndarray | torch.Tensor | Sequence


def as_float64(value: ArrayLike) -> np.ndarray:
    """A tensor, array or sequence as a float64 numpy array (on the host)."""
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    return array.astype(np.float64)


def prepare_labelled_scores(
    scores: ArrayLike, labels: ArrayLike, mask: ArrayLike | None, scores_name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores, labels as float64 ``[N, C]`` and mask as bool ``[N, C]`` (a 1-D input is one class)."""
    s, y = as_float64(scores), as_float64(labels)
    m = np.ones_like(s, dtype=bool) if mask is None else as_float64(mask) > 0.5
    if s.ndim == 1 and y.ndim == 1 and m.ndim == 1:
        s, y, m = s[:, None], y[:, None], m[:, None]
    if s.ndim != 2 or y.shape != s.shape or m.shape != s.shape:
        raise ValueError(f"{scores_name} {s.shape}, labels {y.shape} and mask {m.shape} must all be [N, C] (or [N]).")
    if not np.isfinite(s[m]).all():
        raise ValueError(f"{scores_name} hold NaN or infinite values at known labels: check the model's output.")
    known = y[m]
    if not np.isin(known, (0.0, 1.0)).all():
        bad = np.unique(known[~np.isin(known, (0.0, 1.0))])[:5]
        raise ValueError(
            f"labels must be 0 or 1 where the mask is set, found {bad.tolist()}: mask uncertain (-1) or blank labels "
            "(read_cxrlt_csv(..., uncertain='mask')) or map them to 0/1."
        )
    if not m.any():
        raise ValueError("no known label (the mask is all False): nothing to calibrate or score.")
    return s, y, m


def _bin_index(probs: np.ndarray, n_bins: int) -> np.ndarray:
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}.")
    return np.minimum((probs * n_bins).astype(np.int64), n_bins - 1)


def _check_probabilities(probs: np.ndarray) -> None:
    if probs.size and (probs.min() < 0 or probs.max() > 1):
        raise ValueError(f"probabilities must lie in [0, 1], found [{probs.min():.4g}, {probs.max():.4g}].")


def _ece(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    """ECE of flat probability and label vectors (equal-width bins)."""
    index = _bin_index(probs, n_bins)
    count = np.bincount(index, minlength=n_bins)
    gap = np.abs(np.bincount(index, labels, n_bins) - np.bincount(index, probs, n_bins))  # n_b |mean y - mean p|
    return float(gap.sum() / count.sum())


def reliability_bins(
    probs: ArrayLike, labels: ArrayLike, mask: ArrayLike | None = None, n_bins: int = 15
) -> pd.DataFrame:
    """Reliability-diagram table of the pooled known (film, class) labels, one row per equal-width bin.

    Parameters
    ----------
    probs, labels
        ``[N, C]`` (or ``[N]``) probabilities in ``[0, 1]`` and 0/1 labels.
    mask
        ``[N, C]``, True (or 1) where the label is known; None: all known.
    n_bins
        Number of equal-width bins over ``[0, 1]``.

    Returns
    -------
    pandas.DataFrame
        Columns ``lower``, ``upper``, ``count``, ``confidence`` (mean probability), ``frequency`` (fraction of
        positives), ``gap`` (``frequency - confidence``); empty bins have count 0 and NaN means.
    """
    p, y, m = prepare_labelled_scores(probs, labels, mask, "probs")
    _check_probabilities(p[m])
    p, y = p[m], y[m]
    index = _bin_index(p, n_bins)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(index, p, n_bins) / count
        frequency = np.bincount(index, y, n_bins) / count
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame({
        "lower": edges[:-1], "upper": edges[1:], "count": count, "confidence": confidence,
        "frequency": frequency, "gap": frequency - confidence,
    })


def expected_calibration_error(
    probs: ArrayLike, labels: ArrayLike, mask: ArrayLike | None = None, n_bins: int = 15
) -> float:
    """Pooled ECE of all known (film, class) labels; see the module notes. Inputs as :func:`reliability_bins`."""
    p, y, m = prepare_labelled_scores(probs, labels, mask, "probs")
    _check_probabilities(p[m])
    return _ece(p[m], y[m], n_bins)


def classwise_ece(
    probs: ArrayLike, labels: ArrayLike, mask: ArrayLike | None = None, n_bins: int = 15
) -> np.ndarray:
    """ECE of each class on its known labels: float64 ``[C]``, NaN for a class without any known label."""
    p, y, m = prepare_labelled_scores(probs, labels, mask, "probs")
    _check_probabilities(p[m])
    return np.array([_ece(p[m[:, c], c], y[m[:, c], c], n_bins) if m[:, c].any() else np.nan
                     for c in range(p.shape[1])])


def _nll(probs: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(probs, 1e-12, 1 - 1e-12)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log1p(-p)))


def calibration_summary(
    probs: ArrayLike,
    labels: ArrayLike,
    mask: ArrayLike | None = None,
    n_bins: int = 15,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Calibration metrics of probabilities against known labels.

    Returns
    -------
    dict
        ``ece`` (pooled), ``classwise_ece`` (mean of the per-class ECEs), ``nll`` (mean binary cross-entropy of the
        known labels), ``n_labels`` (known labels), ``n_bins`` and ``per_class`` (class name -> ECE, None for a class
        without known labels). Plain Python types, ready for JSON.
    """
    p, y, m = prepare_labelled_scores(probs, labels, mask, "probs")
    per_class = classwise_ece(p, y, m, n_bins)
    names = list(class_names) if class_names is not None else [str(c) for c in range(p.shape[1])]
    if len(names) != p.shape[1]:
        raise ValueError(f"{len(names)} class names for {p.shape[1]} columns.")
    return {
        "ece": _ece(p[m], y[m], n_bins),
        "classwise_ece": float(np.nanmean(per_class)),
        "nll": _nll(p[m], y[m]),
        "n_labels": int(m.sum()),
        "n_bins": int(n_bins),
        "per_class": {n: (None if np.isnan(e) else float(e)) for n, e in zip(names, per_class)},
    }
