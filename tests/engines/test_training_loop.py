"""The fast single-process loop: the on-device non-finite guard, plain tensors for the model."""

from __future__ import annotations

import pytest
import torch
from _ddp_engine_run import MODEL, global_batches
from ignite.engine import Events
from monai.data import MetaTensor

from monai_cxrcml.engines import CXRCMLTrainer, prepare_clip_batch
from monai_cxrcml.losses import CXRCMLLoss, PseudoLabelTripletLoss
from monai_cxrcml.networks import create_clip


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one intra-op thread is faster than two fighting other jobs for two shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class NaNAt(CXRCMLLoss):
    """The CXR-CML loss, made NaN at the given (1-based) calls."""

    def __init__(self, calls: set[int]) -> None:
        super().__init__(PseudoLabelTripletLoss(margin=0.2))
        self.calls, self.count = calls, 0

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        self.count += 1
        return {**out, "loss": out["loss"] * float("nan")} if self.count in self.calls else out


def _trainer(loss: CXRCMLLoss, fused: bool = True, handlers=(), max_epochs: int = 1, **kwargs) -> CXRCMLTrainer:
    torch.manual_seed(0)
    model = create_clip(MODEL)
    return CXRCMLTrainer(
        device="cpu", max_epochs=max_epochs, train_data_loader=global_batches(), network=model,
        optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused), loss_function=loss,
        train_handlers=list(handlers), **kwargs,
    )


def test_fused_optimizer_skips_nonfinite_steps_on_the_device():
    trainer = _trainer(NaNAt({1, 2, 3}), nonfinite_loss="skip")
    assert trainer.guard_on_device
    before = [p.detach().clone() for p in trainer.network.parameters()]
    trainer.run()
    assert trainer.state.skipped_steps == 3
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.network.parameters()))
    steps = [state["step"] for state in trainer.optimizer.state.values()]
    assert steps and all(step.item() == 0 for step in steps)  # Adam's moments and step count untouched too

    with pytest.raises(FloatingPointError, match=r"non-finite loss at iteration 1 \(epoch 1\), sample ids \[0, 1"):
        _trainer(NaNAt({1})).run()


def test_nonfinite_steps_are_read_on_the_host_only_every_interval():
    trainer = _trainer(NaNAt({1}), nonfinite_loss="skip", nonfinite_check_interval=2)
    seen = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(e.state.skipped_steps))
    trainer.run()
    assert seen == [0, 1, 1]  # iteration 1's skip is read with iteration 2's flags, not at once
    weights = [p.detach().clone() for p in trainer.network.parameters()]
    assert all(torch.isfinite(w).all() for w in weights)  # iterations 2 and 3 trained, on finite losses

    host = _trainer(NaNAt({1}), fused=False, nonfinite_loss="skip", nonfinite_check_interval=2)
    assert not host.guard_on_device  # any other optimizer: the loss is read every iteration
    seen.clear()
    host.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(e.state.skipped_steps))
    host.run()
    assert seen == [1, 1, 1]


def test_prepare_clip_batch_hands_the_model_plain_tensors():
    batch = {"image": MetaTensor(torch.zeros(2, 3, 8, 8)), "text": torch.zeros(2, 77, dtype=torch.long),
             "sample_id": [0, 1]}
    image, text, ids = prepare_clip_batch(batch, "cpu")
    assert type(image) is torch.Tensor and type(text) is torch.Tensor and ids.tolist() == [0, 1]
