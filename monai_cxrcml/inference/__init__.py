"""Score chest films with a trained model: a CXR-LT submission (or any class list) from a CSV, folder or files.

``predict(source, model)`` takes a model bundle, a training run folder or a bare checkpoint
(:func:`~monai_cxrcml.model_bundle.load_model`); the bundle's ``configs/inference.yaml`` and the command line
(``python -m monai_cxrcml.inference``, :mod:`monai_cxrcml.cli.inference`) build the same pieces. The submission keeps
a CSV's rows (an unreadable film's row has empty probabilities) and a folder's readable films, and names the
unreadable ones in ``<output>.unreadable.csv``; the scoring protocol used is written to ``<output>.protocol.json``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from ignite.engine import Engine, Events
from monai.data import DataLoader, Dataset, MetaTensor
from monai.engines import SupervisedEvaluator
from monai.inferers import Inferer

from monai_cxrcml.data.classes import (
    CHEXPERT_CLASSES,
    CXRLT2024_CLASSES,
    CXRLT2024_UNSEEN_CLASSES,
    resolve_class_names,
)
from monai_cxrcml.data.csv_reading import csv_header
from monai_cxrcml.data.formats import read_label_table
from monai_cxrcml.data.image_list import ID_COLUMN_OF, read_image_list
from monai_cxrcml.data.vocabulary import ClassMatch, class_mapping_frame, map_class_names
from monai_cxrcml.handlers.submission_writer import AGGREGATIONS, SubmissionWriter
from monai_cxrcml.model_bundle import Scorer, create_scorer, load_model
from monai_cxrcml.networks import PromptSet
from monai_cxrcml.protocols import ScoringProtocol
from monai_cxrcml.transforms import skip_unreadable_collate

__all__ = [
    "InferenceEvaluator",
    "NoReadableFilmError",
    "create_inference_evaluator",
    "predict",
    "submission_class_matches",
    "submission_class_names",
]

logger = logging.getLogger(__name__)


class NoReadableFilmError(RuntimeError):
    """An inference run in which not a single film could be read (usually a wrong image root)."""


def _prepare_films(
    batchdata: dict[str, Any], device: torch.device, non_blocking: bool = False, **kwargs: Any
) -> tuple[torch.Tensor, None]:
    """The batch's images as a plain tensor on ``device`` (a MetaTensor adds Python overhead to every network op)."""
    image = batchdata["image"]
    image = image.as_tensor() if isinstance(image, MetaTensor) else torch.as_tensor(image)
    return image.to(device=device, non_blocking=non_blocking, **kwargs), None


class InferenceEvaluator(SupervisedEvaluator):
    """``SupervisedEvaluator`` for unlabelled films read under the skip policy.

    A batch whose films were all unreadable (``{"num_skipped": k}`` from
    :func:`~monai_cxrcml.transforms.skip_unreadable_collate`) is counted and passed over (its output is ``{}``).
    ``state.films_scored`` and ``state.films_skipped`` count the films; the run logs its progress about ten times
    and raises when no film at all could be read. Outputs are not decollated: ``pred`` is ``[B, C]``.

    Parameters
    ----------
    device, val_data_loader, network, inferer, val_handlers, non_blocking
        As in :class:`monai.engines.SupervisedEvaluator`.
    amp
        Autocast on CUDA (bfloat16 where supported, else float16); ignored on the CPU.
    """

    def __init__(
        self,
        device: torch.device | str,
        val_data_loader: DataLoader,
        network: torch.nn.Module,
        inferer: Inferer | None = None,
        val_handlers: Sequence | None = None,
        amp: bool = False,
        non_blocking: bool = False,
    ) -> None:
        device = torch.device(device)
        use_amp = amp and device.type == "cuda"
        dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
        super().__init__(
            device=device, val_data_loader=val_data_loader, network=network, prepare_batch=_prepare_films,
            inferer=inferer, val_handlers=val_handlers, amp=use_amp, non_blocking=non_blocking, decollate=False,
            amp_kwargs={"dtype": dtype},
        )
        self.add_event_handler(Events.STARTED, self._reset_counts)
        every = max(1, len(val_data_loader) // 10) if hasattr(val_data_loader, "__len__") else 100
        self.add_event_handler(Events.ITERATION_COMPLETED(every=every), self._log_progress)
        self.add_event_handler(Events.COMPLETED, self._finish)

    def _reset_counts(self, engine: Engine) -> None:
        if not len(engine.data_loader.dataset):
            raise NoReadableFilmError("no films to score: pass the input (a CSV with dicom_id and fpath, a folder of "
                                      "films, or a list of files).")
        engine.state.films_scored = 0
        engine.state.films_skipped = 0
        engine.state.started_at = time.perf_counter()

    def _iteration(self, engine: Engine, batchdata: dict[str, Any]) -> dict:
        engine.state.films_skipped += int(batchdata.get("num_skipped", 0))
        if "image" not in batchdata:  # every film of the batch was unreadable
            return {}
        output = super()._iteration(engine, batchdata)
        engine.state.films_scored += len(output["pred"])
        return output

    def _log_progress(self, engine: Engine) -> None:
        elapsed = time.perf_counter() - engine.state.started_at
        logger.info("inference: batch %d/%s, %d films scored, %d skipped, %.1f films/s", engine.state.iteration,
                    engine.state.epoch_length, engine.state.films_scored, engine.state.films_skipped,
                    engine.state.films_scored / max(elapsed, 1e-9))

    def _finish(self, engine: Engine) -> None:
        logger.info("inference: %d films scored, %d skipped as unreadable, in %.1f s", engine.state.films_scored,
                    engine.state.films_skipped, time.perf_counter() - engine.state.started_at)
        if engine.state.films_scored == 0:
            raise NoReadableFilmError(
                f"no film could be read: all {engine.state.films_skipped} were skipped as unreadable (each is named "
                "in the log with its reason). Check the image root (a CSV's fpath values are relative to it) and "
                "the paths."
            )


def create_inference_evaluator(
    scorer: Scorer,
    dataset: Dataset,
    source_kind: str,
    output_path: str | os.PathLike | None,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    aggregate: str | None = None,
    inferer: Inferer | None = None,
    keep_unreadable_rows: bool | None = None,
    class_matches: Sequence[ClassMatch] | None = None,
) -> InferenceEvaluator:
    """The inference run over a dataset of :func:`~monai_cxrcml.data.read_image_list` items, writing a submission.

    Shared by :func:`predict` and the bundles' ``inference.yaml``. After ``evaluator.run()``,
    ``evaluator.submission_writer.submission`` holds the table and ``.unreadable`` the films without a row; with an
    ``output_path``, the scorer's protocol is written beside it (``<output>.protocol.json``).

    Parameters
    ----------
    scorer
        The classifier and its protocol (:func:`~monai_cxrcml.model_bundle.create_scorer`); the classifier's
        ``class_names`` give the columns and the protocol's precision the autocast.
    dataset
        A ``monai.data.Dataset`` whose ``data`` are the items (``image``, ``id``, optionally ``study_id``) and whose
        transform reads films with ``on_error="skip"`` (``scorer.transforms()``).
    source_kind
        ``"csv"``, ``"folder"`` or ``"files"`` (the second value of ``read_image_list``): the id column is
        ``dicom_id`` for a CSV and ``path`` otherwise.
    output_path
        Submission CSV to write; None keeps it in memory.
    batch_size, num_workers
        DataLoader settings.
    device
        Where to run; default the network's device.
    aggregate
        None, ``"mean"`` or ``"max"`` of each class over the films of a study (items need ``study_id``).
    inferer
        MONAI inferer (default ``SimpleInferer``).
    keep_unreadable_rows
        Whether an unreadable film keeps its row (empty probabilities) or gets none; default: kept for a CSV,
        dropped for a folder or files.
    class_matches
        The submission's columns when they differ from the names the classifier scores (another data set's
        classes, :func:`submission_class_matches`), in the classifier's class order; written to
        ``<output>.classes.csv``. None: the classifier's class names.

    Raises
    ------
    ValueError
        For an unknown ``aggregate``, or aggregation over items without ``study_id``.
    """
    items = list(dataset.data)
    if aggregate not in (None, *AGGREGATIONS):
        raise ValueError(f"aggregate={aggregate!r}: use None, 'mean' or 'max'.")
    no_study = [item["id"] for item in items if not item.get("study_id")]
    if aggregate is not None and no_study:
        raise ValueError(
            f"aggregate={aggregate!r} needs the study of every film; {len(no_study)} have none (e.g. {no_study[:3]}). "
            "Pass a CSV with dicom_id, fpath and a filled study_id column (CXR-LT label files have it); a folder or "
            "a list of files has no study ids."
        )
    network = scorer.network
    device = torch.device(device) if device is not None else next(network.parameters()).device
    if class_matches is not None and [m.scored for m in class_matches] != list(network.class_names):
        raise ValueError(f"class_matches score {[m.scored for m in class_matches]}, but the classifier scores "
                         f"{list(network.class_names)}.")
    writer = SubmissionWriter(
        output_path, network.class_names if class_matches is None else [m.source for m in class_matches],
        expected_ids=[item["id"] for item in items],
        id_column=ID_COLUMN_OF[source_kind], aggregate=aggregate, expected_images=[item["image"] for item in items],
        keep_unreadable_rows=source_kind == "csv" if keep_unreadable_rows is None else keep_unreadable_rows,
        protocol=scorer.protocol.to_dict(),
        class_info=None if class_matches is None else class_mapping_frame(class_matches),
    )
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=skip_unreadable_collate, pin_memory=device.type == "cuda")
    evaluator = InferenceEvaluator(device, loader, network, inferer=inferer, val_handlers=[writer],
                                   amp=scorer.protocol.autocast)
    evaluator.submission_writer = writer
    return evaluator


def predict(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    model: str | os.PathLike,
    model_name: str | None = None,
    class_names: Sequence[str] | str | None = None,
    prompts: str | PromptSet | Mapping | None = None,
    image_root: str | os.PathLike | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    normalization: str | None = None,
    aggregate: str | None = None,
    calibration: str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    protocol: str | Mapping | ScoringProtocol | None = None,
    precision: str | None = None,
    image_size: int | None = None,
) -> pd.DataFrame:
    """Class probabilities of every readable film of ``source``, as a submission table (written when ``output``).

    Parameters
    ----------
    source
        A CSV with ``dicom_id`` and ``fpath`` (e.g. CXR-LT's ``test_labeled_task1.csv``; rows kept in order, all
        views), a folder of JPEG/PNG/DICOM/NIfTI films, or a list of files (:func:`read_image_list`).
    model
        A model bundle, a training run folder (its ``bundle/``), or a bare checkpoint file (this project's
        ``models/model.pt``, a CheXzero/OpenAI state_dict, an open_clip checkpoint).
    model_name, image_size, normalization
        What defines the model: a bundle carries them (a contradicting value is refused); a bare checkpoint needs
        ``model_name`` (e.g. ``ViT-B-32-quickgelu``).
    class_names
        ``"cxrlt2024"``, ``"chexpert"`` or any names in column order (e.g. CXR-LT task 3's unseen findings). None:
        a CSV's own class columns in its order (a CXR-LT task 1, 2 or 3 file gives that task's classes; another
        data set's label file its classes, each scored under the model's name for it), else the model's classes
        (:func:`submission_class_matches`).
    prompts, protocol, precision, calibration
        How to score, on top of the model's own protocol (:mod:`monai_cxrcml.protocols`): a prompt preset or
        :class:`~monai_cxrcml.networks.PromptSet`, a protocol name, ``"fp32"``/``"autocast"``, a calibration JSON.
    image_root
        Folder a CSV's ``fpath`` values are relative to (default: the CSV's folder).
    batch_size, num_workers
        DataLoader settings.
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default CUDA when available.
    aggregate
        None, or ``"mean"``/``"max"`` over the films of each study (needs a CSV with ``study_id``).
    output
        Submission CSV to write (with ``<output>.protocol.json``, ``<output>.classes.csv`` (each column's scored
        name and mapping), and ``<output>.unreadable.csv`` when films could not be read).

    Returns
    -------
    pandas.DataFrame
        ``dicom_id`` (CSV) or ``path`` (folder/files), then one float column per class (NaN in a CSV row whose film
        could not be read). ``frame.attrs["unreadable"]`` lists the unreadable films as records with the id,
        ``image`` path and ``reason``; ``frame.attrs["protocol"]`` is the protocol used.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    items, kind = read_image_list(source, image_root=image_root)
    matches = submission_class_matches(class_names, source, model, model_name)
    scorer = create_scorer(model, [m.scored for m in matches], protocol, prompts, precision, calibration, device,
                           model_name, image_size, normalization)
    dataset = Dataset(items, scorer.transforms())
    evaluator = create_inference_evaluator(
        scorer, dataset, kind, output, batch_size=batch_size, num_workers=num_workers, device=device,
        aggregate=aggregate, class_matches=matches,
    )
    evaluator.run()
    writer = evaluator.submission_writer
    submission = writer.submission
    submission.attrs["unreadable"] = writer.unreadable.to_dict("records")
    submission.attrs["protocol"] = scorer.protocol.to_dict()
    return submission


def submission_class_names(
    class_names: Sequence[str] | str | None, source: str | os.PathLike | Sequence[str | os.PathLike]
) -> Sequence[str] | str | None:
    """The classes to score: ``class_names`` when given, else the class columns of a CSV ``source``, else None.

    With ``class_names`` None, a CSV's columns that name a known class (the 40 CXR-LT 2024 classes, the 5 unseen
    ones of task 3, the 14 CheXpert labels) are taken in the file's column order, so that CXR-LT's task 2 and task 3
    files give submissions with their own classes; another data set's label file (NIH, PadChest, VinDr-CXR, ...)
    gives its classes. None (a CSV without such columns, a folder or files) leaves the model's own classes.
    """
    if class_names is not None:
        return class_names
    if isinstance(source, (str, os.PathLike)) and str(source).lower().endswith((".csv", ".csv.gz")) \
            and Path(source).is_file():
        header = csv_header(source)
        if not {"dicom_id", "fpath"} <= set(header):
            columns = list(read_label_table(source, frontal_only=False).class_names)
            logger.info("classes: the %d classes of the label file %s", len(columns), source)
            return columns
        known = {*CXRLT2024_CLASSES, *CXRLT2024_UNSEEN_CLASSES, *CHEXPERT_CLASSES}
        columns = [c for c in header if c in known]
        if columns:
            logger.info("classes: the %d class columns of %s, in its order", len(columns), source)
            return columns
    return None


def submission_class_matches(
    class_names: Sequence[str] | str | None,
    source: str | os.PathLike | Sequence[str | os.PathLike],
    model: str | os.PathLike,
    model_name: str | None = None,
) -> list[ClassMatch]:
    """Each submission column with the name it is scored under (:class:`~monai_cxrcml.data.vocabulary.ClassMatch`).

    Classes taken from the source file (:func:`submission_class_names`) are scored under the model's name for
    them where the vocabulary table knows one (NIH ``Effusion`` as ``Pleural Effusion``), else from their own
    name; classes given explicitly are scored as given; without either, the model's classes.
    """
    model_classes = load_model(model, model_name).class_names
    columns = submission_class_names(class_names, source)
    if columns is None:
        return [ClassMatch(c, c, "model_class") for c in model_classes]
    if class_names is not None:
        return [ClassMatch(c, c, "model_class" if c in model_classes else "own_name")
                for c in resolve_class_names(columns)]
    return map_class_names(columns, model_classes)
