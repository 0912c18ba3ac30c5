"""The real label tables of the torchxrayvision wheel (the test extra): located without importing the package."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import pytest

_SPEC = find_spec("torchxrayvision")
TABLES: Path | None = Path(list(_SPEC.submodule_search_locations)[0]) / "data" if _SPEC else None
"""``torchxrayvision/data``, or None when torchxrayvision is not installed."""

NIH = "Data_Entry_2017_v2020.csv.gz"
PADCHEST = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz"
CHEXPERT = "chexpert_train.csv.gz"
VINDR = "vinbigdata-train.csv.gz"
IU_REPORTS = "NLMCXR_reports.tgz"

requires_tables = pytest.mark.skipif(
    TABLES is None,
    reason="the real label tables come with torchxrayvision 1.5.7, the test extra: pip install -e '.[test]'",
)


def table(name: str) -> Path:
    """The path of one real table (tests using it are marked ``requires_tables``)."""
    return TABLES / name
