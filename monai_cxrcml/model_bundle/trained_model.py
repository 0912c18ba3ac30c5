"""A trained model ready to score films, from a model bundle, a training run folder or a bare checkpoint."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import open_clip
import torch
from monai.transforms import Compose

from monai_cxrcml.data.classes import resolve_class_names
from monai_cxrcml.metrics.temperature import apply_calibration
from monai_cxrcml.model_bundle.card import METADATA_KEY, MODEL_FORMAT
from monai_cxrcml.networks import PromptSet, ZeroShotClassifier, create_clip, get_tokenizer, read_state_dict
from monai_cxrcml.protocols import ScoringProtocol, get_protocol

__all__ = [
    "BUNDLE_SUBDIR",
    "CLASSIFIER_FILE",
    "TEXT_TOWER_FILE",
    "Scorer",
    "TrainedModel",
    "create_scorer",
    "find_model_bundle",
    "load_model",
]

logger = logging.getLogger(__name__)

BUNDLE_SUBDIR = "bundle"
"""Folder of a training run's output that holds its model bundle."""

CLASSIFIER_FILE = os.path.join("models", "model.pt")
"""The classifier's state_dict in a bundle (the weights of ``network_def``)."""
TEXT_TOWER_FILE = os.path.join("models", "text.pt")
"""The CLIP text tower's state_dict in a bundle (to score classes the model was not trained on)."""


@dataclasses.dataclass(frozen=True)
class Scorer:
    """A classifier ready to run, with the protocol it scores under.

    Attributes
    ----------
    network
        :class:`~monai_cxrcml.networks.ZeroShotClassifier`: images ``[B, 3, S, S]`` -> probabilities ``[B, C]``.
    protocol
        The effective scoring protocol (the model's, with the overrides applied).
    image_size
        ``S``, the model's input side.
    """

    network: ZeroShotClassifier
    protocol: ScoringProtocol
    image_size: int

    def transforms(self, on_error: str = "skip", cache_dir: str | os.PathLike | None = None) -> Compose:
        """The evaluation film pipeline of the protocol at the model's size (datalist item -> ``image [3, S, S]``)."""
        return self.protocol.transforms(self.image_size, on_error=on_error, cache_dir=cache_dir)


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """What defines a trained model, where its weights are, and the protocol it scores under.

    Attributes
    ----------
    model_name
        open_clip config name (architecture).
    image_size
        Input side the model was trained at.
    class_names
        Classes it scores unless told otherwise.
    protocol
        The scoring protocol in effect; ``protocol.normalization`` is the one the model was trained with.
    source
        The bundle folder, or the bare checkpoint file.
    bundle_protocol
        A bundle's own protocol (what its stored classifier was built with); None for a bare checkpoint.
    """

    model_name: str
    image_size: int
    class_names: tuple[str, ...]
    protocol: ScoringProtocol
    source: Path
    bundle_protocol: ScoringProtocol | None = None

    @property
    def is_bundle(self) -> bool:
        """Whether :attr:`source` is a model bundle (``models/model.pt`` classifier + ``models/text.pt``)."""
        return self.bundle_protocol is not None

    def scorer(
        self,
        class_names: Sequence[str] | str | None = None,
        prompts: str | PromptSet | Mapping | None = None,
        precision: str | None = None,
        calibration: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
    ) -> Scorer:
        """The classifier of this model for ``class_names`` (default: the model's), with the protocol's knobs on top.

        Each choice that differs from the model's own is logged.
        """
        knobs = {"prompts": prompts, "precision": precision,
                 "calibration": None if calibration is None else os.fspath(calibration)}
        for key, value in knobs.items():
            if value is not None:
                logger.info("%s %r instead of the protocol's %r", key, getattr(value, "name", value),
                            getattr(getattr(self.protocol, key), "name", getattr(self.protocol, key)))
        protocol = self.protocol.with_knobs(**knobs)
        classes = self.class_names if class_names is None else resolve_class_names(class_names)
        if classes != self.class_names:
            logger.info("scoring %d classes instead of the model's %d", len(classes), len(self.class_names))
        device = torch.device(device)
        if self.is_bundle:
            network = self._bundle_classifier(classes, protocol, device)
        else:
            network = protocol.classifier(self.model_name, classes, self.source, device=device)
        protocol.announce(classes)
        return Scorer(network.eval(), protocol, self.image_size)

    def _bundle_classifier(
        self, classes: tuple[str, ...], protocol: ScoringProtocol, device: torch.device
    ) -> ZeroShotClassifier:
        """The classifier of a bundle's CLIP (image tower of ``models/model.pt``, text tower of ``models/text.pt``).

        For the bundle's own classes, prompts and scale, ``models/model.pt`` is loaded as it is (what ``network_def``
        and ``models/model.ts`` compute); otherwise the prompts are encoded by the text tower. The calibration is
        the protocol's.
        """
        stored, _ = read_state_dict(self._file(CLASSIFIER_FILE))
        text, _ = read_state_dict(self._file(TEXT_TOWER_FILE))
        visual = {k: v for k, v in stored.items() if k.startswith("visual.")}
        clip = create_clip(self.model_name, checkpoint={**visual, **text}, device=device)
        network = ZeroShotClassifier.from_clip(clip, get_tokenizer(self.model_name), classes, protocol.prompts,
                                               protocol.scale)
        if (classes, protocol.prompts, protocol.scale) == (self.class_names, self.bundle_protocol.prompts,
                                                           self.bundle_protocol.scale):
            network.load_state_dict(stored)
        network.set_calibration()
        return apply_calibration(network, protocol.calibration)

    def _file(self, name: str) -> Path:
        path = self.source / name
        if not path.is_file():
            raise FileNotFoundError(
                f"{self.source} is a bundle without trained weights ({name} is missing): pass a training run's "
                "output folder, its bundle/, or a bundle written by python -m monai_cxrcml.export."
            )
        return path


def find_model_bundle(path: str | os.PathLike) -> Path | None:
    """The model bundle at ``path``: the folder itself, or a training run's ``bundle/`` folder; None if neither."""
    path = Path(path)
    for folder in (path, path / BUNDLE_SUBDIR):
        metadata = folder / "configs" / "metadata.json"
        if metadata.is_file() and METADATA_KEY in json.loads(metadata.read_text()):
            return folder
    return None


def _default_image_size(model_name: str) -> int:
    size = (open_clip.get_model_config(model_name) or {}).get("vision_cfg", {}).get("image_size", 224)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def _instead_of(own: ScoringProtocol, protocol: str | Mapping | ScoringProtocol | None) -> ScoringProtocol:
    """``protocol`` in place of a bundle's ``own``, keeping the normalisation the model was trained with."""
    requested = None if protocol is None else get_protocol(protocol)
    if requested is None or (requested.name == own.name and not requested.overridden):
        return own
    logger.info("protocol %r instead of the model's %r", requested.name, own.name)
    if requested.normalization != own.normalization:
        logger.info("protocol %r normalises with %r; the model keeps its own %r (it was trained with it)",
                    requested.name, requested.normalization, own.normalization)
    return requested.with_knobs(normalization=own.normalization)


def _check_agrees(source: Path, what: str, flag: Any, value: Any) -> None:
    if flag is not None and flag != value:
        raise ValueError(
            f"{what}={flag!r} contradicts the model's {what}={value!r} ({source}/configs/metadata.json): a model's "
            f"architecture, image size and normalisation are fixed by its training. Drop the {what} setting, or pass "
            "a bare checkpoint file instead of the bundle."
        )


def load_model(
    model: str | os.PathLike,
    model_name: str | None = None,
    image_size: int | None = None,
    normalization: str | None = None,
    class_names: Sequence[str] | str | None = None,
    protocol: str | Mapping | ScoringProtocol | None = None,
) -> TrainedModel:
    """The trained model at ``model``: a model bundle, a training run folder (its ``bundle/``) or a checkpoint file.

    Parameters
    ----------
    model
        A bundle folder, a run folder, or a bare checkpoint (this project's old ``models/model.pt``, a CheXzero /
        OpenAI state_dict, an open_clip checkpoint).
    model_name, image_size, normalization
        What defines the model. A bundle carries them: a value that differs is an error naming both. A bare
        checkpoint needs ``model_name``; the image size defaults to the config's and the normalisation to the
        protocol's.
    class_names
        For a bare checkpoint, its default classes (``"cxrlt2024"``); a bundle has its own (score others with
        :meth:`TrainedModel.scorer`).
    protocol
        The scoring protocol: a bare checkpoint's (default ``"present_absent"``), or the one to use instead of a
        bundle's own (logged; the model keeps the normalisation it was trained with).

    Raises
    ------
    FileNotFoundError
        When ``model`` is neither a bundle, a run folder with one, nor a file.
    ValueError
        For a flag that contradicts the bundle, or a bare checkpoint without ``model_name``.
    """
    path = Path(model).expanduser()
    bundle = find_model_bundle(path) if path.is_dir() else None
    if bundle is not None:
        section = json.loads((bundle / "configs" / "metadata.json").read_text())[METADATA_KEY]
        if section.get("format") != MODEL_FORMAT:
            raise ValueError(f"{bundle}/configs/metadata.json: model format {section.get('format')!r} is not "
                             f"{MODEL_FORMAT!r}; export the model again with this version (python -m "
                             "monai_cxrcml.export).")
        own = get_protocol(section["protocol"])
        if own.calibration is not None:
            own = dataclasses.replace(own, calibration=str(bundle / own.calibration))
        _check_agrees(bundle, "model_name", model_name, section["model_name"])
        _check_agrees(bundle, "image_size", None if image_size is None else int(image_size), section["image_size"])
        _check_agrees(bundle, "normalization", normalization, own.normalization)
        return TrainedModel(section["model_name"], int(section["image_size"]), tuple(section["class_names"]),
                            _instead_of(own, protocol), bundle, own)
    if path.is_dir():
        raise FileNotFoundError(
            f"{path} holds no model bundle (configs/metadata.json with a '{METADATA_KEY}' section, directly or in "
            f"{BUNDLE_SUBDIR}/): pass a training run's output folder, its bundle, or a checkpoint file."
        )
    if not path.is_file():
        raise FileNotFoundError(f"model {str(path)!r} does not exist: pass a model bundle, a run folder or a "
                                "checkpoint file.")
    if model_name is None:
        raise ValueError(f"{path} is a bare checkpoint: say its architecture with model_name (--model-name), e.g. "
                         "'ViT-B-32-quickgelu' for CheXzero/OpenAI weights, or export it once as a bundle "
                         "(python -m monai_cxrcml.export).")
    own = get_protocol(protocol, normalization=normalization)
    size = _default_image_size(model_name) if image_size is None else int(image_size)
    classes = resolve_class_names("cxrlt2024" if class_names is None else class_names)
    return TrainedModel(model_name, size, classes, own, path)


def create_scorer(
    model: str | os.PathLike,
    class_names: Sequence[str] | str | None = None,
    protocol: str | Mapping | ScoringProtocol | None = None,
    prompts: str | PromptSet | Mapping | None = None,
    precision: str | None = None,
    calibration: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    model_name: str | None = None,
    image_size: int | None = None,
    normalization: str | None = None,
) -> Scorer:
    """:func:`load_model` then :meth:`TrainedModel.scorer`: the one call of inference and MONAI Label."""
    trained = load_model(model, model_name, image_size, normalization, protocol=protocol)
    return trained.scorer(class_names, prompts, precision, calibration, device)
