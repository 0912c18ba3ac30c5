"""The learning-rate schedule of a training run, chosen by name, and the MONAI ``LrScheduleHandler`` that steps it.

``"plateau"`` (the paper's)
    ``ReduceLROnPlateau`` on the validation macro AUC (``mode="max"``), stepped at the end of each validation run
    (its patience counts validations, whatever ``val_interval``). Right from CheXzero weights.
``"warmup_cosine"``
    Linear warm-up over ``warmup_steps`` iterations (at most ``max_warmup_fraction`` of the run, so a short run
    still decays), then cosine decay to ``end_lr`` at the last iteration, stepped every iteration. Needed from
    scratch (the demo). Why each: docs/design.md, "Learning-rate schedules".

Only the chosen scheduler is built (a second one would rewrite the optimizer's rate); it is a config component of
its own (``train#lr_scheduler``), so the checkpoints name it directly.
"""

from __future__ import annotations

import logging

import torch
from ignite.engine import Engine
from monai.handlers import LrScheduleHandler
from monai.optimizers import WarmupCosineSchedule

__all__ = ["LR_SCHEDULES", "ValidationLrScheduleHandler", "lr_schedule_handler", "lr_scheduler"]

logger = logging.getLogger(__name__)

LR_SCHEDULES = ("plateau", "warmup_cosine")


class ValidationLrScheduleHandler(LrScheduleHandler):
    """Steps ``lr_scheduler`` with ``validator.state.metrics[metric_name]`` at the end of every validation run.

    Attached to the trainer (as every training handler is), it hooks itself to ``validator``'s epoch end, after the
    validator's metrics are computed.
    """

    def __init__(self, lr_scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau, validator: Engine,
                 metric_name: str = "macro_auc") -> None:
        super().__init__(lr_scheduler, print_lr=True, epoch_level=True,
                         step_transform=lambda engine: engine.state.metrics[metric_name])
        self.validator = validator

    def attach(self, engine: Engine) -> None:
        super().attach(self.validator)


def lr_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: str = "plateau",
    factor: float = 0.1,
    patience: int = 2,
    warmup_steps: int = 100,
    total_steps: int | None = None,
    end_lr: float = 0.0,
    max_warmup_fraction: float = 0.25,
) -> torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau:
    """The scheduler named ``schedule`` (see the module docstring); :func:`lr_schedule_handler` steps it.

    Parameters
    ----------
    optimizer
        The training optimizer.
    schedule
        ``"plateau"`` or ``"warmup_cosine"``.
    factor, patience
        For ``"plateau"``: the rate is multiplied by ``factor`` after ``patience`` validations without progress
        (higher macro AUC is better).
    warmup_steps, total_steps, end_lr
        For ``"warmup_cosine"``: iterations of warm-up, iterations in the whole run (epochs x iterations per
        epoch) and the final rate.
    max_warmup_fraction
        For ``"warmup_cosine"``: the warm-up is capped at this share of ``total_steps`` (logged when it is).
    """
    if schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=factor, patience=patience)
    if schedule == "warmup_cosine":
        if total_steps is None or total_steps < 1:
            raise ValueError(f"schedule='warmup_cosine' needs total_steps >= 1 (epochs x iterations per epoch), got "
                             f"{total_steps}.")
        cap = int(max_warmup_fraction * total_steps)
        if warmup_steps > cap:
            logger.info("warm-up of %d iterations capped at %d, a %.0f%% share of this %d-iteration run",
                        warmup_steps, cap, 100 * max_warmup_fraction, total_steps)
            warmup_steps = cap
        return WarmupCosineSchedule(optimizer, warmup_steps=warmup_steps, t_total=total_steps, end_lr=end_lr)
    raise ValueError(f"lr_schedule={schedule!r} is not one of {LR_SCHEDULES}.")


def lr_schedule_handler(
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau,
    validator: Engine | None = None,
    metric_name: str = "macro_auc",
) -> LrScheduleHandler:
    """The handler that steps ``lr_scheduler``: a plateau scheduler after each validation, on its ``metric_name``;
    any other every iteration.

    Parameters
    ----------
    lr_scheduler
        A scheduler of :func:`lr_scheduler`; it goes into the checkpoints.
    validator, metric_name
        For a plateau scheduler: the evaluator whose ``state.metrics[metric_name]`` is watched.

    Returns
    -------
    LrScheduleHandler
        Attach it to the trainer after the ``ValidationHandler``.
    """
    if isinstance(lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        if validator is None:
            raise ValueError("a plateau schedule watches a validation metric: pass validator=@validate#evaluator.")
        return ValidationLrScheduleHandler(lr_scheduler, validator, metric_name)
    return LrScheduleHandler(lr_scheduler, print_lr=False, epoch_level=False)
