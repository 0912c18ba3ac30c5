"""LoadFilmd, CLIPNormalized, augmentation, Tokenized, chest_film_transforms and the skip policy."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest
import torch
from _films import (
    BAD_FILMS,
    FILM_SHAPE,
    QUADRANTS,
    asymmetric_film,
    quadrant_means,
    write_dicom,
    write_nifti_monai,
    write_pil,
    write_png16,
)
from monai.data import DataLoader, Dataset, MetaTensor

from monai_cxrcml.data.films import FilmReadError
from monai_cxrcml.networks import get_tokenizer
from monai_cxrcml.transforms import (
    CHEXZERO_MEAN,
    CHEXZERO_STD,
    CLIP_MEAN,
    CLIP_STD,
    CLIPNormalized,
    LoadFilmd,
    Tokenized,
    chest_film_transforms,
    film_augmentation,
    skip_unreadable_collate,
)

SIZE = 60  # the 120 x 80 film becomes 60 x 40 content, columns 10..50 of a 60 x 60 square


def _film_writers(tmp_path):
    film = asymmetric_film()
    window = {"WindowCenter": 2048, "WindowWidth": 4096}
    return {
        "jpeg": lambda: write_pil(tmp_path / "f.jpg", film, "L", quality=95),
        "rgb jpeg": lambda: write_pil(tmp_path / "rgb.jpg", film, "RGB", quality=95),
        "png16": lambda: write_png16(tmp_path / "f16.png", np.rint(film * 4095)),
        "dicom m2": lambda: write_dicom(tmp_path / "m2.dcm", np.rint(film * 4095).astype(np.uint16), **window),
        "dicom m1": lambda: write_dicom(
            tmp_path / "m1.dcm", np.rint((1 - film) * 4095).astype(np.uint16), "MONOCHROME1", **window
        ),
        "nifti": lambda: write_nifti_monai(tmp_path, film),
    }


@pytest.mark.parametrize("fmt", ["jpeg", "rgb jpeg", "png16", "dicom m2", "dicom m1", "nifti"])
def test_orientation_kept_through_load_and_normalise(tmp_path, fmt):
    path = _film_writers(tmp_path)[fmt]()
    out = CLIPNormalized("image")(LoadFilmd("image", SIZE)({"image": str(path)}))
    image = out["image"]
    assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32
    assert image.meta["filename_or_obj"] == str(path)  # savers and MONAI Label find the film again
    mean, std = torch.tensor(CLIP_MEAN).view(3, 1, 1), torch.tensor(CLIP_STD).view(3, 1, 1)
    gray = (image * std + mean).numpy()
    np.testing.assert_allclose(gray[0], gray[2], atol=1e-5)  # the same gray film in every channel
    content = gray[0][:, 10:50]
    np.testing.assert_allclose(quadrant_means(content), QUADRANTS, atol=0.03)
    np.testing.assert_allclose(gray[0][:, :10], 0, atol=1e-6)
    np.testing.assert_allclose(gray[0][:, 50:], 0, atol=1e-6)


def test_aspect_kept_and_zero_padded(tmp_path):
    wide = write_pil(tmp_path / "wide.png", np.full((100, 200), 0.5), "L")  # 200 wide, 100 high
    image = LoadFilmd("image", 64)({"image": wide})["image"]
    assert isinstance(image, MetaTensor) and image.shape == (1, 64, 64)
    assert image.meta["filename_or_obj"] == str(wide)
    np.testing.assert_allclose(image[0, 16:48].numpy(), 128 / 255, atol=1e-3)  # central band, all columns
    assert not image[0, :16].any() and not image[0, 48:].any()
    tall = write_pil(tmp_path / "tall.png", np.full((200, 100), 0.5), "L")
    image = LoadFilmd("image", 64)({"image": tall})["image"]
    assert not image[0, :, :16].any() and not image[0, :, 48:].any() and image[0, :, 16:48].min() > 0.49


def test_full_size_without_image_size(tmp_path):
    path = write_pil(tmp_path / "f.png", asymmetric_film(), "L")
    assert LoadFilmd("image")({"image": path})["image"].shape == (1, *FILM_SHAPE)


def test_chexzero_normalisation_values():
    image = torch.full((1, 4, 4), 0.5)
    out = CLIPNormalized("image", mode="chexzero")({"image": image})["image"]
    np.testing.assert_allclose(out.numpy(), (127.5 - 101.48761) / 83.43944, rtol=1e-5)
    assert CHEXZERO_MEAN == pytest.approx(101.48761 / 255) and CHEXZERO_STD == pytest.approx(83.43944 / 255)
    with pytest.raises(ValueError, match="mode"):
        CLIPNormalized("image", mode="imagenet")


def test_augmentation_varies_but_never_mirrors(tmp_path):
    path = write_pil(tmp_path / "f.png", asymmetric_film(), "L")
    film = LoadFilmd("image", SIZE)({"image": path})
    augment = film_augmentation("image", SIZE)
    augment.set_random_state(seed=0)
    outputs = [augment(dict(film))["image"][0].numpy() for _ in range(30)]
    assert any(not np.allclose(o, film["image"][0].numpy()) for o in outputs)
    for o in outputs:  # the bright block stays top-left, the dark one top-right
        q = quadrant_means(o[:, 10:50])
        assert q[0, 0] > q[1, 1] > q[1, 0] > q[0, 1]


def test_eval_pipeline_is_deterministic_and_train_pipeline_augments(tmp_path):
    path = write_pil(tmp_path / "f.png", asymmetric_film(), "L")
    item = {"image": str(path), "label": np.zeros(3, np.float32), "caption": "no finding"}
    evaluate = chest_film_transforms(train=False, image_size=SIZE)
    a, b = evaluate(dict(item))["image"], evaluate(dict(item))["image"]
    assert torch.equal(a, b) and a.shape == (3, SIZE, SIZE)
    train = chest_film_transforms(train=True, image_size=SIZE)
    train.set_random_state(seed=1)
    assert any(not torch.equal(train(dict(item))["image"], a) for _ in range(5))


def test_tokenized_single_list_pickled_and_truncation_warning(caplog):
    tokenize = Tokenized("caption", get_tokenizer("ViT-B-32"))
    out = tokenize({"caption": "pleural effusion is present"})
    text = out["text"]
    assert text.dtype == torch.int64 and text.shape == (77,)
    assert text[0] == 49406 and (text == 49407).sum() == 1 and out["caption"] == "pleural effusion is present"
    clone = pickle.loads(pickle.dumps(tokenize))
    assert torch.equal(clone({"caption": "pleural effusion is present"})["text"], text)
    assert tokenize({"caption": ["a", "b"]})["text"].shape == (2, 77)
    with caplog.at_level(logging.WARNING):
        tokenize({"caption": ", ".join(["pleural effusion is present"] * 20)})
    assert "truncated" in caplog.text
    with pytest.raises(TypeError, match="caption"):
        tokenize({"caption": 3})


def test_full_pipeline_rebuilds_caption_and_tokenises(tmp_path):
    path = write_pil(tmp_path / "f.png", asymmetric_film(), "L")
    item = {"image": str(path), "label": np.array([1, 0, 1], np.float32), "caption": "stale", "dicom_id": "d1"}
    pipeline = chest_film_transforms(
        train=False,
        image_size=SIZE,
        normalization="chexzero",
        tokenizer=get_tokenizer("ViT-B-32"),
        caption={"class_names": ["Atelectasis", "Cardiomegaly", "Edema"]},
    )
    out = pipeline(item)
    assert out["image"].shape == (3, SIZE, SIZE) and out["dicom_id"] == "d1"
    assert "atelectasis" in out["caption"].lower() and "edema" in out["caption"].lower()
    assert "cardiomegaly" not in out["caption"].lower()
    assert out["text"].shape == (77,)


def _datalist(tmp_path, bad: int = 2, good: int = 3):
    items = []
    for i in range(good):
        items.append({"image": str(write_pil(tmp_path / f"good{i}.png", asymmetric_film(), "L")), "id": i})
    for i in range(bad):
        broken = tmp_path / f"broken{i}.jpg"
        broken.write_bytes(b"not a jpeg" * 10)
        items.append({"image": str(broken), "id": good + i})
    return items


def test_skip_policy_drops_counts_and_logs(tmp_path, caplog):
    data = _datalist(tmp_path)
    dataset = Dataset(data, chest_film_transforms(train=False, image_size=32, on_error="skip"))
    with caplog.at_level(logging.WARNING):
        batch = next(iter(DataLoader(dataset, batch_size=5, collate_fn=skip_unreadable_collate)))
    assert batch["image"].shape == (3, 3, 32, 32) and int(batch["num_skipped"]) == 2
    assert sorted(batch["id"].tolist()) == [0, 1, 2]
    assert str(tmp_path / "broken0.jpg") in caplog.text and str(tmp_path / "broken1.jpg") in caplog.text


def test_every_bad_film_is_skipped_and_counted_by_the_trainer(tmp_path, caplog):
    """The bad-input matrix of test_films under on_error='skip': each film dropped, logged with its path, counted."""
    from monai_cxrcml.engines import CXRCMLTrainer
    from monai_cxrcml.losses import CXRCMLLoss
    from monai_cxrcml.networks import create_clip

    bad = [{"image": str(make(tmp_path)), "label": np.zeros(2, np.float32)}
           for case, (make, _) in sorted(BAD_FILMS.items()) if case != "not a path"]
    good = [{"image": str(write_pil(tmp_path / f"good{i}.png", asymmetric_film(), "L")),
             "label": np.array([1, 0], np.float32)} for i in range(4)]
    data = [{**item, "sample_id": i} for i, item in enumerate(good[:2] + bad + good[2:])]
    transform = chest_film_transforms(train=True, image_size=64, on_error="skip",
                                      tokenizer=get_tokenizer("cxrcml-tiny"),
                                      caption={"class_names": ["Edema", "Mass"]})
    loader = DataLoader(Dataset(data, transform), batch_size=4, collate_fn=skip_unreadable_collate)
    model = create_clip("cxrcml-tiny")
    trainer = CXRCMLTrainer(device="cpu", max_epochs=2, train_data_loader=loader, network=model,
                            optimizer=torch.optim.AdamW(model.parameters()), loss_function=CXRCMLLoss())
    with caplog.at_level(logging.WARNING):
        trainer.run()
    assert trainer.state.skipped_films == 2 * len(bad)
    assert f"epoch 2: {len(bad)} unreadable film(s) skipped ({2 * len(bad)} in the run so far)" in caplog.text
    assert all(item["image"] in caplog.text for item in bad)


def test_skip_policy_in_worker_processes(tmp_path):
    dataset = Dataset(_datalist(tmp_path), chest_film_transforms(train=False, image_size=32, on_error="skip"))
    loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=skip_unreadable_collate)
    batches = list(loader)  # [good, good], [good, bad], [bad]
    assert sum(int(b["num_skipped"]) for b in batches) == 2
    assert sum(len(b["id"]) for b in batches if "id" in b) == 3


def test_skip_policy_all_unreadable_batch_has_only_the_count(tmp_path):
    dataset = Dataset(_datalist(tmp_path, bad=2, good=0), chest_film_transforms(False, 32, on_error="skip"))
    batch = next(iter(DataLoader(dataset, batch_size=2, collate_fn=skip_unreadable_collate)))
    assert list(batch) == ["num_skipped"] and int(batch["num_skipped"]) == 2


def test_fail_fast_is_the_default(tmp_path):
    broken = _datalist(tmp_path, bad=1, good=0)[0]["image"]
    with pytest.raises(FilmReadError, match="broken0.jpg"):
        LoadFilmd("image", 32)({"image": broken})
    dataset = Dataset([{"image": broken}], chest_film_transforms(train=False, image_size=32))
    with pytest.raises(RuntimeError) as info:  # MONAI's Compose wraps it; the film stays named in the chain
        dataset[0]
    cause = info.value
    while cause is not None and not isinstance(cause, FilmReadError):
        cause = cause.__cause__
    assert isinstance(cause, FilmReadError) and cause.path == broken


def test_invalid_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="on_error"):
        LoadFilmd("image", 32, on_error="ignore")
    with pytest.raises(ValueError, match="cache_dir needs image_size"):
        LoadFilmd("image", None, cache_dir=tmp_path)
