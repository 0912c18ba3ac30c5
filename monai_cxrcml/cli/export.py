"""``python -m monai_cxrcml.export``: write a checkpoint as a model bundle."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from monai_cxrcml.cli.options import setup_logging
from monai_cxrcml.data.classes import class_selection
from monai_cxrcml.export import export_checkpoint
from monai_cxrcml.networks import CheckpointError
from monai_cxrcml.protocols import PROTOCOLS

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monai_cxrcml.export",
        description="Write a checkpoint (CheXzero/OpenAI state_dict, open_clip checkpoint, or an old bare "
        "models/model.pt) as a self-contained MONAI model bundle that inference, calibration and MONAI Label take "
        "alone (--model BUNDLE).",
    )
    parser.add_argument("checkpoint", help="the checkpoint file")
    parser.add_argument("--output", required=True, help="bundle folder to write")
    parser.add_argument("--model-name", help="open_clip config (default ViT-B-32-quickgelu for CheXzero/OpenAI "
                                             "ViT-B/32 weights; required otherwise)")
    parser.add_argument("--image-size", type=int, help="input size (default: the config's)")
    parser.add_argument("--normalization", choices=["chexzero", "clip"],
                        help="the normalisation it was trained with (default: the protocol's)")
    parser.add_argument("--classes", nargs="+", help="cxrlt2024 (default), chexpert, or class names")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS),
                        help="its scoring protocol (default: chexzero for CheXzero/OpenAI weights, else "
                             "present_absent)")
    parser.add_argument("--allow-torchscript", action="store_true",
                        help="accept a TorchScript archive (OpenAI's original JIT files); runs its code")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Export (see ``--help``); returns the exit status (2 with a message on a user error)."""
    args = _parser().parse_args(argv)
    setup_logging()
    try:
        bundle = export_checkpoint(args.checkpoint, args.output, args.model_name, args.image_size,
                                   args.normalization, class_selection(args.classes), args.protocol,
                                   args.allow_torchscript)
    except (ValueError, OSError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"model bundle written to {bundle}")
    return 0
