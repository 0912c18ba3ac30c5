"""The model bundle a training run leaves: its best checkpoint with its settings, data fingerprint and metrics."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from monai_cxrcml.model_bundle.trained_model import BUNDLE_SUBDIR, TrainedModel
from monai_cxrcml.model_bundle.writer import file_fingerprint, write_model_bundle
from monai_cxrcml.protocols import ScoringProtocol

__all__ = ["FOLD_SETTINGS", "bundle_training_run", "fold_arguments", "is_training_file", "recorded_fold_settings"]

FOLD_SETTINGS: dict[str, str] = {
    "train_csv": "csv", "dataset_dir": "image_root", "class_names": "class_names", "fold": "fold",
    "num_folds": "num_folds", "split_seed": "seed", "val_fraction": "val_fraction", "test_csv": "test_csv",
    "train_split": "split", "test_split": "test_split", "uncertain": "uncertain", "blank": "blank",
    "group_by": "group_by", "rare_threshold": "rare_threshold", "label_format": "label_format",
}
"""Training settings (bundle config ids) that cut a fold -> the :func:`~monai_cxrcml.data.load_fold` argument."""


def bundle_training_run(
    output_dir: str | os.PathLike,
    network: torch.nn.Module,
    model_name: str,
    image_size: int,
    class_names: Sequence[str],
    protocol: ScoringProtocol,
    train_csv: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    settings: Mapping[str, Any],
) -> Path:
    """Write ``output_dir/bundle``: the run's network as a model bundle, after its test evaluation.

    Parameters
    ----------
    output_dir
        The run's folder; its ``metrics.json`` (the test evaluation) becomes the bundle's metrics.
    network
        The trained CLIP holding the weights to ship (the best checkpoint, loaded by the test evaluation).
    model_name, image_size, class_names, protocol
        What defines the model and how it scores.
    train_csv, dataset_dir
        The training label file (fingerprinted) and the film root (a phantom data set is named as synthetic).
    settings
        The run's knobs, recorded in ``configs/provenance.json``.
    """
    output_dir = Path(output_dir)
    metrics_file = output_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
    if metrics is not None:
        metrics.pop("per_class", None)
    phantom = (Path(dataset_dir) / "phantom.json").is_file()
    data_source = (f"the monai-cxrcml phantom data set at {dataset_dir} (synthetic films)" if phantom else
                   f"{train_csv} with films under {dataset_dir}")
    fold = settings.get("fold")
    return write_model_bundle(
        output_dir / BUNDLE_SUBDIR, network, model_name, image_size, class_names, protocol, metrics=metrics,
        provenance={"training_data": file_fingerprint(train_csv), "settings": dict(settings),
                    "run": str(output_dir.resolve())},
        changelog={"0.1.0": f"trained by monai-cxrcml on {data_source}" + (f", fold {fold}" if fold is not None
                                                                            else "")},
        data_source=data_source,
    )


def recorded_fold_settings(model: TrainedModel) -> dict[str, Any]:
    """The :func:`~monai_cxrcml.data.load_fold` arguments of the run that trained ``model``, as its bundle's
    ``configs/provenance.json`` records them (:data:`FOLD_SETTINGS`); empty for an exported bundle or a bare
    checkpoint."""
    provenance = model.source / "configs" / "provenance.json"
    if not (model.is_bundle and provenance.is_file()):
        return {}
    settings = json.loads(provenance.read_text()).get("settings", {})
    return {argument: settings[key] for key, argument in FOLD_SETTINGS.items() if key in settings}


def is_training_file(model: TrainedModel, csv: str | os.PathLike | None) -> bool:
    """Whether ``csv`` is the label file the run that trained ``model`` read (None: the run's own, if recorded)."""
    recorded = recorded_fold_settings(model).get("csv")
    if csv is None:
        return recorded is not None
    return recorded is not None and os.path.abspath(csv) == os.path.abspath(recorded)


def fold_arguments(model: TrainedModel, given: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`~monai_cxrcml.data.load_fold` arguments: those ``given`` (None: not given), else those of the run that
    trained ``model``, else ``load_fold``'s defaults, with the model's classes by default.

    The run's settings belong to its own label file: for another file (``given["csv"]`` that is not the run's),
    only what is given applies and the classes default to the file's own (the evaluation maps them to the model's
    names, :func:`~monai_cxrcml.data.vocabulary.map_class_names`).

    Raises
    ------
    ValueError
        When no training label file is given or recorded.
    """
    own_file = is_training_file(model, given.get("csv"))
    recorded = recorded_fold_settings(model) if own_file else {}
    arguments = {**recorded, **{key: value for key, value in given.items() if value is not None}}
    if "csv" not in arguments:
        raise ValueError(f"{model.source} records no training label file (a bare checkpoint, or a bundle exported "
                         "from one): pass the label file (--csv) and its fold settings.")
    if own_file:
        arguments.setdefault("class_names", list(model.class_names))
    return arguments
