"""Load a local CLIP checkpoint into an open_clip model, strictly, with a readable report of what did not fit.

The file is read by :mod:`monai_cxrcml.networks.checkpoint_files` (every common layout, ``weights_only``); OpenAI's
non-parameter entries are dropped, a position embedding of another image size is interpolated, and a wrong model
name is answered with the registered configs of the checkpoint's shape.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
from open_clip.model import resize_pos_embed
from open_clip.transformer import QuickGELU

from .checkpoint_files import CheckpointError, checkpoint_architecture, read_state_dict

__all__ = ["LoadReport", "load_clip_checkpoint"]

logger = logging.getLogger(__name__)

OPENAI_EXTRA_KEYS: tuple[str, ...] = ("input_resolution", "context_length", "vocab_size")
"""Non-parameter entries of OpenAI's JIT CLIP state_dicts."""

# conv1 shapes of the ViTs OpenAI released (B/32, B/16, L/14): checkpoints with them are OpenAI-derived as a rule.
_OPENAI_VIT_CONV1 = {(768, 3, 32, 32), (768, 3, 16, 16), (1024, 3, 14, 14)}
_ARCH_KEYS = ("embed_dim", "vision_width", "vision_layers", "patch_size", "text_width", "text_layers")


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_clip_checkpoint` found and did.

    Attributes
    ----------
    missing
        Model keys the checkpoint lacks.
    unexpected
        Checkpoint keys the model lacks.
    source_format
        ``"state_dict"`` (torch pickle), ``"safetensors"`` or ``"torchscript"``.
    mismatched
        ``(key, checkpoint shape, model shape)`` for keys present in both with different shapes.
    path
        The checkpoint file.
    wrapper
        Wrapper keys descended into, outermost first (e.g. ``("model",)``).
    stripped_prefix
        Key prefix removed (``"module."``), or ``""``.
    dropped
        Entries that are not parameters of the model and were removed: OpenAI JIT extras (``input_resolution``,
        ``context_length``, ``vocab_size``) and buffers the model computes itself (``attn_mask``).
    resized
        Keys interpolated to the model's shape (the image position embedding at another image size).
    """

    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    source_format: str
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()
    path: str = ""
    wrapper: tuple[str, ...] = ()
    stripped_prefix: str = ""
    dropped: tuple[str, ...] = ()
    resized: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """True when every model parameter was loaded and nothing was left over."""
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        where = f"{self.source_format}" + (f" under {list(self.wrapper)}" if self.wrapper else "")
        done = [f"prefix {self.stripped_prefix!r} removed"] if self.stripped_prefix else []
        done += [f"dropped {list(self.dropped)}"] if self.dropped else []
        done += [f"resized {list(self.resized)}"] if self.resized else []
        lines = [f"checkpoint {self.path} ({', '.join([where, *done])})"]
        if self.missing:
            lines.append(f"  missing from the checkpoint ({len(self.missing)} keys):")
            lines += [f"    {g}" for g in _group_keys(self.missing)]
        if self.unexpected:
            lines.append(f"  unexpected in the checkpoint ({len(self.unexpected)} keys):")
            lines += [f"    {g}" for g in _group_keys(self.unexpected)]
        if self.mismatched:
            lines.append(f"  shape mismatch ({len(self.mismatched)} keys):")
            lines += [f"    {k}: checkpoint {list(c)} vs model {list(m)}" for k, c, m in self.mismatched]
        if self.complete:
            lines.append("  all keys loaded")
        return "\n".join(lines)


def _group_keys(keys: tuple[str, ...], max_lines: int = 12) -> list[str]:
    """Summarise keys by their first two components: ``visual.transformer.* (48 keys)``."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(".".join(key.split(".")[:2]), []).append(key)
    lines = [
        members[0] if len(members) == 1 else f"{prefix}.* ({len(members)} keys)" for prefix, members in groups.items()
    ]
    return lines if len(lines) <= max_lines else lines[:max_lines] + [f"... and {len(lines) - max_lines} more groups"]


def _matching_configs(arch: dict[str, int]) -> list[str]:
    """Registered open_clip configs whose tower shapes equal ``arch`` (image size ignored: it can be resized)."""
    names = []
    for name in open_clip.list_models():
        cfg = open_clip.get_model_config(name) or {}
        vision, text = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
        if "timm_model_name" in vision or "hf_model_name" in text or not isinstance(vision.get("layers"), int):
            continue
        shape = (
            cfg.get("embed_dim"),
            vision.get("width", 768),
            vision.get("layers"),
            vision.get("patch_size", 16),
            text.get("width", 512),
            text.get("layers", 12),
        )
        if shape == tuple(arch[k] for k in _ARCH_KEYS):
            names.append(name)
    return names


def _hint(report: LoadReport, state_dict: Mapping[str, torch.Tensor]) -> str:
    if report.mismatched or len(report.missing) + len(report.unexpected) > 4:
        arch = checkpoint_architecture(state_dict)
        if arch is None:
            return "The checkpoint is not a standard CLIP ViT state_dict: is it a CLIP checkpoint at all?"
        configs = _matching_configs(arch)
        desc = ", ".join(f"{k} {v}" for k, v in arch.items())
        return (
            f"Wrong model_name? The checkpoint is a ViT CLIP with {desc}"
            + (f"; configs of that shape: {configs[:8]}." if configs else "; no registered config has that shape.")
        )
    return "Pass strict=False to load the matching keys anyway."


def _uses_quick_gelu(model: torch.nn.Module) -> bool:
    return any(isinstance(m, QuickGELU) for m in model.modules())


def _check_finite(state_dict: Mapping[str, torch.Tensor], path: Path) -> None:
    bad = [k for k, v in state_dict.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has NaN or infinite values in {_group_keys(tuple(bad))}: the training that "
            "wrote it diverged or the file is corrupt; use an earlier checkpoint."
        )


def load_clip_checkpoint(
    model: torch.nn.Module, path: str | os.PathLike, strict: bool = True, allow_torchscript: bool = False
) -> LoadReport:
    """Load a local checkpoint into an open_clip model.

    Parameters
    ----------
    model
        open_clip ``CLIP`` (or any module whose state_dict keys the checkpoint uses).
    path
        Checkpoint file; the layouts accepted are listed in this module's docstring.
    strict
        Raise :class:`CheckpointError` with the report when any key is missing, unexpected or of another shape.
        With False those keys are skipped with a warning and the rest is loaded.
    allow_torchscript
        Accept TorchScript archives (OpenAI's original JIT files) via ``torch.jit.load`` on the CPU. Off by default:
        loading one compiles the code it carries.

    Returns
    -------
    LoadReport
        What was found, dropped, resized and loaded.

    Raises
    ------
    FileNotFoundError
        When ``path`` is not a file.
    CheckpointError
        For refused, unreadable, non-finite or (with ``strict``) non-matching checkpoints.

    Warns
    -----
    UserWarning
        When an unwrapped OpenAI-layout ViT state_dict (how CheXzero and OpenAI CLIP ship) goes into a model
        with GELU activations: those weights were trained with QuickGELU (use ``"ViT-B-32-quickgelu"``).
    """
    path = Path(path).expanduser()
    state_dict, found = read_state_dict(path, allow_torchscript=allow_torchscript)
    model_state = model.state_dict()

    computed = {name for name, _ in model.named_buffers()} - set(model_state)  # non-persistent (e.g. attn_mask)
    dropped = tuple(k for k in state_dict if k not in model_state and (k in OPENAI_EXTRA_KEYS or k in computed))
    for k in dropped:
        del state_dict[k]
    for key in ("logit_scale", "logit_bias"):  # scalar vs [1] parameter
        if key in state_dict and key in model_state and state_dict[key].numel() == model_state[key].numel():
            state_dict[key] = state_dict[key].reshape(model_state[key].shape)
    pos_key = "visual.positional_embedding"  # another image size: interpolate the grid (same width only)
    resized: tuple[str, ...] = ()
    if pos_key in state_dict and pos_key in model_state:
        old, new = state_dict[pos_key].shape, model_state[pos_key].shape
        if old[0] != new[0] and old[1:] == new[1:]:
            state_dict[pos_key] = state_dict[pos_key].float()
            resize_pos_embed(state_dict, model)
            resized = (pos_key,)

    report = LoadReport(
        missing=tuple(k for k in model_state if k not in state_dict),
        unexpected=tuple(k for k in state_dict if k not in model_state),
        source_format=found["source_format"],
        mismatched=tuple(
            (k, tuple(v.shape), tuple(model_state[k].shape))
            for k, v in state_dict.items()
            if k in model_state and v.shape != model_state[k].shape
        ),
        path=str(path),
        wrapper=found["wrapper"],
        stripped_prefix=found["stripped_prefix"],
        dropped=dropped,
        resized=resized,
    )
    conv1 = state_dict.get("visual.conv1.weight")
    openai_layout = report.source_format == "torchscript" or bool(dropped) or not report.wrapper
    openai_shape = conv1 is not None and tuple(conv1.shape) in _OPENAI_VIT_CONV1 and not report.mismatched
    if openai_layout and openai_shape and not _uses_quick_gelu(model):
        warnings.warn(
            f"{path}: an unwrapped OpenAI-layout ViT state_dict (how CheXzero and OpenAI CLIP ship) is loaded into a "
            "model with GELU activations. OpenAI and CheXzero weights were trained with QuickGELU, and GELU changes "
            "every embedding: create the model as 'ViT-B-32-quickgelu' (or pass force_quick_gelu=True). Ignore this "
            "if these weights were trained with GELU (e.g. LAION open_clip weights).",
            UserWarning,
            stacklevel=2,
        )
    if strict and not report.complete:
        raise CheckpointError(f"{report}\n{_hint(report, state_dict)}")

    skip = {k for k, _, _ in report.mismatched} | set(report.unexpected)
    loadable = {k: v for k, v in state_dict.items() if k not in skip}
    _check_finite(loadable, path)
    model.load_state_dict(loadable, strict=strict)
    if report.complete:
        logger.info("%s", report)
    else:
        logger.warning("%s\n%s", report, _hint(report, state_dict))
    return report
