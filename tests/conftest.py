"""Shared fixtures: a small phantom CXR-LT data set, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# One intra-op thread: tests run beside data-loader workers and subprocesses on small machines, where more threads
# oversubscribe the cores and make torch 3-10x slower.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _restore_track_meta():
    """Restore MONAI's global MetaTensor switch after each test.

    The bundle's ``initialize`` calls ``monai.data.set_track_meta(False)``; a bundle run in-process (ConfigWorkflow)
    would otherwise leave every later test with plain tensors where it expects MetaTensors.
    """
    from monai.data import get_track_meta, set_track_meta

    tracked = get_track_meta()
    yield
    set_track_meta(tracked)


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A phantom CXR-LT + MIMIC-CXR-JPG file set small enough for unit tests (shared, read-only)."""
    from monai_cxrcml.data.phantom import make_phantom

    return make_phantom(tmp_path_factory.mktemp("phantom"), patients=120, size=128, seed=0)
