"""Shared fixtures: a small phantom CXR-LT data set, built once per test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
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


@pytest.fixture()
def model() -> torch.nn.Module:
    """A tiny CLIP freshly initialised with seed 0 (tests/_tiny_clip.py)."""
    from _tiny_clip import tiny_clip

    return tiny_clip()


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A phantom CXR-LT + MIMIC-CXR-JPG file set small enough for unit tests (shared, read-only)."""
    from monai_cxrcml.phantom import make_phantom

    return make_phantom(tmp_path_factory.mktemp("phantom"), patients=120, size=128, seed=0)


@pytest.fixture(scope="session")
def trained(phantom_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder of the demo recipe trained one epoch through ConfigWorkflow, its properties checked first."""
    from _bundle_runs import TRAIN, small_run
    from monai.bundle import ConfigWorkflow
    from monai.data import get_track_meta

    output_dir = tmp_path_factory.mktemp("run")
    workflow = ConfigWorkflow(config_file=TRAIN, workflow_type="train", run_id="training",
                              **small_run(phantom_dir, output_dir))
    workflow.initialize()
    assert workflow.check_properties() == []
    workflow.run()
    workflow.finalize()
    assert get_track_meta(), "train.yaml's finalize must switch MetaTensors back on for in-process callers"
    return output_dir


@pytest.fixture(scope="session")
def run_films(trained: Path, phantom_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A CSV of the run's test films (dicom_id, fpath) and the run's own test predictions (predictions.npz)."""
    saved = dict(np.load(trained / "predictions.npz"))
    frame = pd.read_csv(phantom_dir / "train_labeled.csv", dtype=str).set_index("dicom_id")
    path = tmp_path_factory.mktemp("films") / "films.csv"
    frame.loc[saved["dicom_id"], ["fpath"]].reset_index().to_csv(path, index=False)
    return path, saved
