"""Options shared by the command lines that score films: the model, what to score, how to score it, how to load
the films; and the logging every command line sets up."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from monai_cxrcml.data.classes import class_selection
from monai_cxrcml.data.formats import LABEL_FORMATS
from monai_cxrcml.networks import PROMPT_PRESETS, read_prompts
from monai_cxrcml.protocols import PROTOCOLS

__all__ = [
    "LOG_FORMAT",
    "add_fold_options",
    "add_loader_options",
    "add_model_options",
    "add_scoring_options",
    "fold_kwargs",
    "loader_kwargs",
    "model_kwargs",
    "scoring_kwargs",
    "setup_logging",
]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""Log line of the command lines that load a model: time, level, logger and message."""


def setup_logging(level: int = logging.INFO, fmt: str = LOG_FORMAT, **kwargs: Any) -> None:
    """Send log records of ``level`` and above to stderr as ``fmt`` lines (``logging.basicConfig``)."""
    logging.basicConfig(level=level, format=fmt, **kwargs)


def add_loader_options(parser: argparse.ArgumentParser) -> None:
    """``--batch-size``, ``--num-workers`` and ``--device``: how films are loaded and where the model runs."""
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")


def loader_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`add_loader_options`' options."""
    return {"batch_size": args.batch_size, "num_workers": args.num_workers, "device": args.device}


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--model`` (bundle, run folder or checkpoint) or ``--checkpoint``, and the settings a bare one needs."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a model bundle, a training run folder (its bundle/), or a checkpoint file")
    source.add_argument("--checkpoint", help="a bare checkpoint file (same as --model FILE)")
    parser.add_argument("--model-name", help="open_clip config of a bare checkpoint, e.g. ViT-B-32-quickgelu (a "
                                             "bundle carries its own)")
    parser.add_argument("--image-size", type=int, help="input size of a bare checkpoint (default: its config's)")
    parser.add_argument("--normalization", choices=["chexzero", "clip"],
                        help="the normalisation a bare checkpoint was trained with (default: the protocol's)")


def add_scoring_options(parser: argparse.ArgumentParser, classes_help: str) -> None:
    """``--classes``, ``--protocol``, ``--prompts``, ``--precision``, ``--calibration`` (default: the model's)."""
    parser.add_argument("--classes", nargs="+", help=classes_help)
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS),
                        help="scoring protocol (default: the model's; present_absent for a bare checkpoint)")
    parser.add_argument("--prompts", help=f"prompt preset ({', '.join(PROMPT_PRESETS)}) or a JSON/YAML PromptSet "
                                          "file, on top of the protocol")
    parser.add_argument("--precision", choices=["fp32", "autocast"], help="fp32 (default) or autocast on CUDA")
    parser.add_argument("--calibration", help="a calibration JSON (python -m monai_cxrcml.calibration)")


def model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of :func:`~monai_cxrcml.model_bundle.create_scorer` for the model options."""
    model = args.model or args.checkpoint
    return {"model": os.fspath(model), "model_name": args.model_name, "image_size": args.image_size,
            "normalization": args.normalization}


def scoring_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for the scoring options (``class_names``, ``protocol``, ``prompts``, ...)."""
    return {"class_names": class_selection(args.classes), "protocol": args.protocol,
            "prompts": read_prompts(args.prompts), "precision": args.precision, "calibration": args.calibration}


def add_fold_options(parser: argparse.ArgumentParser) -> None:
    """The labelled films: a label file and its fold settings (default: the training run's, as a bundle records)."""
    parser.add_argument("--csv", help="the label file (default: the run's training label file)")
    parser.add_argument("--image-root", help="folder the CSV's fpath values are relative to (default: the run's)")
    parser.add_argument("--fold", type=int)
    parser.add_argument("--num-folds", type=int)
    parser.add_argument("--seed", type=int, help="split seed of the training run")
    parser.add_argument("--val-fraction", type=float)
    parser.add_argument("--test-csv", help="the run's test_csv, when it had one")
    parser.add_argument("--split", help="rows of a --csv with a split column (labels.csv): train, development, test")
    parser.add_argument("--test-split", help="the same for --test-csv")
    parser.add_argument("--uncertain", choices=["negative", "positive", "mask"])
    parser.add_argument("--blank", choices=["negative", "positive", "mask"])
    parser.add_argument("--label-format", choices=sorted(LABEL_FORMATS),
                        help="format of --csv (default: found from its header)")


def fold_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of :func:`~monai_cxrcml.calibration.calibrate` / ``evaluate`` for the fold options."""
    return {"csv": args.csv, "image_root": args.image_root, "fold": args.fold, "num_folds": args.num_folds,
            "seed": args.seed, "val_fraction": args.val_fraction, "test_csv": args.test_csv, "split": args.split,
            "test_split": args.test_split, "uncertain": args.uncertain, "blank": args.blank,
            "label_format": args.label_format}
