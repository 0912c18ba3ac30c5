"""A refit running in a background thread (on a CUDA side stream when the embeddings are on a GPU) while training
goes on; its result is collected at a fixed iteration. Why: docs/design.md, "Pseudo-labels: when the mixture is
refit"."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch

from .refit import Refit

__all__ = ["BackgroundRefit", "PendingRefit"]

RefitFunction = Callable[[torch.Tensor, torch.Tensor], Refit]
"""Fits embeddings ``[n, D]`` of films ``[n]`` and returns the :class:`~.refit.Refit`."""


@dataclass
class PendingRefit:
    """A refit started in the background (the future exists on rank 0 only).

    Attributes
    ----------
    ids
        Sample ids ``[n]`` of the embeddings fitted.
    epoch
        Epoch the refit started in.
    due
        Iteration after which its result is published.
    future
        The running fit, or None on ranks that only wait for rank 0's result.
    """

    ids: torch.Tensor
    epoch: int
    due: int
    future: Future | None


class BackgroundRefit:
    """At most one refit at a time in one worker thread; ``pending`` is the running one (None when idle)."""

    def __init__(self) -> None:
        self.pending: PendingRefit | None = None
        self._executor: ThreadPoolExecutor | None = None

    def start(
        self, fit: RefitFunction | None, features: torch.Tensor, ids: torch.Tensor, epoch: int, due: int
    ) -> None:
        """Run ``fit(features, ids)`` in the worker thread; ``fit=None`` (ranks other than 0) only records the
        refit as pending. ``features`` ``[n, D]`` must not be written while it runs (pass a snapshot)."""
        future = None
        if fit is not None:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxrcml-mixture")
            ready = None
            if features.is_cuda:
                ready = torch.cuda.Event()
                ready.record()
            future = self._executor.submit(_on_side_stream, fit, features, ids, ready)
        self.pending = PendingRefit(ids, epoch, due, future)

    def wait(self) -> tuple[PendingRefit, Refit | None]:
        """The pending refit and its result (None on ranks other than 0), after waiting for it; nothing is pending
        afterwards. Call only while ``pending`` is set."""
        pending, self.pending = self.pending, None
        refit = None if pending.future is None else pending.future.result()
        if refit is not None and refit.proba.is_cuda:  # made on the side stream, used on this one from now on
            refit.proba.record_stream(torch.cuda.current_stream(refit.proba.device))
        return pending, refit


def _on_side_stream(
    fit: RefitFunction, features: torch.Tensor, ids: torch.Tensor, ready: torch.cuda.Event | None
) -> Refit:
    """``fit(features, ids)`` in this thread; on a new CUDA stream that waits for ``ready`` when given."""
    if ready is None:
        return fit(features, ids)
    with torch.cuda.device(features.device):
        stream = torch.cuda.Stream()
        stream.wait_event(ready)
        features.record_stream(stream)
        ids.record_stream(stream)
        with torch.cuda.stream(stream):
            refit = fit(features, ids)
        stream.synchronize()  # this thread waits; the training stream does not
    return refit
