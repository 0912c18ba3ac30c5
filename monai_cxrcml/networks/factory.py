"""open_clip model factory that never downloads: registered configs plus local checkpoints only.

``create_clip("ViT-B-32-quickgelu", checkpoint="chexzero.pt")`` builds the CLIP of the paper from a CheXzero
(OpenAI CLIP ViT-B/32) state_dict; ``create_clip("cxrcml-tiny")`` builds the tiny model of the tests and the demo.
The tiny configs in ``model_configs/*.json`` are registered with open_clip when this package is imported, so
``open_clip.create_model`` and ``open_clip.get_tokenizer`` know them too. They use the ViT-B/32 tokenizer
(vocabulary 49408, context length 77).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import open_clip
import torch

from .checkpoint import load_clip_checkpoint

__all__ = [
    "MODEL_CONFIG_DIR",
    "create_clip",
    "get_tokenizer",
    "list_models",
    "register_model_configs",
    "unwrap_parallel",
]

logger = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
"""Directory of the model configs this package registers with open_clip (one JSON file per config name)."""

_PRECISIONS = ("fp32", "fp16", "bf16", "pure_fp16", "pure_bf16")


def register_model_configs(config_dir: str | os.PathLike = MODEL_CONFIG_DIR) -> tuple[str, ...]:
    """Register every ``*.json`` model config of ``config_dir`` with open_clip, once.

    The config name is the file stem. Registering again is a no-op. A name that open_clip already knows with a
    different config is an error, so registration never replaces another config.

    Returns
    -------
    tuple[str, ...]
        The registered config names.

    Raises
    ------
    ValueError
        When a file's name is already registered with a different config.
    """
    files = sorted(Path(config_dir).glob("*.json"))
    configs = {f.stem: json.loads(f.read_text()) for f in files}
    known = set(open_clip.list_models())
    clashes = [n for n in configs if n in known and open_clip.get_model_config(n) != configs[n]]
    if clashes:
        raise ValueError(
            f"model config(s) {clashes} in {config_dir} are already registered with open_clip with a different "
            "content: rename the JSON file(s)."
        )
    if not set(configs) <= known:
        open_clip.add_model_config(config_dir)
    return tuple(configs)


def list_models() -> list[str]:
    """Names of all model configs ``create_clip`` accepts (open_clip's and this package's)."""
    return open_clip.list_models()


def _check_model_name(model_name: str) -> None:
    if ":" in model_name:
        raise ValueError(
            f"model_name={model_name!r} uses an open_clip schema ('hf-hub:', 'local-dir:'); monai-cxrcml never "
            "downloads and takes weights only from a local file: pass a registered config name (e.g. "
            "'ViT-B-32-quickgelu') and checkpoint='/path/to/weights.pt'."
        )
    if model_name not in open_clip.list_models():
        ours = [n for n in open_clip.list_models() if n.startswith("cxrcml-")]
        raise ValueError(
            f"model_name={model_name!r} is not a registered open_clip config. Use 'ViT-B-32-quickgelu' for OpenAI/"
            f"CheXzero weights, 'ViT-B-32' for GELU-trained weights, or a tiny config {ours}; "
            "monai_cxrcml.networks.list_models() lists all."
        )
    text_cfg = open_clip.get_model_config(model_name).get("text_cfg", {})
    if "hf_model_name" in text_cfg or "hf_tokenizer_name" in text_cfg or "siglip" in model_name.lower():
        raise ValueError(
            f"model_name={model_name!r} needs Hugging Face model or tokenizer files, which monai-cxrcml does not "
            "download: use an open_clip config with the built-in CLIP tokenizer (e.g. 'ViT-B-32-quickgelu')."
        )


def _check_not_a_tag(model_name: str, checkpoint: str | os.PathLike) -> None:
    path = Path(checkpoint).expanduser()
    tag_like = str(checkpoint) in open_clip.list_pretrained_tags_by_model(model_name) or (
        os.sep not in str(checkpoint) and path.suffix == ""
    )
    if tag_like and not path.is_file():
        raise ValueError(
            f"checkpoint={str(checkpoint)!r} is not a file: it looks like an open_clip pretrained tag. monai-cxrcml "
            "never downloads weights; download them yourself (e.g. the CheXzero state_dict) and pass the local file "
            "path as checkpoint."
        )


class _DropRandomInitNotice(logging.Filter):
    """Drops open_clip's "No pretrained weights loaded" notice when create_clip loads a checkpoint next."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")


def create_clip(
    model_name: str = "ViT-B-32",
    checkpoint: str | os.PathLike | Mapping[str, torch.Tensor] | None = None,
    strict: bool = True,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    allow_torchscript: bool = False,
    **model_kwargs,
) -> open_clip.CLIP:
    """Create an open_clip CLIP from a registered config, optionally with weights from a local checkpoint.

    Nothing is downloaded: ``checkpoint`` must be a local file (see :func:`load_clip_checkpoint` for the formats),
    and open_clip's image/text tower pre-training downloads are switched off.

    Parameters
    ----------
    model_name
        open_clip config name. ``"ViT-B-32-quickgelu"`` for OpenAI and CheXzero weights (trained with QuickGELU;
        loading them into ``"ViT-B-32"`` warns), ``"ViT-B-32"`` for GELU-trained weights, ``"cxrcml-tiny"``
        (64 px) or ``"cxrcml-tiny-96"`` (96 px) for tests and the demo.
    checkpoint
        Local checkpoint file, a state_dict already in memory (loaded strictly as given), or None for random
        initialisation.
    strict
        Require the checkpoint to cover exactly the model's parameters (a :class:`CheckpointError` lists the
        differences). With False, missing, unexpected and shape-mismatched keys are logged and skipped.
    device
        Device the model is moved to after loading.
    precision
        open_clip precision: ``"fp32"``, ``"fp16"``/``"bf16"`` (weights in low precision, LayerNorm in fp32),
        ``"pure_fp16"``/``"pure_bf16"``.
    allow_torchscript
        Accept a TorchScript archive (OpenAI's original JIT ``ViT-B-32.pt``); see :func:`load_clip_checkpoint`.
    model_kwargs
        Passed to open_clip's ``create_model`` (e.g. ``force_image_size=320``, ``force_quick_gelu=True``).

    Returns
    -------
    open_clip.CLIP
        The model in training mode. The :class:`LoadReport` of the checkpoint is logged (INFO when complete).

    Raises
    ------
    ValueError
        For an unknown or downloading model name, a pretrained tag instead of a file, or an unknown precision.
    FileNotFoundError
        When ``checkpoint`` is not a file.
    CheckpointError
        When the checkpoint is refused, unreadable or (with ``strict``) does not match the model.
    """
    _check_model_name(model_name)
    if precision not in _PRECISIONS:
        raise ValueError(f"precision={precision!r} is not one of {_PRECISIONS}.")
    if checkpoint is not None and not isinstance(checkpoint, Mapping):
        _check_not_a_tag(model_name, checkpoint)
    forbidden = {"pretrained", "pretrained_image", "pretrained_text", "cache_dir"} & set(model_kwargs)
    if forbidden:
        raise ValueError(
            f"{sorted(forbidden)} cannot be passed to create_clip: weights come only from checkpoint=<local file>."
        )
    root, notice = logging.getLogger(), _DropRandomInitNotice()
    if checkpoint is not None:  # weights follow, so open_clip's "initialized randomly" notice would be wrong
        root.addFilter(notice)
    try:
        model = open_clip.create_model(
            model_name,
            pretrained=None,
            precision=precision,
            device="cpu",
            pretrained_image=False,
            pretrained_text=False,
            **model_kwargs,
        )
    finally:
        root.removeFilter(notice)
    if isinstance(checkpoint, Mapping):
        model.load_state_dict(checkpoint, strict=strict)
    elif checkpoint is not None:
        load_clip_checkpoint(model, checkpoint, strict=strict, allow_torchscript=allow_torchscript)
    return model.to(device)


def unwrap_parallel(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a ``DataParallel`` / ``DistributedDataParallel`` wrapper (the model itself otherwise)."""
    parallel = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    return model.module if isinstance(model, parallel) else model


def get_tokenizer(model_name: str = "ViT-B-32", context_length: int | None = None):
    """The tokenizer of a registered config (never downloads: schema names are refused).

    Returns
    -------
    Callable[[str | list[str]], torch.LongTensor]
        Maps texts to token ids ``[N, context_length]``.
    """
    _check_model_name(model_name)
    return open_clip.get_tokenizer(model_name, context_length=context_length)


register_model_configs()
