"""Make a run's report: read its folder, draw every plot its files allow, write the summary into ``RUN_DIR/report``.

==================  ==========================================================================================
plot                needs
==================  ==========================================================================================
AUC bars            ``metrics.json``
ROC curves          ``predictions.npz`` with labels
reliability         ``predictions.npz`` with labels
t-SNE               ``predictions.npz`` with ``image_features``; clusters from ``models/last_checkpoint_epoch=N.pt``
==================  ==========================================================================================

A missing input skips its plot (or, for the checkpoint, the cluster panel); the summary lists what is missing
and how to get it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from monai_cxrcml.data.classes import resolve_class_names

from . import plots
from .artifacts import MixtureCheckpoint, Predictions, load_metrics, load_mixture, load_predictions
from .result import ReportResult
from .summary import FORMATS, write_summary

__all__ = ["PLOT_FILES", "default_classes", "make_report"]

PLOT_FILES = {
    "auc_bars": "auc_per_class.png",
    "roc": "roc_curves.png",
    "reliability": "reliability.png",
    "tsne": "tsne.png",
}
"""File name of each plot in ``RUN_DIR/report``."""

logger = logging.getLogger(__name__)

_HOW_PREDICTIONS = (
    "attach monai_cxrcml.handlers.PredictionWriter to the test evaluator (test#handlers of "
    "bundle/configs/train.yaml) and run the test section again, e.g. `python -m monai.bundle run evaluating "
    "--config_file \"['bundle/configs/train.yaml','bundle/configs/evaluate.yaml']\" --output_dir RUN_DIR`"
)


def default_classes(counts: pd.DataFrame, per_group: int = 3) -> list[str]:
    """A few common and a few rare classes: the ``per_group`` with most positives, then the rare ones with most.

    Parameters
    ----------
    counts
        Index = class name; columns ``n_pos``, ``group`` (``"rare"`` marks the rare classes; without any, the
        least prevalent classes with positives stand in for them).
    per_group
        Classes of each kind.
    """
    with_pos = counts[counts["n_pos"] > 0].sort_values("n_pos", ascending=False, kind="stable")
    rare = with_pos[with_pos["group"] == "rare"]
    common = with_pos[with_pos["group"] != "rare"].index[:per_group].tolist()
    rare_names = rare.index[:per_group].tolist() if len(rare) else with_pos.index[::-1][:per_group].tolist()[::-1]
    return list(dict.fromkeys(common + [n for n in rare_names if n not in common]))


def make_report(
    run_dir: str | Path,
    classes: Sequence[str] | None = None,
    finding: str | None = None,
    fmt: str = "md",
    tsne_max: int = 5000,
    n_bins: int = 15,
    seed: int = 0,
) -> ReportResult:
    """Write the plots and the summary of a run into ``run_dir/report``.

    Parameters
    ----------
    run_dir
        The run's ``output_dir``.
    classes
        Classes of the ROC curves and per-class reliability curves; default :func:`default_classes` (3 common,
        3 rare).
    finding
        Finding colouring the t-SNE's second panel; default the rare class with most test positives among
        ``classes``.
    fmt
        ``"md"`` (``report/summary.md``) or ``"html"`` (``report/summary.html``).
    tsne_max
        Films embedded by t-SNE at most (a random subset of a larger test set); t-SNE takes about a minute per
        5000 films on 2 CPU cores.
    n_bins
        Bins of the reliability diagram.
    seed
        Seed of the t-SNE subset and embedding.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {FORMATS}.")
    if tsne_max < 5:
        raise ValueError(f"tsne_max={tsne_max} must be >= 5.")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist: pass the output_dir of a training run.")
    result = ReportResult(run_dir=run_dir, report_dir=run_dir / "report")
    result.report_dir.mkdir(parents=True, exist_ok=True)
    steps = _Progress(5)

    steps("reading metrics.json and predictions.npz")
    loaded = load_metrics(run_dir)
    if loaded is None:
        result.missing.append(
            f"metrics.json is not in {run_dir}: no per-class AUC bars. It is written by the test section of "
            "bundle/configs/train.yaml (MetricsReportWriter); run it with evaluate.yaml on the trained checkpoint."
        )
    else:
        result.metrics, result.per_class = loaded
    predictions = load_predictions(run_dir)
    if finding is not None and predictions is not None:
        predictions.column(finding)  # an unknown name fails now, not after the other plots
    if predictions is None:
        result.missing.append(f"predictions.npz is not in {run_dir}: no ROC curves, reliability diagram or t-SNE. "
                              f"To get it, {_HOW_PREDICTIONS}.")
    if predictions is not None and result.metrics is not None and result.metrics.get("n_images") != len(predictions):
        result.notes.append(
            f"metrics.json covers {result.metrics.get('n_images')} images and predictions.npz {len(predictions)}: "
            "they come from different evaluations; write both in one test run."
        )
    counts = _class_counts(result.per_class, predictions)
    if counts is not None and predictions is not None:
        counts = counts[counts.index.isin(predictions.class_names)]
    if counts is not None:
        available = list(counts.index) if predictions is None else list(predictions.class_names)
        result.classes = list(resolve_class_names(classes, available)) if classes else default_classes(counts)

    steps("per-class AUC bars")
    if result.per_class is not None:
        _draw(result, "auc_bars", plots.plot_auc_bars, result.per_class)

    steps("ROC curves and reliability diagram")
    if predictions is not None and predictions.label is None:
        result.missing.append(f"{predictions.path} holds no labels (the run had none): no ROC curves or reliability "
                              "diagram. Evaluate on a labelled test set.")
    elif predictions is not None:
        _roc_and_reliability(result, predictions, counts, n_bins)

    steps("t-SNE of the test image embeddings")
    if predictions is not None:
        _tsne(result, predictions, counts, finding, tsne_max, seed)

    steps(f"summary ({fmt})")
    for name, file_name in PLOT_FILES.items():  # a plot of an earlier report that could not be drawn now
        if name not in result.plots:
            (result.report_dir / file_name).unlink(missing_ok=True)
    result.summary_path = write_summary(result, fmt)
    logger.info("report written to %s", result.summary_path)
    return result


class _Progress:
    """Logs ``report [i/n] step`` with the seconds the previous step took."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.start = total, 0, time.perf_counter()

    def __call__(self, step: str) -> None:
        now = time.perf_counter()
        self.done += 1
        logger.info("report [%d/%d] %s%s", self.done, self.total, step,
                    f" (previous step {now - self.start:.1f} s)" if self.done > 1 else "")
        self.start = now


def _draw(result: ReportResult, name: str, function, *args, **kwargs) -> None:
    path = result.report_dir / PLOT_FILES[name]
    result.data[name] = function(*args, path=path, **kwargs)
    result.plots[name] = path


def _class_counts(per_class: pd.DataFrame | None, predictions: Predictions | None) -> pd.DataFrame | None:
    """``n_pos`` and ``group`` per class: from metrics.json, else counted in the predictions (group unknown)."""
    if per_class is not None:
        return per_class[["n_pos", "group"]]
    if predictions is None or predictions.label is None:
        return None
    n_pos = ((predictions.label > 0.5) & predictions.label_mask).sum(axis=0)
    return pd.DataFrame({"n_pos": n_pos, "group": "all"}, index=pd.Index(predictions.class_names, name="class"))


def _roc_and_reliability(result: ReportResult, predictions: Predictions, counts: pd.DataFrame, n_bins: int) -> None:
    p = predictions
    groups = counts["group"].to_dict()
    _draw(result, "roc", plots.plot_roc_curves, p.label, p.pred, p.label_mask, p.class_names, result.classes,
          groups=groups)
    drawn = set(result.data["roc"]["class"])
    for name in result.classes:
        if name not in drawn:
            result.notes.append(f"{name} has no ROC curve: its known test labels hold a single value.")
    _draw(result, "reliability", plots.plot_reliability, p.label, p.pred, p.label_mask, p.class_names,
          result.classes, n_bins=n_bins)
    result.ece = result.data["reliability"].groupby("curve", sort=False)["ece"].first().to_dict()


def _tsne(result: ReportResult, predictions: Predictions, counts: pd.DataFrame | None, finding: str | None,
          tsne_max: int, seed: int) -> None:
    p = predictions
    if p.image_features is None:
        result.missing.append(
            f"{p.path} holds no image embeddings: no t-SNE. Write them with PredictionWriter(save_embeddings=True) "
            "on monai_cxrcml.engines.ZeroShotEvaluator (which puts image_features in its output), then "
            "re-run the test section."
        )
        return
    if len(p) < 5:
        result.missing.append(f"{p.path} holds {len(p)} films: too few for a t-SNE (at least 5).")
        return
    films = plots.tsne_subset(len(p), tsne_max, seed)
    features = p.image_features[films]
    clusters, cluster_title = _clusters(result, features)
    finding_values = None
    if p.label is not None:
        finding = finding or _default_finding(result.classes, counts)
        if finding is not None:
            c = p.column(finding)
            finding_values = np.where(p.label_mask[films, c], (p.label[films, c] > 0.5).astype(float), np.nan)
            result.finding = finding
    _draw(result, "tsne", plots.plot_tsne, features, clusters=clusters, finding=finding_values,
          finding_name=finding, films=films, n_total=len(p), seed=seed, cluster_title=cluster_title)
    result.tsne.update(n_shown=len(films), n_films=len(p))


def _default_finding(classes: Sequence[str], counts: pd.DataFrame | None) -> str | None:
    """The rare class with most positives among ``classes``, else the first of ``classes``."""
    if not classes:
        return None
    if counts is not None:
        rare = counts.loc[[c for c in classes if c in counts.index]]
        rare = rare[(rare["group"] == "rare") & (rare["n_pos"] > 0)]
        if len(rare):
            return str(rare["n_pos"].idxmax())
    return classes[0]


def _clusters(result: ReportResult, features: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Mixture clusters of embeddings from the newest resumable checkpoint, or (None, "") and the reason in missing."""
    try:
        saved: MixtureCheckpoint | None = load_mixture(result.run_dir)
    except ValueError as error:
        result.missing.append(f"no cluster colouring in the t-SNE: {error}")
        return None, ""
    if saved is None:
        result.missing.append(
            f"no models/last_checkpoint_epoch=N.pt in {result.run_dir}: the t-SNE has no cluster colouring. "
            "Training with bundle/configs/train.yaml saves one every epoch (train#last_checkpoint)."
        )
        return None, ""
    name = saved.path.name
    if saved.mixture is None:
        result.missing.append(f"{name} holds no fitted mixture (the run ended before the first fit, e.g. "
                              "metric_warmup_epochs >= epochs): the t-SNE has no cluster colouring.")
        return None, ""
    mixture = saved.mixture
    if mixture.n_features_in_ != features.shape[1]:
        result.missing.append(f"the mixture of {name} was fitted on {mixture.n_features_in_}-d embeddings, the test "
                              f"embeddings have {features.shape[1]}: the t-SNE has no cluster colouring.")
        return None, ""
    clusters = mixture.predict(features).cpu().numpy()
    result.tsne.update(checkpoint=str(saved.path), epoch=saved.epoch, n_components=mixture.n_components_,
                       clusters_used=len(np.unique(clusters[clusters >= 0])), same_image_tower=saved.same_image_tower)
    if saved.same_image_tower is False:
        result.notes.append(
            f"The mixture was fitted at epoch {saved.epoch} ({name}) to embeddings of that epoch's model, but "
            "models/model.pt (the best validation checkpoint, which the test section scores) holds another image "
            "tower: if predictions.npz came from model.pt, its embeddings live in a slightly different space and "
            "the cluster colours are approximate."
        )
    return clusters, f"{type(mixture).__name__} clusters (K={mixture.n_components_}, epoch {saved.epoch})"
