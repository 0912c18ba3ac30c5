"""Radiology reports as text sections: MIMIC-CXR's ``files/pXX/pSUBJECT/sSTUDY.txt`` and Indiana University's XMLs.

A MIMIC-CXR report is free text whose sections start with an upper-case heading and a colon at the start of a
line (``FINDINGS:``, ``IMPRESSION:``, ``INDICATION:``, ``COMPARISON:``, ...); :func:`report_sections` splits it,
keys lower-cased, whitespace collapsed, text before the first heading kept as ``"preamble"``. ``CONCLUSION`` and
``SUMMARY`` count as the impression where a report has no ``IMPRESSION`` (:data:`SECTION_SYNONYMS`).
The Indiana University collection (``NLMCXR_reports.tgz``, 3,955 ``ecgen-radiology/*.xml``) holds the sections
as ``<AbstractText Label="FINDINGS">`` elements, MeSH terms and the report's image ids (:func:`read_iu_reports`).
:func:`attach_reports` puts each study's findings and impression beside a MIMIC-CXR / CXR-LT table's rows, where
caption transforms read them (``findings`` and ``impression`` datalist keys).
"""

from __future__ import annotations

import logging
import os
import re
import tarfile
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from .table import REPORT_COLUMNS, LabelTable

__all__ = [
    "REPORT_COLUMNS",
    "SECTION_SYNONYMS",
    "attach_reports",
    "mimic_report_paths",
    "read_iu_reports",
    "read_report_file",
    "report_sections",
]

logger = logging.getLogger(__name__)

SECTION_SYNONYMS: dict[str, tuple[str, ...]] = {
    "findings": ("findings", "finding"),
    "impression": ("impression", "conclusion", "summary"),
}
"""The headings read as each section, in order of preference."""

_HEADING = re.compile(r"^[ \t]*([A-Z][A-Z /&()-]{1,40}[A-Z)]):", re.MULTILINE)


def _collapse(text: str) -> str:
    return " ".join(text.split())


def report_sections(text: str) -> dict[str, str]:
    """The sections of a free-text report: ``{heading lower-cased: text}``; ``findings``/``impression`` resolved.

    ``"preamble"`` holds the text before the first heading (``FINAL REPORT`` and the like). A heading seen twice
    keeps both texts, joined. ``findings`` and ``impression`` are always present (``""`` when the report has
    neither the heading nor one of its :data:`SECTION_SYNONYMS`).
    """
    sections: dict[str, str] = {}
    matches = list(_HEADING.finditer(text))
    sections["preamble"] = _collapse(text[: matches[0].start()] if matches else text)
    for match, following in zip(matches, [*matches[1:], None]):
        key = _collapse(match.group(1)).lower()
        body = _collapse(text[match.end(): following.start() if following else len(text)])
        sections[key] = f"{sections[key]} {body}".strip() if key in sections else body
    for section, headings in SECTION_SYNONYMS.items():
        sections[section] = next((sections[h] for h in headings if sections.get(h)), "")
    return sections


def read_report_file(path: str | os.PathLike) -> dict[str, str]:
    """:func:`report_sections` of a report text file (MIMIC-CXR's ``sSTUDY.txt``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such report file.")
    return report_sections(path.read_text(encoding="utf-8", errors="replace"))


def mimic_report_paths(subject_id: pd.Series, study_id: pd.Series) -> pd.Series:
    """MIMIC-CXR report paths relative to the reports root: ``files/p10/p10000032/s50414267.txt``.

    ``study_id`` may carry CXR-LT's ``"s"`` prefix.
    """
    subject = subject_id.astype(str).str.strip()
    study = study_id.astype(str).str.strip().str.removeprefix("s")
    return "files/p" + subject.str.slice(0, 2) + "/p" + subject + "/s" + study + ".txt"


def attach_reports(table: LabelTable, reports_root: str | os.PathLike, missing: str = "raise") -> LabelTable:
    """``table`` with the ``findings`` and ``impression`` of each row's study (MIMIC-CXR report layout).

    Parameters
    ----------
    table
        A CXR-LT or MIMIC-CXR table (``subject_id``, ``study_id``).
    reports_root
        The folder holding MIMIC-CXR's ``files/pXX/pSUBJECT/sSTUDY.txt`` (``mimic-cxr-reports``).
    missing
        ``"raise"`` (default) when a study has no report file, or ``"empty"``: empty sections, with a logged count.

    Raises
    ------
    FileNotFoundError
        With ``missing="raise"``, naming the count and the first missing report files.
    """
    if missing not in ("raise", "empty"):
        raise ValueError(f"missing={missing!r}: use 'raise' or 'empty'.")
    root = Path(reports_root)
    studies = table.frame[["subject_id", "study_id"]].drop_duplicates()
    paths = mimic_report_paths(studies["subject_id"], studies["study_id"])
    absent = [p for p in paths if not (root / p).is_file()]
    if absent and missing == "raise":
        raise FileNotFoundError(f"{root}: {len(absent)} of {len(paths)} studies have no report, e.g. {absent[:3]}. "
                                "Check the reports root (the folder holding files/), or pass missing='empty'.")
    if absent:
        logger.warning("%s: %d of %d studies have no report file: their captions cannot use a report.", root,
                       len(absent), len(paths))
    sections = [read_report_file(root / p) if (root / p).is_file() else {} for p in paths]
    texts = pd.DataFrame({c: [s.get(c, "") for s in sections] for c in REPORT_COLUMNS}, index=studies.index)
    texts[["subject_id", "study_id"]] = studies
    frame = table.frame.drop(columns=[c for c in REPORT_COLUMNS if c in table.frame.columns])
    frame = frame.merge(texts, on=["subject_id", "study_id"], how="left", validate="many_to_one")
    return LabelTable(frame, table.labels, table.mask, table.class_names, table.source)


def _iu_members(source: Path) -> Iterator[tuple[str, bytes]]:
    """``(name, XML bytes)`` of every report of a ``.tgz`` archive or a folder, in name order."""
    if source.is_dir():
        for path in sorted(source.rglob("*.xml")):
            yield str(path.relative_to(source)), path.read_bytes()
        return
    with tarfile.open(source, "r:*") as archive:
        for member in sorted((m for m in archive.getmembers() if m.isfile() and m.name.endswith(".xml")),
                             key=lambda m: m.name):
            yield member.name, archive.extractfile(member).read()


def read_iu_reports(source: str | os.PathLike) -> pd.DataFrame:
    """The Indiana University chest X-ray reports (OpenI ``NLMCXR_reports.tgz``, or a folder of its XMLs).

    Returns
    -------
    pandas.DataFrame
        One row per report in file-name order: ``report_id`` (``uId``, e.g. ``"CXR1"``), ``file``,
        ``comparison``, ``indication``, ``findings``, ``impression`` (whitespace collapsed, ``""`` when empty),
        ``mesh_major`` and ``mesh_automatic`` (lists of MeSH terms) and ``images`` (list of ``parentImage`` ids).
        Reports with neither findings nor impression are counted in the log (28 of the 3,955).

    Raises
    ------
    FileNotFoundError
        When ``source`` does not exist.
    ValueError
        For a file that is not well-formed XML or has no ``uId``: names the file.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such archive or folder of IU report XMLs.")
    rows = []
    for name, data in _iu_members(source):
        try:
            root = ElementTree.fromstring(data)
        except ElementTree.ParseError as error:
            raise ValueError(f"{source}: {name} is not well-formed XML ({error}).") from None
        uid = root.find("uId")
        if uid is None or not uid.get("id"):
            raise ValueError(f"{source}: {name} has no <uId id=...>: is it an IU chest X-ray report?")
        labelled = {(e.get("Label") or "").lower(): _collapse(e.text or "") for e in root.iter("AbstractText")}
        rows.append({
            "report_id": uid.get("id"), "file": name,
            **{section: labelled.get(section, "") for section in ("comparison", "indication", "findings",
                                                                  "impression")},
            "mesh_major": [_collapse(e.text or "") for e in root.findall("MeSH/major")],
            "mesh_automatic": [_collapse(e.text or "") for e in root.findall("MeSH/automatic")],
            "images": [e.get("id") for e in root.findall("parentImage")],
        })
    reports = pd.DataFrame(rows)
    textless = reports[(reports["findings"] == "") & (reports["impression"] == "")]
    if len(textless):
        logger.info("%s: %d of %d reports have neither findings nor impression (e.g. %s).", source, len(textless),
                    len(reports), ", ".join(textless["report_id"].head(3)))
    return reports
