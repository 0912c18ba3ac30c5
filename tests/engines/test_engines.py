"""The CXR-CML trainer, the mixture handler and the zero-shot evaluator on in-memory batches of a tiny CLIP."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from ignite.engine import Events

from monai_cxrcml.engines import CXRCMLTrainer, ZeroShotEvaluator
from monai_cxrcml.handlers import MultiLabelAUC, StudentTMixtureHandler
from monai_cxrcml.losses import CXRCMLLoss, PseudoLabelTripletLoss
from monai_cxrcml.mixture import StudentTMixture
from monai_cxrcml.networks import create_clip, get_tokenizer

MODEL = "cxrcml-tiny"
CLASSES = ["Cardiomegaly", "Pleural Effusion", "Normal"]
N, B = 48, 16


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return create_clip(MODEL)


def _batches(n: int = N, batch: int = B, seed: int = 0) -> list[dict]:
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


def _trainer(model, handlers=(), loss=None, **kwargs) -> CXRCMLTrainer:
    loss = loss or CXRCMLLoss(PseudoLabelTripletLoss(margin=0.2), metric_loss_weight=1.0)
    return CXRCMLTrainer(
        device="cpu",
        max_epochs=kwargs.pop("max_epochs", 2),
        train_data_loader=_batches(),
        network=model,
        optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3),
        loss_function=loss,
        train_handlers=list(handlers),
        **kwargs,
    )


def _mixture_handler(schedule: str = "epoch", **kwargs) -> StudentTMixtureHandler:
    mixture = StudentTMixture(n_components=4, covariance_type="diag", dof=4.0, random_state=0)
    return StudentTMixtureHandler(N, mixture, schedule=schedule, **kwargs)


def test_trainer_output_holds_loss_parts_and_updates_weights(model):
    before = [p.detach().clone() for p in model.visual.parameters()]
    trainer = _trainer(model, max_epochs=1)
    trainer.run()
    out = trainer.state.output
    assert set(out) >= {"loss", "loss_contrastive", "loss_metric", "logit_scale", "image_features"}
    assert math.isfinite(out["loss"].item())
    assert out["loss_metric"].item() == 0.0  # no mixture handler: no pseudo-labels
    assert any(not torch.equal(a, b) for a, b in zip(before, model.visual.parameters()))


def test_mixture_handler_publishes_pseudo_labels_after_first_epoch(model):
    handler = _mixture_handler(reference_labels=np.zeros((N, 3)))
    trainer = _trainer(model, handlers=[handler], max_epochs=2)
    metric_losses = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: metric_losses.append(e.state.output["loss_metric"].item()))
    trainer.run()
    assert handler.n_fits == 2 and handler.first_fit_epoch == 1
    labels = trainer.state.pseudo_labels
    assert labels.shape == (N,) and labels.min() >= 0 and labels.max() < 4
    assert trainer.state.responsibilities.shape == (N, 4)
    torch.testing.assert_close(trainer.state.responsibilities.sum(1), torch.ones(N))
    steps = len(metric_losses) // 2
    assert all(v == 0.0 for v in metric_losses[:steps])  # epoch 1: no clusters yet
    assert any(v > 0.0 for v in metric_losses[steps:])  # epoch 2: the triplet term is on
    assert {"mixture_log_likelihood", "mixture_entropy", "mixture_ami", "mixture_clusters_used"} <= set(trainer.state.metrics)


def test_warmup_and_ramp_scale_the_metric_term(model):
    handler = _mixture_handler(warmup_epochs=1, ramp_epochs=2)
    trainer = _trainer(model, handlers=[handler], max_epochs=4)
    scales = {}
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: scales.setdefault(e.state.epoch, e.state.metric_loss_scale))
    trainer.run()
    assert handler.first_fit_epoch == 2  # epoch 1 was warm-up
    assert scales == {1: 0.0, 2: 0.0, 3: 0.5, 4: 1.0}


def test_iteration_and_batch_schedules(model):
    handler = _mixture_handler("iteration", refit_interval=2)
    _trainer(model, handlers=[handler], max_epochs=2).run()
    assert handler.n_fits == 3  # iterations 2, 4, 6 (the bank is half full at 2)

    handler = _mixture_handler("batch")
    trainer = _trainer(model, handlers=[handler], max_epochs=1)
    trainer.run()
    assert handler.n_fits == len(_batches())  # one fit per batch, before its loss
    assert trainer.state.output["loss_metric"].item() > 0.0


@pytest.mark.parametrize("warm_start", [False, True])
def test_mixture_handler_state_round_trip(model, warm_start):
    handler = _mixture_handler(warm_start=warm_start)
    _trainer(model, handlers=[handler], max_epochs=2).run()
    restored = _mixture_handler(warm_start=warm_start)
    restored.load_state_dict(handler.state_dict())
    torch.testing.assert_close(restored.pseudo_labels, handler.pseudo_labels)
    bank = handler.bank
    torch.testing.assert_close(restored.mixture.predict(bank), handler.mixture.predict(bank))
    assert restored.mixture.warm_start is warm_start  # refits after the resume start as the run's did


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
    from ignite.engine import Engine
    from monai.engines.utils import IterationEvents
    from sklearn.metrics import adjusted_rand_score

    engine = Engine(lambda e, batch: None)
    engine.register_events(*IterationEvents)
    findings = np.eye(4)[np.arange(400) // 100]  # each cluster is one finding: the purity diagnostics see it
    handler = StudentTMixtureHandler(400, StudentTMixture(4, dof=4.0, random_state=0), warm_start=warm_start,
                                     reference_labels=findings)
    handler.attach(engine)

    @engine.on(Events.ITERATION_COMPLETED)
    def store(e):
        e.state.output = {"image_features": _spreading_embeddings(e.state.epoch)}
        e.state.batch = {"sample_id": torch.arange(400)}
        e.fire_event(IterationEvents.FORWARD_COMPLETED)

    engine.run([0], max_epochs=3)
    truth = torch.arange(400) // 100
    ari = adjusted_rand_score(truth.numpy(), handler.pseudo_labels.numpy())
    if warm_start:
        assert ari < 0.9  # the failure this default avoids: one component swallows two clusters
    else:
        assert ari > 0.95 and handler.last_diagnostics["size_min"] == 100
        assert handler.last_diagnostics["ami"] > 0.95 and handler.last_diagnostics["ami_findings"] > 0.5
        assert engine.state.metrics["mixture_ami_findings"] == handler.last_diagnostics["ami_findings"]


def test_sample_ids_outside_the_bank_are_named():
    handler = StudentTMixtureHandler(4, StudentTMixture(n_components=2))
    with pytest.raises(IndexError, match="outside 0..3"):
        handler._store(torch.zeros(2, 8), torch.tensor([1, 9]))


def test_nonfinite_loss_raises_or_skips(model, caplog):
    class NaNLoss(CXRCMLLoss):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            return {**out, "loss": out["loss"] * float("nan")}

    with pytest.raises(FloatingPointError, match=r"non-finite loss at iteration 1 \(epoch 1\), sample ids \[0, 1"):
        _trainer(model, loss=NaNLoss(), max_epochs=1).run()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = _trainer(model, loss=NaNLoss(), max_epochs=1, nonfinite_loss="skip")
    with caplog.at_level(logging.WARNING, logger="monai_cxrcml"):
        trainer.run()
    assert trainer.state.skipped_steps == len(_batches())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert "non-finite loss" in caplog.text


def test_logit_scale_is_clamped(model):
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    _trainer(model, max_epochs=1).run()
    assert model.logit_scale.item() <= math.log(100) + 1e-6


def test_zero_shot_evaluator_scores_with_current_text_tower(model):
    batches = _batches()
    evaluator = ZeroShotEvaluator(
        "cpu", batches, model, get_tokenizer(MODEL), class_names=CLASSES,
        key_val_metric={"macro_auc": MultiLabelAUC(CLASSES, {c: "base" for c in CLASSES})},
    )
    evaluator.run()
    pred = evaluator.state.output["pred"]
    assert pred.shape == (B, len(CLASSES)) and ((pred >= 0) & (pred <= 1)).all()
    assert evaluator.state.output["subject_id"] == batches[-1]["subject_id"]
    assert 0.0 <= evaluator.state.metrics["macro_auc"] <= 1.0
    first = evaluator.network.pos_embeddings.clone()
    with torch.no_grad():  # the text tower changes, as during training
        model.token_embedding.weight.add_(0.5)
    model.train()
    evaluator.run()
    assert not torch.allclose(first, evaluator.network.pos_embeddings)
    assert model.training  # evaluation left the training model in training mode
    assert evaluator.network.visual is model.visual  # shared, not copied


def test_trained_model_beats_chance_zero_shot():
    """A few epochs on films whose signs follow their captions: zero-shot AUC clearly above 0.5."""
    torch.manual_seed(0)
    model = create_clip(MODEL)
    batches = _batches(n=96, batch=32, seed=1)
    CXRCMLTrainer(
        device="cpu", max_epochs=15, train_data_loader=batches, network=model,
        optimizer=torch.optim.AdamW(model.parameters(), lr=2e-3), loss_function=CXRCMLLoss(),
    ).run()
    evaluator = ZeroShotEvaluator(
        "cpu", batches, model, get_tokenizer(MODEL), class_names=CLASSES,
        key_val_metric={"macro_auc": MultiLabelAUC(CLASSES)},
    )
    evaluator.run()
    assert evaluator.state.metrics["macro_auc"] > 0.7


def test_component_selection_fixes_k_at_the_first_fit(model):
    handler = _mixture_handler(component_selection="heldout", component_candidates=(2, 3))
    _trainer(model, handlers=[handler], max_epochs=2).run()
    assert handler.mixture.n_components in (2, 3)
    assert handler.responsibilities.shape == (N, handler.mixture.n_components)
    restored = _mixture_handler()
    restored.load_state_dict(handler.state_dict())
    assert restored.mixture.n_components == handler.mixture.n_components
    with pytest.raises(ValueError, match="memory bank"):
        _mixture_handler("batch", component_selection="bic")


def test_non_finite_embeddings_get_no_pseudo_label():
    from ignite.engine import Engine

    handler = _mixture_handler()
    features = torch.randn(N, 8, generator=torch.Generator().manual_seed(0))
    features[[0, 1, 17]] = float("nan")
    handler._store(features, torch.arange(N))
    engine = Engine(lambda e, b: None)
    engine.state.epoch = 1
    with pytest.warns(RuntimeWarning, match="NaN or inf"):
        handler._refit_bank(engine)
    assert (handler.pseudo_labels[[0, 1, 17]] == -1).all()
    assert (handler.pseudo_labels[2:17] >= 0).all()
    assert torch.isfinite(handler.responsibilities).all()
    assert engine.state.metric_loss_scale == 1.0
