"""``python -m monai_cxrcml.inference``: score films with a trained model and write a submission CSV."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from monai_cxrcml.cli.options import (
    add_loader_options,
    add_model_options,
    add_scoring_options,
    loader_kwargs,
    model_kwargs,
    scoring_kwargs,
    setup_logging,
)
from monai_cxrcml.handlers.submission_writer import AGGREGATIONS
from monai_cxrcml.inference import NoReadableFilmError, predict
from monai_cxrcml.networks import CheckpointError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monai_cxrcml.inference",
        description="Score chest films with a trained CXR-CML model and write a submission CSV: dicom_id (CSV) or "
        "path (folder, files), then one probability per class. The protocol used is written to "
        "<output>.protocol.json; unreadable films are listed in <output>.unreadable.csv.",
    )
    parser.add_argument("source", nargs="+",
                        help="a CSV with dicom_id and fpath (rows kept, all views), a folder, or image files")
    add_model_options(parser)
    parser.add_argument("--output", required=True, help="submission CSV to write")
    parser.add_argument("--image-root", help="folder a CSV's fpath values are relative to (default: its folder)")
    add_scoring_options(parser, "cxrlt2024, chexpert, or class names in column order (default: a CSV's own class "
                                "columns, else the model's classes)")
    parser.add_argument("--aggregate", choices=AGGREGATIONS, help="mean or max over the films of a study")
    add_loader_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Score the films (see ``--help``); returns the exit status (2 with a message on a user error)."""
    args = _parser().parse_args(argv)
    setup_logging()
    first = Path(args.source[0])
    single = len(args.source) == 1 and (first.is_dir() or first.name.lower().endswith((".csv", ".csv.gz")))
    try:
        model = model_kwargs(args)
        submission = predict(
            args.source[0] if single else args.source, model.pop("model"), image_root=args.image_root,
            aggregate=args.aggregate, **loader_kwargs(args),
            output=args.output, **model, **scoring_kwargs(args),
        )
    except (ValueError, OSError, CheckpointError, NoReadableFilmError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    unreadable = submission.attrs["unreadable"]
    print(f"{len(submission)} films x {submission.shape[1] - 1} classes written to {args.output}"
          + (f"; {len(unreadable)} unreadable listed in {Path(args.output).with_suffix('.unreadable.csv')}"
             if unreadable else ""))
    return 0
