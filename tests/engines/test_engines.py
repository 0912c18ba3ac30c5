"""The CXR-CML trainer and the zero-shot evaluator on in-memory batches of a tiny CLIP."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from _tiny_clip import CLASSES, MODEL, B, clip_trainer, labelled_batches

from monai_cxrcml.engines import CXRCMLTrainer, ZeroShotEvaluator
from monai_cxrcml.handlers import MultiLabelAUC
from monai_cxrcml.losses import CXRCMLLoss
from monai_cxrcml.networks import create_clip, get_tokenizer


def test_trainer_output_holds_loss_parts_and_updates_weights(model):
    before = [p.detach().clone() for p in model.visual.parameters()]
    trainer = clip_trainer(model, max_epochs=1)
    trainer.run()
    out = trainer.state.output
    assert set(out) >= {"loss", "loss_contrastive", "loss_metric", "logit_scale", "image_features"}
    assert math.isfinite(out["loss"].item())
    assert out["loss_metric"].item() == 0.0  # no mixture handler: no pseudo-labels
    assert any(not torch.equal(a, b) for a, b in zip(before, model.visual.parameters()))


def test_nonfinite_loss_raises_or_skips(model, caplog):
    class NaNLoss(CXRCMLLoss):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            return {**out, "loss": out["loss"] * float("nan")}

    with pytest.raises(FloatingPointError, match=r"non-finite loss at iteration 1 \(epoch 1\), sample ids \[0, 1"):
        clip_trainer(model, loss=NaNLoss(), max_epochs=1).run()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = clip_trainer(model, loss=NaNLoss(), max_epochs=1, nonfinite_loss="skip")
    with caplog.at_level(logging.WARNING, logger="monai_cxrcml"):
        trainer.run()
    assert trainer.state.skipped_steps == len(labelled_batches())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert "non-finite loss" in caplog.text


def test_logit_scale_is_clamped(model):
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    clip_trainer(model, max_epochs=1).run()
    assert model.logit_scale.item() <= math.log(100) + 1e-6


def test_zero_shot_evaluator_scores_with_current_text_tower(model):
    batches = labelled_batches()
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
    batches = labelled_batches(n=96, batch=32, seed=1)
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
