"""Label columns that hold a *set* of finding names per image, as NIH (``"Effusion|Mass"``) and PadChest
(``"['pleural effusion', 'nodule']"``) write them, turned into finding lists and a multi-hot matrix.

PadChest's cells are Python list literals; they are parsed by a regular expression that accepts only a list of
single-quoted strings (never ``eval``), so a malformed cell is an error naming its line instead of code run.
Names are stripped of surrounding spaces (PadChest writes ``' pneumonia'`` beside ``'pneumonia'``); an empty name
(PadChest's ``['']``) names no finding.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["MISSING_CELLS", "delimited_lists", "python_lists", "label_vocabulary", "multi_hot"]

MISSING_CELLS: frozenset[str] = frozenset({"", "nan", "NaN", "None"})
"""Cells that hold no list at all (pandas writes a missing value as ``nan``): the image has no labels."""

_STRING = r"'[^'\\]*'"
_PYTHON_LIST = re.compile(rf"\[\s*(?:{_STRING}(?:\s*,\s*{_STRING})*\s*,?\s*)?\]")
_ITEM = re.compile(r"'([^'\\]*)'")


def _clean(names: list[str]) -> list[str]:
    """Stripped, non-empty, first occurrence of each name."""
    return list(dict.fromkeys(n.strip() for n in names if n.strip()))


def delimited_lists(cells: pd.Series, separator: str = "|") -> pd.Series:
    """Finding lists of ``separator``-joined cells (NIH's ``Finding Labels``); a missing cell gives ``None``.

    Parameters
    ----------
    cells
        ``str`` series, ``""`` for a blank cell.
    separator
        The text between names.

    Returns
    -------
    ``object`` series of ``list[str]`` (or ``None``), same index.
    """
    return pd.Series([None if c in MISSING_CELLS else _clean(c.split(separator)) for c in cells], index=cells.index,
                     dtype=object)


def python_lists(cells: pd.Series, source: str | os.PathLike, lines: np.ndarray, column: str) -> pd.Series:
    """Finding lists of cells holding Python list literals of strings (PadChest's ``Labels``).

    Parameters
    ----------
    cells
        ``str`` series: ``"['normal']"``, ``"['a', ' b']"``, ``"[]"``, or a missing cell (``MISSING_CELLS``).
    source, lines, column
        File, 1-based CSV line of each row and column name, for the error.

    Returns
    -------
    ``object`` series of ``list[str]`` (``None`` for a missing cell), same index.

    Raises
    ------
    ValueError
        For a cell that is neither missing nor a list of single-quoted strings: names the file, the line of the
        first one, the column and the count.
    """
    text = cells.str.strip()
    missing = text.isin(MISSING_CELLS).to_numpy()
    bad = ~missing & ~text.str.fullmatch(_PYTHON_LIST).fillna(False).to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{source} line {lines[first]}, column '{column}': {cells.iat[first]!r} is not a list of quoted finding "
            f"names ({int(bad.sum())} such cell(s)). Expected e.g. ['pleural effusion', 'nodule'], [] or a blank "
            "cell: fix the row or drop it."
        )
    found = text.str.findall(_ITEM)
    return pd.Series([None if m else _clean(items) for m, items in zip(missing, found)], index=cells.index,
                     dtype=object)


def label_vocabulary(lists: pd.Series) -> tuple[str, ...]:
    """Every name found in the lists, sorted case-insensitively (then by case)."""
    names = {name for items in lists if items for name in items}
    return tuple(sorted(names, key=lambda n: (n.lower(), n)))


def multi_hot(lists: pd.Series, class_names: Sequence[str]) -> np.ndarray:
    """``np.bool_ [N, C]``: True where row ``n``'s list names class ``c``; names outside ``class_names`` are ignored."""
    matrix = np.zeros((len(lists), len(class_names)), dtype=bool)
    exploded = pd.Series(list(lists), dtype=object).explode()
    exploded = exploded[exploded.notna()]
    codes = pd.Categorical(exploded, categories=list(class_names)).codes
    known = codes >= 0
    matrix[exploded.index.to_numpy()[known], codes[known]] = True
    return matrix
