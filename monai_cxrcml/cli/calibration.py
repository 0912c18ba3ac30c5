"""``python -m monai_cxrcml.calibration``: fit a temperature calibration of a trained model and keep it with it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from monai_cxrcml.calibration import calibrate
from monai_cxrcml.cli.options import (
    add_fold_options,
    add_loader_options,
    add_model_options,
    fold_kwargs,
    loader_kwargs,
    model_kwargs,
    setup_logging,
)
from monai_cxrcml.data.classes import class_selection
from monai_cxrcml.networks import CheckpointError, read_prompts
from monai_cxrcml.protocols import PROTOCOLS

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monai_cxrcml.calibration",
        description="Fit a temperature (and bias) calibration of a trained model on the validation part of its "
        "training fold. A model bundle (or run folder) knows its fold settings and receives the result (a new "
        "bundle version); a bare checkpoint needs --csv, the fold settings and --output.",
    )
    add_model_options(parser)
    parser.add_argument("--output", help="calibration JSON to write (default: into the model bundle)")
    add_fold_options(parser)
    parser.add_argument("--part", default="val", choices=["val", "train", "test"],
                        help="part to fit on (val; fitting on test leaks it)")
    parser.add_argument("--classes", nargs="+", help="cxrlt2024, chexpert or class names (default: the run's)")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), help="score under this protocol instead")
    parser.add_argument("--prompts", help="prompt preset or a JSON/YAML PromptSet file instead of the protocol's")
    parser.add_argument("--per-class", action="store_true", help="one temperature per class")
    parser.add_argument("--bias", action="store_true", help="a bias per class as well")
    parser.add_argument("--bins", type=int, default=15, help="equal-width ECE bins")
    parser.add_argument("--min-count", type=int, default=5,
                        help="classes with fewer known positives or negatives get the global temperature")
    add_loader_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Fit the calibration (see ``--help``), print the ECE before and after; returns the exit status."""
    args = _parser().parse_args(argv)
    setup_logging()
    try:
        model = model_kwargs(args)
        calibration = calibrate(
            model.pop("model"), **fold_kwargs(args), class_names=class_selection(args.classes), part=args.part,
            per_class=args.per_class, bias=args.bias, n_bins=args.bins, min_count=args.min_count,
            protocol=args.protocol, prompts=read_prompts(args.prompts), output=args.output, **model,
            **loader_kwargs(args),
        )
    except (ValueError, OSError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    before, after = calibration.before, calibration.after
    print(f"{'':14s}{'before':>10s}{'after':>10s}")
    for key in ("ece", "classwise_ece", "nll"):
        print(f"{key:14s}{before[key]:10.4f}{after[key]:10.4f}")
    print(f"written to {args.output or 'the model bundle (models/calibration.json)'}")
    return 0
