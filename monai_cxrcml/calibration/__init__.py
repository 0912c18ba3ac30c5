"""Fit a temperature calibration of a trained model on the validation part of its fold, and keep it with the model.

:func:`calibrate` scores the held-out validation films of the model's training run (a bundle knows its fold
settings) and fits :func:`monai_cxrcml.metrics.fit_calibration`; for a model bundle the result is written into the
bundle (``models/calibration.json``, the classifier's temperature and bias, a new version). The command line is
``python -m monai_cxrcml.calibration`` (:mod:`monai_cxrcml.cli.calibration`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import DataLoader, Dataset

from monai_cxrcml.data import load_fold
from monai_cxrcml.metrics.temperature import Calibration, fit_calibration
from monai_cxrcml.model_bundle import fold_arguments, load_model, write_bundle_calibration
from monai_cxrcml.networks import PromptSet
from monai_cxrcml.protocols import ScoringProtocol
from monai_cxrcml.transforms import skip_unreadable_collate

__all__ = ["calibrate", "collect_logits"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def collect_logits(
    classifier: torch.nn.Module, data_loader: Iterable, device: str | torch.device | None = None, amp: bool = False
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


def calibrate(
    model: str | os.PathLike,
    csv: str | os.PathLike | None = None,
    image_root: str | os.PathLike | None = None,
    *,
    fold: int | None = None,
    num_folds: int | None = None,
    seed: int | None = None,
    val_fraction: float | None = None,
    test_csv: str | os.PathLike | None = None,
    split: str | Sequence[str] | None = None,
    test_split: str | Sequence[str] | None = None,
    uncertain: str | None = None,
    blank: str | None = None,
    class_names: Sequence[str] | str | None = None,
    label_format: str | None = None,
    part: str = "val",
    per_class: bool = False,
    bias: bool = False,
    n_bins: int = 15,
    min_count: int = 5,
    protocol: str | Mapping | ScoringProtocol | None = None,
    prompts: str | PromptSet | Mapping | None = None,
    model_name: str | None = None,
    image_size: int | None = None,
    normalization: str | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    output: str | os.PathLike | None = None,
) -> Calibration:
    """Fit a calibration of ``model`` on the ``part`` of its training fold; write it into a bundle or ``output``.

    Parameters
    ----------
    model
        A model bundle, a training run folder or a bare checkpoint (with ``model_name``); see
        :func:`~monai_cxrcml.model_bundle.load_model`.
    csv, image_root, fold, num_folds, seed, val_fraction, test_csv, split, test_split, uncertain, blank, class_names
        The training label file, its film root and the :func:`~monai_cxrcml.data.load_fold` settings; None: the
        training run's, recorded in a bundle's provenance (:func:`~monai_cxrcml.model_bundle.fold_arguments`),
        else ``load_fold``'s defaults and the model's classes.
    label_format
        The format of ``csv`` (None: found from its header).
    part
        ``"val"`` (default; ``"test"`` would leak the test part into the calibration).
    per_class, bias, n_bins, min_count
        See :func:`~monai_cxrcml.metrics.fit_calibration`.
    protocol, prompts
        Score under another protocol or prompts than the model's (the calibration then belongs to those).
    model_name, image_size, normalization
        What defines a bare checkpoint (a bundle carries them).
    batch_size, num_workers, device
        How to score the films.
    output
        A JSON file to write. None: into the bundle (``models/calibration.json``, the classifier's temperature and
        bias, a new bundle version); a bare checkpoint needs ``output``.

    Raises
    ------
    ValueError
        For an empty part, a bare checkpoint without ``output``, or missing fold settings.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    trained = load_model(model, model_name, image_size, normalization, protocol=protocol)
    if not trained.is_bundle and output is None:
        raise ValueError(f"{model} is a bare checkpoint: say where to write the calibration (--output FILE), or "
                         "export it as a bundle first (python -m monai_cxrcml.export).")
    given = {"csv": csv, "image_root": image_root, "fold": fold, "num_folds": num_folds, "seed": seed,
             "val_fraction": val_fraction, "test_csv": test_csv, "split": split, "test_split": test_split,
             "uncertain": uncertain, "blank": blank, "class_names": class_names, "label_format": label_format}
    arguments = fold_arguments(trained, given)
    data = load_fold(**arguments)
    table = data.part(part)
    if not len(table):
        raise ValueError(f"the {part!r} part of {arguments['csv']} is empty (val_fraction="
                         f"{arguments.get('val_fraction')}): calibrate on a non-empty validation part.")
    scorer = trained.scorer(data.class_names, prompts, device=device)
    loader = DataLoader(Dataset(table.to_datalist(), scorer.transforms()), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=skip_unreadable_collate,
                        pin_memory=device.type == "cuda")
    scored = collect_logits(scorer.network, loader, device, amp=scorer.protocol.autocast)
    provenance = {
        "model": str(model), "protocol": scorer.protocol.to_dict(), "prompts": scorer.protocol.prompts.name,
        **{key: (str(value) if isinstance(value, os.PathLike) else value) for key, value in arguments.items()},
        "fold": data.fold, "num_folds": data.num_folds, "part": part, "films": len(scored["logits"]),
        "films_skipped": scored["num_skipped"],
    }
    calibration = fit_calibration(scored["logits"], scored["labels"], scored["label_mask"], data.class_names,
                                  per_class, bias, n_bins, min_count, fitted_on=provenance)
    if output is not None:
        logger.info("calibration written to %s", calibration.save(output))
    else:
        write_bundle_calibration(trained.source, calibration)
    return calibration
