"""The memory bank of the pseudo-label handler (monai_cxrcml.handlers.pseudo_labels.EmbeddingBank)."""

from __future__ import annotations

import pytest
import torch

from monai_cxrcml.handlers.pseudo_labels import EmbeddingBank


def test_sample_ids_outside_the_bank_are_named():
    bank = EmbeddingBank(4)
    with pytest.raises(IndexError, match="outside 0..3"):
        bank.store(torch.zeros(2, 8), torch.tensor([1, 9]))


def test_bank_keeps_the_latest_embedding_of_each_film_and_snapshots_the_filled_rows():
    bank = EmbeddingBank(5)
    bank.store(torch.ones(2, 3), torch.tensor([4, 1]))
    bank.store(torch.full((2, 3), 2.0), torch.tensor([1, 2]))
    assert bank.fill_fraction() == pytest.approx(0.6)
    features, ids = bank.snapshot()
    assert ids.tolist() == [1, 2, 4]
    assert features[:, 0].tolist() == [2.0, 2.0, 1.0]
    features += 10.0  # a snapshot: training goes on writing the bank
    assert bank.embeddings[1, 0] == 2.0
    with pytest.raises(ValueError, match="num_samples=0"):
        EmbeddingBank(0)
