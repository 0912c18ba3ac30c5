"""open_clip networks for CXR-CML: model factory (offline), checkpoint loading, class prompts, zero-shot classifier.

Importing this package registers the tiny model configs (``cxrcml-tiny``, ``cxrcml-tiny-96``, ``cxrcml-cnn``) with
open_clip and the demo's convolutional image tower (:class:`ChestConvNet`) with timm.
"""

from __future__ import annotations

from .checkpoint import LoadReport, load_clip_checkpoint
from .checkpoint_files import (
    CheckpointError,
    checkpoint_architecture,
    is_openai_layout,
    read_checkpoint,
    read_state_dict,
)
from .convnet import ChestConvNet
from .factory import (
    MODEL_CONFIG_DIR,
    create_clip,
    get_tokenizer,
    list_models,
    register_model_configs,
    unwrap_parallel,
)
from .prompts import NORMALITY_PHRASES, PROMPT_PRESETS, PromptSet, encode_class_prompts, encode_texts, read_prompts
from .zero_shot import ZeroShotClassifier

__all__ = [
    "CheckpointError",
    "ChestConvNet",
    "LoadReport",
    "MODEL_CONFIG_DIR",
    "NORMALITY_PHRASES",
    "PROMPT_PRESETS",
    "PromptSet",
    "ZeroShotClassifier",
    "checkpoint_architecture",
    "create_clip",
    "encode_class_prompts",
    "encode_texts",
    "get_tokenizer",
    "is_openai_layout",
    "list_models",
    "load_clip_checkpoint",
    "read_checkpoint",
    "read_prompts",
    "read_state_dict",
    "register_model_configs",
    "unwrap_parallel",
]
