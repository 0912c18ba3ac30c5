"""The CXR-CML training loss: CLIP contrastive loss plus a weighted metric loss on image pseudo-labels."""

from __future__ import annotations

import math

import torch
from open_clip import ClipLoss

from .triplet import PseudoLabelTripletLoss

__all__ = ["CXRCMLLoss"]


class CXRCMLLoss(torch.nn.Module):
    """``L = L_c + w * L_m``: open_clip's ``ClipLoss`` plus a triplet loss on mixture pseudo-labels.

    The paper (Madhipati et al., arXiv 2507.19398) uses equal weights (w = 1). ``metric_loss_weight`` can be changed
    between iterations (e.g. by a handler that ramps it up once the clusters mean something).

    Parameters
    ----------
    metric_loss
        The metric term L_m, or None for the contrastive loss alone (CheXzero + meta labels).
    metric_loss_weight
        w >= 0.
    clip_loss_kwargs
        Passed to ``open_clip.ClipLoss``: ``local_loss``, ``gather_with_grad``, ``cache_labels``, ``rank``,
        ``world_size`` (with ``world_size > 1`` the contrastive term gathers features across ranks; the metric term
        uses the local batch).
    """

    def __init__(
        self,
        metric_loss: PseudoLabelTripletLoss | None = None,
        metric_loss_weight: float = 1.0,
        **clip_loss_kwargs,
    ) -> None:
        super().__init__()
        self.contrastive_loss = ClipLoss(**clip_loss_kwargs)
        self.metric_loss = metric_loss
        self.metric_loss_weight = metric_loss_weight

    @property
    def metric_loss_weight(self) -> float:
        """Weight w of the metric term; settable at run time (finite, >= 0)."""
        return self._metric_loss_weight

    @metric_loss_weight.setter
    def metric_loss_weight(self, value: float) -> None:
        value = float(value)
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"metric_loss_weight must be finite and >= 0, got {value}.")
        self._metric_loss_weight = value

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        pseudo_labels: torch.Tensor | None = None,
        responsibilities: torch.Tensor | None = None,
        metric_scale: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        """Loss of a batch and its parts.

        Parameters
        ----------
        image_features, text_features
            ``[B, D]`` L2-normalised embeddings (open_clip ``CLIP.forward`` outputs).
        logit_scale
            The multiplier ``exp(model.logit_scale)`` (as ``CLIP.forward`` returns it), scalar.
        pseudo_labels
            ``[B]`` integer cluster labels of the images, -1 for none; None skips the metric term.
        responsibilities
            ``[B, K]`` mixture posterior, for a soft metric loss.
        metric_scale
            Factor in [0, 1] on w for this batch (the warm-up ramp of
            :class:`~monai_cxrcml.handlers.PseudoLabelHandler`).

        Returns
        -------
        dict[str, torch.Tensor]
            ``loss`` (``loss_contrastive + metric_scale * w * loss_metric``), ``loss_contrastive`` and ``loss_metric``
            (unweighted; a zero connected to ``image_features`` when the metric term is off, unlabelled or w = 0).
        """
        loss_contrastive = self.contrastive_loss(image_features, text_features, logit_scale)
        weight = self.metric_loss_weight * metric_scale
        if self.metric_loss is None or pseudo_labels is None or weight == 0:
            loss_metric = image_features.float().sum() * 0.0
        else:
            loss_metric = self.metric_loss(image_features, pseudo_labels, responsibilities)
        return {
            "loss": loss_contrastive + weight * loss_metric,
            "loss_contrastive": loss_contrastive,
            "loss_metric": loss_metric,
        }
