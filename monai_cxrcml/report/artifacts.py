"""Read what a training or evaluation run left in its folder: metrics, per-film predictions, the mixture state.

A run folder (``output_dir`` of ``bundle/configs/train.yaml``) holds

``metrics.json``
    written by :class:`~monai_cxrcml.handlers.MetricsReportWriter` (group means and ``per_class``).
``predictions.npz``
    written by :class:`~monai_cxrcml.handlers.PredictionWriter` (per-film probabilities, labels, embeddings).
``models/model.pt``, ``models/last_checkpoint_epoch=N.pt``
    the best checkpoint and the resumable ones; the latter hold the mixture handler's state.

Every loader returns None for a file that is not there (the report then says what is missing and how to get
it) and raises ``ValueError`` naming the file and the key at fault for a file that is there but malformed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from monai_cxrcml.handlers.prediction_writer import PREDICTIONS_FILE
from monai_cxrcml.handlers.resume import checkpoint_epoch, latest_checkpoint
from monai_cxrcml.mixture import GaussianMixture, StudentTMixture

__all__ = [
    "METRICS_FILE", "Predictions", "MixtureCheckpoint",
    "load_metrics", "load_predictions", "load_mixture",
]

METRICS_FILE = "metrics.json"
_PER_CLASS_COLUMNS = ("auc", "ap", "n_pos", "n_neg", "group", "prevalence_group", "ci_low", "ci_high")


def load_metrics(run_dir: str | Path) -> tuple[dict, pd.DataFrame] | None:
    """``metrics.json`` of a run: the document and its per-class table.

    Returns
    -------
    (metrics, per_class) or None when the file is missing. ``per_class`` has one row per class (index = class
    name, in the file's order) and the columns ``auc, ap, n_pos, n_neg, group, prevalence_group, ci_low,
    ci_high`` (NaN for an undefined AUC or absent interval).
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); re-run the test section to rewrite it.") from None
    per_class = metrics.get("per_class") if isinstance(metrics, dict) else None
    if not isinstance(per_class, dict) or not per_class:
        raise ValueError(f"{path} has no 'per_class' mapping: it was not written by MetricsReportWriter.")
    rows = {}
    for name, entry in per_class.items():
        missing = [k for k in ("auc", "n_pos") if k not in entry]
        if missing:
            raise ValueError(f"{path}: per_class[{name!r}] lacks {missing}: it was not written by MetricsReportWriter.")
        ci = entry.get("ci") or (None, None)
        rows[name] = {
            "auc": math.nan if entry["auc"] is None else float(entry["auc"]),
            "ap": math.nan if entry.get("ap") is None else float(entry["ap"]),
            "n_pos": int(entry["n_pos"]),
            "n_neg": int(entry.get("n_neg", 0)),
            "group": str(entry.get("group") or "all"),
            "prevalence_group": str(entry.get("prevalence_group") or ""),
            "ci_low": math.nan if ci[0] is None else float(ci[0]),
            "ci_high": math.nan if ci[1] is None else float(ci[1]),
        }
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(_PER_CLASS_COLUMNS))
    return metrics, frame.rename_axis("class")


@dataclass
class Predictions:
    """Per-film outputs of an evaluation (``predictions.npz``).

    Attributes
    ----------
    class_names
        The C classes, column order of ``pred``/``label``.
    pred
        float32 ``[N, C]`` probabilities.
    label, label_mask
        float32 ``[N, C]`` and bool ``[N, C]``, or None when the run had no labels.
    dicom_id, subject_id
        str ``[N]``.
    image_features
        float32 ``[N, D]`` L2-normalised image embeddings, or None when they were not saved.
    path
        The file they came from.
    """

    class_names: tuple[str, ...]
    pred: np.ndarray
    label: np.ndarray | None
    label_mask: np.ndarray | None
    dicom_id: np.ndarray
    subject_id: np.ndarray
    image_features: np.ndarray | None
    path: Path

    def __len__(self) -> int:
        return len(self.pred)

    def column(self, name: str) -> int:
        """Column index of class ``name``."""
        try:
            return self.class_names.index(name)
        except ValueError:
            raise ValueError(f"class {name!r} is not in {self.path} (it holds {list(self.class_names)}).") from None


def load_predictions(run_dir: str | Path) -> Predictions | None:
    """``predictions.npz`` of a run, checked for consistent shapes; None when the file is missing."""
    path = Path(run_dir) / PREDICTIONS_FILE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    for key in ("pred", "class_names"):
        if key not in arrays:
            raise ValueError(f"{path} has no {key!r} array: it was not written by PredictionWriter.")
    pred = arrays["pred"].astype(np.float32, copy=False)
    class_names = tuple(str(c) for c in arrays["class_names"])
    n = len(pred)
    if pred.ndim != 2 or pred.shape[1] != len(class_names):
        raise ValueError(f"{path}: 'pred' has shape {pred.shape}, expected [N, {len(class_names)}] (a column a class).")
    expected = {"label": (n, len(class_names)), "label_mask": (n, len(class_names)), "dicom_id": (n,),
                "subject_id": (n,)}
    for key, shape in expected.items():
        if key in arrays and arrays[key].shape != shape:
            raise ValueError(f"{path}: {key!r} has shape {arrays[key].shape}, expected {shape}.")
    features = arrays.get("image_features")
    if features is not None and (features.ndim != 2 or len(features) != n):
        raise ValueError(f"{path}: 'image_features' has shape {features.shape}, expected [{n}, D].")
    label = arrays.get("label")
    mask = arrays.get("label_mask")
    if label is not None and mask is None:
        mask = np.ones(label.shape, bool)
    no_ids = np.full(n, "", dtype=str)
    return Predictions(
        class_names=class_names,
        pred=pred,
        label=None if label is None else label.astype(np.float32, copy=False),
        label_mask=None if label is None else mask.astype(bool, copy=False),
        dicom_id=arrays.get("dicom_id", no_ids),
        subject_id=arrays.get("subject_id", no_ids),
        image_features=None if features is None else features.astype(np.float32, copy=False),
        path=path,
    )


@dataclass
class MixtureCheckpoint:
    """The mixture of a resumable checkpoint, rebuilt for prediction.

    Attributes
    ----------
    mixture
        A fitted :class:`StudentTMixture` (or :class:`GaussianMixture` when every ``nu`` is infinite), or None
        when the run never fitted one.
    path, epoch
        The checkpoint and its epoch.
    same_image_tower
        Whether ``models/model.pt`` holds the same image tower as the checkpoint (so test embeddings written
        with it live in the space the mixture was fitted in); None when ``model.pt`` is missing.
    """

    mixture: StudentTMixture | None
    path: Path
    epoch: int
    same_image_tower: bool | None


def load_mixture(run_dir: str | Path) -> MixtureCheckpoint | None:
    """Rebuild the mixture saved in the newest ``last_checkpoint_epoch=N.pt``; None when no checkpoint exists.

    The checkpoints are read with ``torch.load(weights_only=True, mmap=True)``: only the tensors looked at are
    read from disk. ``covariance_type`` and the degrees of freedom come from the saved state.
    """
    found = latest_checkpoint(Path(run_dir) / "models")
    if found is None:
        return None
    path, epoch = found, checkpoint_epoch(found)
    checkpoint = _load(path)
    handler_state = checkpoint.get("mixture")
    if not isinstance(handler_state, dict) or "mixture" not in handler_state:
        raise ValueError(
            f"{path} has no 'mixture' entry holding PseudoLabelHandler.state_dict(): it was not saved by "
            "bundle/configs/train.yaml's train#last_checkpoint."
        )
    state = handler_state["mixture"]
    mixture = None
    if state:
        dofs = torch.as_tensor(state["dofs"])
        k = int(torch.as_tensor(state["means"]).shape[0])
        if bool(torch.isinf(dofs).all()):
            mixture = GaussianMixture(k, covariance_type=state["covariance_type"])
        else:
            mixture = StudentTMixture(k, covariance_type=state["covariance_type"], dof=float(dofs[0]))
        mixture.load_state_dict(state)
    return MixtureCheckpoint(mixture, path, epoch, _same_image_tower(checkpoint, path.parent / "model.pt"))


def _load(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ValueError(f"{path} cannot be read with torch.load(weights_only=True): {error}") from None


def _same_image_tower(checkpoint: dict, best_path: Path) -> bool | None:
    """Whether the image tower (``visual.*``) of ``checkpoint['model']`` equals that of ``best_path``'s."""
    if not best_path.is_file() or not isinstance(checkpoint.get("model"), dict):
        return None
    best = _load(best_path)
    best = best.get("model", best) if isinstance(best, dict) else {}
    last = checkpoint["model"]
    keys = [k for k in last if k.startswith("visual.")]
    if not keys or any(k not in best for k in keys):
        return False
    return all(torch.equal(last[k], best[k]) for k in keys)
