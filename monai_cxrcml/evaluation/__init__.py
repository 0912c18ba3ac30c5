"""Zero-shot evaluation of a trained model on labelled films: the metrics, groups and intervals of training.

:func:`evaluate` scores a part of a labelled fold (default: the test part of the run that trained the model, as its
bundle records it; the whole file for a label file of another data set) with the model's scorer, and writes
``metrics.json`` (with the protocol), ``per_class.csv`` and ``predictions.npz`` as a training run's test evaluation
does, so ``python -m monai_cxrcml.report`` reads them. Any label format works; each class of the evaluated file is
scored under the model's name for it where the vocabulary table knows one (NIH ``Effusion`` as ``Pleural
Effusion``), else zero-shot from its own name, and both names are listed per class. The command line is
``python -m monai_cxrcml.evaluation`` (:mod:`monai_cxrcml.cli.evaluation`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from monai.data import DataLoader, Dataset

from monai_cxrcml.data import load_fold, load_test_set
from monai_cxrcml.data.vocabulary import class_mapping_frame, map_class_names
from monai_cxrcml.engines import ZeroShotEvaluator
from monai_cxrcml.handlers import MetricsReportWriter, MultiLabelAUC, PredictionWriter
from monai_cxrcml.metrics import MultiLabelReport
from monai_cxrcml.model_bundle import fold_arguments, is_training_file, load_model
from monai_cxrcml.networks import PromptSet
from monai_cxrcml.protocols import ScoringProtocol
from monai_cxrcml.transforms import skip_unreadable_collate

__all__ = ["PARTS", "evaluate"]

PARTS: tuple[str, ...] = ("test", "val", "train", "all")
"""What :func:`evaluate` scores: a part of the fold, or ``"all"``: the whole file (frontal films)."""

_FOLD_ONLY = ("fold", "num_folds", "seed", "val_fraction", "test_csv", "test_split")

logger = logging.getLogger(__name__)


def evaluate(
    model: str | os.PathLike,
    csv: str | os.PathLike | None = None,
    image_root: str | os.PathLike | None = None,
    *,
    part: str | None = None,
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
    class_map: Mapping[str, str] | None = None,
    protocol: str | Mapping | ScoringProtocol | None = None,
    prompts: str | PromptSet | Mapping | None = None,
    precision: str | None = None,
    calibration: str | os.PathLike | None = None,
    model_name: str | None = None,
    image_size: int | None = None,
    normalization: str | None = None,
    n_bootstrap: int = 1000,
    bootstrap_seed: int = 0,
    on_error: str = "raise",
    save_embeddings: bool = True,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    output_dir: str | os.PathLike | None = None,
) -> MultiLabelReport:
    """Score ``part`` of a labelled fold with ``model`` and write the evaluation into ``output_dir``.

    Parameters
    ----------
    model
        A model bundle, a training run folder, or a bare checkpoint (with ``model_name``).
    csv, image_root, fold, num_folds, seed, val_fraction, test_csv, split, test_split, uncertain, blank, class_names
        The label file, its film root and the :func:`~monai_cxrcml.data.load_fold` settings; None: the training
        run's as the bundle records them (:func:`~monai_cxrcml.model_bundle.fold_arguments`), and the model's
        classes. For another label file than the run's, only what is given applies and the classes are the file's.
    label_format
        The format of ``csv`` (None: found from its header; any of :data:`~monai_cxrcml.data.LABEL_FORMATS`).
    class_map
        ``{class of the file: name to score it under}``, before the vocabulary table
        (:func:`~monai_cxrcml.data.vocabulary.map_class_names`); a class the file lacks is an error naming it.
    part
        ``"test"``, ``"val"``, ``"train"`` or ``"all"`` (the whole file, groups from its own counts). None:
        ``"test"`` for the run's own label file, ``"all"`` for another.
    protocol, prompts, precision, calibration
        How to score, on top of the model's own protocol.
    model_name, image_size, normalization
        What defines a bare checkpoint (a bundle carries them and refuses other values).
    n_bootstrap, bootstrap_seed
        Patient-bootstrap resamples of the intervals and their seed.
    on_error
        ``"raise"`` on an unreadable film, or ``"skip"`` it (logged and counted).
    save_embeddings
        Keep the image embeddings in ``predictions.npz`` (the report's t-SNE).
    batch_size, num_workers, device
        How to run.
    output_dir
        Where the files go; default the bundle's ``eval/<part>`` folder (required for a bare checkpoint).

    Returns
    -------
    MultiLabelReport
        The per-class AUC/AP, group means and intervals.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    trained = load_model(model, model_name, image_size, normalization, protocol=protocol)
    if output_dir is None:
        if not trained.is_bundle:
            raise ValueError(f"{model} is a bare checkpoint: say where the evaluation goes (--output-dir).")
        output_dir = trained.source / "eval" / part
    given = {"csv": csv, "image_root": image_root, "fold": fold, "num_folds": num_folds, "seed": seed,
             "val_fraction": val_fraction, "test_csv": test_csv, "split": split, "test_split": test_split,
             "uncertain": uncertain, "blank": blank, "class_names": class_names, "label_format": label_format}
    if part is None:
        part = "test" if is_training_file(trained, csv) else "all"
        logger.info("evaluating the %s of %s", "test part" if part == "test" else "whole file", csv or "the run's file")
    if part not in PARTS:
        raise ValueError(f"part={part!r}: use one of {list(PARTS)}.")
    arguments = fold_arguments(trained, given)
    if part == "all":
        data = load_test_set(**{k: v for k, v in arguments.items() if k not in _FOLD_ONLY})
        part = "test"
    else:
        data = load_fold(**arguments)
    table = data.part(part)
    if not len(table):
        raise ValueError(f"the {part!r} part is empty: nothing to evaluate.")
    matches = map_class_names(data.class_names, trained.class_names, class_map)
    mapping = class_mapping_frame(matches)
    scorer = trained.scorer([m.scored for m in matches], prompts, precision, calibration, device)
    loader = DataLoader(Dataset(table.to_datalist(), scorer.transforms(on_error=on_error)), batch_size=batch_size,
                        shuffle=False, num_workers=num_workers, collate_fn=skip_unreadable_collate,
                        pin_memory=device.type == "cuda")
    metric = MultiLabelAUC(data.class_names, data.groups, data.prevalence_groups, n_bootstrap=n_bootstrap,
                           seed=bootstrap_seed)
    what = f"{part} part" if data.num_folds or len(data.train) else f"all of {Path(arguments['csv']).name}"
    writers = [
        MetricsReportWriter(output_dir, title=f"Zero-shot AUC, {what}, protocol {scorer.protocol.name}",
                            protocol=scorer.protocol.to_dict(), class_info=mapping),
        PredictionWriter(output_dir, data.class_names, save_embeddings=save_embeddings),
    ]
    evaluator = ZeroShotEvaluator(device, loader, classifier=scorer.network, key_val_metric={"macro_auc": metric},
                                  val_handlers=writers, amp=scorer.protocol.autocast)
    evaluator.run()
    logger.info("evaluation written to %s", Path(output_dir).resolve())
    return evaluator.state.metric_details["macro_auc"].with_class_info(mapping)
