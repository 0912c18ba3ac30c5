"""The report's plots: one function per figure, each writing a PNG and returning the data it drew.

The returned tables are the figures' contents in numbers (tests and users can check what was plotted without
reading pixels). Figures are drawn with matplotlib's object-oriented API on the Agg canvas, so no display and
no pyplot state are involved.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from sklearn.manifold import TSNE
from sklearn.metrics import auc as area_under_curve
from sklearn.metrics import roc_curve

from monai_cxrcml.metrics.calibration_error import expected_calibration_error, reliability_bins

__all__ = [
    "GROUP_COLOURS", "POOLED", "group_colours",
    "plot_auc_bars", "plot_roc_curves", "plot_reliability", "plot_tsne", "tsne_subset",
    "roc_table", "reliability_table",
]

GROUP_COLOURS = {"base": "#1f77b4", "rare": "#d62728", "common": "#1f77b4", "medium": "#2ca02c"}
"""Bar colour of each class group; other group names get the next colours of matplotlib's tab10."""

POOLED = "all classes (pooled)"
"""Name of the reliability curve over every (film, class) pair with a known label."""

_DPI = 120
_FINDING_COLOURS = {"positive": "#d62728", "negative": "#b0b0b0", "unknown": "#e8e8e8"}
logger = logging.getLogger(__name__)


def group_colours(groups: Sequence[str]) -> dict[str, str]:
    """Colour of each distinct group name: :data:`GROUP_COLOURS` where named there, else tab10 in order."""
    spare = itertools.cycle(to_hex(c) for c in colormaps["tab10"].colors if to_hex(c) not in GROUP_COLOURS.values())
    return {group: GROUP_COLOURS.get(group) or next(spare) for group in dict.fromkeys(groups)}


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    return path


# ------------------------------------------------------------------------------------------------- AUC bars
def plot_auc_bars(per_class: pd.DataFrame, path: str | Path, title: str = "Zero-shot AUC per class") -> pd.DataFrame:
    """Horizontal bars of per-class AUC, most prevalent class on top, coloured by group, with CI whiskers.

    Parameters
    ----------
    per_class
        Index = class name; columns ``auc``, ``n_pos``, ``group`` and optionally ``ci_low``, ``ci_high`` (as
        :func:`~monai_cxrcml.report.artifacts.load_metrics` returns). Classes with an undefined AUC (NaN) get no
        bar and the label "n/a".
    path
        PNG to write.
    title
        Figure title.

    Returns
    -------
    pd.DataFrame
        The bars from top to bottom: ``class, auc, ci_low, ci_high, n_pos, group, colour`` (sorted by ``n_pos``
        descending, then class name).
    """
    data = per_class.rename_axis("class").reset_index()
    for column in ("ci_low", "ci_high"):
        if column not in data:
            data[column] = math.nan
    data = data.sort_values(["n_pos", "class"], ascending=[False, True], kind="stable").reset_index(drop=True)
    colours = group_colours(data["group"].tolist())
    data["colour"] = data["group"].map(colours)
    data = data[["class", "auc", "ci_low", "ci_high", "n_pos", "group", "colour"]]

    n = len(data)
    fig = Figure(figsize=(8.0, 1.2 + 0.24 * n))
    ax = fig.subplots()
    y = np.arange(n)
    heights = data["auc"].fillna(0.0).to_numpy()
    ax.barh(y, heights, color=data["colour"], height=0.75)
    has_ci = data["ci_low"].notna() & data["ci_high"].notna()
    if has_ci.any():
        auc = data.loc[has_ci, "auc"].to_numpy()
        err = np.vstack([auc - data.loc[has_ci, "ci_low"].to_numpy(), data.loc[has_ci, "ci_high"].to_numpy() - auc])
        ax.errorbar(auc, y[has_ci.to_numpy()], xerr=np.clip(err, 0, None), fmt="none", ecolor="black", elinewidth=0.8,
                    capsize=2)
    for i in np.flatnonzero(data["auc"].isna().to_numpy()):
        ax.text(0.01, i, "n/a (single label value)", va="center", fontsize=7)
    ax.axvline(0.5, color="black", linestyle=":", linewidth=0.8)
    for group, colour in colours.items():
        mean = data.loc[data["group"] == group, "auc"].mean()
        if not math.isnan(mean):
            ax.axvline(mean, color=colour, linestyle="--", linewidth=1.2, label=f"{group} mean {mean:.3f}")
    ax.set_yticks(y, [f"{c} ({k})" for c, k in zip(data["class"], data["n_pos"])], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("AUC (whiskers: bootstrap CI)" if has_ci.any() else "AUC")
    ax.set_title(f"{title}\n(sorted by test positives, in brackets)", fontsize=10)
    for group, colour in colours.items():  # group patches, after the mean lines, so the legend shows both
        ax.barh([np.nan], [np.nan], color=colour, label=group)
    ax.legend(loc="lower right", fontsize=7)
    _save(fig, path)
    return data


# ------------------------------------------------------------------------------------------------- ROC curves
def roc_table(
    label: np.ndarray, pred: np.ndarray, mask: np.ndarray, class_names: Sequence[str], classes: Sequence[str]
) -> pd.DataFrame:
    """ROC curves of ``classes`` over the films whose label is known (``sklearn.metrics.roc_curve``).

    Parameters
    ----------
    label, pred, mask
        ``[N, C]`` labels (0/1), probabilities and known-label mask.
    class_names
        The C column names.
    classes
        Classes to compute; a class whose known labels hold a single value has no curve and no row.

    Returns
    -------
    pd.DataFrame
        Long format: ``class, fpr, tpr, threshold, auc`` (``auc`` repeated on each row of its class).
    """
    frames = []
    for name in classes:
        c = list(class_names).index(name)
        known = mask[:, c]
        y, s = label[known, c] > 0.5, pred[known, c]
        if y.all() or not y.any():
            continue
        fpr, tpr, threshold = roc_curve(y, s)
        frames.append(pd.DataFrame({"class": name, "fpr": fpr, "tpr": tpr, "threshold": threshold,
                                    "auc": area_under_curve(fpr, tpr)}))
    columns = ["class", "fpr", "tpr", "threshold", "auc"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def plot_roc_curves(
    label: np.ndarray,
    pred: np.ndarray,
    mask: np.ndarray,
    class_names: Sequence[str],
    classes: Sequence[str],
    path: str | Path,
    groups: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """ROC curves of the chosen classes in one panel, AUC in the legend; rare-group classes dashed.

    Parameters are those of :func:`roc_table`, plus the PNG ``path`` and each class's group (for the legend
    and line style). Returns :func:`roc_table`'s data.
    """
    data = roc_table(label, pred, mask, class_names, classes)
    groups = dict(groups or {})
    fig = Figure(figsize=(6.0, 6.0))
    ax = fig.subplots()
    colours = colormaps["tab10"].colors
    for i, (name, curve) in enumerate(data.groupby("class", sort=False)):
        group = groups.get(name)
        ax.plot(curve["fpr"], curve["tpr"], color=colours[i % len(colours)], linewidth=1.5,
                linestyle="--" if group == "rare" else "-",
                label=f"{name}{f' [{group}]' if group else ''}: AUC {curve['auc'].iloc[0]:.3f}")
    ax.plot([0, 1], [0, 1], color="black", linestyle=":", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate")
    ax.set_title("ROC curves (test films with known labels)", fontsize=10)
    if len(data):
        ax.legend(loc="lower right", fontsize=7)
    _save(fig, path)
    return data


# ------------------------------------------------------------------------------------------------- reliability
def reliability_table(
    label: np.ndarray,
    pred: np.ndarray,
    mask: np.ndarray,
    class_names: Sequence[str],
    classes: Sequence[str] = (),
    n_bins: int = 15,
) -> pd.DataFrame:
    """Calibration curves: fraction of positives against mean probability in equal-width bins, with each ECE.

    Bins and ECE are those of :mod:`monai_cxrcml.metrics` (:func:`~monai_cxrcml.metrics.reliability_bins`,
    :func:`~monai_cxrcml.metrics.expected_calibration_error`), so the report's numbers and a calibration
    file's agree on the same data.

    Parameters
    ----------
    label, pred, mask
        ``[N, C]`` labels (0/1), probabilities and known-label mask.
    class_names
        The C column names.
    classes
        Classes with a curve of their own, besides the pooled curve :data:`POOLED` over every (film, class)
        pair with a known label. A class without any known label has no curve.
    n_bins
        Equal-width bins over ``[0, 1]``.

    Returns
    -------
    pd.DataFrame
        ``n_bins`` rows per curve: ``curve, bin, lower, upper, count, confidence`` (mean probability),
        ``frequency`` (fraction of positives), ``gap`` (NaN means in empty bins) and ``ece`` (the curve's ECE,
        repeated on each of its rows).
    """
    columns = [slice(None)] + [list(class_names).index(name) for name in classes]
    frames = []
    for curve, c in zip([POOLED, *classes], columns):
        y, p, m = label[:, c], pred[:, c], mask[:, c]
        if not m.any():
            continue
        bins = reliability_bins(p, y, m, n_bins=n_bins)
        bins.insert(0, "curve", curve)
        bins.insert(1, "bin", np.arange(n_bins))
        bins["ece"] = expected_calibration_error(p, y, m, n_bins=n_bins)
        frames.append(bins)
    columns = ["curve", "bin", "lower", "upper", "count", "confidence", "frequency", "gap", "ece"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def plot_reliability(
    label: np.ndarray,
    pred: np.ndarray,
    mask: np.ndarray,
    class_names: Sequence[str],
    classes: Sequence[str],
    path: str | Path,
    n_bins: int = 15,
) -> pd.DataFrame:
    """Reliability diagram: pooled and per-class calibration curves with their ECE, over a histogram of ``pred``.

    Parameters are those of :func:`reliability_table` plus the PNG ``path``; returns its data.
    """
    data = reliability_table(label, pred, mask, class_names, classes, n_bins)
    fig = Figure(figsize=(6.0, 7.0))
    ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="black", linestyle=":", linewidth=0.8, label="perfect calibration")
    colours = colormaps["tab10"].colors
    for i, (curve, rows) in enumerate(data.groupby("curve", sort=False)):
        pooled = curve == POOLED
        rows = rows[rows["count"] > 0]
        ax.plot(rows["confidence"], rows["frequency"], marker="o", markersize=4 if pooled else 3,
                linewidth=2.2 if pooled else 1.0, color="black" if pooled else colours[(i - 1) % len(colours)],
                label=f"{curve}: ECE {rows['ece'].iloc[0]:.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("Fraction of positives")
    ax.set_title(f"Reliability diagram ({n_bins} equal-width bins)", fontsize=10)
    ax.legend(loc="upper left", fontsize=7)
    pooled = data[data["curve"] == POOLED]
    hist.bar(pooled["lower"], pooled["count"], width=pooled["upper"] - pooled["lower"], align="edge",
             color="#808080", edgecolor="white")
    if (pooled["count"] > 0).any():
        hist.set_yscale("log")
    hist.set_xlabel("Predicted probability")
    hist.set_ylabel("Pairs (pooled)")
    _save(fig, path)
    return data


# ------------------------------------------------------------------------------------------------- t-SNE
def tsne_subset(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Rows of a t-SNE: all ``n`` films, or a random sorted ``max_points`` of them (drawn with ``seed``)."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def plot_tsne(
    features: np.ndarray,
    path: str | Path,
    clusters: np.ndarray | None = None,
    finding: np.ndarray | None = None,
    finding_name: str | None = None,
    films: np.ndarray | None = None,
    n_total: int | None = None,
    seed: int = 0,
    cluster_title: str = "mixture cluster",
) -> pd.DataFrame:
    """t-SNE of image embeddings, coloured by mixture cluster and by one finding (CXR-CML's Fig. 2).

    Every row given is embedded: pick a subset of a large test set first (:func:`tsne_subset`; t-SNE costs about a
    minute per 5000 films on 2 CPU cores).

    Parameters
    ----------
    features
        ``[M, D]`` image embeddings.
    path
        PNG to write.
    clusters
        ``[M]`` cluster of each film (``-1`` = none), or None for no cluster panel.
    finding
        ``[M]`` 1 positive, 0 negative, NaN unknown, or None for no finding panel.
    finding_name
        Name of the finding (panel title).
    films
        ``[M]`` ids of the rows in the returned table (e.g. their rows in ``predictions.npz``); default ``0..M-1``.
    n_total
        Size of the set the rows were drawn from (for the title); default M.
    seed
        Seed of t-SNE.
    cluster_title
        Title of the cluster panel.

    Returns
    -------
    pd.DataFrame
        One row per film: ``film``, ``x``, ``y``, and ``cluster`` and ``finding`` when given.
    """
    n = len(features)
    if n < 5:
        raise ValueError(f"t-SNE needs at least 5 films, got {n}.")
    films = np.arange(n) if films is None else np.asarray(films)
    n_total = n if n_total is None else n_total
    perplexity = float(min(30.0, (n - 1) / 3))
    logger.info("t-SNE of %d image embeddings [%d] (perplexity %.0f)...", n, features.shape[1], perplexity)
    start = time.perf_counter()
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        np.asarray(features, dtype=np.float32)
    )
    logger.info("t-SNE done in %.1f s", time.perf_counter() - start)
    data = pd.DataFrame({"film": films, "x": xy[:, 0], "y": xy[:, 1]})
    panels = []
    if clusters is not None:
        data["cluster"] = np.asarray(clusters).astype(int)
        panels.append("cluster")
    if finding is not None:
        data["finding"] = np.asarray(finding, dtype=float)
        panels.append("finding")
    panels = panels or ["none"]
    size = float(np.clip(4000 / n, 3, 20))  # marker area: larger for fewer films
    fig = Figure(figsize=(6.0 * len(panels), 6.0))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, panel in zip(axes, panels):
        if panel == "cluster":
            _scatter_clusters(ax, data, cluster_title, size)
        elif panel == "finding":
            _scatter_finding(ax, data, finding_name or "finding", size)
        else:
            ax.scatter(data["x"], data["y"], s=size, color="#404040", linewidths=0)
            ax.set_title("image embeddings", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    subset = f" (random {n} of {n_total})" if n_total > n else ""
    fig.suptitle(f"t-SNE of {n} test image embeddings{subset}", fontsize=10)
    _save(fig, path)
    return data


def _scatter_clusters(ax, data: pd.DataFrame, title: str, size: float) -> None:
    tab20 = colormaps["tab20"].colors  # dark shades first: the first 10 clusters get 10 distinct hues
    colours = [*tab20[0::2], *tab20[1::2], *colormaps["tab20b"].colors, *colormaps["tab20c"].colors]
    palette = [to_hex(c) for c in colours]
    labels = data["cluster"].to_numpy()
    none = labels < 0
    if none.any():
        ax.scatter(data.loc[none, "x"], data.loc[none, "y"], s=size, color="#d0d0d0", linewidths=0, label="none")
    colours = [palette[k % len(palette)] for k in labels[~none]]
    ax.scatter(data.loc[~none, "x"], data.loc[~none, "y"], s=size, c=colours, linewidths=0)
    used = np.unique(labels[~none])
    ax.set_title(f"{title} ({len(used)} clusters among these films)", fontsize=10)


def _scatter_finding(ax, data: pd.DataFrame, name: str, size: float) -> None:
    value = data["finding"].to_numpy()
    states = {"unknown": np.isnan(value), "negative": value == 0, "positive": value == 1}
    for state in ("unknown", "negative", "positive"):  # positives drawn last, on top
        rows = states[state]
        if rows.any():
            ax.scatter(data.loc[rows, "x"], data.loc[rows, "y"], s=size if state != "positive" else 2 * size,
                       color=_FINDING_COLOURS[state], linewidths=0, label=f"{state} ({int(rows.sum())})")
    ax.set_title(name, fontsize=10)
    ax.legend(loc="best", fontsize=7)
