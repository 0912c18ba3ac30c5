"""The report's summary page: one document model, rendered as Markdown or as a self-contained HTML page.

:func:`summary_document` lays out what :func:`~monai_cxrcml.report.make_report` found (group means, each plot
with what it shows and its numbers, what is missing and how to get it); :class:`Document` renders it. Images are
linked by file name, so the summary and its PNGs move together as one folder.
"""

from __future__ import annotations

import datetime
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from monai_cxrcml.metrics import SUMMARY_MEANS
from monai_cxrcml.protocols import get_protocol

from .plots import POOLED
from .result import ReportResult

__all__ = ["FORMATS", "Document", "summary_document", "write_summary"]

FORMATS = ("md", "html")

@dataclass
class Document:
    """A sequence of headings, paragraphs, bullet lists, tables and images."""

    title: str
    blocks: list[tuple] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(("heading", text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("paragraph", text))

    def bullets(self, items: Sequence[str]) -> None:
        self.blocks.append(("bullets", list(items)))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        self.blocks.append(("table", list(header), [[str(v) for v in row] for row in rows]))

    def image(self, file_name: str, alt: str) -> None:
        self.blocks.append(("image", file_name, alt))

    def to_markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        for kind, *args in self.blocks:
            if kind == "heading":
                lines += [f"## {args[0]}", ""]
            elif kind == "paragraph":
                lines += [args[0], ""]
            elif kind == "bullets":
                lines += [f"- {item}" for item in args[0]] + [""]
            elif kind == "table":
                header, rows = args

                def cells(values):
                    return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

                lines += [cells(header), "|" + "---|" * len(header), *(cells(r) for r in rows), ""]
            elif kind == "image":
                lines += [f"![{args[1]}]({args[0]})", ""]
        return "\n".join(lines)

    def to_html(self) -> str:
        def e(text: str) -> str:  # escaped, with `code` spans as <code>
            return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))

        body = [f"<h1>{e(self.title)}</h1>"]
        for kind, *args in self.blocks:
            if kind == "heading":
                body.append(f"<h2>{e(args[0])}</h2>")
            elif kind == "paragraph":
                body.append(f"<p>{e(args[0])}</p>")
            elif kind == "bullets":
                body.append("<ul>" + "".join(f"<li>{e(item)}</li>" for item in args[0]) + "</ul>")
            elif kind == "table":
                header, rows = args
                head = "".join(f"<th>{e(h)}</th>" for h in header)
                rows_html = "".join("<tr>" + "".join(f"<td>{e(v)}</td>" for v in row) + "</tr>" for row in rows)
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>")
            elif kind == "image":
                body.append(f'<p><img src="{e(args[0])}" alt="{e(args[1])}" style="max-width:100%"></p>')
        style = ("body{font-family:sans-serif;max-width:60em;margin:auto;padding:1em}"
                 "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}")
        return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{e(self.title)}</title>"
                f"<style>{style}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")


def _number(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):.{digits}f}"


def _interval(ci: object) -> str:
    if not ci or any(v is None for v in ci):
        return ""
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def summary_document(result: ReportResult) -> Document:
    """The summary of a report as a :class:`Document`."""
    doc = Document(f"CXR-CML report: {result.run_dir.resolve().name}")
    doc.paragraph(f"Run folder: {result.run_dir.resolve()}. Written {datetime.datetime.now():%Y-%m-%d %H:%M}.")
    _group_means(doc, result)
    _auc_bars(doc, result)
    _roc(doc, result)
    _reliability(doc, result)
    _tsne(doc, result)
    if result.notes:
        doc.heading("Notes")
        doc.bullets(result.notes)
    doc.heading("Missing")
    doc.bullets(result.missing or ["Nothing: every plot was drawn."])
    return doc


def write_summary(result: ReportResult, fmt: str = "md") -> Path:
    """Write ``report_dir/summary.md`` or ``summary.html`` and return its path."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {FORMATS}.")
    doc = summary_document(result)
    path = result.report_dir / f"summary.{fmt}"
    path.write_text(doc.to_markdown() if fmt == "md" else doc.to_html(), encoding="utf-8")
    return path


def _group_means(doc: Document, result: ReportResult) -> None:
    doc.heading("Group means")
    metrics = result.metrics
    if metrics is None:
        doc.paragraph("No metrics.json: see Missing.")
        return
    boot = metrics.get("bootstrap") or {}
    level = int(round(100 * boot.get("ci_level", 0.95)))
    per_class = result.per_class
    rows = []
    for key, label, group in SUMMARY_MEANS:
        if metrics.get(key) is None:  # absent, or a grouping with no defined class in this run
            continue
        if group is None:
            n = int(per_class["auc"].notna().sum()) if key != "macro_ap" else int(per_class["ap"].notna().sum())
        else:
            column = "group" if group in ("base", "rare") else "prevalence_group"
            n = int((per_class[column].eq(group) & per_class["auc"].notna()).sum())
        rows.append([label, _number(metrics[key]), _interval(metrics.get(f"{key}_ci")), n])
    doc.table(["mean", "value", f"{level}% CI", "classes"], rows)
    if metrics.get("protocol"):
        doc.paragraph(f"Scoring protocol: {get_protocol(metrics['protocol']).describe()}. The run's scores under "
                      "another protocol, when the experiment runner made them, are in its `protocol-<name>/` folder "
                      "(`python -m monai_cxrcml.report RUN/protocol-<name>` reports them).")
    undefined = metrics.get("undefined_classes") or []
    doc.paragraph(
        f"{metrics.get('n_images', '?')} test images, {metrics.get('n_classes', len(per_class))} classes"
        + (f"; AUC undefined (single label value in the test set) for {', '.join(undefined)}" if undefined else "")
        + (f". Intervals: {boot.get('resamples')} bootstrap resamples by {boot.get('unit')}." if boot.get("resamples")
           else ". No bootstrap intervals (n_bootstrap = 0).")
    )


def _auc_bars(doc: Document, result: ReportResult) -> None:
    doc.heading("Per-class AUC")
    data = result.data.get("auc_bars")
    if data is None:
        doc.paragraph("Not drawn: see Missing.")
        return
    doc.image(result.plots["auc_bars"].name, "Per-class AUC bars sorted by prevalence, coloured by group")
    doc.paragraph(
        "Zero-shot AUC of every class, most test positives on top (count in brackets), coloured by group "
        "(base: >= 1000 training images, rare: < 1000); dashed lines: group means; dotted line: chance"
        + ("; whiskers: bootstrap confidence intervals." if data["ci_low"].notna().any() else ".")
    )
    doc.table(["class", "group", "test positives", "AUC", "CI"],
              [[r["class"], r["group"], r["n_pos"], _number(r["auc"]),
                _interval(None if math.isnan(r["ci_low"]) else (r["ci_low"], r["ci_high"]))]
               for _, r in data.iterrows()])


def _roc(doc: Document, result: ReportResult) -> None:
    doc.heading("ROC curves")
    data = result.data.get("roc")
    if data is None:
        doc.paragraph("Not drawn: see Missing.")
        return
    doc.image(result.plots["roc"].name, "ROC curves of the chosen classes")
    doc.paragraph(f"Classes: {', '.join(result.classes)} (rare classes dashed). Only test films whose label is "
                  "known enter a class's curve.")
    aucs = data.groupby("class", sort=False)["auc"].first()
    doc.table(["class", "AUC (area under the drawn curve)"], [[name, _number(v)] for name, v in aucs.items()])


def _reliability(doc: Document, result: ReportResult) -> None:
    doc.heading("Reliability diagram")
    data = result.data.get("reliability")
    if data is None:
        doc.paragraph("Not drawn: see Missing.")
        return
    doc.image(result.plots["reliability"].name, "Reliability diagram with ECE")
    doc.paragraph(
        "Fraction of positives against the mean predicted probability in equal-width bins, pooled over every "
        "(film, class) pair with a known label and per chosen class; the lower panel counts the pooled pairs per "
        "bin. ECE = sum over bins of (pairs in bin / pairs) x |fraction positive - mean probability| (as "
        "monai_cxrcml.calibration computes it). Zero-shot probabilities are not calibrated by training: fit a "
        "temperature on the validation split with `python -m monai_cxrcml.calibration` to calibrate them."
    )
    counts = data.groupby("curve", sort=False)["count"].sum()
    doc.table(["curve", "ECE", "pairs"], [[c, _number(result.ece[c]), int(counts[c])] for c in counts.index])
    if POOLED not in counts.index:
        doc.paragraph("No pair with a known label: the pooled curve is empty.")


def _tsne(doc: Document, result: ReportResult) -> None:
    doc.heading("t-SNE of the test image embeddings")
    data = result.data.get("tsne")
    if data is None:
        doc.paragraph("Not drawn: see Missing.")
        return
    doc.image(result.plots["tsne"].name, "t-SNE of test image embeddings by mixture cluster and by finding")
    t = result.tsne
    subset = " (random subset, --tsne-max)" if t["n_shown"] < t["n_films"] else ""
    facts = [f"{t['n_shown']} of {t['n_films']} test films{subset}"]
    if "cluster" in data:
        facts.append(f"left: the test films' most responsible component of the mixture saved in {t['checkpoint']} "
                     f"(K = {t['n_components']}; {t['clusters_used']} components claim one of the films shown or more)")
    if result.finding is not None:
        value = data["finding"]
        facts.append(f"right: {result.finding}, {int((value == 1).sum())} positive, {int((value == 0).sum())} "
                     f"negative, {int(value.isna().sum())} unknown among the films shown")
    doc.paragraph("Layout of the L2-normalised image embeddings (CXR-CML Fig. 2): " + "; ".join(facts) + ".")
