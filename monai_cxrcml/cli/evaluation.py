"""``python -m monai_cxrcml.evaluation``: zero-shot AUC of a trained model on labelled films, as training reports it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from monai_cxrcml.cli.options import (
    add_fold_options,
    add_loader_options,
    add_model_options,
    add_scoring_options,
    fold_kwargs,
    loader_kwargs,
    model_kwargs,
    scoring_kwargs,
    setup_logging,
)
from monai_cxrcml.data.films import FilmReadError
from monai_cxrcml.data.vocabulary import read_class_map
from monai_cxrcml.evaluation import PARTS, evaluate
from monai_cxrcml.networks import CheckpointError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monai_cxrcml.evaluation",
        description="Score labelled films with a trained model and write metrics.json (per-class AUC/AP, base/rare "
        "and prevalence groups, patient-bootstrap intervals, the protocol), per_class.csv and predictions.npz. "
        "A model bundle (or run folder) defaults to the test part of its own training run; another data set's label "
        "file (any format: CXR-LT, NIH, PadChest, CheXpert, VinDr-CXR) is scored whole, each class under the model's "
        "name for it where one is known (per_class.csv lists both names).",
    )
    add_model_options(parser)
    parser.add_argument("--output-dir", help="where the files go (default: the bundle's eval/<part>)")
    add_fold_options(parser)
    parser.add_argument("--part", choices=PARTS, help="test, val, train, or all: the whole file (default: test for "
                                                      "the run's own label file, all for another)")
    parser.add_argument("--class-map", help="JSON/YAML {class of the file: name to score it under}, before the "
                                            "built-in vocabulary table")
    add_scoring_options(parser, "cxrlt2024, chexpert or class names (default: the model's)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="patient-bootstrap resamples (0: no intervals)")
    parser.add_argument("--on-error", choices=["raise", "skip"], default="raise", help="an unreadable film")
    add_loader_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate (see ``--help``), print the AUC table; returns the exit status (2 with a message on a user error)."""
    args = _parser().parse_args(argv)
    setup_logging()
    try:
        model = model_kwargs(args)
        report = evaluate(
            model.pop("model"), **fold_kwargs(args), part=args.part, class_map=read_class_map(args.class_map),
            n_bootstrap=args.bootstrap,
            on_error=args.on_error, **loader_kwargs(args),
            output_dir=args.output_dir, **model, **scoring_kwargs(args),
        )
    except (ValueError, OSError, CheckpointError, FilmReadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    what = f"{args.part} part" if args.part not in (None, "all") else (args.csv or "the run's label file")
    print(report.format_table(f"Zero-shot AUC, {what}"))
    if report.class_info is not None:
        renamed = report.class_info[report.class_info["mapping"] != "model_class"]
        for name, row in renamed.iterrows():
            print(f"  {name!r} scored as {row.scored_name!r} ({row.mapping.replace('_', ' ')})")
    return 0
