"""Zero-shot prompt sets: presets, the Normal double-negation guard, template ensembles and their embeddings."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from monai_cxrcml.data.classes import CHEXPERT_CLASSES, CXRLT2024_CLASSES
from monai_cxrcml.networks import PROMPT_PRESETS, PromptSet, create_clip, encode_class_prompts, get_tokenizer

DOUBLE_NEGATION = re.compile(r"\bno (normal|no)\b|no finding is absent")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_clip("cxrcml-tiny"), get_tokenizer("cxrcml-tiny")


def test_present_absent_matches_caption_grammar():
    prompts = PromptSet.create("present_absent")
    assert prompts.texts("Pleural Effusion") == (("pleural effusion is present",), ("pleural effusion is absent",))
    assert prompts.texts("Round(ed) Atelectasis") == (
        ("rounded atelectasis is present",),
        ("rounded atelectasis is absent",),
    )


def test_chexzero_pair_is_chexzero_s_own_with_the_class_name_as_given():
    """CheXzero formats "{}" / "no {}" with the name as given (its tokenizer lower-cases), "no Normal" included."""
    chexzero = PromptSet.create("chexzero")
    assert chexzero.texts("Cardiomegaly") == (("Cardiomegaly",), ("no Cardiomegaly",))
    assert chexzero.texts("Round(ed) Atelectasis") == (("Round(ed) Atelectasis",), ("no Round(ed) Atelectasis",))
    assert chexzero.texts("Normal") == (("Normal",), ("no Normal",))
    assert chexzero.denies_findings("Normal") and chexzero.denies_findings("No Finding")
    assert not chexzero.denies_findings("Edema")
    assert PromptSet.create("plain_negation").texts("Cardiomegaly") == (("cardiomegaly",), ("no cardiomegaly",))


@pytest.mark.parametrize("preset", sorted(name for name, p in PROMPT_PRESETS.items() if not p.double_negation))
def test_no_preset_writes_a_double_negation(preset):
    prompts = PromptSet.create(preset)
    for name in CXRLT2024_CLASSES + CHEXPERT_CLASSES:
        pos, neg = prompts.texts(name)
        for text in pos + neg:
            assert not DOUBLE_NEGATION.search(text), (preset, name, text)


def test_normal_overrides_per_preset():
    """The decision: caption grammar for present_absent, report language for plain_negation (negation on the
    abnormality); only the chexzero reproduction keeps CheXzero's "no Normal"."""
    assert PromptSet.create("present_absent").texts("Normal") == (("normal is present",), ("normal is absent",))
    assert PromptSet.create("plain_negation").texts("Normal") == (
        ("no acute cardiopulmonary process",),
        ("acute cardiopulmonary process",),
    )
    for preset in PROMPT_PRESETS.values():
        if preset.double_negation:
            continue
        assert preset.texts("No Finding") == preset.texts("Normal")
        assert "no normal" not in preset.texts("Normal")[1]


def test_custom_set_without_normal_override_refuses_normal():
    prompts = PromptSet(positive=("{}",), negative=("no {}",))
    assert prompts.texts("Edema") == (("edema",), ("no edema",))
    with pytest.raises(ValueError, match=r"double negation \(e.g. 'no normal'\).*overrides"):
        prompts.texts("Normal")
    with pytest.raises(ValueError, match="'no no finding'"):
        prompts.texts("No Finding")


def test_config_mapping_and_override_keys():
    prompts = PromptSet.create(
        {
            "positive": ["{} is present", "there is {}"],
            "negative": "{} is absent",
            "overrides": {"normal": {"positive": "normal chest radiograph", "negative": ["abnormal chest radiograph"]}},
        }
    )
    assert prompts.positive == ("{} is present", "there is {}") and prompts.negative == ("{} is absent",)
    assert prompts.texts("Normal") == (("normal chest radiograph",), ("abnormal chest radiograph",))


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"positive": ["{} is present"], "negative": ["absent"]}, "exactly one"),
        ({"positive": ["{} and {}"], "negative": ["no {}"]}, "exactly one"),
        ({"positive": [], "negative": ["no {}"]}, "non-empty"),
        ({"positive": ["{}"], "negative": ["no {}"], "overrides": {"Normal": ["only one side"]}}, "overrides"),
        ("clip", "unknown prompt preset"),
    ],
)
def test_invalid_prompt_sets(spec, match):
    with pytest.raises(ValueError, match=match):
        PromptSet.create(spec)


def test_encode_class_prompts_averages_normalised_templates(tiny):
    model, tokenizer = tiny
    model.train()
    names = ["Edema", "Normal", "Round(ed) Atelectasis"]
    pos, neg = encode_class_prompts(model, tokenizer, names, "ensemble")
    assert model.training  # mode restored
    assert pos.shape == neg.shape == (3, 128) and not pos.requires_grad
    torch.testing.assert_close(pos.norm(dim=-1), torch.ones(3))
    prompts = PromptSet.create("ensemble")
    model.eval()
    with torch.no_grad():
        for c, name in enumerate(names):
            for side, got in enumerate((pos[c], neg[c])):
                each = F.normalize(model.encode_text(tokenizer(list(prompts.texts(name)[side]))), dim=-1)
                torch.testing.assert_close(got, F.normalize(each.mean(0), dim=0), atol=1e-6, rtol=1e-5)
    model.train()


def test_pooled_negative_is_the_normalised_mean_of_the_class_negatives(tiny):
    model, tokenizer = tiny
    names = ["Edema", "Normal", "Mass"]
    own_pos, own_neg = encode_class_prompts(model, tokenizer, names, "present_absent")
    pos, neg = encode_class_prompts(model, tokenizer, names, "present_absent_pooled")
    torch.testing.assert_close(pos, own_pos)
    shared = F.normalize(own_neg.mean(0), dim=0)
    for row in neg:
        torch.testing.assert_close(row, shared)
    assert PromptSet.create({"positive": "{}", "negative": "no {}", "pooled_negative": True,
                             "overrides": {"Normal": (["normal"], ["abnormal"])}}).pooled_negative


def test_encode_class_prompts_batches_consistently(tiny):
    model, tokenizer = tiny
    full = encode_class_prompts(model, tokenizer, CXRLT2024_CLASSES, "present_absent", batch_size=256)
    small = encode_class_prompts(model, tokenizer, CXRLT2024_CLASSES, "present_absent", batch_size=7)
    torch.testing.assert_close(full, small, atol=1e-6, rtol=1e-5)
    assert full[0].shape == (40, 128)
