"""Refits in a background thread (PseudoLabelHandler(overlap_iterations=...), handlers/pseudo_labels/background.py)."""

from __future__ import annotations

import torch
from _tiny_clip import N, clip_trainer
from ignite.engine import Engine, Events

from monai_cxrcml.handlers import PseudoLabelHandler
from monai_cxrcml.losses import CXRCMLLoss, PseudoLabelTripletLoss
from monai_cxrcml.mixture import StudentTMixture


def _mixture_handler(**kwargs) -> PseudoLabelHandler:
    return PseudoLabelHandler(N, StudentTMixture(n_components=4, covariance_type="diag", random_state=0), **kwargs)


def test_background_refit_publishes_after_the_overlap(model):
    handler = _mixture_handler(overlap_iterations=1)
    trainer = clip_trainer(model, handlers=[handler], loss=CXRCMLLoss(PseudoLabelTripletLoss(margin=0.2)),
                           max_epochs=3)
    scales = {}
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: scales.setdefault(e.state.iteration,
                                                                                       e.state.metric_loss_scale))
    trainer.run()
    # 3 iterations per epoch: the refit after iteration 3 is published before iteration 5
    assert [scales[i] for i in (3, 4, 5)] == [0.0, 0.0, 1.0]
    assert handler.n_fits == 3 and handler.first_fit_epoch == 1  # the last epoch's refit landed when the run ended
    assert (handler.pseudo_labels >= 0).all()


def test_checkpoint_written_during_a_background_refit_redoes_it_on_resume(model):
    handler = _mixture_handler(overlap_iterations=1)
    trainer = clip_trainer(model, handlers=[handler], loss=CXRCMLLoss(), max_epochs=1)
    saved = {}
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: saved.update(handler.state_dict()))
    trainer.run()
    assert saved["pending_fit"] and saved["n_fits"] == 0 and handler.n_fits == 1

    restored = _mixture_handler(overlap_iterations=1)
    restored.load_state_dict(saved)
    engine = Engine(lambda e, b: None)
    engine.state.epoch = 1
    restored._on_started(engine)
    assert restored.n_fits == 1
    assert torch.equal(restored.pseudo_labels, handler.pseudo_labels)
    assert engine.state.pseudo_labels is restored.pseudo_labels
