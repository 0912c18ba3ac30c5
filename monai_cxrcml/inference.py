"""Score chest films with a trained CXR-CML model: a CXR-LT submission (or any class list) from a CSV, folder or files.

Python::

    from monai_cxrcml.inference import predict
    submission = predict("test_labeled_task1.csv", "runs/fold0/models/model.pt", "ViT-B-32-quickgelu",
                         image_root="/data/mimic-cxr-jpg/2.0.0", output="submission.csv")

Command line::

    python -m monai_cxrcml.inference /data/cxr-lt-2024/test_labeled_task1.csv --image-root /data/mimic-cxr-jpg/2.0.0 \\
        --checkpoint runs/fold0/models/model.pt --model-name ViT-B-32-quickgelu --output submission.csv
    python -m monai_cxrcml.inference films/ --checkpoint model.pt --model-name ViT-B-32-quickgelu \\
        --classes Bulla Cardiomyopathy Hilum Osteopenia Scoliosis --output task3.csv

The submission follows the source's order (a CSV's rows, all views; a folder's files in sorted relative-path
order), with ``dicom_id`` (CSV) or ``path`` (folder, files) first and one probability column per class in the
requested order. Every row of a CSV is kept, so that a CXR-LT submission lists every dicom_id of the test file: an
unreadable film's row has empty probabilities. A folder or a list of files gives one row per readable film.
Unreadable films are named in the log and listed with their path and the reason in ``<output>.unreadable.csv``; a
run where no film could be read is an error (usually a wrong image root).

The bundle's ``inference.yaml`` and :func:`predict` build the same pieces: a
:class:`~monai_cxrcml.networks.ZeroShotClassifier` (optionally calibrated, :mod:`monai_cxrcml.calibration`), the
evaluation pipeline :func:`~monai_cxrcml.transforms.chest_film_transforms` with ``on_error="skip"``, and
:func:`create_inference_evaluator`, which wires the data loader, the
:class:`~monai_cxrcml.handlers.SubmissionWriter` and an :class:`InferenceEvaluator`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml
from ignite.engine import Engine, Events
from monai.data import DataLoader, Dataset, MetaTensor
from monai.engines import SupervisedEvaluator
from monai.inferers import Inferer

from monai_cxrcml.calibration import Calibration, apply_calibration
from monai_cxrcml.data.classes import CHEXPERT_CLASSES, CXRLT2024_CLASSES, CXRLT2024_UNSEEN_CLASSES
from monai_cxrcml.data.image_list import ID_COLUMN_OF, read_image_list
from monai_cxrcml.data.table import csv_header
from monai_cxrcml.handlers.submission_writer import AGGREGATIONS, SubmissionWriter
from monai_cxrcml.networks import PROMPT_PRESETS, CheckpointError, PromptSet, ZeroShotClassifier
from monai_cxrcml.transforms import chest_film_transforms, skip_unreadable_collate

__all__ = [
    "InferenceEvaluator",
    "NoReadableFilmError",
    "create_inference_evaluator",
    "main",
    "parse_classes",
    "submission_class_names",
    "parse_prompts",
    "predict",
]

logger = logging.getLogger("monai_cxrcml")


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
        amp: bool = True,
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
    network: ZeroShotClassifier,
    dataset: Dataset,
    id_column: str,
    output_path: str | os.PathLike | None,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    aggregate: str | None = None,
    amp: bool = True,
    inferer: Inferer | None = None,
    keep_unreadable_rows: bool | None = None,
) -> InferenceEvaluator:
    """The inference run over a dataset of :func:`~monai_cxrcml.data.read_image_list` items, writing a submission.

    Shared by :func:`predict` and the bundle's ``inference.yaml``. After ``evaluator.run()``,
    ``evaluator.submission_writer.submission`` holds the table and ``.unreadable`` the films without a row.

    Parameters
    ----------
    network
        The (calibrated) classifier: images ``[B, 3, S, S]`` -> probabilities ``[B, C]``; ``class_names`` give
        the columns.
    dataset
        A ``monai.data.Dataset`` whose ``data`` are the items (``image``, ``id``, optionally ``study_id``) and whose
        transform reads films with ``on_error="skip"``.
    id_column
        Name of the first column: ``ID_COLUMN_OF[kind]`` (``dicom_id`` for a CSV, ``path`` otherwise).
    output_path
        Submission CSV to write; None keeps it in memory.
    batch_size, num_workers
        DataLoader settings.
    device
        Where to run; default the network's device.
    aggregate
        None, ``"mean"`` or ``"max"`` of each class over the films of a study (items need ``study_id``).
    amp
        Autocast on CUDA.
    inferer
        MONAI inferer (default ``SimpleInferer``).
    keep_unreadable_rows
        Whether an unreadable film keeps its row (empty probabilities) or gets none; default: kept for a CSV
        (``id_column`` ``dicom_id``), dropped for a folder or files.

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
    device = torch.device(device) if device is not None else next(network.parameters()).device
    writer = SubmissionWriter(
        output_path, network.class_names, expected_ids=[item["id"] for item in items], id_column=id_column,
        aggregate=aggregate, expected_images=[item["image"] for item in items],
        keep_unreadable_rows=id_column == ID_COLUMN_OF["csv"] if keep_unreadable_rows is None else keep_unreadable_rows,
    )
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=skip_unreadable_collate, pin_memory=device.type == "cuda")
    evaluator = InferenceEvaluator(device, loader, network, inferer=inferer, val_handlers=[writer], amp=amp)
    evaluator.submission_writer = writer
    return evaluator


def predict(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    checkpoint: str | os.PathLike | None,
    model_name: str,
    class_names: Sequence[str] | str | None = None,
    prompts: str | PromptSet | Mapping = "present_absent",
    image_root: str | os.PathLike | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    normalization: str = "chexzero",
    aggregate: str | None = None,
    calibration: Calibration | str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    amp: bool = True,
) -> pd.DataFrame:
    """Class probabilities of every readable film of ``source``, as a submission table (written when ``output``).

    Parameters
    ----------
    source
        A CSV with ``dicom_id`` and ``fpath`` (e.g. CXR-LT's ``test_labeled_task1.csv``; rows kept in order, all
        views), a folder of JPEG/PNG/DICOM/NIfTI films, or a list of files (:func:`read_image_list`).
    checkpoint
        Trained checkpoint (``models/model.pt``), a CheXzero/OpenAI state_dict or an open_clip checkpoint; None
        scores with random weights (tests only).
    model_name
        open_clip model name of the checkpoint (``ViT-B-32-quickgelu`` for CheXzero-based runs).
    class_names
        ``"cxrlt2024"`` (the 40 CXR-LT 2024 classes in submission order), ``"chexpert"``, or any list of names in
        the column order wanted, e.g. ``CXRLT2024_UNSEEN_CLASSES`` for CXR-LT task 3. None: the class columns of a
        CSV source in its order (a CXR-LT task 1, 2 or 3 file gives that task's classes), else ``"cxrlt2024"``
        (:func:`submission_class_names`).
    prompts
        Prompt preset name, :class:`~monai_cxrcml.networks.PromptSet` or its mapping (custom templates and
        per-class overrides).
    image_root
        Folder a CSV's ``fpath`` values are relative to (default: the CSV's folder).
    batch_size, num_workers
        DataLoader settings.
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default CUDA when available.
    normalization
        ``"chexzero"`` or ``"clip"``: the intensity normalisation the model was trained with (the bundle's training
        default is ``chexzero``; the phantom demo uses ``clip``).
    aggregate
        None, or ``"mean"``/``"max"`` over the films of each study (needs a CSV with ``study_id``).
    calibration
        A :class:`~monai_cxrcml.calibration.Calibration` or its JSON file (temperature/bias per class).
    output
        Submission CSV to write (and ``<output>.unreadable.csv`` when films could not be read).
    amp
        Autocast on CUDA.

    Returns
    -------
    pandas.DataFrame
        ``dicom_id`` (CSV) or ``path`` (folder/files), then one float column per class (NaN in a CSV row whose film
        could not be read). ``frame.attrs["unreadable"]`` lists the unreadable films as records with the id,
        ``image`` path and ``reason``.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    items, kind = read_image_list(source, image_root=image_root)
    class_names = submission_class_names(class_names, source)
    network = ZeroShotClassifier(model_name, class_names, prompts, checkpoint, device=device)
    network = apply_calibration(network, calibration)
    dataset = Dataset(items, chest_film_transforms(False, network.image_size[0], normalization, on_error="skip"))
    evaluator = create_inference_evaluator(
        network, dataset, ID_COLUMN_OF[kind], output, batch_size=batch_size, num_workers=num_workers, device=device,
        aggregate=aggregate, amp=amp,
    )
    evaluator.run()
    writer = evaluator.submission_writer
    submission = writer.submission
    submission.attrs["unreadable"] = writer.unreadable.to_dict("records")
    return submission


def submission_class_names(
    class_names: Sequence[str] | str | None, source: str | os.PathLike | Sequence[str | os.PathLike]
) -> Sequence[str] | str:
    """The classes to score: ``class_names`` when given, else the class columns of a CSV ``source``.

    With ``class_names`` None, a CSV's columns that name a known class (the 40 CXR-LT 2024 classes, the 5 unseen
    ones of task 3, the 14 CheXpert labels) are taken in the file's column order, so that CXR-LT's task 2 and task 3
    files give submissions with their own classes; a CSV without such columns, a folder or a list of files gives
    ``"cxrlt2024"``. Other columns (ids, paths, views) are ignored.
    """
    if class_names is not None:
        return class_names
    if isinstance(source, (str, os.PathLike)) and str(source).lower().endswith((".csv", ".csv.gz")) \
            and Path(source).is_file():
        known = {*CXRLT2024_CLASSES, *CXRLT2024_UNSEEN_CLASSES, *CHEXPERT_CLASSES}
        columns = [c for c in csv_header(source) if c in known]
        if columns:
            logger.info("classes: the %d class columns of %s, in its order", len(columns), source)
            return columns
    return "cxrlt2024"


# ---------------------------------------------------------------------------------------------- CLI


def parse_classes(values: Sequence[str]) -> str | list[str]:
    """``--classes`` values: one vocabulary name (``cxrlt2024``, ``chexpert``) or class names, in column order."""
    values = list(values)
    return values[0] if len(values) == 1 and values[0] in ("cxrlt2024", "chexpert") else values


def parse_prompts(value: str) -> str | dict:
    """``--prompts``: a preset name, or a JSON/YAML file holding a PromptSet mapping.

    A file holds ``{"positive": [...], "negative": [...], "overrides": {class: [[positives], [negatives]]}}``.
    """
    if value in PROMPT_PRESETS:
        return value
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"--prompts {value!r}: not a preset ({', '.join(PROMPT_PRESETS)}) and not a file.")
    text = path.read_text()
    mapping = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{path}: a prompt file holds a mapping with 'positive', 'negative' and 'overrides'.")
    PromptSet.create(mapping)  # fail here, naming the file, rather than after the model is built
    return dict(mapping)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monai_cxrcml.inference",
        description="Score chest films with a trained CXR-CML model and write a submission CSV: dicom_id (CSV) or "
        "path (folder, files), then one probability per class. Unreadable films are listed in "
        "<output>.unreadable.csv.",
    )
    parser.add_argument("source", nargs="+",
                        help="a CSV with dicom_id and fpath (rows kept, all views), a folder, or image files")
    parser.add_argument("--checkpoint", required=True, help="trained checkpoint (models/model.pt)")
    parser.add_argument("--model-name", required=True, help="open_clip model name, e.g. ViT-B-32-quickgelu")
    parser.add_argument("--output", required=True, help="submission CSV to write")
    parser.add_argument("--image-root", help="folder a CSV's fpath values are relative to (default: its folder)")
    parser.add_argument("--classes", nargs="+",
                        help="cxrlt2024, chexpert, or class names in column order (default: a CSV's own class "
                             "columns, else cxrlt2024)")
    parser.add_argument("--prompts", default="present_absent",
                        help=f"preset ({', '.join(PROMPT_PRESETS)}) or a JSON/YAML PromptSet file")
    parser.add_argument("--aggregate", choices=AGGREGATIONS, help="mean or max over the films of a study")
    parser.add_argument("--calibration", help="calibration JSON (python -m monai_cxrcml.calibration)")
    parser.add_argument("--normalization", default="chexzero", choices=["chexzero", "clip"],
                        help="the normalisation the model was trained with")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--no-amp", action="store_true", help="score in float32 on CUDA")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (see ``python -m monai_cxrcml.inference --help``); returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    first = Path(args.source[0])
    single = len(args.source) == 1 and (first.is_dir() or first.name.lower().endswith((".csv", ".csv.gz")))
    try:
        submission = predict(
            args.source[0] if single else args.source, args.checkpoint, args.model_name,
            class_names=args.classes and parse_classes(args.classes), prompts=parse_prompts(args.prompts),
            image_root=args.image_root, batch_size=args.batch_size, device=args.device, num_workers=args.num_workers,
            normalization=args.normalization, aggregate=args.aggregate, calibration=args.calibration,
            output=args.output, amp=not args.no_amp,
        )
    except (ValueError, OSError, CheckpointError, NoReadableFilmError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    unreadable = submission.attrs["unreadable"]
    print(f"{len(submission)} films x {submission.shape[1] - 1} classes written to {args.output}"
          + (f"; {len(unreadable)} unreadable listed in {Path(args.output).with_suffix('.unreadable.csv')}"
             if unreadable else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
