"""PredictionWriter: per-film ids, labels, probabilities and embeddings of an evaluation in predictions.npz."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ignite.engine import Engine

from monai_cxrcml.engines import ZeroShotEvaluator
from monai_cxrcml.handlers import prediction_writer
from monai_cxrcml.handlers.prediction_writer import PredictionWriter
from monai_cxrcml.networks import create_clip, get_tokenizer

MODEL = "cxrcml-tiny"
CLASSES = ["Cardiomegaly", "Pleural Effusion", "Normal"]


def _films(n: int = 20, batch: int = 8, seed: int = 0) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, len(CLASSES), generator=gen) < 0.4).float()
    mask = (torch.rand(n, len(CLASSES), generator=gen) < 0.8).float()
    images = torch.randn(n, 3, 64, 64, generator=gen)
    return [
        {"image": images[i : i + batch], "label": labels[i : i + batch], "label_mask": mask[i : i + batch],
         "dicom_id": [f"d{k}" for k in range(i, min(i + batch, n))],
         "subject_id": [f"p{k // 2}" for k in range(i, min(i + batch, n))]}
        for i in range(0, n, batch)
    ]


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:  # plain arrays only: no pickle needed to read it
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> tuple[Path, list[dict], ZeroShotEvaluator, torch.nn.Module]:
    """A tiny CLIP scored zero-shot on 20 films with the writer attached."""
    torch.manual_seed(0)
    model = create_clip(MODEL).eval()
    batches = _films()
    out = tmp_path_factory.mktemp("run")
    evaluator = ZeroShotEvaluator("cpu", batches, model, get_tokenizer(MODEL), class_names=CLASSES,
                                  val_handlers=[PredictionWriter(out, CLASSES)])
    evaluator.run()
    return out / "predictions.npz", batches, evaluator, model


def test_writes_every_film_with_ids_labels_and_mask_in_scoring_order(evaluated):
    path, batches, _, _ = evaluated
    data = _load(path)
    assert set(data) == {"dicom_id", "subject_id", "label", "label_mask", "pred", "image_features", "class_names"}
    assert data["class_names"].tolist() == CLASSES
    assert data["dicom_id"].tolist() == [d for b in batches for d in b["dicom_id"]]
    assert data["subject_id"].tolist() == [s for b in batches for s in b["subject_id"]]
    np.testing.assert_array_equal(data["label"], torch.cat([b["label"] for b in batches]).numpy())
    assert data["label_mask"].dtype == bool
    np.testing.assert_array_equal(data["label_mask"], torch.cat([b["label_mask"] for b in batches]).numpy() > 0)
    assert data["pred"].shape == (20, 3) and ((data["pred"] > 0) & (data["pred"] < 1)).all()
    assert not list(path.parent.glob("*.partial*"))


def test_embeddings_are_the_normalised_image_features_the_scores_came_from(evaluated):
    path, batches, evaluator, model = evaluated
    data = _load(path)
    with torch.no_grad():
        expected = F.normalize(model.encode_image(torch.cat([b["image"] for b in batches])), dim=-1)
    np.testing.assert_allclose(data["image_features"], expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(data["image_features"], axis=1), 1.0, atol=1e-5)
    clf = evaluator.network  # the probabilities follow from exactly these embeddings
    features = torch.from_numpy(data["image_features"])
    logits = clf.logit_scale * features @ (clf.pos_embeddings - clf.neg_embeddings).t()
    np.testing.assert_allclose(data["pred"], torch.sigmoid(logits / clf.temperature + clf.bias).numpy(), atol=1e-5)


def test_evaluator_output_carries_image_features_and_leaves_no_hook(evaluated):
    _, _, evaluator, model = evaluated
    assert evaluator.state.output["image_features"].shape == (4, model.visual.output_dim)
    assert not model.visual._forward_hooks  # the per-iteration hook is removed again


def _engine(batches: list[dict], writer: PredictionWriter) -> Engine:
    """An engine whose output is the batch itself (as far as the writer is concerned)."""
    engine = Engine(lambda e, batch: dict(batch))
    writer.attach(engine)
    engine.run(batches, max_epochs=1)
    return engine


def _batch(ids, pred=None, **extra) -> dict:
    n = len(ids)
    pred = torch.full((n, 2), 0.25) if pred is None else pred
    return {"pred": pred, "dicom_id": list(ids), **extra}


def test_unlabelled_run_and_skipped_batches(tmp_path: Path):
    writer = PredictionWriter(tmp_path, ["a", "b"], save_embeddings=False)
    _engine([_batch(["x", "y"]), {"num_skipped": 3}, _batch(["z"])], writer)  # middle batch: every film unreadable
    data = _load(tmp_path / "predictions.npz")
    assert data["dicom_id"].tolist() == ["x", "y", "z"]
    assert "label" not in data and "label_mask" not in data and "image_features" not in data
    assert data["subject_id"].tolist() == ["", "", ""]


def test_labels_without_mask_are_all_known(tmp_path: Path):
    writer = PredictionWriter(tmp_path, ["a", "b"], save_embeddings=False)
    _engine([_batch(["x", "y"], label=torch.tensor([[1.0, 0.0], [0.0, 1.0]]))], writer)
    data = _load(tmp_path / "predictions.npz")
    assert data["label_mask"].all() and data["label_mask"].shape == (2, 2)


def test_missing_embeddings_are_warned_about_once_and_left_out(tmp_path: Path, caplog):
    writer = PredictionWriter(tmp_path, ["a", "b"])
    with caplog.at_level(logging.WARNING, logger="monai_cxrcml"):
        _engine([_batch(["x"]), _batch(["y"])], writer)
    warnings = [r for r in caplog.records if "image_features" in r.getMessage()]
    assert len(warnings) == 1 and "ZeroShotEvaluator" in warnings[0].getMessage()
    assert "image_features" not in _load(tmp_path / "predictions.npz")


def test_embeddings_of_only_some_batches_are_left_out_not_misaligned(tmp_path: Path, caplog):
    writer = PredictionWriter(tmp_path, ["a", "b"])
    with caplog.at_level(logging.WARNING, logger="monai_cxrcml"):
        _engine([_batch(["x"], image_features=torch.ones(1, 4)), _batch(["y", "z"])], writer)
    assert "image_features" not in _load(tmp_path / "predictions.npz")
    assert any("only 1 of 3 films" in r.getMessage() for r in caplog.records)


def test_pred_of_other_width_than_class_names_is_an_error(tmp_path: Path):
    writer = PredictionWriter(tmp_path, ["a", "b", "c"])
    with pytest.raises(ValueError, match="class_names"):
        _engine([_batch(["x"])], writer)


def test_distributed_gather_drops_padding_repeats_and_only_rank_0_writes(tmp_path: Path, monkeypatch):
    """Two ranks of a DistributedSampler: rank 1 repeats film 'a' to pad its shard."""
    other_rank = {"pred": np.full((2, 2), 0.75, np.float32), "dicom_id": np.array(["c", "a"]),
                  "subject_id": np.array(["", ""]), "image_features": np.ones((2, 3), np.float32)}
    monkeypatch.setattr(prediction_writer.idist, "get_world_size", lambda: 2)
    monkeypatch.setattr(prediction_writer.idist, "all_gather", lambda local: [local, other_rank])
    writer = PredictionWriter(tmp_path, ["u", "v"])
    _engine([_batch(["a", "b"], image_features=torch.zeros(2, 3))], writer)
    data = _load(tmp_path / "predictions.npz")
    assert data["dicom_id"].tolist() == ["a", "b", "c"]
    np.testing.assert_array_equal(data["pred"][:, 0], [0.25, 0.25, 0.75])
    np.testing.assert_array_equal(data["image_features"][:, 0], [0.0, 0.0, 1.0])

    monkeypatch.setattr(prediction_writer.idist, "get_rank", lambda: 1)
    other = tmp_path / "rank1"
    _engine([_batch(["a"])], PredictionWriter(other, ["u", "v"]))
    assert not other.exists()


def _rank_run(local_rank: int, out: str) -> None:
    """Rank 0 scores a, b, c; rank 1 scores d and repeats a (padding), as a DistributedSampler would."""
    import ignite.distributed as idist

    rank = idist.get_rank()
    ids = [["a", "b", "c"], ["d", "a"]][rank]
    batch = _batch(ids, pred=torch.full((len(ids), 2), float(rank)), image_features=torch.full((len(ids), 3), 1.0))
    _engine([batch], PredictionWriter(out, ["u", "v"]))


@pytest.mark.slow
def test_two_gloo_processes_with_unequal_shards(tmp_path: Path):
    import ignite.distributed as idist

    with idist.Parallel(backend="gloo", nproc_per_node=2) as parallel:
        parallel.run(_rank_run, str(tmp_path))
    data = _load(tmp_path / "predictions.npz")
    assert data["dicom_id"].tolist() == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(data["pred"][:, 0], [0.0, 0.0, 0.0, 1.0])
    assert data["image_features"].shape == (4, 3)
