"""Checked reading of label CSVs (plain or compressed): the needed columns, with errors that name the file, the
CSV line (1-based, header = line 1) and the column at fault; rows cut short, empty identifiers and duplicates refused.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "MAX_LISTED",
    "OPENERS",
    "check_field_counts",
    "csv_header",
    "quote_lines",
    "read_csv_columns",
    "require_unique",
    "require_values",
]

MAX_LISTED = 5
"""Offending rows or files quoted in one error message."""


def _read(path: Path, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` whose parse errors name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file. Check the path (label files are not downloaded for you).")
    try:
        return pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the file is empty; expected a CSV with a header line.") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a readable CSV ({error}). Check that it is the right, complete file.") from None


def _raw_header(path: Path) -> pd.Index:
    return _read(path, nrows=0).columns


OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
"""``open`` of each compressed file suffix pandas infers (a plain file opens with ``open``)."""


def check_field_counts(path: str | os.PathLike) -> None:
    """Raise ``ValueError`` naming the first line whose number of fields differs from the header's.

    pandas fills a short row with blanks and, when only some columns are read, drops a long row's extra fields:
    a line cut off by an interrupted download, or a stray comma, would silently blank or shift its labels. The
    check counts commas per line (vectorised over the bytes); it is skipped for files with quoted fields, which
    may hold commas or line breaks (the CSV parser checks those), and for zip archives.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return
    with OPENERS.get(suffix, open)(path, "rb") as f:
        data = f.read()
    if b'"' in data:
        return
    buf = np.frombuffer(data, dtype=np.uint8)
    starts = np.r_[0, np.flatnonzero(buf == ord("\n")) + 1]
    ends = np.r_[starts[1:] - 1, len(buf)]
    ends -= (ends > starts) & (buf[np.maximum(ends - 1, 0)] == ord("\r"))
    filled = np.flatnonzero(ends > starts)  # empty lines are skipped by the reader
    if not len(filled):
        return
    commas = (buf == ord(",")).view(np.uint8)
    fields = np.add.reduceat(commas, starts[filled], dtype=np.uint32).astype(np.int64) + 1  # empty lines: no comma
    wrong = np.flatnonzero(fields != fields[0])
    if len(wrong):
        line = int(filled[wrong[0]]) + 1
        raise ValueError(
            f"{path} line {line}: {int(fields[wrong[0]])} fields, the header has {int(fields[0])} "
            f"({len(wrong)} such line(s)). A row cut short or with a stray comma would blank or shift its labels: "
            "fix the file (download it again if it was cut off)."
        )


def csv_header(path: str | os.PathLike) -> list[str]:
    """Column names of a CSV (plain or compressed), stripped of surrounding spaces.

    Raises ``FileNotFoundError`` naming the path when it is not a file.
    """
    return [str(c).strip() for c in _raw_header(Path(path))]


def read_csv_columns(
    path: str | os.PathLike,
    required: Sequence[str],
    optional: Sequence[str] = (),
    text: Sequence[str] = (),
    hint: str = "",
) -> tuple[pd.DataFrame, np.ndarray]:
    """Read the needed columns of a CSV (plain or compressed), checking that the required ones exist.

    Parameters
    ----------
    path
        The CSV file (``.csv`` or ``.csv.gz``; compression is inferred from the name).
    required
        Columns that must be there. Header names are matched after stripping surrounding spaces.
    optional
        Columns read when present.
    text
        Columns read as strings (identifiers: never parsed as numbers).
    hint
        Appended to the missing-column error (e.g. what the file should be).

    Returns
    -------
    frame, lines
        The columns found (text columns stripped, ``""`` for blank cells), one row per non-empty CSV line; and
        ``np.int64 [N]``, the 1-based line number of each row in the file (the header is line 1), for messages.

    Raises
    ------
    FileNotFoundError
        When ``path`` is not a file.
    ValueError
        When a required column is missing: names the file and the column and lists the columns there.
    """
    path = Path(path)
    by_name = {str(c).strip(): c for c in _raw_header(path)}
    check_field_counts(path)
    missing = [c for c in required if c not in by_name]
    if missing:
        raise ValueError(f"{path}: missing required column(s) {missing}; the file has {list(by_name)}. {hint}".rstrip())
    wanted = list(dict.fromkeys([*required, *(c for c in optional if c in by_name)]))
    frame = _read(
        path,
        usecols=[by_name[c] for c in wanted],
        dtype={by_name[c]: str for c in text if c in by_name},
        skip_blank_lines=False,
        # only an empty cell is blank: a literal "NaN"/"NA"/"null" is text, so a label cell holding one is refused
        # by label_matrix instead of silently following the blank policy
        keep_default_na=False,
        na_values=[""],
    ).rename(columns={by_name[c]: c for c in wanted})[wanted]
    lines = np.arange(2, len(frame) + 2, dtype=np.int64)
    blank = frame.isna().all(axis=1).to_numpy()
    if blank.any():
        frame, lines = frame.loc[~blank].reset_index(drop=True), lines[~blank]
    for c in text:
        if c in frame.columns:
            frame[c] = frame[c].fillna("").str.strip()
    return frame, lines


def quote_lines(lines: np.ndarray) -> str:
    shown = ", ".join(str(int(x)) for x in lines[:MAX_LISTED])
    return shown + (f" (and {len(lines) - MAX_LISTED} more)" if len(lines) > MAX_LISTED else "")


def require_values(frame: pd.DataFrame, columns: Sequence[str], source: str | os.PathLike, lines: np.ndarray) -> None:
    """Raise ``ValueError`` naming the file, line and column of the first empty cell among text ``columns``."""
    for c in columns:
        empty = (frame[c] == "").to_numpy()
        if empty.any():
            raise ValueError(
                f"{source} line {lines[empty][0]}: column '{c}' is empty ({int(empty.sum())} row(s) without a {c}, "
                f"lines {quote_lines(lines[empty])}). Every row needs a {c}: fill it in or delete the row."
            )


def require_unique(
    frame: pd.DataFrame, columns: str | Sequence[str], source: str | os.PathLike, lines: np.ndarray
) -> None:
    """Raise ``ValueError`` naming both lines of the first identifier (one column or a key of several) seen twice."""
    columns = [columns] if isinstance(columns, str) else list(columns)
    repeated = frame.duplicated(subset=columns, keep="first").to_numpy()
    if repeated.any():
        second = int(np.flatnonzero(repeated)[0])
        key = frame.iloc[second][columns]
        same = np.flatnonzero((frame[columns] == key.to_numpy()).all(axis=1).to_numpy())
        value = ", ".join(f"{c}={key[c]!r}" for c in columns)
        raise ValueError(
            f"{source}: {value} appears on lines {quote_lines(lines[same])} ({int(repeated.sum())} repeated row(s) "
            f"in all). Each {'/'.join(columns)} must appear once: remove the duplicates."
        )
