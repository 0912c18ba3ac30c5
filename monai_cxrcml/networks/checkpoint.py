"""Load local CLIP checkpoints of every common layout into an open_clip model, safely and with a readable report.

Accepted layouts (found automatically):

- a plain state_dict with OpenAI CLIP key names (CheXzero checkpoints, ``torch.save(model.state_dict())``),
  including the non-parameter entries OpenAI's JIT models carry (``input_resolution``, ``context_length``,
  ``vocab_size``), which are dropped;
- the same under a wrapper key: ``{"state_dict": ...}`` (open_clip training checkpoints), ``{"model": ...}``
  (this project's bundle and MONAI ``CheckpointSaver`` with ``save_dict={"model": net, ...}``), ``{"network": ...}``
  or ``{"model_state_dict": ...}``, nested wrappers included;
- keys prefixed ``module.`` (DataParallel / DistributedDataParallel) or ``_orig_mod.`` (``torch.compile``);
- ``.safetensors`` files;
- TorchScript archives (OpenAI's original ``ViT-B-32.pt``) only with ``allow_torchscript=True``.

Every pickle is read with ``torch.load(..., weights_only=True)``: a checkpoint that needs arbitrary Python objects is
refused with instructions to re-save it as a plain state_dict.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
from monai.utils import optional_import
from open_clip.model import resize_pos_embed
from open_clip.transformer import QuickGELU

__all__ = [
    "OPENAI_LAYOUT_KEYS",
    "CheckpointError",
    "checkpoint_architecture",
    "LoadReport",
    "is_openai_layout",
    "load_clip_checkpoint",
    "read_checkpoint",
    "read_state_dict",
]

logger = logging.getLogger(__name__)

WRAPPER_KEYS: tuple[str, ...] = ("state_dict", "model", "network", "model_state_dict")
"""Keys under which checkpoints commonly hold the model's state_dict, tried in this order."""

PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")
"""Key prefixes added by DataParallel/DistributedDataParallel and torch.compile, removed when every key has one."""

OPENAI_EXTRA_KEYS: tuple[str, ...] = ("input_resolution", "context_length", "vocab_size")
"""Non-parameter entries of OpenAI's JIT CLIP state_dicts."""

# conv1 shapes of the ViTs OpenAI released (B/32, B/16, L/14): checkpoints with them are OpenAI-derived as a rule.
_OPENAI_VIT_CONV1 = {(768, 3, 32, 32), (768, 3, 16, 16), (1024, 3, 14, 14)}
_ARCH_KEYS = ("embed_dim", "vision_width", "vision_layers", "patch_size", "text_width", "text_layers")


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be loaded into the model; the message names the file and the fix."""


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


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") or name == "constants.pkl" for name in archive.namelist())


def _refused_message(path: Path, error: Exception) -> str:
    detail = next((line.strip() for line in str(error).splitlines() if "Unsupported global" in line), "")
    return (
        f"checkpoint {str(path)!r} was refused for safety: it contains pickled Python objects, not only tensors"
        + (f" ({detail})" if detail else "")
        + ", and unpickling them can run arbitrary code. monai-cxrcml reads checkpoints only with "
        "torch.load(weights_only=True). If you trust the file, re-save its weights once as a plain state_dict, e.g.\n"
        f"  python -c \"import torch; c = torch.load('{path}', map_location='cpu', weights_only=False); "
        "sd = c.state_dict() if hasattr(c, 'state_dict') else c.get('state_dict', c.get('model', c)); "
        "torch.save({k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}, 'clean.pt')\"\n"
        "and pass clean.pt."
    )


def _read(path: Path, allow_torchscript: bool) -> tuple[object, str]:
    """Read a checkpoint file; returns the loaded object and its source format."""
    if path.suffix == ".safetensors":
        safetensors_torch, has_safetensors = optional_import("safetensors.torch")
        if not has_safetensors:
            raise CheckpointError(f"checkpoint {str(path)!r} is a .safetensors file: `pip install safetensors`.")
        return safetensors_torch.load_file(str(path), device="cpu"), "safetensors"
    if _is_torchscript(path):
        if not allow_torchscript:
            raise CheckpointError(
                f"checkpoint {str(path)!r} is a TorchScript archive (like OpenAI's original JIT CLIP files). Loading "
                "one compiles and can run the code stored in it, so it is off by default. Either pass "
                "allow_torchscript=True (create_clip, load_clip_checkpoint, ZeroShotClassifier) for a file you trust, "
                "or convert it once to a plain state_dict:\n"
                f"  python -c \"import torch; torch.save(torch.jit.load('{path}', map_location='cpu').state_dict(), "
                "'clean.pt')\""
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notice
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict()), "torchscript"
    try:
        return torch.load(path, map_location="cpu", weights_only=True), "state_dict"
    except pickle.UnpicklingError as e:
        if "global" in str(e).lower():  # the pickle names a Python object to import: code, not tensors
            raise CheckpointError(_refused_message(path, e)) from None
        tail = str(e).split("WeightsUnpickler error:")[-1]
        detail = next((line.strip() for line in tail.splitlines() if line.strip()), "")
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a readable PyTorch checkpoint ({detail}): is the file complete, and "
            "is it a .pt/.pth/.bin or .safetensors file?"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint {str(path)!r} could not be read by torch.load ({type(e).__name__}: {e}). Is it a PyTorch "
            "checkpoint (.pt/.pth/.bin) or a .safetensors file, and was it copied completely?"
        ) from e


def _unwrap(obj: object, path: Path) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """Descend through wrapper keys until a mapping of tensors is found."""
    wrapper: list[str] = []
    while isinstance(obj, Mapping):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {str(k): v for k, v in obj.items()}, tuple(wrapper)
        key = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            break
        wrapper.append(key)
        obj = obj[key]
    found = f"a dict with keys {sorted(map(str, obj))[:12]}" if isinstance(obj, Mapping) else type(obj).__name__
    inside = f" (inside {wrapper})" if wrapper else ""
    raise CheckpointError(
        f"checkpoint {str(path)!r} holds {found}{inside}, not a state_dict: expected a mapping of parameter names "
        f"to tensors, directly or under one of the keys {list(WRAPPER_KEYS)}."
    )


def _strip_prefixes(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    stripped = ""
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            if state_dict and all(k.startswith(prefix) for k in state_dict):
                state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
                stripped += prefix
                changed = True
    return state_dict, stripped


def read_checkpoint(path: str | os.PathLike, allow_torchscript: bool = False) -> object:
    """Read a local checkpoint file as it was saved (a state_dict, or a dict of them such as a training checkpoint).

    Pickles are read with ``weights_only=True``; see the module docstring for the formats.

    Raises
    ------
    FileNotFoundError
        When ``path`` is not a file.
    CheckpointError
        For a refused (pickled code, TorchScript without ``allow_torchscript``) or unreadable file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist: pass the path of a local checkpoint.")
    return _read(path, allow_torchscript)[0]


def read_state_dict(path: str | os.PathLike, allow_torchscript: bool = False) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint file into a plain state_dict (CPU tensors), unwrapped and with prefixes removed.

    Returns
    -------
    tuple[dict[str, torch.Tensor], dict]
        The state_dict and ``{"source_format", "wrapper", "stripped_prefix"}`` describing what was found.

    Raises
    ------
    FileNotFoundError
        When ``path`` is not a file.
    CheckpointError
        For a refused (pickled code, TorchScript without ``allow_torchscript``), unreadable or non-state_dict file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist: pass the path of a local checkpoint.")
    obj, source_format = _read(path, allow_torchscript)
    state_dict, wrapper = _unwrap(obj, path)
    state_dict, stripped = _strip_prefixes(state_dict)
    return state_dict, {"source_format": source_format, "wrapper": wrapper, "stripped_prefix": stripped}


def checkpoint_architecture(state_dict: Mapping[str, torch.Tensor]) -> dict[str, int] | None:
    """Shape of a standard open_clip/OpenAI ViT CLIP read from its state_dict (None for other layouts)."""
    needed = ("visual.conv1.weight", "visual.positional_embedding", "ln_final.weight", "text_projection")
    if not all(k in state_dict for k in needed):
        return None

    def count(prefix: str) -> int:
        pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
        return len({m.group(1) for k in state_dict if (m := pattern.match(k))})

    conv1 = state_dict["visual.conv1.weight"]
    grid = math.isqrt(state_dict["visual.positional_embedding"].shape[0] - 1)
    return {
        "embed_dim": int(state_dict["text_projection"].shape[1]),
        "vision_width": int(conv1.shape[0]),
        "vision_layers": count("visual.transformer.resblocks."),
        "patch_size": int(conv1.shape[-1]),
        "image_size": int(conv1.shape[-1]) * grid,
        "text_width": int(state_dict["ln_final.weight"].shape[0]),
        "text_layers": count("transformer.resblocks."),
    }


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


OPENAI_LAYOUT_KEYS: tuple[str, ...] = ("visual.conv1.weight", "visual.proj", "text_projection",
                                       "token_embedding.weight")
"""Keys of a ViT CLIP state_dict in OpenAI's naming (also open_clip's), as CheXzero saves its weights."""


def is_openai_layout(state_dict: Mapping[str, torch.Tensor], found: Mapping[str, Any]) -> bool:
    """Whether a checkpoint (as :func:`read_state_dict` returns it) is a CLIP ViT saved as OpenAI and CheXzero save.

    True for a TorchScript archive, or a plain state_dict (no wrapper key, no ``module.`` prefix) holding
    :data:`OPENAI_LAYOUT_KEYS`; open_clip's and this project's training checkpoints are wrapped.
    """
    if found["source_format"] == "torchscript":
        return True
    return not (found["wrapper"] or found["stripped_prefix"]) and all(k in state_dict for k in OPENAI_LAYOUT_KEYS)


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
