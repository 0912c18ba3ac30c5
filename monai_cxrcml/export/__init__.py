"""Turn a checkpoint into a model bundle that inference, calibration and MONAI Label take alone.

A state_dict saved as CheXzero and OpenAI save theirs (plain, OpenAI key names) becomes a bundle scored under the
``chexzero`` protocol (the model name defaults to ``ViT-B-32-quickgelu`` for a ViT-B/32); an open_clip checkpoint
or this project's older bare ``models/model.pt`` needs its model name and, where it differs from
``present_absent``, its protocol and normalisation. The command
line is ``python -m monai_cxrcml.export`` (:mod:`monai_cxrcml.cli.export`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from monai_cxrcml.model_bundle import file_fingerprint, load_model, write_model_bundle
from monai_cxrcml.networks import checkpoint_architecture, create_clip, is_openai_layout, read_state_dict
from monai_cxrcml.protocols import ScoringProtocol

__all__ = ["export_checkpoint"]

logger = logging.getLogger(__name__)

_OPENAI_VIT_B32 = "ViT-B-32-quickgelu"
_VIT_B32 = {"embed_dim": 512, "vision_width": 768, "vision_layers": 12, "patch_size": 32, "image_size": 224,
            "text_width": 512, "text_layers": 12}


def export_checkpoint(
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    model_name: str | None = None,
    image_size: int | None = None,
    normalization: str | None = None,
    class_names: Sequence[str] | str | None = None,
    protocol: str | Mapping | ScoringProtocol | None = None,
    allow_torchscript: bool = False,
) -> Path:
    """Write ``checkpoint`` as a model bundle in ``output_dir``; returns the bundle folder.

    Parameters
    ----------
    checkpoint
        A local checkpoint file (see :func:`~monai_cxrcml.networks.load_clip_checkpoint` for the layouts).
    output_dir
        The bundle folder to write.
    model_name
        Its open_clip config; default ``ViT-B-32-quickgelu`` for an OpenAI-layout ViT-B/32 (CheXzero's
        architecture), else required.
    image_size, normalization
        Its input size (default: the config's) and the normalisation it was trained with (default: the
        protocol's).
    class_names
        The classes the bundle scores by default (``"cxrlt2024"`` when None).
    protocol
        Its scoring protocol; default ``chexzero`` for an OpenAI-layout state_dict, else ``present_absent``.
    allow_torchscript
        Accept a TorchScript archive (OpenAI's original JIT files).
    """
    checkpoint = Path(checkpoint).expanduser()
    state_dict, found = read_state_dict(checkpoint, allow_torchscript=allow_torchscript)
    openai = is_openai_layout(state_dict, found)
    if openai and protocol is None:
        protocol = "chexzero"
        logger.info("%s is an OpenAI-layout state_dict (CheXzero, OpenAI CLIP): protocol 'chexzero'", checkpoint)
    if model_name is None and openai and checkpoint_architecture(state_dict) == _VIT_B32:
        model_name = _OPENAI_VIT_B32
    del state_dict
    trained = load_model(checkpoint, model_name, image_size, normalization, class_names, protocol)
    clip = create_clip(trained.model_name, checkpoint, allow_torchscript=allow_torchscript)
    return write_model_bundle(
        output_dir, clip, trained.model_name, trained.image_size, trained.class_names, trained.protocol,
        provenance={"checkpoint": file_fingerprint(checkpoint)},
        changelog={"0.1.0": f"exported from {checkpoint.name} by monai-cxrcml"},
        data_source=f"the training data of {checkpoint.name} (not recorded in the checkpoint)",
    )
