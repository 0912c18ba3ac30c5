"""Calibrate zero-shot probabilities: temperature (and bias) fitting on a validation split, ECE before and after.

A :class:`~monai_cxrcml.networks.ZeroShotClassifier` scores class c of a film as

    p_c = sigmoid(z_c / T_c + b_c),    z_c = s (cos(x, t+_c) - cos(x, t-_c))   (its ``logits``)

Ranking (AUC) does not depend on ``T_c > 0`` and ``b_c``; probabilities and thresholds do. :func:`fit_calibration`
chooses them by minimising the negative log-likelihood (binary cross-entropy) of the known validation labels, in
one of three modes:

- global temperature (default): one ``T`` for all classes;
- ``per_class=True``: one ``T_c`` per class;
- ``bias=True``: a bias ``b_c`` per class as well (Platt scaling), with the global or per-class temperature.

Each problem is logistic regression on one feature per class, so it is convex in ``(1/T, b)``; it is solved with
scipy's bounded L-BFGS-B (``T`` kept within ``temperature_range``), which reaches the global optimum. A class with
fewer than ``min_count`` known positives or negatives in the fitting data cannot be fitted on its own (an
all-negative class would push its bias to minus infinity): it gets the global temperature and no bias, and is
listed in :attr:`Calibration.fallback_classes`. The same global temperature serves classes that the calibration
never saw (e.g. CXR-LT task 3's unseen findings) when it is applied to a classifier.

Expected calibration error (ECE)
    Equal-width bins over ``[0, 1]`` (``n_bins``, default 15; bin ``i`` holds ``i/n <= p < (i+1)/n``, the last bin
    also ``p = 1``). ``ece`` pools every known (film, class) label as one binary prediction:
    ``sum_b (n_b / N) |mean(y in b) - mean(p in b)|``. Since most labels of a long-tailed problem are negatives, the
    pooled value is dominated by low probabilities; ``classwise_ece`` is the mean over classes of each class's ECE
    (computed on that class's known labels; classes without known labels are left out of the mean). Both are
    reported before and after calibration, on the fitting data (in-sample), with the NLL.

Fit from a trained run (writes ``calibration.json`` with ECE before/after)::

    python -m monai_cxrcml.calibration --checkpoint runs/fold0/models/model.pt --model-name ViT-B-32-quickgelu \\
        --csv /data/cxr-lt-2024/train_labeled.csv --image-root /data/mimic-cxr-jpg/2.0.0 --fold 0 \\
        --per-class --output runs/fold0/calibration.json

Use the same fold settings (``--fold``, ``--num-folds``, ``--seed``, ``--val-fraction``, label policies) as the
training run, so that the validation part is the one the run held out, never its test part.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from monai.data import DataLoader, Dataset
from scipy.optimize import minimize

from monai_cxrcml.data import load_fold
from monai_cxrcml.networks import CheckpointError, ZeroShotClassifier
from monai_cxrcml.transforms import chest_film_transforms, skip_unreadable_collate

__all__ = [
    "Calibration",
    "apply_calibration",
    "calibrate_checkpoint",
    "calibration_summary",
    "classwise_ece",
    "collect_logits",
    "expected_calibration_error",
    "fit_calibration",
    "reliability_bins",
]

logger = logging.getLogger(__name__)

FORMAT = "monai-cxrcml-calibration/1"
"""``format`` field of a calibration JSON file."""

ArrayLike = np.ndarray | torch.Tensor | Sequence


# ---------------------------------------------------------------------------------------------- checks and metrics


def _as_float(value: ArrayLike) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    return array.astype(np.float64)


def _prepare(
    scores: ArrayLike, labels: ArrayLike, mask: ArrayLike | None, scores_name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores, labels as float64 ``[N, C]`` and mask as bool ``[N, C]`` (a 1-D input is one class)."""
    s, y = _as_float(scores), _as_float(labels)
    m = np.ones_like(s, dtype=bool) if mask is None else _as_float(mask) > 0.5
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
    p, y, m = _prepare(probs, labels, mask, "probs")
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
    p, y, m = _prepare(probs, labels, mask, "probs")
    _check_probabilities(p[m])
    return _ece(p[m], y[m], n_bins)


def classwise_ece(
    probs: ArrayLike, labels: ArrayLike, mask: ArrayLike | None = None, n_bins: int = 15
) -> np.ndarray:
    """ECE of each class on its known labels: float64 ``[C]``, NaN for a class without any known label."""
    p, y, m = _prepare(probs, labels, mask, "probs")
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
    p, y, m = _prepare(probs, labels, mask, "probs")
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


# ---------------------------------------------------------------------------------------------- the fitted object


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


@dataclass
class Calibration:
    """Fitted temperature and bias per class; apply it to a classifier or to logits, save it as JSON.

    Attributes
    ----------
    class_names
        The C classes it was fitted on.
    temperature, bias
        float64 ``[C]``: ``p_c = sigmoid(z_c / T_c + b_c)``.
    fallback_temperature
        The global temperature (no bias) for classes fitted on too few labels and for classes it never saw.
    fallback_classes
        Classes of ``class_names`` that got the fallback instead of their own fit.
    per_class, fit_bias
        The mode it was fitted in.
    before, after
        :func:`calibration_summary` of the fitting data before (``T = 1``, ``b = 0``) and after calibration.
    fitted_on
        Free-form provenance (checkpoint, label file, fold, part, films, prompts, ...).
    """

    class_names: tuple[str, ...]
    temperature: np.ndarray
    bias: np.ndarray
    fallback_temperature: float
    fallback_classes: tuple[str, ...] = ()
    per_class: bool = False
    fit_bias: bool = False
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    fitted_on: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.class_names = tuple(str(n) for n in self.class_names)
        self.temperature = np.asarray(self.temperature, dtype=np.float64).reshape(-1)
        self.bias = np.asarray(self.bias, dtype=np.float64).reshape(-1)
        self.fallback_classes = tuple(self.fallback_classes)
        c = len(self.class_names)
        if self.temperature.shape != (c,) or self.bias.shape != (c,):
            raise ValueError(f"temperature and bias need one value per class ({c}), got {self.temperature.shape} "
                             f"and {self.bias.shape}.")
        values = np.concatenate([self.temperature, self.bias, [self.fallback_temperature]])
        if not np.isfinite(values).all() or (self.temperature <= 0).any() or self.fallback_temperature <= 0:
            raise ValueError("temperatures must be finite and > 0 and biases finite.")

    def parameters_for(self, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Temperature and bias ``[C']`` for ``class_names`` in that order; unseen classes get the fallback."""
        index = {n: i for i, n in enumerate(self.class_names)}
        unseen = [n for n in class_names if n not in index]
        if unseen:
            logger.warning(
                "calibration was not fitted on %s: they get the global temperature %.4g and no bias.",
                unseen, self.fallback_temperature,
            )
        temperature = np.array([self.temperature[index[n]] if n in index else self.fallback_temperature
                                for n in class_names])
        bias = np.array([self.bias[index[n]] if n in index else 0.0 for n in class_names])
        return temperature, bias

    def probabilities(self, logits: ArrayLike) -> np.ndarray:
        """Calibrated probabilities ``[N, C]`` of uncalibrated logits ``[N, C]`` (columns = ``class_names``)."""
        z = _as_float(logits)
        return _sigmoid(z / self.temperature + self.bias)

    def apply(self, classifier: torch.nn.Module) -> torch.nn.Module:
        """Set the temperature and bias of a ``ZeroShotClassifier`` (its classes, by name); returns it.

        Warns when the classifier's prompt set differs from the one the calibration was fitted with: the logits
        of other prompts have another scale.
        """
        fitted_prompts = self.fitted_on.get("prompts")
        prompts = getattr(getattr(classifier, "prompts", None), "name", None)
        if fitted_prompts is not None and prompts is not None and fitted_prompts != prompts:
            logger.warning("calibration was fitted with prompts %r but the classifier uses %r: its logits have "
                           "another scale, refit the calibration with these prompts.", fitted_prompts, prompts)
        temperature, bias = self.parameters_for(classifier.class_names)
        classifier.set_calibration(torch.from_numpy(temperature).float(), torch.from_numpy(bias).float())
        return classifier

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (see :meth:`save`)."""
        return {
            "format": FORMAT,
            "mode": {"per_class": self.per_class, "bias": self.fit_bias},
            "class_names": list(self.class_names),
            "temperature": self.temperature.tolist(),
            "bias": self.bias.tolist(),
            "fallback_temperature": float(self.fallback_temperature),
            "fallback_classes": list(self.fallback_classes),
            "ece_before": self.before,
            "ece_after": self.after,
            "fitted_on": self.fitted_on,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the calibration as JSON (folders are created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        """Read a file written by :meth:`save`.

        Raises
        ------
        ValueError
            When the file is not a calibration file or its values are invalid (the message names the file).
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT:
                raise ValueError(f"'format' is {data.get('format')!r}, expected {FORMAT!r}")
            return cls(
                class_names=data["class_names"], temperature=data["temperature"], bias=data["bias"],
                fallback_temperature=float(data["fallback_temperature"]),
                fallback_classes=data.get("fallback_classes", ()), per_class=bool(data["mode"]["per_class"]),
                fit_bias=bool(data["mode"]["bias"]), before=data.get("ece_before"), after=data.get("ece_after"),
                fitted_on=data.get("fitted_on", {}),
            )
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"{path}: not a usable calibration file ({type(e).__name__}: {e}). Write one with "
                "`python -m monai_cxrcml.calibration` or Calibration.save()."
            ) from e


def apply_calibration(
    classifier: torch.nn.Module, calibration: Calibration | str | os.PathLike | None
) -> torch.nn.Module:
    """Apply a :class:`Calibration` (or the JSON file of one) to a classifier; None leaves it as it is.

    Bundle use: ``network: "$monai_cxrcml.calibration.apply_calibration(@network_def.to(@device), @calibration)"``.
    """
    if calibration is None:
        return classifier
    if not isinstance(calibration, Calibration):
        calibration = Calibration.load(calibration)
    return calibration.apply(classifier)


# ---------------------------------------------------------------------------------------------- fitting


def _fit_logistic(
    z: np.ndarray, y: np.ndarray, m: np.ndarray, per_class: bool, bias: bool, bounds: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise the mean NLL of ``sigmoid(a z + b)`` over known entries; returns ``a`` and ``b`` ``[C]``.

    ``a = 1/T`` is one shared value or one per class, within ``bounds``; ``b`` is zero or one per class.
    """
    num_classes = z.shape[1]
    na, nb = (num_classes if per_class else 1), (num_classes if bias else 0)
    n = m.sum()
    zm, ym = np.where(m, z, 0.0), np.where(m, y, 0.0)

    def unpack(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.broadcast_to(x[:na], (num_classes,)), (x[na:] if bias else np.zeros(num_classes))

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = unpack(x)
        s = zm * a + b
        loss = np.where(m, np.logaddexp(0.0, s) - ym * s, 0.0).sum() / n
        r = np.where(m, _sigmoid(s) - ym, 0.0)
        grad_a, grad_b = (r * zm).sum(0) / n, r.sum(0) / n
        grad = np.concatenate([grad_a if per_class else grad_a.sum(keepdims=True), grad_b if bias else []])
        return float(loss), grad

    x0 = np.concatenate([np.ones(na), np.zeros(nb)])
    x0[:na] = np.clip(x0[:na], *bounds)
    result = minimize(objective, x0, jac=True, method="L-BFGS-B",
                      bounds=[bounds] * na + [(None, None)] * nb,
                      options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-10})
    if not np.isfinite(result.x).all():
        raise RuntimeError(f"calibration fit failed to converge: {result.message}")
    a, b = unpack(result.x)
    return np.array(a), np.array(b)


def fit_calibration(
    logits: ArrayLike,
    labels: ArrayLike,
    mask: ArrayLike | None = None,
    class_names: Sequence[str] | None = None,
    per_class: bool = False,
    bias: bool = False,
    n_bins: int = 15,
    min_count: int = 5,
    temperature_range: tuple[float, float] = (1e-3, 1e3),
    fitted_on: Mapping[str, Any] | None = None,
) -> Calibration:
    """Fit the temperature (global or per class) and optionally a bias per class by minimising the NLL.

    Parameters
    ----------
    logits
        Uncalibrated logits ``[N, C]`` (``ZeroShotClassifier.logits``, i.e. with ``T = 1``, ``b = 0``).
    labels
        0/1 labels ``[N, C]`` (any value where ``mask`` is False).
    mask
        ``[N, C]``, True where the label is known; None: all known. Unknown labels take no part in the fit or ECE.
    class_names
        The C class names (default ``"0"``, ``"1"``, ...).
    per_class
        One temperature per class instead of one for all.
    bias
        Fit a bias per class as well.
    n_bins
        Equal-width bins of the ECE reported before and after.
    min_count
        Classes with fewer known positives or known negatives get the global temperature and no bias.
    temperature_range
        Bounds of every temperature.
    fitted_on
        Provenance stored with the result.

    Returns
    -------
    Calibration
        With ``before``/``after`` summaries on these data.
    """
    z, y, m = _prepare(logits, labels, mask, "logits")
    names = tuple(class_names) if class_names is not None else tuple(str(c) for c in range(z.shape[1]))
    if len(names) != z.shape[1]:
        raise ValueError(f"{len(names)} class names for logits with {z.shape[1]} columns.")
    low, high = temperature_range
    if not 0 < low < high:
        raise ValueError(f"temperature_range must be (low, high) with 0 < low < high, got {temperature_range}.")
    bounds = (1.0 / high, 1.0 / low)
    a_global, _ = _fit_logistic(z, y, m, per_class=False, bias=False, bounds=bounds)
    temperature = np.full(z.shape[1], 1.0 / a_global[0])
    offset = np.zeros(z.shape[1])
    fallback: tuple[str, ...] = ()
    if per_class or bias:
        positives, negatives = (m & (y > 0.5)).sum(0), (m & (y < 0.5)).sum(0)
        fittable = (positives >= min_count) & (negatives >= min_count)
        fallback = tuple(n for n, ok in zip(names, fittable) if not ok)
        if fallback:
            logger.warning("%d class(es) have fewer than %d known positives or negatives and get the global "
                           "temperature without bias: %s", len(fallback), min_count, list(fallback))
        if fittable.any():
            a, b = _fit_logistic(z[:, fittable], y[:, fittable], m[:, fittable], per_class, bias, bounds)
            temperature[fittable], offset[fittable] = 1.0 / a, b
    calibration = Calibration(
        names, temperature, offset, float(1.0 / a_global[0]), fallback, per_class, bias,
        fitted_on=dict(fitted_on or {}),
    )
    calibration.before = calibration_summary(_sigmoid(np.where(m, z, 0.0)), y, m, n_bins, names)
    calibration.after = calibration_summary(calibration.probabilities(np.where(m, z, 0.0)), y, m, n_bins, names)
    logger.info("calibration: ECE %.4f -> %.4f, class-wise ECE %.4f -> %.4f, NLL %.4f -> %.4f",
                calibration.before["ece"], calibration.after["ece"], calibration.before["classwise_ece"],
                calibration.after["classwise_ece"], calibration.before["nll"], calibration.after["nll"])
    return calibration


# ---------------------------------------------------------------------------------------------- from a trained run


@torch.no_grad()
def collect_logits(
    classifier: torch.nn.Module, data_loader: Iterable, device: str | torch.device | None = None, amp: bool = True
) -> dict[str, Any]:
    """Uncalibrated logits of every film of a loader, with its labels.

    Parameters
    ----------
    classifier
        A ``ZeroShotClassifier`` (``logits(image)``), run in eval mode (its mode is restored).
    data_loader
        Yields dicts with ``image`` and optionally ``label``, ``label_mask``, ``dicom_id``; batches whose films were
        all skipped as unreadable are counted and passed over.
    device
        Where to run; default the classifier's.
    amp
        Autocast the image tower on CUDA (bfloat16 where supported, else float16).

    Returns
    -------
    dict
        ``logits`` float32 ``[N, C]``, ``labels`` and ``label_mask`` float32 ``[N, C]`` (None when the batches had
        none), ``dicom_ids`` (list or None), ``num_skipped`` (films dropped as unreadable).
    """
    device = torch.device(device) if device is not None else next(classifier.parameters()).device
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
    parts: dict[str, list] = {"logits": [], "labels": [], "label_mask": [], "dicom_ids": []}
    skipped = 0
    was_training = classifier.training
    classifier.eval()
    try:
        for batch in data_loader:
            skipped += int(batch.get("num_skipped", 0))
            if "image" not in batch:
                continue
            with torch.autocast(device.type, dtype=dtype, enabled=amp and device.type == "cuda"):
                logits = classifier.logits(torch.as_tensor(batch["image"]).to(device))
            parts["logits"].append(logits.float().cpu().numpy())
            for name, key in (("labels", "label"), ("label_mask", "label_mask")):
                if key in batch:
                    parts[name].append(torch.as_tensor(batch[key]).float().cpu().numpy())
            if "dicom_id" in batch:
                parts["dicom_ids"].extend(str(i) for i in batch["dicom_id"])
    finally:
        classifier.train(was_training)
    if not parts["logits"]:
        raise ValueError(f"collect_logits: the data loader yielded no readable film ({skipped} skipped).")
    complete = {n: len(parts[n]) == len(parts["logits"]) for n in ("labels", "label_mask")}
    return {
        "logits": np.concatenate(parts["logits"]),
        "labels": np.concatenate(parts["labels"]) if complete["labels"] else None,
        "label_mask": np.concatenate(parts["label_mask"]) if complete["label_mask"] else None,
        "dicom_ids": parts["dicom_ids"] or None,
        "num_skipped": skipped,
    }


def calibrate_checkpoint(
    checkpoint: str | os.PathLike,
    model_name: str,
    csv: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    *,
    fold: int = 0,
    num_folds: int = 5,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_csv: str | os.PathLike | None = None,
    split: str | Sequence[str] | None = None,
    test_split: str | Sequence[str] | None = None,
    part: str = "val",
    class_names: Sequence[str] | str | None = "cxrlt2024",
    prompts: Any = "present_absent",
    normalization: str = "chexzero",
    uncertain: str = "negative",
    blank: str = "negative",
    per_class: bool = False,
    bias: bool = False,
    n_bins: int = 15,
    min_count: int = 5,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    output: str | os.PathLike | None = None,
) -> Calibration:
    """Fit a calibration for a trained checkpoint on the validation part of its fold; optionally save it.

    The fold is cut by :func:`~monai_cxrcml.data.load_fold` with the given settings (use the training run's), the
    films of ``part`` are read with the evaluation pipeline (``chest_film_transforms``, unreadable films skipped
    and counted), scored by a ``ZeroShotClassifier`` of the checkpoint, and :func:`fit_calibration` is run on the
    logits and labels. See :func:`fit_calibration` and :func:`monai_cxrcml.data.load_fold` for the parameters.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    data = load_fold(csv, image_root, class_names, fold=fold, num_folds=num_folds, seed=seed,
                     val_fraction=val_fraction, test_csv=test_csv, split=split, test_split=test_split,
                     uncertain=uncertain, blank=blank)
    table = data.part(part)
    if not len(table):
        raise ValueError(f"the {part!r} part of {csv} is empty (val_fraction={val_fraction}): calibrate on a "
                         "non-empty validation part.")
    classifier = ZeroShotClassifier(model_name, data.class_names, prompts, checkpoint, device=device)
    dataset = Dataset(table.to_datalist(), chest_film_transforms(
        False, classifier.image_size[0], normalization, on_error="skip"))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=skip_unreadable_collate, pin_memory=device.type == "cuda")
    scored = collect_logits(classifier, loader, device)
    provenance = {
        "checkpoint": str(checkpoint), "model_name": model_name, "csv": str(csv),
        "test_csv": None if test_csv is None else str(test_csv), "split": split, "test_split": test_split,
        "fold": data.fold, "num_folds": data.num_folds, "seed": seed, "val_fraction": val_fraction, "part": part,
        "uncertain": uncertain, "blank": blank, "prompts": classifier.prompts.name, "normalization": normalization,
        "films": len(scored["logits"]), "films_skipped": scored["num_skipped"],
    }
    calibration = fit_calibration(scored["logits"], scored["labels"], scored["label_mask"], data.class_names,
                                  per_class, bias, n_bins, min_count, fitted_on=provenance)
    if output is not None:
        logger.info("calibration written to %s", calibration.save(output))
    return calibration


# ---------------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monai_cxrcml.calibration",
        description="Fit a temperature (and bias) calibration of a trained checkpoint on the validation part of its "
        "fold; writes calibration.json with the ECE before and after.",
    )
    parser.add_argument("--checkpoint", required=True, help="trained checkpoint (models/model.pt)")
    parser.add_argument("--model-name", required=True, help="open_clip model name of the checkpoint")
    parser.add_argument("--csv", required=True, help="CXR-LT label file the run was trained on")
    parser.add_argument("--image-root", help="folder the CSV's fpath values are relative to (default: its folder)")
    parser.add_argument("--output", required=True, help="calibration JSON to write")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--num-folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="split seed of the training run")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--test-csv", help="the run's test_csv, when it had one")
    parser.add_argument("--split", help="rows of a --csv with a split column (labels.csv): train, development, test")
    parser.add_argument("--test-split", help="the same for --test-csv")
    parser.add_argument("--part", default="val", choices=["val", "train", "test"],
                        help="part to fit on (val; fitting on test leaks it)")
    parser.add_argument("--classes", nargs="+", default=["cxrlt2024"], help="cxrlt2024, chexpert or class names")
    parser.add_argument("--prompts", default="present_absent", help="prompt preset or a JSON/YAML PromptSet file")
    parser.add_argument("--normalization", default="chexzero", choices=["chexzero", "clip"])
    parser.add_argument("--uncertain", default="negative", choices=["negative", "positive", "mask"])
    parser.add_argument("--blank", default="negative", choices=["negative", "positive", "mask"])
    parser.add_argument("--per-class", action="store_true", help="one temperature per class")
    parser.add_argument("--bias", action="store_true", help="a bias per class as well")
    parser.add_argument("--bins", type=int, default=15, help="equal-width ECE bins")
    parser.add_argument("--min-count", type=int, default=5,
                        help="classes with fewer known positives or negatives get the global temperature")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (see ``python -m monai_cxrcml.calibration --help``); returns the exit status."""
    from monai_cxrcml.inference import parse_classes, parse_prompts  # inference imports this module

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        calibration = calibrate_checkpoint(
            args.checkpoint, args.model_name, args.csv, args.image_root, fold=args.fold, num_folds=args.num_folds,
            seed=args.seed, val_fraction=args.val_fraction, test_csv=args.test_csv, split=args.split,
            test_split=args.test_split, part=args.part,
            class_names=parse_classes(args.classes), prompts=parse_prompts(args.prompts),
            normalization=args.normalization, uncertain=args.uncertain, blank=args.blank, per_class=args.per_class,
            bias=args.bias, n_bins=args.bins, min_count=args.min_count, batch_size=args.batch_size,
            num_workers=args.num_workers, device=args.device, output=args.output,
        )
    except (ValueError, OSError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    before, after = calibration.before, calibration.after
    print(f"{'':14s}{'before':>10s}{'after':>10s}")
    for key in ("ece", "classwise_ece", "nll"):
        print(f"{key:14s}{before[key]:10.4f}{after[key]:10.4f}")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
