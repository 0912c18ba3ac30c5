"""A small VGG-style convolutional image tower for CLIP models trained from scratch on a CPU (the demo).

Why a convolutional tower for the demo, its timm registration and BatchNorm under DDP: docs/design.md,
"The convolutional image tower".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from timm.models import register_model
from torch import nn

__all__ = ["ChestConvNet", "cxrcml_convnet8", "cxrcml_convnet16"]


class ChestConvNet(nn.Module):
    """Stages of two 3x3 conv-BN-ReLU layers followed by 2x2 max pooling, then global average pooling.

    Parameters
    ----------
    widths
        Channels of each stage; each stage halves the resolution (4 stages: 64 px -> 4 x 4 before pooling).
    in_chans
        Input channels (3: films are grey repeated to RGB for CLIP).
    num_classes
        Width of a linear classifier after pooling; 0 leaves the pooled features ``[B, widths[-1]]``.
    global_pool
        ``"avg"`` (the only pooling; timm's interface passes it).

    Shapes
    ------
    ``[B, in_chans, H, W]`` -> ``[B, num_classes]`` (or ``[B, widths[-1]]`` with ``num_classes=0``).
    """

    def __init__(
        self, widths: Sequence[int] = (16, 32, 64, 128), in_chans: int = 3, num_classes: int = 0,
        global_pool: str = "avg", **kwargs: Any,
    ) -> None:
        super().__init__()
        # timm's create_model passes its pretrained-config arguments to every entrypoint; nothing is pretrained here
        unknown = set(kwargs) - {"pretrained_cfg", "pretrained_cfg_overlay", "pretrained", "cache_dir"}
        if unknown:
            raise TypeError(f"ChestConvNet got unexpected arguments {sorted(unknown)}.")
        self._check_pool(global_pool)
        layers: list[nn.Module] = []
        channels = in_chans
        for width in widths:
            for _ in range(2):
                layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True)]
                channels = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.num_features = int(widths[-1])
        self.default_cfg = {"pool_size": None}  # open_clip's TimmModel reads it; pooled output, no feature map
        self.pretrained_cfg = self.default_cfg
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _check_pool(global_pool: str) -> None:
        if global_pool != "avg":
            raise ValueError(f"ChestConvNet pools by average only (timm_pool: avg), got global_pool={global_pool!r}.")

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        """timm interface: replace the classifier (0 = pooled features)."""
        self._check_pool(global_pool)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


@register_model
def cxrcml_convnet8(pretrained: bool = False, **kwargs: Any) -> ChestConvNet:
    """ChestConvNet with widths 8-16-32-64 (80 k parameters; the tests' tower)."""
    return ChestConvNet(widths=(8, 16, 32, 64), **kwargs)


@register_model
def cxrcml_convnet16(pretrained: bool = False, **kwargs: Any) -> ChestConvNet:
    """ChestConvNet with widths 16-32-64-128 (0.29 M parameters; the demo's tower)."""
    return ChestConvNet(widths=(16, 32, 64, 128), **kwargs)
