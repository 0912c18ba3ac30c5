"""Triplet margin loss on mixture pseudo-labels (the metric term L_m of CXR-CML).

CXR-CML (Madhipati et al., arXiv 2507.19398) fits a Student-t mixture to the image embeddings and uses the cluster
assignments as pseudo-labels for a triplet loss ``max(d(a, p) - d(a, n) + margin, 0)`` with Euclidean distance d.
The paper gives neither the margin nor the mining; this module offers the common choices, equal to
pytorch-metric-learning's ``TripletMarginLoss`` with ``BatchHardMiner`` / ``TripletMarginMiner`` on the same data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

__all__ = ["PseudoLabelTripletLoss"]

_MINING = ("batch_hard", "semi_hard", "all")
_REDUCTIONS = ("mean", "mean_nonzero", "sum")


class PseudoLabelTripletLoss(_Loss):
    """Triplet margin loss on L2-normalised embeddings with (pseudo-)labels, vectorised over the batch.

    Distances are Euclidean between L2-normalised embeddings (so ``d^2 = 2 - 2 cos``), computed in float32.
    Samples labelled -1 (no pseudo-label yet) take no part, neither as anchor, positive nor negative. An anchor
    needs at least one positive (another sample of its label) and one negative (a sample of another label);
    anchors lacking either are skipped. When no valid triplet exists, the loss is a zero that still depends on
    ``embeddings`` (zero gradient), so DDP and AMP see the usual graph; the forward pass never synchronises with
    the host except to validate ``responsibilities``.

    Mining (triplets of an anchor a, positive p, negative n, l = relu(d(a, p) - d(a, n) + margin)):

    - ``"batch_hard"``: one triplet per anchor, its farthest positive and nearest negative (Hermans et al. 2017);
      ``TripletMarginLoss`` + ``BatchHardMiner`` in pytorch-metric-learning.
    - ``"semi_hard"``: all triplets with ``0 < d(a, n) - d(a, p) <= margin``;
      ``TripletMarginMiner(type_of_triplets="semihard")``. Memory O(B^3) (B=256: ~70 MB per tensor).
    - ``"all"``: all valid triplets. Memory O(B^3).

    Soft weighting (``soft=True``, needs ``responsibilities``): the paper motivates the Student-t mixture by soft
    cluster memberships, since a multi-label film may sit between clusters; hard pseudo-labels discard that. With
    responsibilities tau_i (rows of the mixture posterior, summing to 1), each triplet gets the weight

        w(a, p, n) = (tau_a . tau_p) * (1 - tau_a . tau_n),

    the probability, for independent draws z_i ~ Cat(tau_i), that a and p share a component and a and n do not,
    i.e. that the triplet's roles hold under the mixture's posterior. The triplets themselves are still chosen by
    the hard labels; one-hot responsibilities matching the labels give w = 1 and the hard loss. This weighting is
    ours: the paper gives no formula.

    Parameters
    ----------
    margin
        Triplet margin on distances between unit vectors (range [0, 2]). The paper gives none; 0.2 is the usual
        value for L2-normalised embeddings (FaceNet; pytorch-metric-learning's miner default).
    mining
        ``"batch_hard"``, ``"semi_hard"`` or ``"all"``.
    soft
        Weight triplets by responsibility agreement (see above).
    reduction
        ``"mean"``: weighted mean over the mined triplets (batch_hard: over anchors); ``"mean_nonzero"``: weighted
        mean over the triplets with a positive loss (pytorch-metric-learning's ``AvgNonZeroReducer``); ``"sum"``.
    """

    def __init__(
        self, margin: float = 0.2, mining: str = "batch_hard", soft: bool = False, reduction: str = "mean"
    ) -> None:
        if mining not in _MINING:
            raise ValueError(f"mining={mining!r} is not one of {_MINING}.")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction={reduction!r} is not one of {_REDUCTIONS}.")
        if not 0.0 <= float(margin) <= 2.0:
            raise ValueError(f"margin={margin} is outside [0, 2], the range of distances between unit vectors.")
        super().__init__(reduction=reduction)
        self.margin = float(margin)
        self.mining = mining
        self.soft = bool(soft)

    def _check(self, embeddings: torch.Tensor, labels: torch.Tensor, responsibilities: torch.Tensor | None) -> None:
        if embeddings.ndim != 2:
            raise ValueError(f"embeddings must be [B, D], got shape {tuple(embeddings.shape)}.")
        if labels.shape != embeddings.shape[:1] or labels.is_floating_point():
            raise ValueError(
                f"labels must be an integer tensor [B] = [{embeddings.shape[0]}] (-1 = no label), got "
                f"{labels.dtype} of shape {tuple(labels.shape)}."
            )
        if not self.soft:
            return
        if responsibilities is None:
            raise ValueError("soft=True needs responsibilities [B, K] (the mixture posterior of each sample).")
        if responsibilities.ndim != 2 or responsibilities.shape[0] != embeddings.shape[0]:
            raise ValueError(
                f"responsibilities must be [B, K] with B = {embeddings.shape[0]}, "
                f"got shape {tuple(responsibilities.shape)}."
            )
        tau = responsibilities[labels >= 0].float()
        if not bool((torch.isfinite(tau) & (tau >= 0)).all() & ((tau.sum(1) - 1).abs() <= 1e-2).all()):
            raise ValueError(
                "responsibilities of labelled samples must be finite, non-negative and sum to 1 per row: pass the "
                "mixture's predict_proba output for the same samples."
            )

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, responsibilities: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Triplet loss of a batch.

        Parameters
        ----------
        embeddings
            ``[B, D]`` embeddings (normalised here).
        labels
            ``[B]`` integer pseudo-labels, -1 for samples without one.
        responsibilities
            ``[B, K]`` mixture posterior per sample; used (and required) only with ``soft=True``. Rows of
            unlabelled samples are ignored.

        Returns
        -------
        torch.Tensor
            Scalar float32 loss.
        """
        self._check(embeddings, labels, responsibilities)
        x = F.normalize(embeddings.float(), dim=1)
        dist = (2.0 - 2.0 * (x @ x.t())).clamp_min(1e-12).sqrt()  # clamp keeps sqrt's gradient finite at 0
        labels = labels.to(x.device).long()
        valid = labels >= 0
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=x.device)
        pos = same & valid[:, None] & ~eye
        neg = ~same & valid[:, None] & valid[None, :]
        agree = None
        if self.soft:
            tau = torch.where(valid[:, None], responsibilities.detach().float().to(x.device), 0.0)
            agree = tau @ tau.t()  # agree[i, j] = P(z_i == z_j)

        if self.mining == "batch_hard":
            d_ap, p_idx = dist.masked_fill(~pos, float("-inf")).max(dim=1)
            d_an, n_idx = dist.masked_fill(~neg, float("inf")).min(dim=1)
            has = pos.any(dim=1) & neg.any(dim=1)
            d_ap, d_an = torch.where(has, d_ap, 0.0), torch.where(has, d_an, 0.0)
            losses = F.relu(d_ap - d_an + self.margin)
            weights = has.float()
            if agree is not None:
                a_p = agree.gather(1, p_idx[:, None])[:, 0]
                a_n = agree.gather(1, n_idx[:, None])[:, 0]
                weights = weights * a_p * (1.0 - a_n)
        else:
            gap = dist[:, None, :] - dist[:, :, None]  # [a, p, n] = d(a, n) - d(a, p)
            mask = pos[:, :, None] & neg[:, None, :]
            if self.mining == "semi_hard":
                mask = mask & (gap > 0) & (gap <= self.margin)
            losses = F.relu(self.margin - gap)
            weights = mask.float()
            if agree is not None:
                weights = weights * agree[:, :, None] * (1.0 - agree[:, None, :])

        total = (weights * losses).sum()
        if self.reduction == "sum":
            return total
        if self.reduction == "mean_nonzero":
            weights = weights * (losses > 0)
        norm = weights.sum()
        return total / torch.where(norm > 0, norm, torch.ones_like(norm))
