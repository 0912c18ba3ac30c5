"""The paths that only run on a GPU: bf16 autocast training steps with the on-device guard, and the mixture refit in
the background on a CUDA side stream. Skipped without CUDA; ``bash benchmarks/gpu_check.sh`` runs them."""

from __future__ import annotations

import math

import pytest
import torch
from _ddp_engine_run import MODEL, global_batches
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents
from sklearn.metrics import adjusted_rand_score

from monai_cxrcml.engines import CXRCMLTrainer
from monai_cxrcml.handlers import PseudoLabelHandler
from monai_cxrcml.losses import CXRCMLLoss, PseudoLabelTripletLoss
from monai_cxrcml.mixture import StudentTMixture
from monai_cxrcml.networks import create_clip

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_bf16_training_steps_update_the_weights_with_the_guard_on_the_device():
    torch.manual_seed(0)
    model = create_clip(MODEL).to("cuda")
    trainer = CXRCMLTrainer(
        device="cuda", max_epochs=1, train_data_loader=global_batches(), network=model,
        optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True),
        loss_function=CXRCMLLoss(PseudoLabelTripletLoss(margin=0.2)), amp=True, grad_clip_norm=1.0,
    )
    assert trainer.amp and trainer.scaler is None and trainer.guard_on_device  # bf16: no loss scaling
    dtypes = []
    trainer.add_event_handler(IterationEvents.FORWARD_COMPLETED,
                              lambda engine: dtypes.append(engine.state.output["image_features"].dtype))
    before = [p.detach().clone() for p in model.parameters()]
    trainer.run()
    assert set(dtypes) == {torch.bfloat16}
    assert math.isfinite(trainer.state.output["loss"].item()) and trainer.state.skipped_steps == 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast leaves the weights in fp32


def test_background_refit_on_a_side_stream_publishes_the_clusters_of_the_bank():
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=gen) * 10
    truth = torch.arange(240) % 4
    features = (centres[truth] + torch.randn(240, 16, generator=gen)).cuda()

    def write(engine: Engine, ids: torch.Tensor) -> dict:  # what the trainer hands the handler each iteration
        engine.state.output = {"image_features": features[ids], "sample_id": ids}
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        return engine.state.output

    engine = Engine(write)
    engine.register_events(*IterationEvents)
    handler = PseudoLabelHandler(240, StudentTMixture(n_components=4, random_state=0), overlap_iterations=2)
    handler.attach(engine)
    published = {}
    engine.add_event_handler(Events.ITERATION_STARTED, lambda e: published.setdefault(e.state.iteration,
                                                                                       handler.n_fits))
    engine.run(list(torch.arange(240).split(48)), max_epochs=2)  # 5 iterations an epoch
    assert [published[i] for i in (6, 7, 8)] == [0, 0, 1]  # the refit after iteration 5 lands before iteration 8
    assert handler.pseudo_labels.is_cuda
    assert adjusted_rand_score(truth.numpy(), handler.pseudo_labels.cpu().numpy()) == 1.0
