"""Meta-label captions: the paper's text, readable names, the empty caption, masks and seeded shuffling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose

from monai_cxrcml.data.classes import CHEXPERT_CLASSES, CXRLT2024_CLASSES
from monai_cxrcml.transforms.captions import MetaLabelCaptiond, finding_phrases, join_phrases, meta_label_caption


def label_of(*names: str, classes=CXRLT2024_CLASSES) -> np.ndarray:
    label = np.zeros(len(classes), dtype=np.float32)
    label[[classes.index(n) for n in names]] = 1
    return label


def test_paper_caption():
    label = label_of("Pleural Effusion", "Adenopathy")
    assert meta_label_caption(label, CXRLT2024_CLASSES) == "adenopathy is present, pleural effusion is present"


def test_readable_names():
    label = label_of("Round(ed) Atelectasis", "Calcification of the Aorta")
    assert meta_label_caption(label, CXRLT2024_CLASSES) == (
        "calcification of the aorta is present, rounded atelectasis is present"
    )


def test_empty_caption():
    empty = np.zeros(40)
    assert meta_label_caption(empty, CXRLT2024_CLASSES) == "no finding"
    assert meta_label_caption(empty, CXRLT2024_CLASSES, empty_caption="no acute findings") == "no acute findings"


def test_mask_hides_unknown_findings():
    label = label_of("Edema", "Mass")
    mask = np.ones(40, dtype=bool)
    mask[CXRLT2024_CLASSES.index("Mass")] = False
    assert meta_label_caption(label, CXRLT2024_CLASSES, mask=mask) == "edema is present"


def test_torch_input_template_and_separator():
    label = torch.tensor([1.0, 0.0, 1.0])
    names = ["Edema", "Mass", "Nodule"]
    assert meta_label_caption(label, names, template="{}", separator="; ") == "edema; nodule"
    assert finding_phrases(label, names) == ["edema is present", "nodule is present"]
    assert join_phrases([]) == "no finding"


def test_shuffle_is_seeded_and_keeps_the_phrases():
    label = label_of("Edema", "Mass", "Nodule", "Hernia", "Fibrosis")
    ordered = meta_label_caption(label, CXRLT2024_CLASSES)
    draws = [meta_label_caption(label, CXRLT2024_CLASSES, shuffle=True, rng=np.random.default_rng(s)) for s in range(8)]
    assert all(sorted(d.split(", ")) == sorted(ordered.split(", ")) for d in draws)
    assert len(set(draws)) > 1
    again = meta_label_caption(label, CXRLT2024_CLASSES, shuffle=True, rng=np.random.default_rng(3))
    assert again == draws[3]


def test_bad_input():
    with pytest.raises(ValueError, match="label has 3 values but there are 40 class names"):
        meta_label_caption([1, 0, 1], CXRLT2024_CLASSES)
    with pytest.raises(ValueError, match="has no '{}'"):
        meta_label_caption(np.ones(3), ["a", "b", "c"], template="present")
    with pytest.raises(ValueError, match="NaN"):
        meta_label_caption(np.array([np.nan, 1.0]), ["a", "b"])
    assert meta_label_caption(np.array([np.nan, 1.0]), ["a", "b"], mask=np.array([0, 1])) == "b is present"


def test_transform_writes_caption_and_uses_the_mask():
    transform = MetaLabelCaptiond(class_names="chexpert")
    label = label_of("Edema", "Pneumothorax", classes=CHEXPERT_CLASSES)
    mask = np.ones(14, dtype=np.float32)
    out = transform({"label": torch.as_tensor(label), "label_mask": mask, "image": "x.jpg"})
    assert out["caption"] == "edema is present, pneumothorax is present" and out["image"] == "x.jpg"
    mask[CHEXPERT_CLASSES.index("Edema")] = 0
    assert transform({"label": label, "label_mask": mask})["caption"] == "pneumothorax is present"
    assert transform({"label": label})["caption"] == "edema is present, pneumothorax is present"
    custom = MetaLabelCaptiond(label_key="y", caption_key="text", class_names=CHEXPERT_CLASSES, mask_key=None)
    assert custom({"y": label, "label_mask": mask})["text"] == "edema is present, pneumothorax is present"


def test_transform_shuffle_follows_set_random_state():
    label = label_of("Edema", "Mass", "Nodule", "Hernia", "Fibrosis", "Kyphosis")

    def captions(seed: int) -> list[str]:
        pipeline = Compose([MetaLabelCaptiond(shuffle=True)]).set_random_state(seed=seed)
        return [pipeline({"label": label})["caption"] for _ in range(6)]

    first = captions(0)
    assert first == captions(0)
    assert len(set(first)) > 1  # a new order at each call
    assert first != captions(1)
    assert MetaLabelCaptiond()({"label": label})["caption"] == meta_label_caption(label, CXRLT2024_CLASSES)


def test_positive_subsets_are_non_empty_and_include_single_phrases():
    names = ["Atelectasis", "Edema", "Nodule", "Pneumothorax"]
    label = np.array([1, 1, 1, 0])
    rng = np.random.default_rng(0)
    draws = [meta_label_caption(label, names, positive_subset=True, rng=rng) for _ in range(200)]
    phrases = [set(d.split(", ")) for d in draws]
    full = {"atelectasis is present", "edema is present", "nodule is present"}
    assert all(p and p <= full for p in phrases)
    sizes = {len(p) for p in phrases}
    assert sizes == {1, 2, 3}
    assert "pneumothorax is present" not in " ".join(draws)


def test_absent_phrases_name_known_negatives_only():
    names = ["Atelectasis", "Edema", "Nodule", "Normal"]
    label, mask = np.array([1, 0, 0, 0]), np.array([1, 1, 0, 1])
    rng = np.random.default_rng(1)
    draws = [meta_label_caption(label, names, mask=mask, negative_probability=0.5, max_negatives=2, rng=rng)
             for _ in range(300)]
    with_negatives = [d for d in draws if "absent" in d]
    assert 0.35 < len(with_negatives) / len(draws) < 0.65
    assert all(d.startswith("atelectasis is present") for d in draws)
    assert not any("nodule" in d for d in draws)  # masked: unknown, never named
    assert {"edema is absent", "normal is absent"} == {p for d in with_negatives for p in d.split(", ")[1:]}
    # an image without positives gets only absent phrases, or the empty caption
    empty = [meta_label_caption([0, 0, 0, 0], names, negative_probability=1.0, rng=rng) for _ in range(20)]
    assert all(d != "no finding" and "present" not in d for d in empty)
    assert meta_label_caption([0, 0, 0, 0], names) == "no finding"


def test_transform_recipe_is_repeatable_with_its_seed():
    names = list(CXRLT2024_CLASSES)
    label = np.zeros(len(names))
    label[[0, 4, 25]] = 1
    def make() -> MetaLabelCaptiond:
        return MetaLabelCaptiond(class_names=names, shuffle=True, positive_subset=True, negative_probability=0.5)

    a, b = make().set_random_state(7), make().set_random_state(7)
    assert [a({"label": label})["caption"] for _ in range(5)] == [b({"label": label})["caption"] for _ in range(5)]
    with pytest.raises(ValueError, match="negative_probability"):
        MetaLabelCaptiond(class_names=names, negative_probability=1.5)
