"""Read local checkpoint files of every common layout into plain state_dicts, safely (``weights_only``).

Accepted layouts: a plain state_dict with OpenAI CLIP key names (CheXzero); the same under a wrapper key
(:data:`WRAPPER_KEYS`, nested included); keys prefixed ``module.`` or ``_orig_mod.``; ``.safetensors`` files;
TorchScript archives (OpenAI's original JIT files) only with ``allow_torchscript=True``. A pickle that needs Python
objects is refused with instructions to re-save it as a plain state_dict.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from monai.utils import optional_import

__all__ = [
    "OPENAI_LAYOUT_KEYS",
    "PREFIXES",
    "WRAPPER_KEYS",
    "CheckpointError",
    "checkpoint_architecture",
    "is_openai_layout",
    "read_checkpoint",
    "read_state_dict",
]

WRAPPER_KEYS: tuple[str, ...] = ("state_dict", "model", "network", "model_state_dict")
"""Keys under which checkpoints commonly hold the model's state_dict, tried in this order."""

PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")
"""Key prefixes added by DataParallel/DistributedDataParallel and torch.compile, removed when every key has one."""

class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be loaded into the model; the message names the file and the fix."""


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
