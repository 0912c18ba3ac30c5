"""MONAI Label infer task of type CLASSIFICATION: one chest film in, one probability per class out.

The task serves :class:`~monai_cxrcml.networks.ZeroShotClassifier` (the bundle's ``network_def``) built from a
trained checkpoint, and reads the film with the bundle's evaluation pipeline,
:func:`~monai_cxrcml.transforms.chest_film_transforms` with ``train=False`` (that is
:func:`~monai_cxrcml.data.films.read_film`: JPEG/PNG/TIFF/BMP, DICOM including MONOCHROME1, 2-D NIfTI, in displayed
orientation; then resize, pad and normalise).

Answer (the JSON body of ``POST /infer/cxrcml?image=ID``), both in class order::

    {"scores": {"Adenopathy": 0.12, "Atelectasis": 0.71, ...},
     "prediction": [{"idx": 0, "label": "Adenopathy", "score": 0.12}, ...]}

``prediction`` is the list MONAI Label's own classification tasks answer (``ClassificationWriter``).

App configuration, ``monailabel start_server ... --conf KEY VALUE`` (strings; only ``checkpoint`` is required):

``checkpoint``
    Trained model: this project's ``models/model.pt`` (``{"model": clip_state_dict}``), an open_clip checkpoint
    or a CheXzero/OpenAI state dict.
``model_name``
    open_clip config of the checkpoint (default ``ViT-B-32-quickgelu``; ``cxrcml-tiny`` for the demo model).
``class_names``
    ``cxrlt2024`` (default, the 40 CXR-LT 2024 classes), ``chexpert``, or comma-separated names in answer order
    (e.g. ``Bulla,Cardiomyopathy,Hilum,Osteopenia,Scoliosis``).
``prompts``
    Prompt preset (``present_absent`` default, ``chexzero``, ``ensemble``) or a JSON/YAML file holding the
    arguments of :class:`~monai_cxrcml.networks.PromptSet` (:func:`monai_cxrcml.inference.parse_prompts`).
``normalization``
    ``chexzero`` (default, as the bundle) or ``clip``: the one the model was trained with.
``calibration``
    Optional JSON file of a fitted :class:`~monai_cxrcml.calibration.Calibration` (temperature/bias per class).
``device``
    ``cuda`` when available, else ``cpu`` (default); or any torch device string.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from monai_cxrcml.calibration import Calibration, apply_calibration
from monai_cxrcml.data.films import FilmReadError
from monai_cxrcml.inference import parse_classes, parse_prompts
from monai_cxrcml.networks import PromptSet, ZeroShotClassifier
from monai_cxrcml.transforms import chest_film_transforms

__all__ = ["CONF_DEFAULTS", "FILM_EXTENSIONS", "ZeroShotInferTask", "film_read_error"]

logger = logging.getLogger(__name__)

CONF_DEFAULTS: dict[str, str | None] = {
    "checkpoint": None,
    "model_name": "ViT-B-32-quickgelu",
    "class_names": "cxrlt2024",
    "prompts": "present_absent",
    "normalization": "chexzero",
    "calibration": None,
    "device": None,
}
"""The ``--conf`` keys this app reads and their defaults (``checkpoint`` is required)."""

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
    """CLASSIFICATION infer task: a film path in, the classifier's per-class probabilities out (module notes).

    Parameters
    ----------
    checkpoint
        Trained checkpoint file (see the module notes for the formats).
    model_name
        open_clip config name of the checkpoint.
    class_names
        ``"cxrlt2024"``, ``"chexpert"`` or a list of class names (prompts are built from the names).
    prompts
        Prompt preset name, :class:`~monai_cxrcml.networks.PromptSet` or its mapping.
    normalization
        ``"chexzero"`` or ``"clip"``: the intensity normalisation the model was trained with.
    calibration
        A :class:`~monai_cxrcml.calibration.Calibration` or its JSON file; None: uncalibrated probabilities.
    device
        Device of the model; default ``cuda`` when available, else ``cpu``.

    Raises
    ------
    ValueError
        For a missing checkpoint file or an unavailable device; the message names the ``--conf`` key to fix.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        model_name: str = "ViT-B-32-quickgelu",
        class_names: str | list[str] = "cxrlt2024",
        prompts: str | PromptSet | Mapping = "present_absent",
        normalization: str = "chexzero",
        calibration: Calibration | str | os.PathLike | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if not os.path.isfile(checkpoint):
            raise ValueError(
                f"--conf checkpoint {os.fspath(checkpoint)!r}: no such file; pass the trained model, e.g. the "
                "bundle's output_dir/models/model.pt."
            )
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--conf device {device}: no CUDA device is available here; use --conf device cpu.")
        self.device = device
        network = ZeroShotClassifier(model_name, class_names, prompts, checkpoint, device=device)
        self.network = apply_calibration(network, calibration).eval()
        self.transform = chest_film_transforms(
            train=False, image_size=self.network.image_size[0], normalization=normalization
        )
        super().__init__(
            type=InferType.CLASSIFICATION,
            labels=list(self.network.class_names),
            dimension=2,
            description=(
                f"CXR-CML zero-shot chest film classifier ({model_name}, {self.network.num_classes} classes, "
                f"prompts {self.network.prompts.name}): one probability per class"
            ),
        )
        logger.info("CXR-CML classifier from %s on %s: %s", checkpoint, device, ", ".join(self.network.class_names))

    @classmethod
    def from_conf(cls, conf: Mapping[str, str]) -> ZeroShotInferTask:
        """The task configured by MONAI Label's ``--conf KEY VALUE`` pairs (keys: :data:`CONF_DEFAULTS`)."""
        unknown = sorted(set(conf) - set(CONF_DEFAULTS) - {"server_mode"})
        if unknown:
            logger.warning("ignoring --conf %s: this app reads %s", ", ".join(unknown), ", ".join(CONF_DEFAULTS))
        options = {key: conf.get(key, default) for key, default in CONF_DEFAULTS.items()}
        if not options["checkpoint"]:
            raise ValueError(
                "the CXR-CML app needs a trained model: monailabel start_server ... --conf checkpoint "
                "/path/to/models/model.pt --conf model_name <its open_clip config>."
            )
        options["class_names"] = parse_classes([n.strip() for n in options["class_names"].split(",") if n.strip()])
        options["prompts"] = parse_prompts(options["prompts"])
        return cls(**options)

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
        with torch.inference_mode():
            probabilities = self.network(image[None].to(self.device))[0].float().cpu().tolist()
        names = self.network.class_names
        return None, {
            "scores": dict(zip(names, probabilities)),
            "prediction": [{"idx": i, "label": n, "score": p} for i, (n, p) in enumerate(zip(names, probabilities))],
        }
