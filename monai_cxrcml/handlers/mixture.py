"""Fit a Student-t mixture to the training image embeddings and publish its clusters as pseudo-labels.

The paper fits the mixture to the image embeddings and uses the assignments as pseudo-labels of a triplet
loss, but does not say when the mixture is refit nor how K = 40 clusters meet batches of 32. This handler makes
that a choice (``schedule``):

``"epoch"`` (default)
    A memory bank keeps the latest embedding of every training film (written as batches pass); at the end of
    each epoch the mixture is refit on the bank, warm-started from the previous fit, and every film gets the
    pseudo-label of its bank embedding for the next epoch. One fit per epoch costs a few seconds on a GPU for
    200k films and sees all the data, so rare findings can form their own clusters.
``"iteration"``
    The same on the bank every ``refit_interval`` iterations: fresher labels, more fits.
``"batch"``
    A fit on each batch before its loss is computed, as the authors' code does; clusters then exist only
    within the batch (K is cut to what the batch supports, see :class:`~monai_cxrcml.mixture.StudentTMixture`).

Before the first fit no film has a pseudo-label and the metric loss is zero. ``warmup_epochs`` delays the
first fit further and ``ramp_epochs`` raises the metric-loss scale linearly from 0 to 1 after it (FACTS:
clusters of an untrained encoder are noise, and an early metric term held the contrastive loss on its plateau).

Published on ``engine.state`` for the trainer's loss:
``pseudo_labels`` (long [N], -1 = none), ``responsibilities`` (float [N, K] or None) and
``metric_loss_scale`` (float in [0, 1]). Diagnostics of each fit (cluster sizes, assignment entropy, nu,
log-likelihood, fit time and, where true labels are given, the adjusted mutual information between clusters
and the films' finding combinations) go to the log and to ``engine.state.metrics`` as ``mixture_*`` so
``StatsHandler`` and ``TensorBoardStatsHandler`` record them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents
from sklearn.metrics import adjusted_mutual_info_score

from monai_cxrcml.mixture import StudentTMixture
from monai_cxrcml.mixture.selection import SELECTION_CRITERIA, select_n_components

__all__ = ["StudentTMixtureHandler", "SCHEDULES"]

SCHEDULES = ("epoch", "iteration", "batch")


class StudentTMixtureHandler:
    """Memory bank of image embeddings, scheduled mixture refits and pseudo-labels by sample id.

    Parameters
    ----------
    num_samples
        Number of training films N; sample ids in the batches run over 0..N-1.
    mixture
        The estimator (e.g. ``StudentTMixture(n_components=40, dof=4.0)`` or its ``GaussianMixture`` limit). It
        is switched to warm start after the first fit.
    schedule
        ``"epoch"``, ``"iteration"`` or ``"batch"`` (see the module docstring).
    refit_interval
        Iterations between refits under ``schedule="iteration"``.
    warmup_epochs
        Epochs trained before the first fit (the metric loss is zero during them).
    ramp_epochs
        Epochs over which ``metric_loss_scale`` rises linearly from 0 to 1 after the first fit (0 = a step).
    features_key, id_key
        Keys of the image embeddings [B, D] in ``engine.state.output`` and of the sample ids [B] in
        ``engine.state.batch``.
    reference_labels
        Optional true labels [N, C] of the training films, only for the AMI diagnostic.
    min_fit_fraction
        Share of the bank that must hold embeddings before a bank refit runs.
    component_selection
        None keeps the mixture's ``n_components``; ``"bic"`` or ``"heldout"`` chooses K among
        ``component_candidates`` at the first bank fit (:func:`~monai_cxrcml.mixture.selection.select_n_components`)
        and keeps it for the rest of the run.
    component_candidates
        Values of K tried by ``component_selection``.
    logger_name
        Logger for the per-fit diagnostics.
    """

    def __init__(
        self,
        num_samples: int,
        mixture: StudentTMixture,
        schedule: str = "epoch",
        refit_interval: int = 100,
        warmup_epochs: int = 0,
        ramp_epochs: int = 0,
        features_key: str = "image_features",
        id_key: str = "sample_id",
        reference_labels: np.ndarray | None = None,
        min_fit_fraction: float = 0.5,
        component_selection: str | None = None,
        component_candidates: tuple[int, ...] = (10, 20, 40, 80),
        logger_name: str = "monai_cxrcml",
    ) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule={schedule!r} is not one of {SCHEDULES}.")
        if num_samples < 1:
            raise ValueError(f"num_samples={num_samples}: the training set is empty.")
        if component_selection not in (None, *SELECTION_CRITERIA):
            raise ValueError(f"component_selection={component_selection!r} is not one of None, {SELECTION_CRITERIA}.")
        if component_selection is not None and schedule == "batch":
            raise ValueError("component_selection needs the memory bank: use schedule='epoch' or 'iteration'.")
        if schedule == "iteration" and refit_interval < 1:
            raise ValueError(f"refit_interval={refit_interval} must be >= 1 with schedule='iteration'.")
        self.num_samples = num_samples
        self.mixture = mixture
        self.schedule = schedule
        self.refit_interval = refit_interval
        self.warmup_epochs = warmup_epochs
        self.ramp_epochs = ramp_epochs
        self.features_key = features_key
        self.id_key = id_key
        self.reference_labels = None if reference_labels is None else _label_combinations(reference_labels)
        self.min_fit_fraction = min_fit_fraction
        self.component_selection = component_selection
        self.component_candidates = tuple(component_candidates)
        self.logger = logging.getLogger(logger_name)
        self.bank: torch.Tensor | None = None  # [N, D]
        self.filled: torch.Tensor | None = None  # [N] bool
        self.pseudo_labels: torch.Tensor | None = None  # [N] long
        self.responsibilities: torch.Tensor | None = None  # [N, K]
        self.first_fit_epoch: int | None = None
        self.n_fits = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._publish)
        engine.add_event_handler(Events.EPOCH_STARTED, self._publish)
        engine.add_event_handler(IterationEvents.FORWARD_COMPLETED, self._on_forward)
        if self.schedule == "epoch":
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._refit_bank)
        elif self.schedule == "iteration":
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.refit_interval), self._refit_bank)

    # ----------------------------------------------------------------------------------------------- events
    def _on_forward(self, engine: Engine) -> None:
        features = engine.state.output[self.features_key].detach().float()
        ids = torch.as_tensor(engine.state.batch[self.id_key], device=features.device).long()
        self._store(features, ids)
        if self.schedule == "batch" and self._fitting_allowed(engine):
            self._fit(engine, features, ids, log_level=logging.DEBUG)

    def _refit_bank(self, engine: Engine) -> None:
        if self.bank is None or not self._fitting_allowed(engine):
            return
        if self.filled.float().mean().item() < self.min_fit_fraction:
            return
        ids = torch.nonzero(self.filled).squeeze(1)
        if self.component_selection is not None and self.n_fits == 0:
            self._select_components(self.bank[ids])
        self._fit(engine, self.bank[ids], ids, log_level=logging.INFO)

    def _publish(self, engine: Engine) -> None:
        engine.state.pseudo_labels = self.pseudo_labels
        engine.state.responsibilities = self.responsibilities
        engine.state.metric_loss_scale = self._scale(engine)

    # -------------------------------------------------------------------------------------------- internals
    def _fitting_allowed(self, engine: Engine) -> bool:
        return engine.state.epoch > self.warmup_epochs

    def _scale(self, engine: Engine) -> float:
        if self.first_fit_epoch is None:
            return 0.0
        if self.ramp_epochs <= 0:
            return 1.0
        return float(min(1.0, (engine.state.epoch - self.first_fit_epoch) / self.ramp_epochs))

    def _select_components(self, features: torch.Tensor) -> None:
        best, scores = select_n_components(features, self.mixture, self.component_candidates,
                                           self.component_selection)
        self.mixture.n_components = best
        self.logger.info("mixture: K = %d chosen by %s among %s", best, self.component_selection,
                         ", ".join(f"{k}: {v:.4g}" for k, v in scores.items()))

    def _store(self, features: torch.Tensor, ids: torch.Tensor) -> None:
        if self.bank is None:
            self.bank = torch.zeros(self.num_samples, features.shape[1], device=features.device)
            self.filled = torch.zeros(self.num_samples, dtype=torch.bool, device=features.device)
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.num_samples):
            raise IndexError(
                f"sample ids {ids.min().item()}..{ids.max().item()} fall outside 0..{self.num_samples - 1}: "
                "num_samples must be the length of the training datalist whose 'sample_id' the batches carry."
            )
        self.bank[ids] = features
        self.filled[ids] = True

    def _fit(self, engine: Engine, features: torch.Tensor, ids: torch.Tensor, log_level: int) -> None:
        start = time.perf_counter()
        self.mixture.fit(features)
        proba = self.mixture.predict_proba(features)
        self.mixture.warm_start = True
        seconds = time.perf_counter() - start
        k = self.mixture.n_components
        if self.pseudo_labels is None:
            self.pseudo_labels = torch.full((self.num_samples,), -1, dtype=torch.long, device=features.device)
            self.responsibilities = torch.zeros(self.num_samples, k, device=features.device)
        labels = _hard_labels(proba)
        self.pseudo_labels[ids] = labels
        self.responsibilities[ids] = 0.0
        self.responsibilities[ids, : proba.shape[1]] = proba.to(self.responsibilities.dtype)
        if self.first_fit_epoch is None:
            self.first_fit_epoch = engine.state.epoch
        self.n_fits += 1
        self.last_diagnostics = self._diagnostics(proba, labels, ids, seconds)
        engine.state.metrics.update({f"mixture_{key}": value for key, value in self.last_diagnostics.items()})
        self._publish(engine)
        if self.logger.isEnabledFor(log_level):
            d = self.last_diagnostics
            self.logger.log(
                log_level,
                "mixture fit %d (epoch %d, %d films): %d clusters used, sizes min/median/max %d/%d/%d, "
                "assignment entropy %.3f, nu %.2f, log-likelihood %.3f, %d EM iterations, %.2f s%s",
                self.n_fits, engine.state.epoch, d["n_films"], d["clusters_used"], d["size_min"], d["size_median"],
                d["size_max"], d["entropy"], d["dof_mean"], d["log_likelihood"], d["n_iter"], d["seconds"],
                f", AMI vs findings {d['ami']:.3f}" if "ami" in d else "",
            )

    def _diagnostics(
        self, proba: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor, seconds: float
    ) -> dict[str, float]:
        labels = labels.cpu().numpy()
        assigned = labels >= 0
        sizes = np.bincount(labels[assigned], minlength=proba.shape[1])
        used = sizes[sizes > 0]
        row_entropy = -(proba.clamp_min(1e-12).log() * proba).sum(dim=1)
        entropy = max(0.0, row_entropy[torch.from_numpy(assigned).to(proba.device)].mean().item())
        d = {
            "n_films": float(len(labels)),
            "clusters_used": float(len(used)),
            "size_min": float(used.min()),
            "size_median": float(np.median(used)),
            "size_max": float(used.max()),
            "entropy": entropy,
            "dof_mean": float(torch.as_tensor(self.mixture.dofs_).float().mean()),
            "log_likelihood": float(self.mixture.lower_bound_),
            "n_iter": float(self.mixture.n_iter_),
            "seconds": seconds,
        }
        if self.reference_labels is not None:
            reference = self.reference_labels[ids.cpu().numpy()]
            d["ami"] = float(adjusted_mutual_info_score(reference[assigned], labels[assigned]))
        return d

    # ------------------------------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        """Bank, pseudo-labels and the mixture's fitted parameters, for resuming a training run."""
        return {
            "bank": self.bank,
            "filled": self.filled,
            "pseudo_labels": self.pseudo_labels,
            "responsibilities": self.responsibilities,
            "first_fit_epoch": self.first_fit_epoch,
            "n_fits": self.n_fits,
            "n_components": self.mixture.n_components,
            "mixture": self.mixture.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key in ("bank", "filled", "pseudo_labels", "responsibilities", "first_fit_epoch", "n_fits"):
            setattr(self, key, state[key])
        self.mixture.n_components = int(state["n_components"])
        self.mixture.load_state_dict(state["mixture"])
        self.mixture.warm_start = self.n_fits > 0


def _hard_labels(proba: torch.Tensor) -> torch.Tensor:
    """Most responsible component of each row [N]; -1 for rows no component claims (non-finite embeddings)."""
    labels = proba.argmax(dim=1)
    return torch.where(proba.sum(dim=1) > 0, labels, torch.full_like(labels, -1))


def _label_combinations(labels: np.ndarray) -> np.ndarray:
    """One integer per distinct finding combination of the rows of a binary [N, C] matrix."""
    _, combination = np.unique(np.asarray(labels) > 0.5, axis=0, return_inverse=True)
    return combination.reshape(-1)
