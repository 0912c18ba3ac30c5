"""Memory bank of embeddings: the latest embedding ``[D]`` of every training film, by sample id ``0..N-1``."""

from __future__ import annotations

import torch

__all__ = ["EmbeddingBank"]


class EmbeddingBank:
    """The latest embedding of each of ``num_samples`` films, written as batches pass.

    Parameters
    ----------
    num_samples
        Number of films ``N``; sample ids run over ``0..N-1``.

    Attributes
    ----------
    embeddings
        ``[N, D]`` float32 on the device of the first batch stored (None before it).
    filled
        ``[N]`` bool, which films have an embedding (None before the first batch).
    """

    def __init__(self, num_samples: int) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples={num_samples}: the training set is empty.")
        self.num_samples = num_samples
        self.embeddings: torch.Tensor | None = None
        self.filled: torch.Tensor | None = None

    def check_ids(self, ids: torch.Tensor) -> None:
        """Raise an IndexError naming the range of ``ids`` ``[B]`` when any falls outside ``0..N-1``."""
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.num_samples):
            raise IndexError(
                f"sample ids {ids.min().item()}..{ids.max().item()} fall outside 0..{self.num_samples - 1}: "
                "num_samples must be the length of the training datalist whose 'sample_id' the batches carry."
            )

    def store(self, features: torch.Tensor, ids: torch.Tensor) -> None:
        """Write embeddings ``[B, D]`` at sample ids ``[B]`` (ids on the host are checked; device ids are not, to
        spare a host synchronisation: check their host copy with :meth:`check_ids`)."""
        if self.embeddings is None:
            self.embeddings = torch.zeros(self.num_samples, features.shape[1], device=features.device)
            self.filled = torch.zeros(self.num_samples, dtype=torch.bool, device=features.device)
        if ids.device.type == "cpu":
            self.check_ids(ids)
        self.embeddings[ids] = features
        self.filled[ids] = True

    def fill_fraction(self) -> float:
        """Share of the films that have an embedding (call after the first :meth:`store`)."""
        return self.filled.float().mean().item()

    def snapshot(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A copy of the stored embeddings ``[n, D]`` and their sample ids ``[n]`` (training goes on writing)."""
        ids = torch.nonzero(self.filled).squeeze(1)
        return self.embeddings[ids], ids
