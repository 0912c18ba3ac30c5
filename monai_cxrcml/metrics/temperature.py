"""Temperature (and bias) calibration of zero-shot logits: fitted by minimum NLL, applied to a classifier, as JSON.

``p_c = sigmoid(z_c / T_c + b_c)`` with ``z_c`` the classifier's uncalibrated logits
(:meth:`~monai_cxrcml.networks.ZeroShotClassifier.logits`): one global ``T``, one ``T_c`` per class, and optionally a
bias per class (Platt scaling). ``docs/design.md`` ("Calibration") explains the solver and the fallback rule.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize

from monai_cxrcml.metrics.calibration_error import ArrayLike, as_float64, calibration_summary, prepare_labelled_scores

__all__ = ["CALIBRATION_FORMAT", "Calibration", "apply_calibration", "fit_calibration"]

logger = logging.getLogger(__name__)

CALIBRATION_FORMAT = "monai-cxrcml-calibration/1"
"""``format`` field of a calibration JSON file."""


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
        z = as_float64(logits)
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
            "format": CALIBRATION_FORMAT,
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
            if data.get("format") != CALIBRATION_FORMAT:
                raise ValueError(f"'format' is {data.get('format')!r}, expected {CALIBRATION_FORMAT!r}")
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
    z, y, m = prepare_labelled_scores(logits, labels, mask, "logits")
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
