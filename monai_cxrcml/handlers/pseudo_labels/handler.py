"""Pseudo-labels for CXR-CML's metric loss: cluster the training image embeddings on a schedule, publish by sample id.

Any estimator with scikit-learn's API and ``predict_proba`` (``StudentTMixture`` for the paper) is refit on the
memory bank at the end of each epoch, every ``refit_interval`` iterations, or on each batch (``schedule``); refits
use the handler's own clone of it, and may run in the background (``overlap_iterations``). Published on
``engine.state``: ``pseudo_labels`` (long ``[N]``, -1 = none), ``responsibilities`` (float ``[N, K]`` or None) and
``metric_loss_scale`` (float in [0, 1]); each refit's diagnostics go to the log and to ``engine.state.metrics`` as
``mixture_*``. Why each choice: docs/design.md, "Pseudo-labels: when the mixture is refit".
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents
from sklearn.base import clone

from monai_cxrcml.distributed import is_main_process

from .background import BackgroundRefit
from .diagnostics import ClusterDiagnostics, describe
from .embedding_bank import EmbeddingBank
from .refit import ComponentSelection, Refit, fit_responsibilities, hard_labels, share_refit

__all__ = ["PseudoLabelHandler", "SCHEDULES"]

SCHEDULES = ("epoch", "iteration", "batch")
_ESTIMATOR_API = ("fit", "predict_proba", "get_params", "set_params")


class PseudoLabelHandler:
    """Memory bank of image embeddings, scheduled refits of a clustering estimator and pseudo-labels by sample id.

    Parameters
    ----------
    num_samples
        Number of training films N; sample ids in the batches run over 0..N-1.
    estimator
        The clustering estimator, never changed: refits use a clone (``sklearn.base.clone``) configured with
        ``set_params``. It needs ``fit``, ``predict_proba`` (``[n, K]``, tensor or array), ``get_params`` and
        ``set_params``, e.g. ``StudentTMixture(n_components=40, dof=4.0)``, its ``GaussianMixture`` limit, or
        scikit-learn's mixtures; ``state_dict``/``load_state_dict`` where present put its fit into checkpoints.
    schedule
        ``"epoch"``, ``"iteration"`` or ``"batch"``.
    refit_interval
        Iterations between refits under ``schedule="iteration"``.
    warmup_epochs
        Epochs trained before the first fit (the metric loss is zero during them).
    ramp_epochs
        Epochs over which ``metric_loss_scale`` rises linearly from 0 to 1 after the first fit (0 = a step).
    warm_start
        Start each refit from the previous fit's parameters (sets the clone's ``warm_start``, which the estimator
        must have) instead of afresh.
    overlap_iterations
        Iterations that go on with the previous pseudo-labels while a bank refit runs in the background; 0 fits
        synchronously. Ignored by the ``"batch"`` schedule.
    features_key, id_key
        Keys of the image embeddings [B, D] in ``engine.state.output`` and of their sample ids [B] in
        ``engine.state.output`` (the global batch's under DDP) or, failing that, in ``engine.state.batch``.
    reference_labels
        Optional true labels [N, C] of the training films, only for the AMI diagnostics.
    min_fit_fraction
        Share of the bank that must hold embeddings before a bank refit runs.
    component_selection
        None keeps the estimator's ``n_components``; ``"bic"`` or ``"heldout"`` chooses K among
        ``component_candidates`` at the first bank fit and keeps it for the rest of the run.
    component_candidates
        Values of K tried by ``component_selection``.
    logger_name
        Logger for the per-fit diagnostics.

    Attributes
    ----------
    estimator_
        The handler's clone of ``estimator``: what is refit, checkpointed and, after a fit, predicts.
    bank
        The :class:`~monai_cxrcml.handlers.pseudo_labels.embedding_bank.EmbeddingBank`.
    pseudo_labels, responsibilities
        Long ``[N]`` (-1 = none) and float ``[N, K]``; None before the first fit.
    first_fit_epoch, n_fits, last_diagnostics
        Epoch of the first fit (None before it), fits so far, diagnostics of the last one.
    """

    def __init__(
        self,
        num_samples: int,
        estimator: Any,
        schedule: str = "epoch",
        refit_interval: int = 100,
        warmup_epochs: int = 0,
        ramp_epochs: int = 0,
        warm_start: bool = False,
        overlap_iterations: int = 0,
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
        if component_selection is not None and schedule == "batch":
            raise ValueError("component_selection needs the memory bank: use schedule='epoch' or 'iteration'.")
        if schedule == "iteration" and refit_interval < 1:
            raise ValueError(f"refit_interval={refit_interval} must be >= 1 with schedule='iteration'.")
        if overlap_iterations < 0:
            raise ValueError(f"overlap_iterations={overlap_iterations} must be >= 0.")
        self.bank = EmbeddingBank(num_samples)
        self.selection = None if component_selection is None else ComponentSelection(
            component_selection, tuple(component_candidates))
        self.estimator = estimator
        self.estimator_ = _configured_clone(estimator, warm_start, self.selection is not None)
        self.num_samples = num_samples
        self.schedule = schedule
        self.refit_interval = refit_interval
        self.warmup_epochs = warmup_epochs
        self.ramp_epochs = ramp_epochs
        self.warm_start = warm_start
        self.overlap_iterations = overlap_iterations if schedule != "batch" else 0
        self.features_key = features_key
        self.id_key = id_key
        self.diagnostics = ClusterDiagnostics(reference_labels)
        self.min_fit_fraction = min_fit_fraction
        self.logger = logging.getLogger(logger_name)
        self.background = BackgroundRefit()
        self.pseudo_labels: torch.Tensor | None = None
        self.responsibilities: torch.Tensor | None = None
        self.first_fit_epoch: int | None = None
        self.n_fits = 0
        self.last_diagnostics: dict[str, float] = {}
        self._refit_at_start = False

    def labels(self) -> torch.Tensor | None:
        """The current pseudo-labels, long ``[N]`` (-1 = none), or None before the first fit (a sampler's source)."""
        return self.pseudo_labels

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._on_started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._publish)
        engine.add_event_handler(IterationEvents.FORWARD_COMPLETED, self._on_forward)
        if self.schedule == "epoch":
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.refit_bank)
        elif self.schedule == "iteration":
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.refit_interval), self.refit_bank)
        if self.overlap_iterations:
            engine.add_event_handler(Events.ITERATION_STARTED, self._finish_when_due)
        engine.add_event_handler(Events.COMPLETED, self.finish_pending)

    # ----------------------------------------------------------------------------------------------- events
    def _on_started(self, engine: Engine) -> None:
        if self._refit_at_start:  # resumed from a checkpoint written while a background refit was running
            self._refit_at_start = False
            self._fit_now(engine, *self.bank.snapshot(), logging.INFO)
        self._publish(engine)

    def _on_forward(self, engine: Engine) -> None:
        features = engine.state.output[self.features_key].detach().float()
        batch_ids = engine.state.batch.get(self.id_key) if isinstance(engine.state.batch, Mapping) else None
        if batch_ids is not None:  # this rank's ids, usually still on the host: checked without a device sync
            self.bank.check_ids(torch.as_tensor(batch_ids))
        ids = engine.state.output.get(self.id_key, batch_ids)
        if ids is None:
            raise KeyError(f"no sample ids under {self.id_key!r} in the engine's output or batch.")
        ids = torch.as_tensor(ids).to(features.device, non_blocking=True).long()
        if ids.shape[0] != features.shape[0]:
            raise ValueError(
                f"{ids.shape[0]} sample ids for {features.shape[0]} embeddings under {self.features_key!r}."
            )
        self.bank.store(features, ids)
        if self.schedule == "batch" and self._fitting_allowed(engine):
            self._fit_now(engine, features, ids, logging.DEBUG)

    def refit_bank(self, engine: Engine) -> None:
        """Refit on the bank's embeddings (when fitting is allowed and the bank is full enough), synchronously or in
        the background; a refit still running is published first."""
        self.finish_pending(engine)
        if self.bank.embeddings is None or not self._fitting_allowed(engine):
            return
        if self.bank.fill_fraction() < self.min_fit_fraction:
            return
        features, ids = self.bank.snapshot()
        if not self.overlap_iterations:
            self._fit_now(engine, features, ids, logging.INFO)
            return
        fit = functools.partial(self._refit, copy.deepcopy(self.estimator_)) if is_main_process() else None
        self.background.start(fit, features, ids, engine.state.epoch, engine.state.iteration + self.overlap_iterations)

    def _finish_when_due(self, engine: Engine) -> None:
        if self.background.pending is not None and engine.state.iteration > self.background.pending.due:
            self.finish_pending(engine)

    def finish_pending(self, engine: Engine) -> None:
        """Wait for a background refit (if one runs) and publish its pseudo-labels; a collective under DDP."""
        if self.background.pending is None:
            return
        pending, refit = self.background.wait()
        self._apply(engine, pending.ids, share_refit(refit, pending.ids.device), logging.INFO, pending.epoch)

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

    def _refit(self, estimator: Any, features: torch.Tensor, ids: torch.Tensor) -> Refit:
        """Fit ``estimator`` (the handler's own) to ``features`` [n, D], K chosen first at the first fit (rank 0)."""
        if self.selection is not None and self.n_fits == 0:
            self.selection.configure(estimator, features, self.logger)
        return fit_responsibilities(estimator, features, ids, self.diagnostics)

    def _fit_now(self, engine: Engine, features: torch.Tensor, ids: torch.Tensor, log_level: int) -> None:
        refit = self._refit(self.estimator_, features, ids) if is_main_process() else None
        self._apply(engine, ids, share_refit(refit, features.device), log_level, engine.state.epoch)

    def _apply(self, engine: Engine, ids: torch.Tensor, refit: Refit, log_level: int, epoch: int) -> None:
        """Pseudo-labels and responsibilities of ``ids`` from ``refit``; diagnostics to the log and the metrics."""
        if refit.estimator is not None:
            self.estimator_ = refit.estimator
        elif refit.n_components is not None:  # ranks other than 0: the K rank 0 fitted with
            self.estimator_.set_params(n_components=refit.n_components)
        proba = refit.proba
        width = max(proba.shape[1], refit.n_components or 0)
        if self.pseudo_labels is None:
            self.pseudo_labels = torch.full((self.num_samples,), -1, dtype=torch.long, device=proba.device)
        if self.responsibilities is None or self.responsibilities.shape[1] < width:
            wider = torch.zeros(self.num_samples, width, device=proba.device)
            if self.responsibilities is not None:
                wider[:, : self.responsibilities.shape[1]] = self.responsibilities
            self.responsibilities = wider
        self.pseudo_labels[ids] = hard_labels(proba)
        self.responsibilities[ids] = 0.0
        self.responsibilities[ids, : proba.shape[1]] = proba.to(self.responsibilities.dtype)
        if self.first_fit_epoch is None:
            self.first_fit_epoch = epoch
        self.n_fits += 1
        self.last_diagnostics = refit.diagnostics
        engine.state.metrics.update({f"mixture_{key}": value for key, value in refit.diagnostics.items()})
        self._publish(engine)
        if is_main_process() and self.logger.isEnabledFor(log_level):
            d = refit.diagnostics
            self.logger.log(log_level, "mixture fit %d (epoch %d, %d films): %s", self.n_fits, epoch, d["n_films"],
                            describe(d))

    # ------------------------------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        """Bank, pseudo-labels and the estimator's fitted state (``{}`` without ``state_dict``), for resuming.

        Written while a background refit runs, it holds the state before that refit and ``pending_fit=True``; a run
        resumed from it redoes the refit on the saved bank when it starts.
        """
        return {
            "pending_fit": self.background.pending is not None,
            "bank": self.bank.embeddings,
            "filled": self.bank.filled,
            "pseudo_labels": self.pseudo_labels,
            "responsibilities": self.responsibilities,
            "first_fit_epoch": self.first_fit_epoch,
            "n_fits": self.n_fits,
            "n_components": self.estimator_.get_params(deep=False).get("n_components"),
            "mixture": self.estimator_.state_dict() if hasattr(self.estimator_, "state_dict") else {},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.bank.embeddings, self.bank.filled = state["bank"], state["filled"]
        for key in ("pseudo_labels", "responsibilities", "first_fit_epoch", "n_fits"):
            setattr(self, key, state[key])
        if state["n_components"] is not None:
            self.estimator_.set_params(n_components=int(state["n_components"]))
        if state["mixture"]:
            self.estimator_.load_state_dict(state["mixture"])
        self._refit_at_start = bool(state.get("pending_fit", False))


def _configured_clone(estimator: Any, warm_start: bool, selects_components: bool) -> Any:
    """A clone of ``estimator`` with its ``warm_start`` set to the handler's (errors name what is missing)."""
    missing = [name for name in _ESTIMATOR_API if not callable(getattr(estimator, name, None))]
    if missing:
        raise TypeError(
            f"estimator {type(estimator).__name__} has no {', '.join(missing)}: the handler needs scikit-learn's "
            "estimator API with predict_proba (e.g. monai_cxrcml.mixture.StudentTMixture, or a class derived from "
            "sklearn.base.BaseEstimator)."
        )
    params = estimator.get_params(deep=False)
    if warm_start and "warm_start" not in params:
        raise ValueError(f"warm_start=True, but {type(estimator).__name__} has no warm_start parameter: pass "
                         "warm_start=False or an estimator that can start from its previous fit.")
    if selects_components and "n_components" not in params:
        raise ValueError(f"component_selection needs an n_components parameter, which {type(estimator).__name__} "
                         "lacks: pass component_selection=None.")
    configured = clone(estimator)
    return configured.set_params(warm_start=warm_start) if "warm_start" in params else configured
