"""Shared fixtures: a small phantom CXR-LT data set, built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Two cores are shared by data-loader workers and torch: keep intra-op threads modest and runs repeatable.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A phantom CXR-LT + MIMIC-CXR-JPG file set small enough for unit tests (shared, read-only)."""
    from monai_cxrcml.data.phantom import make_phantom

    return make_phantom(tmp_path_factory.mktemp("phantom"), patients=120, size=128, seed=0)
