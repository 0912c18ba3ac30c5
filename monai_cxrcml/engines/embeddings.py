"""Encode every film of a data loader with a CLIP image tower: embeddings plus the labels and ids they belong to."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from monai_cxrcml.networks import unwrap_parallel

__all__ = ["Embeddings", "encode_images"]


@dataclass
class Embeddings:
    """L2-normalised image embeddings of a data set.

    Attributes
    ----------
    features
        ``float32 [N, D]``.
    labels, label_mask
        ``float32 [N, C]`` when the batches carried ``label`` (and ``label_mask``), else None.
    subject_ids, dicom_ids
        ``[N]`` strings when the batches carried them, else None.
    """

    features: np.ndarray
    labels: np.ndarray | None = None
    label_mask: np.ndarray | None = None
    subject_ids: list[str] | None = None
    dicom_ids: list[str] | None = None


@torch.no_grad()
def encode_images(
    model: torch.nn.Module, data_loader: Iterable, device: str | torch.device = "cpu", amp: bool = False
) -> Embeddings:
    """Run the image tower of ``model`` (an open_clip CLIP, its DDP wrapper, or a bare image tower) over a loader.

    Parameters
    ----------
    model
        Has ``encode_image`` (CLIP) or maps images ``[B, 3, S, S]`` to ``[B, D]``.
    data_loader
        Yields dicts with ``image`` and optionally ``label``, ``label_mask``, ``subject_id``, ``dicom_id``;
        batches whose films were all skipped as unreadable (no ``image``) are passed over.
    device, amp
        Where to run, and bf16 autocast on CUDA.
    """
    model = unwrap_parallel(model)
    encode = model.encode_image if hasattr(model, "encode_image") else model
    was_training = model.training
    model.eval()
    device = torch.device(device)
    columns: dict[str, list] = {"features": [], "labels": [], "label_mask": [], "subject_ids": [], "dicom_ids": []}
    keys = {"labels": "label", "label_mask": "label_mask", "subject_ids": "subject_id", "dicom_ids": "dicom_id"}
    try:
        for batch in data_loader:
            if "image" not in batch:
                continue
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
                features = encode(torch.as_tensor(batch["image"]).to(device))
            columns["features"].append(F.normalize(features.float(), dim=-1).cpu().numpy())
            for name, key in keys.items():
                if key in batch:
                    value = batch[key]
                    ids = name.endswith("ids")
                    columns[name].append([str(v) for v in value] if ids
                                         else torch.as_tensor(value).float().cpu().numpy())
    finally:
        model.train(was_training)
    if not columns["features"]:
        raise ValueError("encode_images: the data loader yielded no film.")

    def stacked(name: str):
        parts = columns[name]
        if len(parts) != len(columns["features"]):
            return None
        return [s for part in parts for s in part] if name.endswith("ids") else np.concatenate(parts)

    return Embeddings(np.concatenate(columns["features"]), *(stacked(n) for n in keys))
