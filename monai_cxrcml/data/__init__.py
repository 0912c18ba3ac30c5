"""Chest X-ray data: CXR-LT / MIMIC-CXR label tables, folders of films, patient-level splits, class groups,
film reading, the preprocessing cache and the phantom data set."""

from __future__ import annotations

from monai_cxrcml.data.cache import FilmCache
from monai_cxrcml.data.classes import (
    CHEXPERT_CLASSES,
    CXRLT2024_CLASSES,
    CXRLT2024_TRAIN_COUNTS,
    CXRLT2024_TRAIN_SIZE,
    CXRLT2024_UNSEEN_CLASSES,
    finding_phrase,
    resolve_class_names,
)
from monai_cxrcml.data.cxrlt import read_cxrlt_csv
from monai_cxrcml.data.films import FilmReadError, read_film
from monai_cxrcml.data.fold import FoldData, load_fold
from monai_cxrcml.data.folder import IMAGE_EXTENSIONS, list_image_folder
from monai_cxrcml.data.groups import GROUP_RULES, base_rare_groups, group_rule, grouping_counts, prevalence_groups
from monai_cxrcml.data.mimic import FRONTAL_VIEWS, mimic_relative_path, read_mimic_chexpert
from monai_cxrcml.data.phantom import make_phantom
from monai_cxrcml.data.splits import (
    fold_report,
    fold_split,
    holdout_split,
    iterative_stratification,
    patient_folds,
    patient_matrix,
)
from monai_cxrcml.data.table import LABEL_POLICIES, LabelTable

__all__ = [
    "CHEXPERT_CLASSES",
    "CXRLT2024_CLASSES",
    "CXRLT2024_TRAIN_COUNTS",
    "CXRLT2024_TRAIN_SIZE",
    "CXRLT2024_UNSEEN_CLASSES",
    "FRONTAL_VIEWS",
    "FilmCache",
    "FilmReadError",
    "FoldData",
    "GROUP_RULES",
    "IMAGE_EXTENSIONS",
    "LABEL_POLICIES",
    "LabelTable",
    "base_rare_groups",
    "finding_phrase",
    "fold_report",
    "fold_split",
    "group_rule",
    "grouping_counts",
    "holdout_split",
    "iterative_stratification",
    "list_image_folder",
    "load_fold",
    "make_phantom",
    "mimic_relative_path",
    "patient_folds",
    "patient_matrix",
    "prevalence_groups",
    "read_cxrlt_csv",
    "read_film",
    "read_mimic_chexpert",
    "resolve_class_names",
]
