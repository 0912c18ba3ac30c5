"""Class groups: base/rare and common/medium/rare under each documented rule."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from _cxrlt_fixtures import make_table

from monai_cxrcml.data import base_rare_groups, grouping_counts, prevalence_groups
from monai_cxrcml.data.classes import CHEXPERT_CLASSES, CXRLT2024_CLASSES
from monai_cxrcml.data.groups import PAPER_TRAIN_SIZE, group_rule


def test_reference_rule_gives_the_papers_groups():
    reference = dict.fromkeys(CXRLT2024_CLASSES, 0)
    groups = prevalence_groups(reference, group_by="cxrlt_reference")
    assert Counter(groups.values()) == {"common": 11, "medium": 17, "rare": 12}
    assert list(groups) == list(CXRLT2024_CLASSES)
    # on an 80% fold, Fracture (11,568) and Infiltration (10,087) are medium and Fibrosis (1,169) is rare
    assert groups["Fracture"] == groups["Infiltration"] == "medium" and groups["Fibrosis"] == "rare"
    assert groups["Pneumothorax"] == "common" and groups["Pulmonary Embolism"] == "medium"
    base_rare = base_rare_groups(reference, group_by="cxrlt_reference")
    assert Counter(base_rare.values()) == {"base": 28, "rare": 12}
    assert {c for c, g in base_rare.items() if g == "rare"} == {c for c, g in groups.items() if g == "rare"}


def test_train_counts_boundaries():
    counts = {"a": 999, "b": 1000, "c": 10000, "d": 10001, "e": 0}
    assert prevalence_groups(counts, group_by="train_counts") == {
        "a": "rare", "b": "medium", "c": "medium", "d": "common", "e": "rare"
    }
    assert base_rare_groups(counts, group_by="train_counts") == {
        "a": "rare", "b": "base", "c": "base", "d": "base", "e": "rare"
    }
    assert base_rare_groups(counts, threshold=5000, group_by="train_counts")["c"] == "base"
    assert base_rare_groups(counts, threshold=10001, group_by="train_counts")["c"] == "rare"
    assert prevalence_groups(counts, thresholds=(5, 999), group_by="train_counts")["b"] == "common"


def test_scaled_counts_scale_thresholds_with_training_size():
    counts = {"a": 1999, "b": 2000, "c": 20000, "d": 20001}
    twice = prevalence_groups(counts, group_by="scaled_counts", num_train=2 * PAPER_TRAIN_SIZE)
    assert twice == {"a": "rare", "b": "medium", "c": "medium", "d": "common"}  # thresholds 2000 and 20000
    rule, scaled = grouping_counts(counts, group_by="scaled_counts", num_train=PAPER_TRAIN_SIZE)
    assert rule == "scaled_counts" and scaled == {k: float(v) for k, v in counts.items()}
    with pytest.raises(ValueError, match="positive number of training images"):
        grouping_counts(counts, group_by="scaled_counts")


def test_auto_rule():
    assert group_rule(CXRLT2024_CLASSES, 150_000) == "train_counts"
    assert group_rule(CXRLT2024_CLASSES, 99_999) == "cxrlt_reference"
    assert group_rule(CHEXPERT_CLASSES, 99_999) == "scaled_counts"  # "No Finding" is not a CXR-LT class
    assert group_rule(CHEXPERT_CLASSES, 200_000) == "train_counts"


def test_auto_on_a_small_table_uses_the_reference_counts():
    labels = np.zeros((20, 40), dtype=np.float32)
    labels[:, CXRLT2024_CLASSES.index("Lobar Atelectasis")] = 1  # the most frequent class here, rare in CXR-LT
    groups = base_rare_groups(make_table(range(20), labels, CXRLT2024_CLASSES))
    assert groups["Lobar Atelectasis"] == "rare" and groups["Support Devices"] == "base"


def test_auto_on_a_small_non_cxrlt_table_scales_its_counts():
    labels = np.zeros((2000, 2), dtype=np.float32)
    labels[:9, 0] = 1  # 9 of 2000 images ~ 932 of 207,097: rare
    labels[:10, 1] = 1  # 10 of 2000 ~ 1035: base
    table = make_table(range(2000), labels, ["Bulla", "Scoliosis"])
    assert base_rare_groups(table) == {"Bulla": "rare", "Scoliosis": "base"}
    assert grouping_counts(table)[0] == "scaled_counts"


def test_train_counts_on_a_table_count_known_positives():
    labels = np.zeros((5, 1), dtype=np.float32)
    labels[:3] = 1
    table = make_table(range(5), labels, ["Edema"])
    table.mask[0] = False
    table.labels[0] = 0
    assert grouping_counts(table, group_by="train_counts") == ("train_counts", {"Edema": 2.0})


def test_errors_name_the_class_and_the_rules():
    message = r"no official CXR-LT 2024 count for \['No Finding'\].*'train_counts'.*'scaled_counts'"
    with pytest.raises(ValueError, match=message):
        base_rare_groups({"No Finding": 5, "Edema": 5}, group_by="cxrlt_reference")
    with pytest.raises(ValueError, match="group_by='paper' is not a grouping rule"):
        base_rare_groups({"Edema": 5}, group_by="paper")
    with pytest.raises(ValueError, match="needs the number of training images"):
        base_rare_groups({"Edema": 5})
    with pytest.raises(ValueError, match="two increasing positive numbers"):
        prevalence_groups({"Edema": 5}, thresholds=(10000, 1000), group_by="train_counts")
    with pytest.raises(ValueError, match="threshold must be positive"):
        base_rare_groups({"Edema": 5}, threshold=0, group_by="train_counts")
