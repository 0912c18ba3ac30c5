"""One refit of the pseudo-label estimator: K chosen (first fit only), fit, responsibilities ``[n, K']`` and
diagnostics on rank 0, shared with every rank."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import torch

from monai_cxrcml.distributed import broadcast_object, broadcast_tensor, get_world_size
from monai_cxrcml.mixture.selection import SELECTION_CRITERIA, select_n_components

from .diagnostics import ClusterDiagnostics

__all__ = ["ComponentSelection", "Refit", "fit_responsibilities", "hard_labels", "share_refit"]


@dataclass
class Refit:
    """A refit's result.

    Attributes
    ----------
    proba
        Responsibilities ``[n, K']`` of the fitted rows (all zero for rows no component claims).
    diagnostics
        From :class:`~monai_cxrcml.handlers.pseudo_labels.diagnostics.ClusterDiagnostics`.
    n_components
        The estimator's ``n_components`` parameter (None when it has none).
    estimator
        The fitted estimator on rank 0; None on the other ranks.
    """

    proba: torch.Tensor
    diagnostics: dict[str, float]
    n_components: int | None
    estimator: Any | None


@dataclass
class ComponentSelection:
    """Choice of K among ``candidates`` by ``criterion`` (``"bic"`` or ``"heldout"``), see
    :func:`~monai_cxrcml.mixture.selection.select_n_components`."""

    criterion: str
    candidates: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.criterion not in SELECTION_CRITERIA:
            raise ValueError(f"component_selection={self.criterion!r} is not one of None, {SELECTION_CRITERIA}.")

    def configure(self, estimator: Any, features: torch.Tensor, logger: logging.Logger) -> None:
        """Set ``n_components`` of ``estimator`` (the handler's own copy) to the best K for ``features`` ``[n, D]``."""
        best, scores = select_n_components(features, estimator, self.candidates, self.criterion)
        estimator.set_params(n_components=best)
        logger.info("mixture: K = %d chosen by %s among %s", best, self.criterion,
                    ", ".join(f"{k}: {v:.4g}" for k, v in scores.items()))


def hard_labels(proba: torch.Tensor) -> torch.Tensor:
    """Most responsible component of each row ``[N]``; -1 for rows no component claims (non-finite embeddings)."""
    labels = proba.argmax(dim=1)
    return torch.where(proba.sum(dim=1) > 0, labels, torch.full_like(labels, -1))


def fit_responsibilities(
    estimator: Any, features: torch.Tensor, ids: torch.Tensor, diagnostics: ClusterDiagnostics
) -> Refit:
    """Fit ``estimator`` to ``features`` ``[n, D]`` of films ``ids`` ``[n]``; its responsibilities and diagnostics.

    ``predict_proba`` may return a tensor or an array; the responsibilities come back on ``features``' device.
    """
    start = time.perf_counter()
    estimator.fit(features)
    proba = torch.as_tensor(estimator.predict_proba(features), device=features.device)
    seconds = time.perf_counter() - start
    n_components = estimator.get_params(deep=False).get("n_components")
    return Refit(proba, diagnostics(estimator, proba, hard_labels(proba), ids, seconds), n_components, estimator)


def share_refit(refit: Refit | None, device: torch.device) -> Refit:
    """Rank 0's refit on every rank (``refit`` is None on the others; identity without a process group)."""
    if get_world_size() == 1:
        return refit
    meta = broadcast_object(None if refit is None else (refit.diagnostics, refit.n_components,
                                                        tuple(refit.proba.shape), refit.proba.dtype))
    proba = broadcast_tensor(None if refit is None else refit.proba, meta[2], meta[3], device)
    return Refit(proba, meta[0], meta[1], None if refit is None else refit.estimator)
