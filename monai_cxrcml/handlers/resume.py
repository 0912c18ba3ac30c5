"""Resume a training run from the newest checkpoint in its checkpoint folder: ``--resume True``.

The bundle's training config saves, after every epoch, ``last_checkpoint_epoch=<e>.pt`` holding everything the run
needs to go on: model, optimizer, learning-rate scheduler, mixture memory bank and pseudo-labels, early-stopping
counter, trainer epoch, and the best validation score so far (:class:`BestModelTracking`, so that after a resume
only a better model replaces ``model.pt``). :func:`resume_training` loads it into the freshly built objects before
``trainer.run()``; the trainer then continues at epoch ``e + 1``. With :class:`~monai_cxrcml.handlers.EpochSeeding` and
:class:`~monai_cxrcml.data.EpochSeededDataset` every epoch draws from (seed, epoch) alone, so a run killed at any
point (even ``SIGKILL`` in the middle of an epoch or of writing a checkpoint: ignite writes checkpoints to a
temporary file and renames it) and resumed ends with the metrics of the uninterrupted run (bit-identical on the
CPU; tests/handlers/test_resume.py).

Every file is read with ``torch.load(weights_only=True)`` (:func:`~monai_cxrcml.networks.read_checkpoint`): a
checkpoint carrying pickled code is refused with a message, never executed.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from monai_cxrcml.networks import read_checkpoint

__all__ = ["BestModelTracking", "checkpoint_epoch", "latest_checkpoint", "resume_training"]

logger = logging.getLogger(__name__)


class BestModelTracking:
    """The best-score tracking of a MONAI ``CheckpointSaver(save_key_metric=True)``, as a checkpointable object.

    ``state_dict()`` is ignite's ``Checkpoint.state_dict()`` of the saver's key-metric checkpoint (its saved
    ``(score, filename)`` pairs); MONAI's own ``key_metric_save_state`` would write it into ``model.pt`` and so make
    the best model's file something other than a plain state_dict. ``saver=None`` (ranks without the saver under
    DDP) saves and loads nothing.
    """

    def __init__(self, saver: Any | None) -> None:
        self.saver = saver

    def state_dict(self) -> dict:
        tracker = getattr(self.saver, "_key_metric_checkpoint", None)
        return {} if tracker is None else dict(tracker.state_dict())

    def load_state_dict(self, state: Mapping) -> None:
        if self.saver is not None and state:
            self.saver.load_state_dict(dict(state))


def checkpoint_epoch(path: str | os.PathLike, prefix: str = "last") -> int | None:
    """The epoch ``e`` of a ``{prefix}_checkpoint_epoch=<e>.pt`` file name (MONAI's CheckpointSaver), or None."""
    match = re.fullmatch(rf"{re.escape(prefix)}_checkpoint_epoch=(\d+)\.pt", Path(path).name)
    return None if match is None else int(match.group(1))


def latest_checkpoint(ckpt_dir: str | os.PathLike, prefix: str = "last") -> Path | None:
    """The ``{prefix}_checkpoint_epoch=<e>.pt`` of ``ckpt_dir`` with the highest ``e``, or None."""
    found = [(epoch, p) for p in Path(ckpt_dir).glob(f"{prefix}_checkpoint_epoch=*.pt")
             if (epoch := checkpoint_epoch(p, prefix)) is not None]
    return max(found)[1] if found else None


def resume_training(
    trainer: Engine,
    save_dict: Mapping[str, Any],
    ckpt_dir: str | os.PathLike,
    prefix: str = "last",
) -> int | None:
    """Load the newest training checkpoint of ``ckpt_dir`` into ``save_dict``'s objects; call before ``run()``.

    Parameters
    ----------
    trainer
        The training engine; it must be one of ``save_dict``'s values (its epoch and iteration are restored, its
        ``max_epochs`` stays the configured one, so ``--epochs`` can extend a finished run).
    save_dict
        The objects the checkpoint was saved from (the bundle's ``train#last_checkpoint#save_dict``).
    ckpt_dir
        Folder of the checkpoints.
    prefix
        File prefix of the training checkpoints.

    Returns
    -------
    int | None
        The epoch resumed from, or None when ``ckpt_dir`` holds no training checkpoint (the run starts afresh, so the
        same command serves the first start and every restart of a job).
    """
    path = latest_checkpoint(ckpt_dir, prefix)
    if path is None:
        logger.info("resume: no %s_checkpoint_epoch=*.pt in %s, starting a new run", prefix, ckpt_dir)
        return None
    checkpoint = read_checkpoint(path)
    missing = [key for key in save_dict if key not in checkpoint]
    if missing:
        raise KeyError(
            f"resume: {path} holds no {missing} (it has {sorted(checkpoint)}); it was written by another config. "
            "Resume with the config that wrote it, or start a new run in another output_dir."
        )
    max_epochs = trainer.state.max_epochs
    Checkpoint.load_objects(to_load=dict(save_dict), checkpoint=checkpoint)
    epoch = trainer.state.epoch
    if max_epochs is not None:
        trainer.state.max_epochs = max_epochs
        if epoch >= max_epochs:
            logger.info("resume: %s is at epoch %d of max_epochs=%d: nothing left to train", path.name, epoch,
                        max_epochs)
    logger.info("resume: continuing from %s (epoch %d, iteration %d)", path, epoch, trainer.state.iteration)
    _remove_when_superseded(trainer, path, prefix)
    return epoch


def _remove_when_superseded(trainer: Engine, path: Path, prefix: str) -> None:
    """Delete the checkpoint resumed from once the run has written a newer one (the saver keeps only its own)."""

    def remove(engine: Engine) -> None:
        newest = latest_checkpoint(path.parent, prefix)
        if newest is not None and newest != path and path.is_file():
            path.unlink()
            engine.remove_event_handler(remove, Events.EPOCH_COMPLETED)

    trainer.add_event_handler(Events.EPOCH_COMPLETED, remove)
