"""``configs/paper.yaml`` as the README's MIMIC command runs it, built in-process, and a CheXzero-format start.

The benchmarks that time the paper's path (``rehearse_paper.py``, ``gpu_check.py``) build the bundle's own training
objects from ``bundle/configs/train.yaml`` + ``configs/paper.yaml`` with the README's command-line ids as
overrides, then run parts of them (a bounded number of iterations, one epoch, the validation pass), so what they
time is what users run, not a copy of it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser, ConfigWorkflow

from monai_cxrcml.networks import create_clip
from monai_cxrcml.phantom import ensure_phantom, make_phantom

REPO = Path(__file__).resolve().parents[1]
PAPER_CONFIGS = (str(REPO / "bundle" / "configs" / "train.yaml"), str(REPO / "configs" / "paper.yaml"))
"""The README's "Train on MIMIC-CXR-JPG + CXR-LT 2024" configs."""

CHEXZERO_MODEL = "ViT-B-32-quickgelu"
"""CheXzero's architecture under open_clip's name (OpenAI key layout, QuickGELU)."""

FILMS_PER_PATIENT = 4.0
"""Films per phantom patient, rounded down (the generator draws ~4.1-4.7): patients = films / this."""


def film_phantom(root: str | os.PathLike, films: int, film_size: int, jobs: int = 1, reuse: bool = True) -> Path:
    """A phantom data set of at least about ``films`` films of ``film_size`` px (height), all in
    ``train_labeled.csv`` (``--split-fractions 1 0 0``: the fold cuts test and validation from it, as on MIMIC).

    ``reuse`` keeps a phantom made earlier with the same arguments (:func:`~monai_cxrcml.phantom.ensure_phantom`);
    otherwise it is written anew (to time it).
    """
    options = dict(patients=math.ceil(films / FILMS_PER_PATIENT), size=film_size, seed=0,
                   split_fractions=(1.0, 0.0, 0.0), jobs=jobs)
    return ensure_phantom(root, **options) if reuse else make_phantom(root, **options, overwrite=True)


def write_chexzero_checkpoint(path: str | os.PathLike, model_name: str = CHEXZERO_MODEL, seed: int = 0) -> Path:
    """A randomly initialised CLIP saved as CheXzero ships its weights: a plain ``state_dict`` with OpenAI key names.

    Kept when ``path`` exists already (the random weights are a stand-in for CheXzero's, which cannot be shared;
    the towers and tokens of ``ViT-B-32-quickgelu`` agree with CheXzero's code to 1e-7, shared/FACTS.md).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(seed)
        torch.save(create_clip(model_name).state_dict(), path)
    return path


def paper_config(**overrides: Any) -> ConfigParser:
    """The merged paper configs with ``overrides``, for values and the pieces that need no data set
    (``get_parsed_content("scoring_protocol")``, ``"train#mixture"``, ``parser["num_clusters"]``)."""
    parser = ConfigParser()
    parser.read_config(list(PAPER_CONFIGS))
    parser.update(overrides)
    return parser


def paper_workflow(
    dataset_dir: str | os.PathLike,
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    cache_dir: str | os.PathLike | None,
    **overrides: Any,
) -> ConfigWorkflow:
    """The paper's training workflow, initialised (determinism, plain tensors, the protocol announced).

    Parameters
    ----------
    dataset_dir
        MIMIC-CXR-JPG root holding ``files/`` and, unless ``train_csv`` is overridden, ``train_labeled.csv``.
    checkpoint
        ``pretrained``: a CheXzero/OpenAI state_dict (:func:`write_chexzero_checkpoint`).
    output_dir, cache_dir
        The run's folder and the film cache's.
    **overrides
        Further config ids (``epochs=1``, ``num_workers=8``, ``train#trainer#epoch_length=20``, ...).

    Returns
    -------
    ConfigWorkflow
        Its ``parser`` builds the pieces: ``get_parsed_content("train#trainer")``, ``"validate#evaluator"``, ...
    """
    workflow = ConfigWorkflow(
        config_file=list(PAPER_CONFIGS), workflow_type="train", run_id="training",
        dataset_dir=str(dataset_dir), pretrained=str(checkpoint), output_dir=str(output_dir),
        cache_dir=None if cache_dir is None else str(cache_dir), **overrides,
    )
    workflow.initialize()
    return workflow
