"""``python -m monai_cxrcml.report RUN_DIR [--classes ...] [--finding NAME] [--format md|html] [--tsne-max N]``.

Writes ``RUN_DIR/report/``: ``auc_per_class.png``, ``roc_curves.png``, ``reliability.png``, ``tsne.png`` (each
when the run folder holds what it needs) and ``summary.md`` or ``summary.html``, which also says what is missing
and how to get it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from monai_cxrcml.cli.options import setup_logging
from monai_cxrcml.report.build import make_report
from monai_cxrcml.report.summary import FORMATS

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Write the report (see ``--help``); returns the exit status (2 with a message on a user error)."""
    parser = argparse.ArgumentParser(
        prog="python -m monai_cxrcml.report",
        description="Plots and a summary of a CXR-CML run (metrics.json, predictions.npz, checkpoints), written "
                    "into RUN_DIR/report.",
    )
    parser.add_argument("run_dir", help="the run's output_dir")
    parser.add_argument("--classes", nargs="+", default=None, metavar="NAME",
                        help="classes of the ROC and per-class reliability curves (quote names with spaces); "
                             "default: the 3 classes with most test positives and the 3 rare ones with most")
    parser.add_argument("--finding", default=None, help="finding colouring the t-SNE's second panel; default: the "
                                                        "rare class with most test positives among --classes")
    parser.add_argument("--format", dest="fmt", choices=FORMATS, default="md", help="summary format (default md)")
    parser.add_argument("--tsne-max", type=int, default=5000, metavar="N",
                        help="films embedded by t-SNE at most, a random subset of more (default 5000, about a "
                             "minute on 2 CPU cores)")
    parser.add_argument("--bins", type=int, default=15, help="bins of the reliability diagram (default 15)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the t-SNE subset and layout (default 0)")
    args = parser.parse_args(argv)
    setup_logging(logging.INFO, "%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        result = make_report(args.run_dir, classes=args.classes, finding=args.finding, fmt=args.fmt,
                             tsne_max=args.tsne_max, n_bins=args.bins, seed=args.seed)
    except (FileNotFoundError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")
    print(result.summary_path)
    for line in result.missing:
        print(f"missing: {line}", file=sys.stderr)
    return 0

