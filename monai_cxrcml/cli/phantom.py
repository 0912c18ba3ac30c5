"""``python -m monai_cxrcml.phantom OUT_DIR`` (or ``cxrcml-phantom``): write a phantom data set."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from monai_cxrcml.cli.options import setup_logging
from monai_cxrcml.phantom import make_phantom, make_table_phantom, write_phantom_reports

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m monai_cxrcml.phantom OUT_DIR [--patients N] [--size S] [--seed K] ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m monai_cxrcml.phantom",
        description="Write a phantom CXR-LT 2024 data set (MIMIC-CXR-JPG layout, CXR-LT and MIMIC label files), or "
        "with --labels a phantom with the labels, patients and views of a real label table (synthetic films).",
    )
    parser.add_argument("out_dir", help="folder to write (new or empty)")
    parser.add_argument("--patients", type=int, default=800, help="number of patients (default 800)")
    parser.add_argument("--size", type=int, default=256, help="longest side of the films in pixels (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--split-fractions",
        type=float,
        nargs=3,
        default=(0.7, 0.1, 0.2),
        metavar=("TRAIN", "DEV", "TEST"),
        help="patient shares of train/development/test (default 0.7 0.1 0.2)",
    )
    parser.add_argument(
        "--compression", type=float, default=0.5, help="prevalence exponent alpha in (0, 1] (default 0.5)"
    )
    parser.add_argument(
        "--min-positive-studies", type=int, default=1, help="positive studies per class and split at least (default 1)"
    )
    parser.add_argument("--jpeg-quality", type=int, default=95, help="JPEG quality (default 95)")
    parser.add_argument(
        "--jobs", type=int, default=1, help="worker processes (default 1; output does not depend on it)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a phantom data set already in OUT_DIR")
    parser.add_argument("--labels", help="a real label file (NIH, PadChest, CheXpert, VinDr-CXR, CXR-LT): draw "
                        "--patients of its patients, copy their rows and draw their films (--split-fractions, "
                        "--compression, --min-positive-studies do not apply)")
    parser.add_argument("--label-format", help="the format of --labels (default: from its header)")
    parser.add_argument("--reports", action="store_true", help="also write a free-text report per study "
                        "(files/pXX/pSUBJECT/sSTUDY.txt beside the films; not with --labels)")
    args = parser.parse_args(argv)
    if args.reports and args.labels is not None:
        parser.error("--reports writes reports from the labels.csv of a CXR-LT phantom; a --labels phantom keeps its "
                     "source's own files: drop one of the two.")
    setup_logging(logging.INFO, "%(message)s")
    try:
        if args.labels is not None:
            make_table_phantom(args.out_dir, args.labels, patients=args.patients, size=args.size, seed=args.seed,
                               label_format=args.label_format, jpeg_quality=args.jpeg_quality, jobs=args.jobs,
                               overwrite=args.overwrite)
            return 0
        make_phantom(
            args.out_dir,
            patients=args.patients,
            size=args.size,
            seed=args.seed,
            split_fractions=args.split_fractions,
            compression=args.compression,
            min_positive_studies=args.min_positive_studies,
            jpeg_quality=args.jpeg_quality,
            jobs=args.jobs,
            overwrite=args.overwrite,
        )
        if args.reports:
            write_phantom_reports(args.out_dir)
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
