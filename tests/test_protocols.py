"""Scoring protocols: the `chexzero` protocol against an independent CheXzero reference, the named protocols, the
knobs on top of them, and the protocol written next to every output."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import spearmanr
from torchvision.transforms import Compose, InterpolationMode, Normalize, Resize

from monai_cxrcml.cli.inference import main as inference_main
from monai_cxrcml.data.cache import FilmCache
from monai_cxrcml.data.chexzero_films import load_film_chexzero
from monai_cxrcml.inference import predict
from monai_cxrcml.networks import create_clip, get_tokenizer
from monai_cxrcml.protocols import PROTOCOLS, get_protocol

VIT = "ViT-B-32-quickgelu"
CLASSES = ["Atelectasis", "Cardiomegaly", "Pleural Effusion", "Round(ed) Atelectasis", "Normal"]


def _film(height: int, width: int, seed: int) -> np.ndarray:
    """A chest-like film in [0, 1] at realistic size: mediastinum, lungs, a seed-dependent blob, noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    film = 0.25 + 0.5 * np.exp(-(((cols - width / 2) / (width / 7)) ** 2)) + 0.15 * rows / height
    cy, cx, r = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width, rng.uniform(0.05, 0.2) * width
    film += rng.uniform(-0.3, 0.3) * np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / (2 * r**2))
    film += rng.normal(0, 0.03, size=film.shape).astype(np.float32)
    return np.clip(film, 0, 1)


def write_realistic_films(folder: Path, count: int) -> Path:
    """Films at MIMIC size in ``folder``: 8-bit JPEGs and 16-bit PNGs (full 16-bit range), portrait and landscape."""
    for i in range(count):
        height, width = (2500, 2048) if i % 3 else (2000, 2460)
        film = _film(height, width, i)
        if i % 2:
            Image.fromarray(np.rint(film * 65535).astype(np.uint16)).save(folder / f"film{i}.png")
        else:
            Image.fromarray(np.rint(film * 255).astype(np.uint8)).save(folder / f"film{i}.jpg", quality=92)
    return folder


@pytest.fixture(scope="module")
def realistic_films(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight films at MIMIC size (:func:`write_realistic_films`)."""
    return write_realistic_films(tmp_path_factory.mktemp("films"), 8)


@pytest.fixture(scope="module")
def chexzero_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A random ViT-B/32 saved as CheXzero saves its weights: a plain state_dict with OpenAI key names."""
    torch.manual_seed(0)
    model = create_clip(VIT).eval()
    path = tmp_path_factory.mktemp("chexzero") / "chexzero.pt"
    torch.save(model.state_dict(), path)
    return path, model


def _chexzero_reference(paths: list[Path], model: torch.nn.Module, classes: list[str]) -> np.ndarray:
    """CheXzero's pipeline written from ../shared/FACTS.md with PIL, torchvision and the model, not our transforms.

    ``cv2.imread`` gives three equal 8-bit channels (a 16-bit film keeps its high byte, as OpenCV does without
    IMREAD_ANYDEPTH); ``preprocess``: LANCZOS to int(side * 320 / longest), pasted centred on a black 320 x 320 'L'
    image; the 0-255 float film repeated to 3 channels, Normalize(101.48761, 83.43944) then Resize(224, BICUBIC);
    "{}" / "no {}" with the class names as given; raw cosines; softmax over the pair.
    """
    transform = Compose([Normalize((101.48761,) * 3, (83.43944,) * 3), Resize(224, InterpolationMode.BICUBIC)])
    images = []
    for path in paths:
        image = Image.open(path)
        values = np.asarray(image)
        if values.dtype == np.uint16 or image.mode.startswith("I;16"):
            values = (values.astype(np.uint16) >> 8).astype(np.uint8)
        rgb = Image.fromarray(np.repeat(values[..., None], 3, axis=-1) if values.ndim == 2 else values)
        ratio = float(320) / max(rgb.size)
        new_size = tuple(int(side * ratio) for side in rgb.size)
        square = Image.new("L", (320, 320))
        square.paste(rgb.resize(new_size, Image.Resampling.LANCZOS), ((320 - new_size[0]) // 2,
                                                                      (320 - new_size[1]) // 2))
        film = torch.from_numpy(np.asarray(square).astype(np.float32))
        images.append(transform(film[None].repeat(3, 1, 1)))
    tokenizer = get_tokenizer(VIT)
    with torch.no_grad():
        features = model.encode_image(torch.stack(images))
        features = features / features.norm(dim=-1, keepdim=True)

        def class_weights(template: str) -> torch.Tensor:
            text = model.encode_text(tokenizer([template.format(name) for name in classes]))
            return text / text.norm(dim=-1, keepdim=True)

        pos, neg = features @ class_weights("{}").T, features @ class_weights("no {}").T
    return (torch.exp(pos) / (torch.exp(pos) + torch.exp(neg))).numpy()


def _worst_spearman(a: np.ndarray, b: np.ndarray) -> float:
    return min(spearmanr(a[:, c], b[:, c]).statistic for c in range(a.shape[1]))


def test_chexzero_protocol_reproduces_chexzero_on_realistic_films(realistic_films, chexzero_checkpoint):
    path, model = chexzero_checkpoint
    files = sorted(realistic_films.iterdir())
    reference = _chexzero_reference(files, model, CLASSES)
    ours = predict(realistic_films, path, VIT, class_names=CLASSES, protocol="chexzero", device="cpu")
    assert ours["path"].tolist() == [f.name for f in files]
    probabilities = ours[CLASSES].to_numpy()
    assert np.abs(probabilities - reference).max() <= 1e-3
    assert _worst_spearman(probabilities, reference) >= 0.999
    # the pipeline before the chexzero protocol (straight to 224 px, JPEG draft decoding) does not pass this check
    direct = predict(realistic_films, path, VIT, class_names=CLASSES, device="cpu",
                     protocol=get_protocol("chexzero", resize="longest_side", jpeg_draft=True))
    assert _worst_spearman(direct[CLASSES].to_numpy(), reference) < 0.999


def test_chexzero_cli_writes_its_protocol_beside_the_submission(realistic_films, chexzero_checkpoint, tmp_path, caplog):
    path, _ = chexzero_checkpoint
    output = tmp_path / "out.csv"
    with caplog.at_level(logging.WARNING, logger="monai_cxrcml"):
        assert 0 == inference_main([str(realistic_films), "--checkpoint", str(path), "--model-name", VIT,
                                    "--classes", *CLASSES, "--protocol", "chexzero", "--output", str(output),
                                    "--device", "cpu", "--num-workers", "0"])
    written = json.loads(output.with_suffix(".protocol.json").read_text())
    assert written["name"] == "chexzero" and written["resize"] == "chexzero" and written["scale"] == 1.0
    assert written["prompts"] == "chexzero" and written["precision"] == "fp32"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "keeps" in r.getMessage()]
    assert len(warnings) == 1  # one warning, naming both defects and the protocol that avoids them
    assert "'no Normal'" in warnings[0] and "#19" in warnings[0] and "#17" in warnings[0]
    assert "chexzero_corrected" in warnings[0]


def test_chexzero_square_is_cached_exactly(realistic_films, tmp_path):
    jpeg, png = sorted(realistic_films.glob("*.jpg"))[0], sorted(realistic_films.glob("*.png"))[0]
    cache = FilmCache(tmp_path / "cache", 320, resize="chexzero")
    for film in (jpeg, png):
        direct = load_film_chexzero(film)
        assert direct.shape == (320, 320)
        np.testing.assert_array_equal(cache.get(film), direct)  # first read builds the entry
        np.testing.assert_array_equal(cache.get(film), direct)  # second read comes from it
    assert cache.hits == 2 and cache.misses == 2
    assert FilmCache(tmp_path / "cache", 320).root != cache.root  # never mixed with the longest-side entries


def test_sixteen_bit_film_keeps_its_high_byte_as_opencv_does(tmp_path):
    values = np.full((400, 300), 0x1234, dtype=np.uint16)
    values[:200] = 0xABCD
    Image.fromarray(values).save(tmp_path / "film.png")
    square = np.rint(load_film_chexzero(tmp_path / "film.png") * 255)  # 300 x 400 -> 240 x 320, centred
    assert square[60, 160] == 0xAB and square[260, 160] == 0x12  # the high bytes, away from the edge's ringing
    assert (square[:, :40] == 0).all() and (square[:, 280:] == 0).all()  # the black side bands of the paste
    Image.fromarray(np.full((64, 64), 4000, dtype=np.uint16)).save(tmp_path / "twelve_bit.png")
    with pytest.warns(UserWarning, match="nearly black"):
        load_film_chexzero(tmp_path / "twelve_bit.png")


def test_named_protocols_and_knobs_on_top():
    assert set(PROTOCOLS) == {"present_absent", "present_absent_pooled", "chexzero", "chexzero_corrected"}
    chexzero = get_protocol("chexzero")
    assert (chexzero.resize, chexzero.normalization, chexzero.jpeg_draft, chexzero.scale, chexzero.precision) == (
        "chexzero", "chexzero", False, 1.0, "fp32")
    assert chexzero.prompts.name == "chexzero" and chexzero.prompts.double_negation
    corrected = get_protocol("chexzero_corrected")
    assert corrected.resize == "chexzero" and corrected.scale == "model" and not corrected.prompts.double_negation
    assert get_protocol("present_absent_pooled").normalization == "clip"
    assert get_protocol(None) == PROTOCOLS["present_absent"]
    assert all(protocol.precision == "fp32" for protocol in PROTOCOLS.values())
    changed = get_protocol("chexzero", normalization="clip", prompts=None)
    assert changed.normalization == "clip" and changed.overridden == ("normalization",)
    assert "normalization overridden" in changed.describe()
    assert get_protocol(changed.to_dict()) == changed  # what is written next to outputs reads back
    assert get_protocol("chexzero", normalization="chexzero") is chexzero  # a knob equal to the protocol's: no change
    with pytest.raises(ValueError, match="unknown scoring protocol 'cheXzero'.*chexzero_corrected"):
        get_protocol("cheXzero")
    with pytest.raises(ValueError, match="precision='bf16'"):
        get_protocol("present_absent", precision="bf16")


def test_defect_warning_names_only_the_defects_the_classes_meet(caplog):
    with caplog.at_level(logging.WARNING, logger="monai_cxrcml"):
        get_protocol("chexzero").announce(["Atelectasis", "Edema"])
        get_protocol("present_absent").announce(["Normal"])
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 1 and "#17" in messages[0] and "#19" not in messages[0]
