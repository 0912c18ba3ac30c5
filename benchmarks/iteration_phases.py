"""Where the time of a training iteration goes: per-phase wall time of ``CXRCMLTrainer`` iterations.

Marks are taken at the trainer's events and at forward hooks on the network and its image tower, in the order an
iteration passes them::

    GET_BATCH_STARTED -> GET_BATCH_COMPLETED -> network pre-hook -> visual pre-hook -> visual hook -> network hook
    -> FORWARD_COMPLETED (after the mixture handler stored the embeddings) -> LOSS_COMPLETED -> BACKWARD_COMPLETED
    -> MODEL_COMPLETED -> ITERATION_COMPLETED

so the phases are: data loading (the DataLoader's ``next``), batch to device (+ ``zero_grad``), image tower, text
tower (``encode_text`` and the logit scale), bank write (the memory bank's handler at ``FORWARD_COMPLETED``), loss
(pseudo-label lookup, contrastive + triplet), backward, optimizer (gradient clipping, AdamW, the NaN guard) and
handlers (logit-scale clamp and iteration handlers: loss logging). On CUDA every mark synchronises the device, which
serialises the queue: the phases then add up to more than an unsynchronised iteration takes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents

PHASES = ("data loading", "batch to device", "image tower", "text tower", "bank write", "loss", "backward",
          "optimizer", "handlers")
_MARKS = ("batch_started", "batch_ready", "forward_start", "image_start", "image_end", "forward_end", "bank_written",
          "loss_done", "backward_done", "step_done", "iteration_done")
_PHASE_SPANS = (("batch_started", "batch_ready"), ("batch_ready", "forward_start"), ("image_start", "image_end"),
                ("image_end", "forward_end"), ("forward_end", "bank_written"), ("bank_written", "loss_done"),
                ("loss_done", "backward_done"), ("backward_done", "step_done"), ("step_done", "iteration_done"))


class IterationPhases:
    """Collect per-phase seconds of every iteration of ``trainer`` after the first ``skip`` ones.

    Create it after the trainer's own handlers are attached (so the bank write falls inside its phase), and call
    :meth:`remove_hooks` before anything else runs the image tower.

    Parameters
    ----------
    trainer
        A :class:`~monai_cxrcml.engines.CXRCMLTrainer`.
    network
        Its open_clip CLIP (``visual`` is the image tower).
    skip
        Leading iterations left out (allocator and kernel warm-up).
    count
        Iterations recorded after them (None: all).
    """

    def __init__(self, trainer: Engine, network: torch.nn.Module, skip: int = 1, count: int | None = None) -> None:
        self.skip = skip
        self.count = count
        self.rows: list[np.ndarray] = []  # [9] seconds per phase, one row per iteration
        self._marks: dict[str, float] = {}
        self._cuda = torch.device(trainer.state.device).type == "cuda"
        visual = network.visual
        self._hooks = [
            network.register_forward_pre_hook(lambda *_: self._mark("forward_start")),
            visual.register_forward_pre_hook(lambda *_: self._mark("image_start")),
            visual.register_forward_hook(lambda *_: self._mark("image_end")),
            network.register_forward_hook(lambda *_: self._mark("forward_end")),
        ]
        for event, name in ((Events.GET_BATCH_STARTED, "batch_started"), (Events.GET_BATCH_COMPLETED, "batch_ready"),
                            (IterationEvents.FORWARD_COMPLETED, "bank_written"),
                            (IterationEvents.LOSS_COMPLETED, "loss_done"),
                            (IterationEvents.BACKWARD_COMPLETED, "backward_done"),
                            (IterationEvents.MODEL_COMPLETED, "step_done")):
            trainer.add_event_handler(event, self._marker(name))
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._close)

    def remove_hooks(self) -> None:
        """Take the forward hooks off the network (the image tower is shared with the zero-shot evaluator)."""
        for hook in self._hooks:
            hook.remove()

    def _mark(self, name: str) -> None:
        if self._cuda:
            torch.cuda.synchronize()
        self._marks[name] = time.perf_counter()

    def _marker(self, name: str) -> Callable[[Engine], None]:
        return lambda engine: self._mark(name)

    def _close(self, engine: Engine) -> None:
        self._mark("iteration_done")
        recorded = engine.state.iteration > self.skip and (self.count is None or len(self.rows) < self.count)
        if recorded and all(m in self._marks for m in _MARKS):
            self.rows.append(np.array([self._marks[b] - self._marks[a] for a, b in _PHASE_SPANS]))
        self._marks = {}

    def mean_seconds(self) -> dict[str, float]:
        """Mean seconds per iteration of each phase (empty before an iteration was recorded)."""
        if not self.rows:
            return {}
        return dict(zip(PHASES, np.mean(self.rows, axis=0).tolist()))

    def table_text(self) -> str:
        """A Markdown table: phase, ms per iteration, share of the iteration."""
        means = self.mean_seconds()
        total = sum(means.values())
        lines = [f"| phase ({len(self.rows)} iterations) | ms/iteration | share |", "| --- | ---: | ---: |"]
        lines += [f"| {phase} | {1e3 * seconds:,.1f} | {100 * seconds / total:.1f}% |"
                  for phase, seconds in means.items()]
        lines.append(f"| total | {1e3 * total:,.1f} | 100% |")
        return "\n".join(lines) + "\n"
