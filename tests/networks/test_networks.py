"""Model factory (offline, tiny configs) and the zero-shot classifier (bundle network_def, TorchScript export)."""

from __future__ import annotations

import json
import socket
import warnings
from collections.abc import Callable

import open_clip
import pytest
import torch
import torch.nn.functional as F
from monai.bundle import ConfigParser

from monai_cxrcml.data.classes import CXRLT2024_CLASSES
from monai_cxrcml.networks import (
    ZeroShotClassifier,
    create_clip,
    encode_class_prompts,
    get_tokenizer,
    register_model_configs,
)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test here runs with sockets disabled: nothing may download."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_clip("cxrcml-tiny"), get_tokenizer("cxrcml-tiny")


def test_tiny_configs_registered_once_without_clobbering():
    names = register_model_configs()
    assert set(names) == {"cxrcml-tiny", "cxrcml-tiny-96", "cxrcml-cnn"}
    before = open_clip.list_models()
    assert register_model_configs() == names
    assert open_clip.list_models() == before
    assert open_clip.get_model_config("ViT-B-32")["vision_cfg"]["width"] == 768


def test_config_name_clash_is_refused(tmp_path):
    (tmp_path / "ViT-B-32.json").write_text(json.dumps({"embed_dim": 1, "vision_cfg": {}, "text_cfg": {}}))
    with pytest.raises(ValueError, match=r"\['ViT-B-32'\].*already registered"):
        register_model_configs(tmp_path)
    assert open_clip.get_model_config("ViT-B-32")["embed_dim"] == 512


@pytest.mark.parametrize("name, size", [("cxrcml-tiny", 64), ("cxrcml-tiny-96", 96), ("cxrcml-cnn", 64)])
def test_tiny_model_shapes(name, size):
    model = create_clip(name)
    tokens = get_tokenizer(name)(["pleural effusion is present", "no finding"])
    with torch.no_grad():
        image, text, scale = model(torch.randn(2, 3, size, size), tokens)
    assert image.shape == text.shape == (2, 128)
    assert torch.allclose(image.norm(dim=-1), torch.ones(2)) and scale.ndim == 0


def test_tiny_uses_the_vit_b_32_tokenizer():
    texts = ["adenopathy is present, pleural effusion is present", "rounded atelectasis is absent"]
    assert torch.equal(get_tokenizer("cxrcml-tiny")(texts), open_clip.get_tokenizer("ViT-B-32")(texts))
    assert get_tokenizer("cxrcml-tiny")(texts).shape == (2, 77)


def test_precision_and_model_kwargs():
    model = create_clip("cxrcml-tiny", precision="bf16", force_image_size=96)
    assert model.visual.conv1.weight.dtype == torch.bfloat16
    assert model.visual.image_size == (96, 96)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"model_name": "ViT-B-32", "checkpoint": "openai"}, ValueError, "never downloads.*local file path"),
        ({"model_name": "ViT-B-32", "checkpoint": "laion2b_s34b_b79k"}, ValueError, "pretrained tag"),
        ({"model_name": "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"}, ValueError, "never\\s+downloads"),
        ({"model_name": "cxrcml-huge"}, ValueError, "not a registered open_clip config"),
        ({"model_name": "ViT-B-16-SigLIP"}, ValueError, "Hugging Face"),
        ({"model_name": "cxrcml-tiny", "pretrained": "openai"}, ValueError, "only from checkpoint"),
        ({"model_name": "cxrcml-tiny", "precision": "fp8"}, ValueError, "precision"),
    ],
)
def test_factory_refuses_downloads_and_bad_names(kwargs, error, match):
    with pytest.raises(error, match=match):
        create_clip(**kwargs)


def test_classifier_matches_pos_neg_softmax(tiny):
    model, tokenizer = tiny
    classifier = ZeroShotClassifier.from_clip(model, tokenizer).eval()
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        probs = classifier(images)
        x = model.encode_image(images, normalize=True)
    pos, neg = encode_class_prompts(model, tokenizer, CXRLT2024_CLASSES, "present_absent")
    scale = model.logit_scale.exp()
    expected = torch.softmax(torch.stack([scale * x @ pos.t(), scale * x @ neg.t()]), dim=0)[0]
    assert probs.shape == (3, 40) and probs.dtype == torch.float32
    torch.testing.assert_close(probs, expected, atol=1e-6, rtol=1e-5)
    assert classifier.class_names == CXRLT2024_CLASSES


def test_classifier_calibration(tiny):
    model, tokenizer = tiny
    classifier = ZeroShotClassifier.from_clip(model, tokenizer, class_names=["Edema", "Mass"]).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = classifier.logits(images)
        classifier.set_calibration(temperature=torch.tensor([2.0, 0.5]), bias=0.3)
        probs = classifier(images)
    torch.testing.assert_close(probs, torch.sigmoid(logits / torch.tensor([2.0, 0.5]) + 0.3))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        classifier.set_calibration(temperature=0.0)
    with pytest.raises(ValueError, match=r"\[2\] values"):
        classifier.set_calibration(temperature=torch.ones(3))


def test_classifier_shares_image_tower_and_refreshes_prompts(tiny):
    model, tokenizer = tiny
    model = create_clip("cxrcml-tiny")
    classifier = ZeroShotClassifier.from_clip(model, tokenizer, class_names=["Edema"])
    assert classifier.visual is model.visual
    before = classifier.pos_embeddings.clone()
    with torch.no_grad():
        model.text_projection.mul_(-1.0)
    classifier.encode_prompts(model, tokenizer)
    torch.testing.assert_close(classifier.pos_embeddings, -before)
    classifier.encode_prompts(model, tokenizer, prompts="chexzero")
    assert classifier.prompts.name == "chexzero"


def test_classifier_from_config_with_training_checkpoint(tmp_path, tiny):
    """The bundle's network_def: built by _target_ from a name and our training checkpoint {"model": ...}."""
    model, tokenizer = tiny
    checkpoint = tmp_path / "model.pt"
    torch.save({"model": model.state_dict(), "optimizer": {"state": {}, "param_groups": []}}, checkpoint)
    parser = ConfigParser(
        {
            "model_name": "cxrcml-tiny",
            "network_def": {
                "_target_": "monai_cxrcml.networks.ZeroShotClassifier",
                "model": "@model_name",
                "class_names": "cxrlt2024",
                "checkpoint": str(checkpoint),
                "prompts": "present_absent",
            },
        }
    )
    network = parser.get_parsed_content("network_def").eval()
    reference = ZeroShotClassifier.from_clip(model, tokenizer).eval()
    image = torch.rand(1, 3, 64, 64)  # what verify_net_in_out feeds
    with torch.no_grad():
        out = network(image)
        torch.testing.assert_close(out, reference(image))
    assert out.shape == (1, 40)
    assert not any(k.startswith("transformer.") for k in network.state_dict())  # no text tower kept


def test_classifier_needs_tokenizer_and_name_for_checkpoint(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match="tokenizer"):
        ZeroShotClassifier(model)
    with pytest.raises(ValueError, match="checkpoint applies to a model given by name"):
        ZeroShotClassifier(model, checkpoint="x.pt", tokenizer=get_tokenizer("cxrcml-tiny"))


def _export(classifier: torch.nn.Module, images: torch.Tensor, how: str, path) -> Callable:
    """Export, save and load back the classifier; returns the loaded callable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notices
        warnings.simplefilter("ignore", UserWarning)
        if how == "export":
            batch = torch.export.Dim("batch", min=1, max=1024)
            torch.export.save(torch.export.export(classifier, (images,), dynamic_shapes={"image": {0: batch}}), path)
            return torch.export.load(path).module()
        exported = torch.jit.trace(classifier, images) if how == "trace" else torch.jit.script(classifier)
        torch.jit.save(exported, path)
        return torch.jit.load(path)


@pytest.mark.parametrize("model_name", ["cxrcml-tiny", "cxrcml-cnn"])
@pytest.mark.parametrize("how", ["trace", "script", "export"])
def test_classifier_export_round_trip(tmp_path, how, model_name):
    torch.manual_seed(0)
    model, tokenizer = create_clip(model_name).eval(), get_tokenizer(model_name)
    classifier = ZeroShotClassifier.from_clip(model, tokenizer).eval()
    classifier.set_calibration(temperature=1.5)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        loaded = _export(classifier, images, how, tmp_path / "classifier.pt")
        torch.testing.assert_close(loaded(images), classifier(images), atol=1e-6, rtol=1e-5)
        other = torch.randn(5, 3, 64, 64)  # another batch size than the exported one
        torch.testing.assert_close(loaded(other), classifier(other), atol=1e-6, rtol=1e-5)


def test_convnet_tower_is_a_timm_model_that_keeps_small_signs():
    """The demo's tower through timm's registry; pooled features [B, 128]; a 2-pixel dot changes them."""
    import timm

    from monai_cxrcml.networks import ChestConvNet

    trunk = timm.create_model("cxrcml_convnet16", pretrained=False)
    assert isinstance(trunk, ChestConvNet) and trunk.num_features == 128
    trunk.reset_classifier(3)
    assert trunk(torch.randn(2, 3, 64, 64)).shape == (2, 3)
    trunk.reset_classifier(0)
    trunk.eval()
    film = torch.zeros(1, 3, 64, 64)
    dotted = film.clone()
    dotted[..., 30:32, 40:42] = 1.0
    with torch.no_grad():
        assert (trunk(dotted) - trunk(film)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="average"):
        trunk.reset_classifier(0, global_pool="max")
    with pytest.raises(TypeError, match="unexpected"):
        timm.create_model("cxrcml_convnet8", drop_rate=0.5)


def test_classifier_state_dict_round_trip(tiny):
    model, tokenizer = tiny
    classifier = ZeroShotClassifier.from_clip(model, tokenizer).eval()
    classifier.set_calibration(temperature=2.0, bias=-0.1)
    other = ZeroShotClassifier("cxrcml-tiny").eval()
    other.load_state_dict(classifier.state_dict())
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(other(images), classifier(images))
    assert F.normalize(other.pos_embeddings, dim=-1).shape == (40, 128)
