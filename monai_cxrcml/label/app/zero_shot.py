"""MONAI Label infer task of type CLASSIFICATION: one chest film in, one probability per class out.

The task serves the classifier of a trained model (:func:`~monai_cxrcml.model_bundle.create_scorer`: a model
bundle, a training run folder, or a bare checkpoint) and reads the film with the model's scoring protocol, exactly
as ``python -m monai_cxrcml.inference`` does. Answer (the JSON body of ``POST /infer/cxrcml?image=ID``), in class
order; ``prediction`` is the list MONAI Label's own classification tasks answer (``ClassificationWriter``)::

    {"scores": {"Adenopathy": 0.12, ...}, "prediction": [{"idx": 0, "label": "Adenopathy", "score": 0.12}, ...]}

App configuration, ``monailabel start_server ... --conf KEY VALUE`` (strings; :data:`CONF_DEFAULTS`): ``model`` (a
bundle or run folder, alone), or ``checkpoint`` with ``model_name`` (and ``normalization``, ``image_size``) for a
bare checkpoint; ``class_names`` (comma-separated), ``protocol``, ``prompts``, ``precision``, ``calibration`` on top
of the model's own; ``device``. ``monai_cxrcml/label/README.md`` has the table.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from monai_cxrcml.data.classes import class_selection
from monai_cxrcml.data.films import FilmReadError
from monai_cxrcml.model_bundle import create_scorer
from monai_cxrcml.networks import PromptSet, read_prompts

__all__ = ["CONF_DEFAULTS", "FILM_EXTENSIONS", "ZeroShotInferTask", "film_read_error"]

logger = logging.getLogger(__name__)

CONF_DEFAULTS: dict[str, str | None] = {
    "model": None,
    "checkpoint": None,
    "model_name": None,
    "image_size": None,
    "normalization": None,
    "class_names": None,
    "protocol": None,
    "prompts": None,
    "precision": None,
    "calibration": None,
    "device": None,
}
"""The ``--conf`` keys this app reads; None: the model's own (``model`` or ``checkpoint`` is required)."""

FILM_EXTENSIONS: tuple[str, ...] = (
    "*.jpg", "*.jpeg", "*.png", "*.tif", "*.tiff", "*.bmp", "*.dcm", "*.dicom", "*.nii", "*.nii.gz"
)
"""File patterns of films a local datastore lists (what :func:`~monai_cxrcml.data.films.read_film` reads)."""


def film_read_error(error: BaseException) -> FilmReadError | None:
    """The :class:`FilmReadError` behind ``error`` (MONAI's ``Compose`` wraps it in ``RuntimeError``), or None."""
    while error is not None:
        if isinstance(error, FilmReadError):
            return error
        error = error.__cause__
    return None


def _film_file(path: str) -> str:
    """The film file of a request: the path itself, or the only file of a folder (a DICOMweb series download)."""
    if not isinstance(path, str) or not os.path.isdir(path):
        return path
    files = sorted(entry.path for entry in os.scandir(path) if entry.is_file())
    if len(files) != 1:
        raise FilmReadError(
            path,
            f"the image is a folder (a DICOM series) with {len(files)} files; a chest film series holds one film: "
            "send one instance per request",
        )
    return files[0]


class ZeroShotInferTask(InferTask):
    """CLASSIFICATION infer task: a film path in, the model's per-class probabilities out (module notes).

    Parameters
    ----------
    model
        A model bundle, a training run folder, or a bare checkpoint file (with ``model_name``).
    class_names, protocol, prompts, precision, calibration
        What to score and how, on top of the model's own (:meth:`~monai_cxrcml.model_bundle.TrainedModel.scorer`).
    device
        Device of the model; default ``cuda`` when available, else ``cpu``.
    model_name, image_size, normalization
        What defines a bare checkpoint (a bundle carries them and refuses other values).

    Raises
    ------
    ValueError
        For a missing model or an unavailable device; the message names the ``--conf`` key to fix.
    """

    def __init__(
        self,
        model: str | os.PathLike,
        class_names: str | list[str] | None = None,
        protocol: str | None = None,
        prompts: str | PromptSet | Mapping | None = None,
        precision: str | None = None,
        calibration: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        model_name: str | None = None,
        image_size: int | None = None,
        normalization: str | None = None,
    ) -> None:
        if not os.path.exists(model):
            raise ValueError(f"--conf model {os.fspath(model)!r}: no such file or folder; pass a training run's "
                             "output folder, its bundle/, or a checkpoint with --conf model_name.")
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--conf device {device}: no CUDA device is available here; use --conf device cpu.")
        self.device = device
        scorer = create_scorer(model, class_names, protocol, prompts, precision, calibration, device, model_name,
                               image_size, normalization)
        self.network = scorer.network
        self.autocast = scorer.protocol.autocast
        self.transform = scorer.transforms(on_error="raise")
        super().__init__(
            type=InferType.CLASSIFICATION,
            labels=list(self.network.class_names),
            dimension=2,
            description=(
                f"CXR-CML zero-shot chest film classifier ({self.network.num_classes} classes, protocol "
                f"{scorer.protocol.describe()}): one probability per class"
            ),
        )
        logger.info("CXR-CML classifier from %s on %s: %s", model, device, ", ".join(self.network.class_names))

    @classmethod
    def from_conf(cls, conf: Mapping[str, str]) -> ZeroShotInferTask:
        """The task configured by MONAI Label's ``--conf KEY VALUE`` pairs (keys: :data:`CONF_DEFAULTS`)."""
        unknown = sorted(set(conf) - set(CONF_DEFAULTS) - {"server_mode"})
        if unknown:
            logger.warning("ignoring --conf %s: this app reads %s", ", ".join(unknown), ", ".join(CONF_DEFAULTS))
        options = {key: conf.get(key, default) for key, default in CONF_DEFAULTS.items()}
        model = options.pop("model") or options.pop("checkpoint")
        options.pop("checkpoint", None)
        if not model:
            raise ValueError(
                "the CXR-CML app needs a trained model: monailabel start_server ... --conf model RUN_OR_BUNDLE "
                "(a training run's output folder or a model bundle), or --conf checkpoint FILE --conf model_name "
                "<its open_clip config> for a bare checkpoint."
            )
        options["class_names"] = class_selection(options["class_names"])
        options["prompts"] = read_prompts(options["prompts"])
        options["image_size"] = None if options["image_size"] is None else int(options["image_size"])
        return cls(model, **options)

    def is_valid(self) -> bool:
        """The model is built at start, so the task is always ready."""
        return True

    def __call__(self, request: Mapping[str, Any]) -> tuple[None, dict[str, Any]]:
        """Classify the film ``request["image"]`` (a file path, or a folder holding one DICOM file).

        Returns
        -------
        tuple
            ``(None, {"scores": {class: probability}, "prediction": [{"idx", "label", "score"}, ...]})``: no
            label file, the JSON answer.

        Raises
        ------
        FilmReadError
            The image cannot be read as a film; the message says why and what to do.
        """
        path = _film_file(request["image"])
        try:
            image = self.transform({"image": path})["image"]
        except RuntimeError as e:  # MONAI's Compose wraps the reader's FilmReadError
            cause = film_read_error(e)
            if cause is None:
                raise
            raise cause from None  # its own traceback points into the reader
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=self.autocast and
                                                    self.device.type == "cuda"):
            probabilities = self.network(image[None].to(self.device))[0].float().cpu().tolist()
        names = self.network.class_names
        return None, {
            "scores": dict(zip(names, probabilities)),
            "prediction": [{"idx": i, "label": n, "score": p} for i, (n, p) in enumerate(zip(names, probabilities))],
        }
