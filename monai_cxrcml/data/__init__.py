"""Chest X-ray data: label tables of CXR-LT / MIMIC-CXR, NIH, PadChest, CheXpert and VinDr-CXR (format found from
the header), class vocabularies across them, radiology reports, folders of films, patient-level splits, class
groups, film reading, the preprocessing cache and the phantom data set.

Names are imported on first use (PEP 562), so ``python -m monai_cxrcml.data.phantom`` and its worker processes
do not pay for torch, which only the film reader and the cache need.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, tuple[str, ...]] = {
    "cache": ("FilmCache",),
    "classes": (
        "CHEXPERT_CLASSES",
        "CXRLT2024_CLASSES",
        "CXRLT2024_TRAIN_COUNTS",
        "CXRLT2024_TRAIN_SIZE",
        "CXRLT2024_UNSEEN_CLASSES",
        "finding_phrase",
        "resolve_class_names",
    ),
    "chexpert": ("read_chexpert_csv",),
    "cxrlt": ("read_cxrlt_csv",),
    "films": ("FilmReadError", "read_film"),
    "fold": ("FoldData", "load_fold", "load_test_set"),
    "formats": ("LABEL_FORMATS", "detect_label_format", "read_label_table"),
    "folder": ("IMAGE_EXTENSIONS", "list_image_folder"),
    "image_list": ("read_image_list",),
    "groups": ("GROUP_RULES", "base_rare_groups", "group_rule", "grouping_counts", "prevalence_groups"),
    "mimic": ("FRONTAL_VIEWS", "mimic_relative_path", "read_mimic_chexpert"),
    "nih": ("NIH_CLASSES", "read_nih_csv"),
    "padchest": ("read_padchest_csv",),
    "phantom": ("ensure_phantom", "make_phantom", "make_table_phantom", "phantom_label_file", "torchxrayvision_table"),
    "sampler": ("ClusterBalancedSampler",),
    "seeded": ("EpochSeededDataset", "item_seed"),
    "splits": (
        "fold_report",
        "fold_split",
        "holdout_split",
        "iterative_stratification",
        "patient_folds",
        "patient_matrix",
    ),
    "table": ("LABEL_POLICIES", "LabelTable"),
    "vocabulary": ("ClassMatch", "map_class_names", "synonyms"),
    "vindr": ("VINDR_CLASSES", "read_vindr_csv"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
