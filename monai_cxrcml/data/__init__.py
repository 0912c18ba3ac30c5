"""Chest X-ray data: label tables of CXR-LT / MIMIC-CXR, NIH, PadChest, CheXpert and VinDr-CXR (format found from
the header), class vocabularies across them, radiology reports, folders of films, patient-level splits, class
groups, film reading and the preprocessing cache.
"""

from .cache import FilmCache
from .chexpert import read_chexpert_csv
from .classes import (
    CHEXPERT_CLASSES,
    CXRLT2024_CLASSES,
    CXRLT2024_TRAIN_COUNTS,
    CXRLT2024_TRAIN_SIZE,
    CXRLT2024_UNSEEN_CLASSES,
    finding_phrase,
    resolve_class_names,
)
from .cxrlt import read_cxrlt_csv
from .films import FilmReadError, read_film
from .fold import FoldData, load_fold, load_test_set
from .folder import IMAGE_EXTENSIONS, list_image_folder
from .formats import LABEL_FORMATS, detect_label_format, read_label_table
from .groups import GROUP_RULES, base_rare_groups, group_rule, grouping_counts, prevalence_groups
from .image_list import read_image_list
from .mimic import FRONTAL_VIEWS, mimic_relative_path, read_mimic_chexpert
from .nih import NIH_CLASSES, read_nih_csv
from .padchest import read_padchest_csv
from .sampler import ClusterBalancedSampler
from .seeded import EpochSeededDataset, item_seed
from .splits import fold_report, fold_split, holdout_split, iterative_stratification, patient_folds, patient_matrix
from .table import LABEL_POLICIES, LabelTable
from .vindr import VINDR_CLASSES, read_vindr_csv
from .vocabulary import ClassMatch, map_class_names, synonyms

__all__ = [
    "CHEXPERT_CLASSES",
    "CXRLT2024_CLASSES",
    "CXRLT2024_TRAIN_COUNTS",
    "CXRLT2024_TRAIN_SIZE",
    "CXRLT2024_UNSEEN_CLASSES",
    "ClassMatch",
    "ClusterBalancedSampler",
    "EpochSeededDataset",
    "FRONTAL_VIEWS",
    "FilmCache",
    "FilmReadError",
    "FoldData",
    "GROUP_RULES",
    "IMAGE_EXTENSIONS",
    "LABEL_FORMATS",
    "LABEL_POLICIES",
    "LabelTable",
    "NIH_CLASSES",
    "VINDR_CLASSES",
    "base_rare_groups",
    "detect_label_format",
    "finding_phrase",
    "fold_report",
    "fold_split",
    "group_rule",
    "grouping_counts",
    "holdout_split",
    "item_seed",
    "iterative_stratification",
    "list_image_folder",
    "load_fold",
    "load_test_set",
    "map_class_names",
    "mimic_relative_path",
    "patient_folds",
    "patient_matrix",
    "prevalence_groups",
    "read_chexpert_csv",
    "read_cxrlt_csv",
    "read_film",
    "read_image_list",
    "read_label_table",
    "read_mimic_chexpert",
    "read_nih_csv",
    "read_padchest_csv",
    "read_vindr_csv",
    "resolve_class_names",
    "synonyms",
]
