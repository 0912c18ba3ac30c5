"""``python -m monai_cxrcml.data.summary FILE``: what a label file holds, before anything is trained on it."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from monai_cxrcml.cli.options import setup_logging
from monai_cxrcml.data.formats import LABEL_FORMATS
from monai_cxrcml.data.groups import GROUP_RULES
from monai_cxrcml.data.summary import summarize_label_file
from monai_cxrcml.data.table import LABEL_POLICIES
from monai_cxrcml.data.vindr import VINDR_RULES

__all__ = ["format_summary", "main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monai_cxrcml.data.summary",
        description="Print a label file's format (found from its header), rows, frontal rows, patients and per-class "
        "counts with their base/rare and common/medium/rare groups.",
    )
    parser.add_argument("file", help="a label file: " + ", ".join(f.title for f in LABEL_FORMATS.values()))
    parser.add_argument("--label-format", choices=sorted(LABEL_FORMATS), help="the format (default: from the header)")
    parser.add_argument("--uncertain", choices=LABEL_POLICIES, default="negative", help="what -1 cells count as")
    parser.add_argument("--blank", choices=LABEL_POLICIES, default="negative", help="what blank cells count as")
    parser.add_argument("--rule", choices=VINDR_RULES, help="VinDr-CXR: a finding of any or of most radiologists")
    parser.add_argument("--group-by", choices=GROUP_RULES, default="auto", help="grouping rule (default auto)")
    parser.add_argument("--rare-threshold", type=float, default=1000)
    parser.add_argument("--common-threshold", type=float, default=10000)
    parser.add_argument("--sort", choices=["count", "name"], default="count", help="order of the classes")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def format_summary(summary: dict[str, Any], sort: str = "count") -> str:
    """The summary of :func:`~monai_cxrcml.data.summary.summarize_label_file` as a plain-text table."""
    s = summary
    classes = sorted(s["classes"], key=(lambda c: (-c["frontal_positive"], c["name"])) if sort == "count"
                     else (lambda c: c["name"]))
    groups = {key: {g: sum(c[key] == g for c in classes) for g in values}
              for key, values in (("group", ("base", "rare")), ("prevalence_group", ("common", "medium", "rare")))}
    width = max(24, *(len(c["name"]) for c in classes))
    lines = [
        f"{s['file']}",
        f"format: {s['format']} ({s['format_title']})",
        f"rows {s['rows']:,}, frontal rows {s['frontal_rows']:,}; patients {s['patients']:,} (frontal "
        f"{s['frontal_patients']:,}); studies {s['studies']:,}",
        "views: " + ", ".join(f"{k} {v:,}" for k, v in s["views"].items()),
        f"{len(classes)} classes; groups by {s['group_rule']} on the frontal rows (rare < {s['thresholds']['rare']:g}"
        f", common > {s['thresholds']['common']:g}): " + ", ".join(f"{n} {g}" for g, n in groups["group"].items())
        + "; " + ", ".join(f"{n} {g}" for g, n in groups["prevalence_group"].items()),
    ]
    if s["policies"]:
        lines.append("counts with " + ", ".join(f"{k}={v}" for k, v in s["policies"].items()))
    lines.append(f"{'class':{width}} {'positive':>9} {'frontal':>9} {'prev.':>7} {'uncertain':>9} {'blank':>9}"
                 "  group  prevalence group")
    for c in classes:
        lines.append(f"{c['name']:{width}} {c['positive']:>9,} {c['frontal_positive']:>9,} "
                     f"{100 * c['frontal_prevalence']:>6.2f}% {_count(c['uncertain']):>9} {_count(c['blank']):>9}"
                     f"  {c['group']:5}  {c['prevalence_group']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Summarise the file (see ``--help``); returns the exit status (2 with a message on a user error)."""
    args = _parser().parse_args(argv)
    setup_logging(logging.WARNING, "%(levelname)s %(name)s: %(message)s")
    options = {} if args.rule is None else {"rule": args.rule}
    try:
        summary = summarize_label_file(args.file, args.label_format, uncertain=args.uncertain, blank=args.blank,
                                       group_by=args.group_by, rare_threshold=args.rare_threshold,
                                       common_threshold=args.common_threshold, **options)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1) if args.json else format_summary(summary, args.sort))
    return 0
