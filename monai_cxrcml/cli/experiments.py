"""``python -m monai_cxrcml.experiments``: the experiment runner's command line.

Cross-validate an experiment (5 folds, one seed) and print mean +- std over folds::

    python -m monai_cxrcml.experiments run cxrcml --config configs/paper.yaml --folds 0 1 2 3 4 \\
        --set dataset_dir=/data/mimic-cxr-jpg/2.0.0 --set pretrained=/models/chexzero.pt

Compare experiments in the form of the paper's Table 2 (one column group per scoring protocol: CheXzero's and this
project's default), with paired tests against a baseline::

    python -m monai_cxrcml.experiments compare runs/experiments/contrastive runs/experiments/cxrcml \\
        --baseline contrastive
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import yaml

from monai_cxrcml.cli.options import setup_logging
from monai_cxrcml.experiments.runner import DEFAULT_BUNDLE_CONFIG, TABLE_PROTOCOLS, run_experiment
from monai_cxrcml.experiments.summary import compare, summarise

__all__ = ["main"]


def _parse_set(items: Sequence[str]) -> dict:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE, e.g. --set nu=6")
        overrides[key] = yaml.safe_load(value)  # numbers, booleans, null and lists as YAML reads them
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    """Run or compare experiments (see ``--help``); returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m monai_cxrcml.experiments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train and test an experiment over folds and seeds")
    run.add_argument("name")
    run.add_argument("--config", action="append", default=[], help="experiment config merged on the bundle's (repeat)")
    run.add_argument("--folds", type=int, nargs="+", default=[0])
    run.add_argument("--seeds", type=int, nargs="+", default=[0])
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeat)")
    run.add_argument("--probe", action="store_true", help="also score a linear probe of the embeddings")
    run.add_argument("--output-root", default="runs/experiments")
    run.add_argument("--bundle-config", default=str(DEFAULT_BUNDLE_CONFIG))
    run.add_argument("--protocols", nargs="*", default=list(TABLE_PROTOCOLS),
                     help="protocols every run's test part is also scored under (default: %(default)s)")
    cmp = commands.add_parser("compare", help="Table 2 of several experiments, paired tests against a baseline")
    cmp.add_argument("experiments", nargs="+")
    cmp.add_argument("--baseline")
    cmp.add_argument("--probe", action="store_true")
    cmp.add_argument("--protocols", nargs="+", default=list(TABLE_PROTOCOLS),
                     help="one column group per protocol; 'own' is each run's own (default: %(default)s)")
    args = parser.parse_args(argv)
    setup_logging(logging.INFO, "%(asctime)s %(message)s")

    if args.command == "run":
        experiment = run_experiment(args.name, args.config, args.output_root, args.folds, args.seeds,
                                    _parse_set(args.set), args.probe, args.bundle_config, args.protocols)
        print(summarise(experiment).to_string(float_format=lambda v: f"{v:.4f}"))
    else:
        protocols = [None if p == "own" else p for p in args.protocols]
        sys.stdout.write(compare(args.experiments, args.baseline, args.probe, protocols))
    return 0

