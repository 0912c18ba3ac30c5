"""Fit a Student-t mixture to the training image embeddings and publish its clusters as pseudo-labels.

The paper fits the mixture to the image embeddings and uses the assignments as pseudo-labels of a triplet
loss, but does not say when the mixture is refit nor how K = 40 clusters meet batches of 32. This handler makes
that a choice (``schedule``):

``"epoch"`` (default)
    A memory bank keeps the latest embedding of every training film (written as batches pass); at the end of
    each epoch the mixture is refit on the bank and every film gets the pseudo-label of its bank embedding for the
    next epoch. One fit per epoch costs a few seconds on a GPU for
    200k films and sees all the data, so rare findings can form their own clusters.
``"iteration"``
    The same on the bank every ``refit_interval`` iterations: fresher labels, more fits.
``"batch"``
    A fit on each batch before its loss is computed, as the authors' code does; clusters then exist only
    within the batch (K is cut to what the batch supports, see :class:`~monai_cxrcml.mixture.StudentTMixture`).

Off the critical path (``overlap_iterations > 0``, bank schedules)
    A bank refit runs on a snapshot of the bank in a background thread (on a CUDA side stream when the bank is on
    the GPU) while training goes on: validation, checkpointing and the first ``overlap_iterations`` iterations that
    follow use the previous pseudo-labels, and the new ones are published before iteration ``t + overlap_iterations
    + 1`` (``t``: the iteration the refit started after), waiting for the fit only if it has not finished. The
    point of publication is an iteration count, not "whenever the thread is done", so a run is repeatable and every
    rank switches at the same iteration (a ``ClusterBalancedSampler`` built at the epoch start still sees the
    previous labels). It pays where the fit runs on a GPU beside training; on a few CPU cores the thread competes
    with training for them and slows epochs down (``benchmarks/bench_refit_share.py --loop``). ``0`` (default) fits
    synchronously at the refit point.
Distributed (torchrun)
    The :class:`~monai_cxrcml.engines.CXRCMLTrainer` hands this handler the global batch (every rank's embeddings
    and sample ids, in rank order), so the memory bank is written identically on every rank without communication
    of its own. Rank 0 alone fits the mixture and broadcasts the responsibilities (and the fit's diagnostics);
    every rank derives the same pseudo-labels from them. Fitting on every rank with the same seed would need
    bit-identical EM on every rank, which CUDA's atomic-add reductions and mixed GPU models do not promise, and
    ranks holding different pseudo-labels would train on different triplets; the broadcast (``[N, K]`` floats once
    per refit, 32 MB at N = 200k) costs far less than the fit, which the other ranks would otherwise repeat. The
    fitted estimator (for warm starts and checkpoints) lives on rank 0, which writes the checkpoints.

Each refit starts afresh from k-means by default (``warm_start=False``). Embeddings move and spread as the
encoder trains (on the phantom their total variance grows 100-fold over the first epochs), so a fit warm-started
from the previous epoch's covariances sees every film as an outlier of components that are far too narrow; EM
then ends in one component holding most films and one-point components for the rest (measured on the demo's
trained embeddings, full covariances: sizes 1/1/650 of 796 films, adjusted mutual information with the finding
combinations 0.046, against 8/18/59 and 0.350 from a fresh k-means start; BENCHMARKS.md, "Pseudo-labels"). Pseudo-labels only say which films
share a cluster within a batch, so the cluster numbering changing between refits does not matter.
``warm_start=True`` keeps the estimator's warm start (fewer EM iterations on a slowly moving, e.g. fine-tuned,
encoder).

Before the first fit no film has a pseudo-label and the metric loss is zero. ``warmup_epochs`` delays the
first fit further and ``ramp_epochs`` raises the metric-loss scale linearly from 0 to 1 after it (FACTS:
clusters of an untrained encoder are noise, and an early metric term held the contrastive loss on its plateau).
Both default to 0, the paper's setting: over 5 paired seeds of the demo, starting at epoch 20 of 40 with a 5-epoch
ramp and soft triplets raised rare-class AUC by +0.010 (p = 0.05, not significant after correcting for the nine
settings tried; BENCHMARKS.md, "The mixture and triplet term").

Published on ``engine.state`` for the trainer's loss:
``pseudo_labels`` (long [N], -1 = none), ``responsibilities`` (float [N, K] or None) and
``metric_loss_scale`` (float in [0, 1]). Diagnostics of each fit (cluster sizes, assignment entropy, nu,
log-likelihood, fit time and, where true labels are given, the adjusted mutual information between clusters
and the films' finding combinations, ``ami``, and its mean over the single findings, ``ami_findings``: near 0 for
clusters that ignore the findings) go to the log and to ``engine.state.metrics`` as ``mixture_*`` so
``StatsHandler`` and ``TensorBoardStatsHandler`` record them.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents
from sklearn.metrics import adjusted_mutual_info_score

from monai_cxrcml.distributed import broadcast_object, broadcast_tensor, get_world_size, is_main_process
from monai_cxrcml.mixture import StudentTMixture
from monai_cxrcml.mixture.selection import SELECTION_CRITERIA, select_n_components

__all__ = ["StudentTMixtureHandler", "SCHEDULES"]

SCHEDULES = ("epoch", "iteration", "batch")


@dataclass
class _Fit:
    """One fit's result: responsibilities of the fitted rows, diagnostics, K' and (on rank 0) the fitted estimator."""

    proba: torch.Tensor  # [n, K']
    diagnostics: dict[str, float]
    n_components: int
    mixture: StudentTMixture | None


@dataclass
class _PendingFit:
    """A bank refit running in the background (the future exists on rank 0 only)."""

    ids: torch.Tensor  # [n] sample ids of the snapshot
    epoch: int
    due: int  # published before the iteration after this one
    future: Future | None


class StudentTMixtureHandler:
    """Memory bank of image embeddings, scheduled mixture refits and pseudo-labels by sample id.

    Parameters
    ----------
    num_samples
        Number of training films N; sample ids in the batches run over 0..N-1.
    mixture
        The estimator (e.g. ``StudentTMixture(n_components=40, dof=4.0)`` or its ``GaussianMixture`` limit).
    warm_start
        Start each refit from the previous fit's parameters instead of k-means (see the module docstring).
    schedule
        ``"epoch"``, ``"iteration"`` or ``"batch"`` (see the module docstring).
    refit_interval
        Iterations between refits under ``schedule="iteration"``.
    warmup_epochs
        Epochs trained before the first fit (the metric loss is zero during them).
    ramp_epochs
        Epochs over which ``metric_loss_scale`` rises linearly from 0 to 1 after the first fit (0 = a step).
    overlap_iterations
        Iterations that go on with the previous pseudo-labels while a bank refit runs in the background (see the
        module docstring); 0 fits synchronously. Ignored by the ``"batch"`` schedule.
    features_key, id_key
        Keys of the image embeddings [B, D] in ``engine.state.output`` and of their sample ids [B] in
        ``engine.state.output`` (the global batch's under DDP) or, failing that, in ``engine.state.batch``.
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
        if num_samples < 1:
            raise ValueError(f"num_samples={num_samples}: the training set is empty.")
        if component_selection not in (None, *SELECTION_CRITERIA):
            raise ValueError(f"component_selection={component_selection!r} is not one of None, {SELECTION_CRITERIA}.")
        if component_selection is not None and schedule == "batch":
            raise ValueError("component_selection needs the memory bank: use schedule='epoch' or 'iteration'.")
        if schedule == "iteration" and refit_interval < 1:
            raise ValueError(f"refit_interval={refit_interval} must be >= 1 with schedule='iteration'.")
        if overlap_iterations < 0:
            raise ValueError(f"overlap_iterations={overlap_iterations} must be >= 0.")
        self.num_samples = num_samples
        self.mixture = mixture
        self.schedule = schedule
        self.refit_interval = refit_interval
        self.warmup_epochs = warmup_epochs
        self.ramp_epochs = ramp_epochs
        self.warm_start = warm_start
        self.overlap_iterations = overlap_iterations if schedule != "batch" else 0
        self.features_key = features_key
        self.id_key = id_key
        self.reference_labels = None if reference_labels is None else _label_combinations(reference_labels)
        self.reference_findings = None if reference_labels is None else np.asarray(reference_labels) > 0.5
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
        self._pending: _PendingFit | None = None
        self._refit_at_start = False
        self._executor: ThreadPoolExecutor | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._on_started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._publish)
        engine.add_event_handler(IterationEvents.FORWARD_COMPLETED, self._on_forward)
        if self.schedule == "epoch":
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._refit_bank)
        elif self.schedule == "iteration":
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.refit_interval), self._refit_bank)
        if self.overlap_iterations:
            engine.add_event_handler(Events.ITERATION_STARTED, self._finish_when_due)
        engine.add_event_handler(Events.COMPLETED, self.finish_pending)

    # ----------------------------------------------------------------------------------------------- events
    def _on_started(self, engine: Engine) -> None:
        if self._refit_at_start:  # resumed from a checkpoint written while a background refit was running
            self._refit_at_start = False
            ids = torch.nonzero(self.filled).squeeze(1)
            self._fit_now(engine, self.bank[ids], ids, logging.INFO)
        self._publish(engine)

    def _on_forward(self, engine: Engine) -> None:
        features = engine.state.output[self.features_key].detach().float()
        batch_ids = engine.state.batch.get(self.id_key) if isinstance(engine.state.batch, Mapping) else None
        if batch_ids is not None:  # this rank's ids, usually still on the host: checked without a device sync
            self._check_ids(torch.as_tensor(batch_ids))
        ids = engine.state.output.get(self.id_key, batch_ids)
        if ids is None:
            raise KeyError(f"no sample ids under {self.id_key!r} in the engine's output or batch.")
        ids = torch.as_tensor(ids).to(features.device, non_blocking=True).long()
        if ids.shape[0] != features.shape[0]:
            raise ValueError(
                f"{ids.shape[0]} sample ids for {features.shape[0]} embeddings under {self.features_key!r}."
            )
        self._store(features, ids)
        if self.schedule == "batch" and self._fitting_allowed(engine):
            self._fit_now(engine, features, ids, logging.DEBUG)

    def _refit_bank(self, engine: Engine) -> None:
        self.finish_pending(engine)  # a refit still running lands before the next one starts
        if self.bank is None or not self._fitting_allowed(engine):
            return
        if self.filled.float().mean().item() < self.min_fit_fraction:
            return
        ids = torch.nonzero(self.filled).squeeze(1)
        features = self.bank[ids]  # a snapshot: training goes on writing the bank
        if self.overlap_iterations:
            self._start_background_fit(engine, features, ids)
        else:
            self._fit_now(engine, features, ids, logging.INFO)

    def _finish_when_due(self, engine: Engine) -> None:
        if self._pending is not None and engine.state.iteration > self._pending.due:
            self.finish_pending(engine)

    def finish_pending(self, engine: Engine) -> None:
        """Wait for a background refit (if one runs) and publish its pseudo-labels; a collective under DDP."""
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        fit = None if pending.future is None else pending.future.result()
        if fit is not None and fit.proba.is_cuda:  # made on the side stream, used on this one from now on
            fit.proba.record_stream(torch.cuda.current_stream(fit.proba.device))
        self._apply(engine, pending.ids, self._share(fit, pending.ids.device), logging.INFO, pending.epoch)

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

    def _check_ids(self, ids: torch.Tensor) -> None:
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.num_samples):
            raise IndexError(
                f"sample ids {ids.min().item()}..{ids.max().item()} fall outside 0..{self.num_samples - 1}: "
                "num_samples must be the length of the training datalist whose 'sample_id' the batches carry."
            )

    def _store(self, features: torch.Tensor, ids: torch.Tensor) -> None:
        if self.bank is None:
            self.bank = torch.zeros(self.num_samples, features.shape[1], device=features.device)
            self.filled = torch.zeros(self.num_samples, dtype=torch.bool, device=features.device)
        if ids.device.type == "cpu":  # device ids were checked on their host copy (_on_forward)
            self._check_ids(ids)
        self.bank[ids] = features
        self.filled[ids] = True

    def _fit_now(self, engine: Engine, features: torch.Tensor, ids: torch.Tensor, log_level: int) -> None:
        fit = self._compute_fit(self.mixture, features, ids) if is_main_process() else None
        self._apply(engine, ids, self._share(fit, features.device), log_level, engine.state.epoch)

    def _start_background_fit(self, engine: Engine, features: torch.Tensor, ids: torch.Tensor) -> None:
        future = None
        if is_main_process():
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxrcml-mixture")
            ready = None
            if features.is_cuda:
                ready = torch.cuda.Event()
                ready.record()
            # the thread fits a copy: a checkpoint written meanwhile saves the estimator as it was
            future = self._executor.submit(self._fit_in_background, copy.deepcopy(self.mixture), features, ids, ready)
        self._pending = _PendingFit(ids, engine.state.epoch, engine.state.iteration + self.overlap_iterations, future)

    def _fit_in_background(
        self, mixture: StudentTMixture, features: torch.Tensor, ids: torch.Tensor, ready: torch.cuda.Event | None
    ) -> _Fit:
        if ready is None:
            return self._compute_fit(mixture, features, ids)
        with torch.cuda.device(features.device):
            stream = torch.cuda.Stream()
            stream.wait_event(ready)
            features.record_stream(stream)
            ids.record_stream(stream)
            with torch.cuda.stream(stream):
                fit = self._compute_fit(mixture, features, ids)
            stream.synchronize()  # this thread waits; the training stream does not
        return fit

    def _compute_fit(self, mixture: StudentTMixture, features: torch.Tensor, ids: torch.Tensor) -> _Fit:
        """Fit ``mixture`` to ``features`` [n, D]; responsibilities and diagnostics (rank 0, any thread)."""
        if self.component_selection is not None and self.n_fits == 0:
            self._select_components(mixture, features)
        start = time.perf_counter()
        mixture.fit(features)
        proba = mixture.predict_proba(features)
        mixture.warm_start = self.warm_start
        seconds = time.perf_counter() - start
        diagnostics = self._diagnostics(mixture, proba, _hard_labels(proba), ids, seconds)
        return _Fit(proba, diagnostics, mixture.n_components, mixture)

    def _share(self, fit: _Fit | None, device: torch.device) -> _Fit:
        """Rank 0's fit on every rank (identity without a process group)."""
        if get_world_size() == 1:
            return fit
        meta = broadcast_object(None if fit is None else (fit.diagnostics, fit.n_components, tuple(fit.proba.shape),
                                                          fit.proba.dtype))
        proba = broadcast_tensor(None if fit is None else fit.proba, meta[2], meta[3], device)
        return _Fit(proba, meta[0], meta[1], None if fit is None else fit.mixture)

    def _apply(self, engine: Engine, ids: torch.Tensor, fit: _Fit, log_level: int, epoch: int) -> None:
        """Pseudo-labels and responsibilities of ``ids`` from ``fit``; diagnostics to the log and the metrics."""
        if fit.mixture is not None:
            self.mixture = fit.mixture
        self.mixture.n_components = fit.n_components
        proba = fit.proba
        if self.pseudo_labels is None:
            self.pseudo_labels = torch.full((self.num_samples,), -1, dtype=torch.long, device=proba.device)
            self.responsibilities = torch.zeros(self.num_samples, fit.n_components, device=proba.device)
        self.pseudo_labels[ids] = _hard_labels(proba)
        self.responsibilities[ids] = 0.0
        self.responsibilities[ids, : proba.shape[1]] = proba.to(self.responsibilities.dtype)
        if self.first_fit_epoch is None:
            self.first_fit_epoch = epoch
        self.n_fits += 1
        self.last_diagnostics = fit.diagnostics
        engine.state.metrics.update({f"mixture_{key}": value for key, value in fit.diagnostics.items()})
        self._publish(engine)
        if is_main_process() and self.logger.isEnabledFor(log_level):
            d = fit.diagnostics
            purity = "".join(f", {text} {d[key]:.4f}" for key, text in (
                ("ami", "AMI vs finding combinations"), ("ami_findings", "mean AMI vs each finding")) if key in d)
            self.logger.log(
                log_level,
                "mixture fit %d (epoch %d, %d films): %d clusters used, sizes min/median/max %d/%d/%d, "
                "assignment entropy %.3f, nu %.2f, log-likelihood %.3f, %d EM iterations, %.2f s%s",
                self.n_fits, epoch, d["n_films"], d["clusters_used"], d["size_min"], d["size_median"],
                d["size_max"], d["entropy"], d["dof_mean"], d["log_likelihood"], d["n_iter"], d["seconds"], purity,
            )

    def _select_components(self, mixture: StudentTMixture, features: torch.Tensor) -> None:
        best, scores = select_n_components(features, mixture, self.component_candidates, self.component_selection)
        mixture.n_components = best
        self.logger.info("mixture: K = %d chosen by %s among %s", best, self.component_selection,
                         ", ".join(f"{k}: {v:.4g}" for k, v in scores.items()))

    def _diagnostics(
        self, mixture: StudentTMixture, proba: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor, seconds: float
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
            "dof_mean": float(torch.as_tensor(mixture.dofs_).float().mean()),
            "log_likelihood": float(mixture.lower_bound_),
            "n_iter": float(mixture.n_iter_),
            "seconds": seconds,
        }
        if self.reference_labels is not None:
            rows = ids.cpu().numpy()[assigned]
            d.update(cluster_purity(labels[assigned], self.reference_findings[rows], self.reference_labels[rows]))
        return d

    # ------------------------------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        """Bank, pseudo-labels and the mixture's fitted parameters, for resuming a training run.

        Written while a background refit runs, it holds the state before that refit and ``pending_fit=True``; a run
        resumed from it redoes the refit on the saved bank when it starts.
        """
        return {
            "pending_fit": self._pending is not None,
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
        self.mixture.warm_start = self.warm_start and self.n_fits > 0
        self._refit_at_start = bool(state.get("pending_fit", False))


def _hard_labels(proba: torch.Tensor) -> torch.Tensor:
    """Most responsible component of each row [N]; -1 for rows no component claims (non-finite embeddings)."""
    labels = proba.argmax(dim=1)
    return torch.where(proba.sum(dim=1) > 0, labels, torch.full_like(labels, -1))


def cluster_purity(
    clusters: np.ndarray, findings: np.ndarray, combinations: np.ndarray | None = None
) -> dict[str, float]:
    """How much the clusters say about the findings: the handler's ``ami`` and ``ami_findings`` diagnostics.

    Parameters
    ----------
    clusters
        Cluster label of each film [N].
    findings
        Binary finding matrix of the same films [N, C].
    combinations
        One integer per distinct finding combination [N] (``_label_combinations(findings)`` when None; the handler
        passes its precomputed ones).

    Returns
    -------
    dict
        ``ami``: adjusted mutual information of the clusters with the finding combinations; ``ami_findings``: its
        mean over the single findings with at least 2 positive and 2 negative films (absent when none has).
    """
    findings = np.asarray(findings) > 0.5
    combinations = _label_combinations(findings) if combinations is None else combinations
    purity = {"ami": float(adjusted_mutual_info_score(combinations, clusters))}
    scorable = [c for c in range(findings.shape[1]) if 2 <= findings[:, c].sum() <= len(clusters) - 2]
    if scorable:
        purity["ami_findings"] = float(np.mean([adjusted_mutual_info_score(findings[:, c], clusters)
                                                for c in scorable]))
    return purity


def _label_combinations(labels: np.ndarray) -> np.ndarray:
    """One integer per distinct finding combination of the rows of a binary [N, C] matrix."""
    _, combination = np.unique(np.asarray(labels) > 0.5, axis=0, return_inverse=True)
    return combination.reshape(-1)
