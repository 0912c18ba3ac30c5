"""The paper's plateau schedule is stepped by validation runs, whatever the validation interval."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from monai_cxrcml.handlers import lr_schedule_handler, lr_scheduler


def test_plateau_counts_validations_not_epochs_when_validating_every_other_epoch():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    validator = Engine(lambda engine, batch: None)
    validator.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: engine.state.metrics.update(macro_auc=0.5))
    trainer = Engine(lambda engine, batch: None)
    trainer.add_event_handler(Events.EPOCH_COMPLETED(every=2), lambda engine: validator.run([0]))  # val_interval 2
    handler = lr_schedule_handler(lr_scheduler(optimizer, "plateau", patience=1), validator=validator)
    handler.attach(trainer)
    trainer.run([0], max_epochs=6)  # no metric after epoch 1; validations after epochs 2, 4, 6, all at AUC 0.5
    assert handler.lr_scheduler.last_epoch == 3  # one step per validation
    # patience 1: the third validation is the second without progress
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
