"""A tiny CLIP, labelled in-memory batches and a trainer on them, for the engine and pseudo-label handler tests."""

from __future__ import annotations

import torch

from monai_cxrcml.engines import CXRCMLTrainer
from monai_cxrcml.losses import CXRCMLLoss, PseudoLabelTripletLoss
from monai_cxrcml.networks import create_clip, get_tokenizer

MODEL = "cxrcml-tiny"
CLASSES = ["Cardiomegaly", "Pleural Effusion", "Normal"]
N, B = 48, 16


def tiny_clip() -> torch.nn.Module:
    """The tiny CLIP, initialised with seed 0."""
    torch.manual_seed(0)
    return create_clip(MODEL)


def labelled_batches(n: int = N, batch: int = B, seed: int = 0) -> list[dict]:
    """Films whose brightness pattern follows their label, with matching meta-label captions."""
    gen = torch.Generator().manual_seed(seed)
    tokenizer = get_tokenizer(MODEL)
    labels = (torch.rand(n, len(CLASSES), generator=gen) < 0.4).float()
    images = torch.randn(n, 3, 64, 64, generator=gen) * 0.1
    for c in range(len(CLASSES)):
        images[labels[:, c] > 0, :, 20 * c : 20 * c + 16, :] += 1.0
    captions = [
        ", ".join(f"{name.lower()} is present" for name, y in zip(CLASSES, row) if y) or "no finding" for row in labels
    ]
    text = tokenizer(captions)
    return [
        {"image": images[i : i + batch], "text": text[i : i + batch], "sample_id": torch.arange(i, min(i + batch, n)),
         "label": labels[i : i + batch], "subject_id": [str(k) for k in range(i, min(i + batch, n))]}
        for i in range(0, n, batch)
    ]


def clip_trainer(model, handlers=(), loss=None, **kwargs) -> CXRCMLTrainer:
    """A CXR-CML trainer of ``model`` on :func:`labelled_batches` (2 epochs unless ``max_epochs`` is given)."""
    loss = loss or CXRCMLLoss(PseudoLabelTripletLoss(margin=0.2), metric_loss_weight=1.0)
    return CXRCMLTrainer(
        device="cpu",
        max_epochs=kwargs.pop("max_epochs", 2),
        train_data_loader=labelled_batches(),
        network=model,
        optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3),
        loss_function=loss,
        train_handlers=list(handlers),
        **kwargs,
    )
