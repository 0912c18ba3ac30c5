"""Image-only zero-shot classifier: a CLIP image tower plus fixed class prompt embeddings -> class probabilities.

For class c with positive and negative prompt embeddings ``t+_c``, ``t-_c`` and an L2-normalised image embedding x,

    p_c = exp(s x.t+_c) / (exp(s x.t+_c) + exp(s x.t-_c)) = sigmoid(s (x.t+_c - x.t-_c) / T_c + b_c)

with s the model's learned logit scale (``exp(logit_scale)``) or a fixed scale (CheXzero's s = 1, which leaves every
p near 0.5, its issue #17: ranking is the same, probabilities are not), and T_c (temperature, default 1) and b_c
(bias, default 0) set by a later calibration step.

The module holds no text tower, so it is the bundle's ``network_def``: image ``[B, 3, S, S]`` in, probabilities
``[B, C]`` out, exportable with ``torch.jit.trace`` / ``torch.jit.script``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from monai_cxrcml.data.classes import resolve_class_names

from .factory import create_clip, get_tokenizer, unwrap_parallel
from .prompts import PromptSet, encode_class_prompts

__all__ = ["ZeroShotClassifier"]


class ZeroShotClassifier(nn.Module):
    """CLIP zero-shot multi-label classifier with positive/negative prompts per class.

    Parameters
    ----------
    model
        An open_clip config name (then ``checkpoint`` is loaded into a new model and only its image tower is kept)
        or an open_clip CLIP instance, possibly wrapped in (Distributed)DataParallel (its image tower is shared,
        not copied; see :meth:`from_clip`).
    class_names
        ``"cxrlt2024"`` (default, the 40 CXR-LT 2024 classes), ``"chexpert"`` or a list of class names.
    prompts
        Prompt preset name (see :data:`~monai_cxrcml.networks.PROMPT_PRESETS`), a :class:`PromptSet` or its config
        mapping.
    checkpoint
        Local checkpoint for a named model: CheXzero/OpenAI state_dict, open_clip checkpoint, or this project's
        training checkpoint (``{"model": clip_state_dict, ...}``). None keeps the random initialisation.
    tokenizer
        Tokenizer of ``model``; default ``get_tokenizer(model)`` for a name. Required with a model instance.
    strict
        Strict checkpoint loading (see :func:`load_clip_checkpoint`).
    allow_torchscript
        Accept a TorchScript checkpoint archive.
    device
        Device of a model created from a name.
    scale
        ``"model"``: the model's learned logit scale ``s = exp(logit_scale)``; a number: that fixed ``s`` (1.0 is
        CheXzero's raw cosines).

    Examples
    --------
    Bundle ``network_def``::

        {"_target_": "monai_cxrcml.networks.ZeroShotClassifier", "model": "@model_name",
         "checkpoint": "$@bundle_root + '/models/model.pt'", "prompts": "present_absent"}
    """

    __jit_ignored_attributes__ = ["prompts", "scale"]

    def __init__(
        self,
        model: str | nn.Module = "ViT-B-32-quickgelu",
        class_names: Sequence[str] | str | None = "cxrlt2024",
        prompts: str | PromptSet | Mapping = "present_absent",
        checkpoint: str | os.PathLike | None = None,
        tokenizer: Callable | None = None,
        strict: bool = True,
        allow_torchscript: bool = False,
        device: str | torch.device = "cpu",
        scale: str | float = "model",
    ) -> None:
        super().__init__()
        if scale != "model" and not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale={scale!r}: use 'model' (the learned logit scale) or a finite number > 0.")
        self.scale = scale
        if isinstance(model, str):
            tokenizer = tokenizer or get_tokenizer(model)
            model = create_clip(
                model, checkpoint=checkpoint, strict=strict, device=device, allow_torchscript=allow_torchscript
            )
        elif checkpoint is not None:
            raise ValueError("checkpoint applies to a model given by name; load it into the model instance first.")
        elif tokenizer is None:
            raise ValueError("pass the tokenizer of the model instance (monai_cxrcml.networks.get_tokenizer(name)).")
        model = unwrap_parallel(model)
        self.class_names: tuple[str, ...] = resolve_class_names(class_names)
        self.prompts = PromptSet.create(prompts)
        self.visual = model.visual
        image_size = getattr(model.visual, "image_size", None)
        self.image_size: tuple[int, int] | None = (
            None if image_size is None else tuple(image_size) if isinstance(image_size, Sequence) else (image_size,) * 2
        )
        num_classes = len(self.class_names)
        device = next(model.parameters()).device
        self.register_buffer("pos_embeddings", torch.zeros(0, device=device))
        self.register_buffer("neg_embeddings", torch.zeros(0, device=device))
        self.register_buffer("logit_scale", torch.ones((), device=device))
        self.register_buffer("temperature", torch.ones(num_classes, device=device))
        self.register_buffer("bias", torch.zeros(num_classes, device=device))
        self.encode_prompts(model, tokenizer)

    @classmethod
    def from_clip(
        cls,
        model: nn.Module,
        tokenizer: Callable,
        class_names: Sequence[str] | str | None = "cxrlt2024",
        prompts: str | PromptSet | Mapping = "present_absent",
        scale: str | float = "model",
    ) -> ZeroShotClassifier:
        """Classifier over an existing CLIP; shares ``model.visual`` (training updates are seen by the classifier).

        The prompt embeddings and logit scale are a snapshot: call :meth:`encode_prompts` after the text tower
        changed.
        """
        return cls(model, class_names=class_names, prompts=prompts, tokenizer=tokenizer, scale=scale)

    @property
    def num_classes(self) -> int:
        """Number of classes C."""
        return len(self.class_names)

    @torch.jit.ignore
    def encode_prompts(
        self, model: nn.Module, tokenizer: Callable, prompts: str | PromptSet | Mapping | None = None
    ) -> None:
        """(Re-)encode the class prompts with ``model``'s text tower and copy its logit scale.

        Parameters
        ----------
        model
            The CLIP whose image tower this classifier holds (its text tower may have been trained since).
        tokenizer
            The model's tokenizer.
        prompts
            New prompt set; default the current one.
        """
        model = unwrap_parallel(model)
        if prompts is not None:
            self.prompts = PromptSet.create(prompts)
        pos, neg = encode_class_prompts(model, tokenizer, self.class_names, self.prompts, device=self.bias.device)
        self.pos_embeddings = pos
        self.neg_embeddings = neg
        learned = model.logit_scale.detach().exp().float().reshape(()).to(self.bias.device)
        self.logit_scale = learned if self.scale == "model" else torch.full_like(learned, float(self.scale))

    @torch.jit.ignore
    def set_calibration(self, temperature: float | torch.Tensor = 1.0, bias: float | torch.Tensor = 0.0) -> None:
        """Set the temperature (> 0) and bias, each a scalar or one value per class ``[C]``."""
        temperature = torch.as_tensor(temperature, dtype=torch.float32, device=self.bias.device)
        bias = torch.as_tensor(bias, dtype=torch.float32, device=self.bias.device)
        for name, value in (("temperature", temperature), ("bias", bias)):
            if value.ndim > 1 or value.numel() not in (1, self.num_classes) or not bool(torch.isfinite(value).all()):
                raise ValueError(
                    f"{name} must be finite, a scalar or [{self.num_classes}] values; got shape {tuple(value.shape)}."
                )
        if not bool((temperature > 0).all()):
            raise ValueError("temperature must be > 0.")
        self.temperature.copy_(temperature.expand(self.num_classes))
        self.bias.copy_(bias.expand(self.num_classes))

    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """Uncalibrated logits ``s (cos(x, t+) - cos(x, t-))`` ``[B, C]`` (float32) of images ``[B, 3, S, S]``."""
        features = F.normalize(self.visual(image).float(), dim=-1)
        return self.logit_scale * (features @ (self.pos_embeddings - self.neg_embeddings).t())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[B, C]`` (float32) of images ``[B, 3, S, S]``."""
        return torch.sigmoid(self.logits(image) / self.temperature + self.bias)
