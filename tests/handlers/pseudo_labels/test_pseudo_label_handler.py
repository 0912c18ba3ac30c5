"""The pseudo-label handler (monai_cxrcml.handlers.PseudoLabelHandler) in training loops and on its own."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from _tiny_clip import N, clip_trainer, labelled_batches
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents
from sklearn.base import BaseEstimator, clone
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture
from sklearn.naive_bayes import GaussianNB

from monai_cxrcml.handlers import PseudoLabelHandler
from monai_cxrcml.mixture import StudentTMixture


def _mixture_handler(schedule: str = "epoch", **kwargs) -> PseudoLabelHandler:
    mixture = StudentTMixture(n_components=4, covariance_type="diag", dof=4.0, random_state=0)
    return PseudoLabelHandler(N, mixture, schedule=schedule, **kwargs)


def test_mixture_handler_publishes_pseudo_labels_after_first_epoch(model):
    handler = _mixture_handler(reference_labels=np.zeros((N, 3)))
    trainer = clip_trainer(model, handlers=[handler], max_epochs=2)
    metric_losses = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED,
                              lambda e: metric_losses.append(e.state.output["loss_metric"].item()))
    trainer.run()
    assert handler.n_fits == 2 and handler.first_fit_epoch == 1
    labels = trainer.state.pseudo_labels
    assert labels.shape == (N,) and labels.min() >= 0 and labels.max() < 4
    assert trainer.state.responsibilities.shape == (N, 4)
    torch.testing.assert_close(trainer.state.responsibilities.sum(1), torch.ones(N))
    steps = len(metric_losses) // 2
    assert all(v == 0.0 for v in metric_losses[:steps])  # epoch 1: no clusters yet
    assert any(v > 0.0 for v in metric_losses[steps:])  # epoch 2: the triplet term is on
    assert {"mixture_log_likelihood", "mixture_entropy", "mixture_ami", "mixture_clusters_used"} <= set(
        trainer.state.metrics)


def test_warmup_and_ramp_scale_the_metric_term(model):
    handler = _mixture_handler(warmup_epochs=1, ramp_epochs=2)
    trainer = clip_trainer(model, handlers=[handler], max_epochs=4)
    scales = {}
    trainer.add_event_handler(Events.EPOCH_STARTED,
                              lambda e: scales.setdefault(e.state.epoch, e.state.metric_loss_scale))
    trainer.run()
    assert handler.first_fit_epoch == 2  # epoch 1 was warm-up
    assert scales == {1: 0.0, 2: 0.0, 3: 0.5, 4: 1.0}


def test_iteration_and_batch_schedules(model):
    handler = _mixture_handler("iteration", refit_interval=2)
    clip_trainer(model, handlers=[handler], max_epochs=2).run()
    assert handler.n_fits == 3  # iterations 2, 4, 6 (the bank is half full at 2)

    handler = _mixture_handler("batch")
    trainer = clip_trainer(model, handlers=[handler], max_epochs=1)
    trainer.run()
    assert handler.n_fits == len(labelled_batches())  # one fit per batch, before its loss
    assert trainer.state.output["loss_metric"].item() > 0.0


@pytest.mark.parametrize("warm_start", [False, True])
def test_mixture_handler_state_round_trip(model, warm_start):
    handler = _mixture_handler(warm_start=warm_start)
    clip_trainer(model, handlers=[handler], max_epochs=2).run()
    restored = _mixture_handler(warm_start=warm_start)
    restored.load_state_dict(handler.state_dict())
    torch.testing.assert_close(restored.pseudo_labels, handler.pseudo_labels)
    bank = handler.bank.embeddings
    torch.testing.assert_close(restored.estimator_.predict(bank), handler.estimator_.predict(bank))
    assert restored.estimator_.warm_start is warm_start  # refits after the resume start as the run's did


def _engine_feeding(handler: PseudoLabelHandler, embeddings: Callable[[int], torch.Tensor]) -> Engine:
    """An engine with ``handler`` attached whose one iteration per epoch stores ``embeddings(epoch)`` of every film."""
    engine = Engine(lambda e, batch: None)
    engine.register_events(*IterationEvents)
    handler.attach(engine)

    @engine.on(Events.ITERATION_COMPLETED)
    def store(e):
        e.state.output = {"image_features": embeddings(e.state.epoch)}
        e.state.batch = {"sample_id": torch.arange(handler.num_samples)}
        e.fire_event(IterationEvents.FORWARD_COMPLETED)

    return engine


def _spreading_embeddings(epoch: int) -> torch.Tensor:
    """[400, 16] unit-norm embeddings: a structureless blob at epoch 1 (an untrained encoder), 4 clusters of 100
    films after it, with a 20-fold larger spread."""
    gen = torch.Generator().manual_seed(epoch)
    if epoch == 1:
        x = torch.randn(400, 16, generator=gen) * 0.003
    else:
        centres = torch.nn.functional.normalize(torch.randn(4, 16, generator=torch.Generator().manual_seed(7)), dim=1)
        x = torch.randn(400, 16, generator=gen) * 0.05 + 0.6 * centres.repeat_interleave(100, 0)
    return torch.nn.functional.normalize(x + 1.0, dim=1)


@pytest.mark.parametrize("warm_start", [False, True])
def test_refits_follow_embeddings_that_spread_as_the_encoder_trains(warm_start):
    """A refit warm-started from the narrow components of epoch 1 collapses; a fresh start finds the 4 clusters."""
    findings = np.eye(4)[np.arange(400) // 100]  # each cluster is one finding: the purity diagnostics see it
    handler = PseudoLabelHandler(400, StudentTMixture(4, dof=4.0, random_state=0), warm_start=warm_start,
                                 reference_labels=findings)
    engine = _engine_feeding(handler, _spreading_embeddings)
    engine.run([0], max_epochs=3)
    truth = torch.arange(400) // 100
    ari = adjusted_rand_score(truth.numpy(), handler.pseudo_labels.numpy())
    if warm_start:
        assert ari < 0.9  # the failure this default avoids: one component swallows two clusters
    else:
        assert ari > 0.95 and handler.last_diagnostics["size_min"] == 100
        assert handler.last_diagnostics["ami"] > 0.95 and handler.last_diagnostics["ami_findings"] > 0.5
        assert engine.state.metrics["mixture_ami_findings"] == handler.last_diagnostics["ami_findings"]


def test_component_selection_fixes_k_at_the_first_fit(model):
    handler = _mixture_handler(component_selection="heldout", component_candidates=(2, 3))
    clip_trainer(model, handlers=[handler], max_epochs=2).run()
    assert handler.estimator_.n_components in (2, 3)
    assert handler.responsibilities.shape == (N, handler.estimator_.n_components)
    restored = _mixture_handler()
    restored.load_state_dict(handler.state_dict())
    assert restored.estimator_.n_components == handler.estimator_.n_components
    with pytest.raises(ValueError, match="memory bank"):
        _mixture_handler("batch", component_selection="bic")


def test_non_finite_embeddings_get_no_pseudo_label():
    handler = _mixture_handler()
    features = torch.randn(N, 8, generator=torch.Generator().manual_seed(0))
    features[[0, 1, 17]] = float("nan")
    handler.bank.store(features, torch.arange(N))
    engine = Engine(lambda e, b: None)
    engine.state.epoch = 1
    with pytest.warns(RuntimeWarning, match="NaN or inf"):
        handler.refit_bank(engine)
    assert (handler.pseudo_labels[[0, 1, 17]] == -1).all()
    assert (handler.pseudo_labels[2:17] >= 0).all()
    assert torch.isfinite(handler.responsibilities).all()
    assert engine.state.metric_loss_scale == 1.0


def test_refits_never_change_the_users_estimator():
    estimator = StudentTMixture(4, covariance_type="diag", random_state=0)
    before = estimator.get_params()
    handler = PseudoLabelHandler(400, estimator, warm_start=True, component_selection="heldout",
                                 component_candidates=(2, 4))
    _engine_feeding(handler, _spreading_embeddings).run([0], max_epochs=3)
    assert handler.n_fits == 3
    assert estimator.get_params() == before and estimator.state_dict() == {}  # never set, never fitted
    assert handler.estimator_ is not estimator and handler.estimator_.warm_start
    assert handler.estimator_.n_components in (2, 4) and handler.estimator_.n_components_ > 0


def test_any_estimator_with_predict_proba_gives_pseudo_labels():
    """scikit-learn's GaussianMixture: array responsibilities, no dofs_, no state_dict."""
    estimator = SklearnGaussianMixture(4, covariance_type="diag", random_state=0)
    findings = np.eye(4)[np.arange(400) // 100]
    handler = PseudoLabelHandler(400, estimator, reference_labels=findings)
    _engine_feeding(handler, _spreading_embeddings).run([0], max_epochs=3)
    last = _spreading_embeddings(3)
    assert torch.equal(handler.pseudo_labels, torch.as_tensor(clone(estimator).fit(last).predict(last)))
    assert adjusted_rand_score(np.arange(400) // 100, handler.pseudo_labels.numpy()) > 0.95
    assert handler.responsibilities.shape == (400, 4) and handler.responsibilities.dtype == torch.float32
    assert {"log_likelihood", "n_iter", "ami"} <= set(handler.last_diagnostics)
    assert "dof_mean" not in handler.last_diagnostics
    assert not hasattr(estimator, "means_")  # the handler fitted its clone
    state = handler.state_dict()
    assert state["mixture"] == {} and state["n_components"] == 4
    restored = PseudoLabelHandler(400, estimator)
    restored.load_state_dict(state)
    assert torch.equal(restored.pseudo_labels, handler.pseudo_labels)


class _GrowingPartition(BaseEstimator):
    """Responsibilities of a partition of the rows into one more cluster at every fit; no n_components."""

    def __init__(self, first: int = 2) -> None:
        self.first = first

    def fit(self, X, y=None):
        self.n_clusters_ = getattr(self, "n_clusters_", self.first - 1) + 1
        return self

    def predict_proba(self, X):
        return torch.nn.functional.one_hot(torch.arange(len(X)) % self.n_clusters_, self.n_clusters_).float()


def test_responsibilities_widen_when_a_refit_has_more_components():
    handler = PseudoLabelHandler(400, _GrowingPartition())
    engine = _engine_feeding(handler, _spreading_embeddings)
    engine.run([0], max_epochs=1)
    assert handler.responsibilities.shape == (400, 2)
    engine.run([0], max_epochs=2)
    assert handler.responsibilities.shape == (400, 3) and handler.state_dict()["n_components"] is None
    torch.testing.assert_close(handler.responsibilities.sum(1), torch.ones(400))
    assert torch.equal(handler.pseudo_labels, torch.arange(400) % 3)


def test_estimators_without_what_the_handler_needs_are_refused():
    with pytest.raises(TypeError, match="KMeans has no predict_proba"):
        PseudoLabelHandler(10, KMeans(2))
    with pytest.raises(ValueError, match="GaussianNB has no warm_start parameter"):
        PseudoLabelHandler(10, GaussianNB(), warm_start=True)
    with pytest.raises(ValueError, match="component_selection needs an n_components parameter"):
        PseudoLabelHandler(10, GaussianNB(), component_selection="bic")
