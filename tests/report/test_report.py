"""``python -m monai_cxrcml.report``: plots and summary of synthetic run folders (metrics, predictions, checkpoints)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from PIL import Image
from sklearn.metrics import roc_auc_score, roc_curve

from monai_cxrcml.cli.report import main
from monai_cxrcml.handlers import PseudoLabelHandler
from monai_cxrcml.handlers.prediction_writer import PredictionWriter
from monai_cxrcml.metrics import multilabel_report
from monai_cxrcml.mixture import GaussianMixture, StudentTMixture
from monai_cxrcml.report import (
    PLOT_FILES,
    default_classes,
    load_mixture,
    make_report,
    reliability_table,
)
from monai_cxrcml.report.plots import GROUP_COLOURS, POOLED

CLASSES = ["Common A", "Common B", "Medium C", "Rare D", "Rare E", "Absent F"]
GROUPS = {"Common A": "base", "Common B": "base", "Medium C": "base", "Rare D": "rare", "Rare E": "rare",
          "Absent F": "rare"}
PREVALENCE = [0.5, 0.4, 0.2, 0.08, 0.05, 0.0]  # Absent F: no positive, so its AUC is undefined
N, D, K = 200, 8, 4


def _films(seed: int = 0) -> dict[str, np.ndarray]:
    """Films in K embedding clusters, labels by prevalence, scores that follow the labels, ~10% labels unknown."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, K, N)
    centres = rng.normal(size=(K, D)) * 3
    features = centres[cluster] + rng.normal(size=(N, D))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    label = (rng.random((N, len(CLASSES))) < PREVALENCE).astype(np.float32)
    mask = rng.random((N, len(CLASSES))) > 0.1
    pred = 1 / (1 + np.exp(-(2 * label - 1 + rng.normal(size=label.shape))))
    return {"label": label, "mask": mask, "pred": pred.astype(np.float32), "features": features.astype(np.float32),
            "subject_id": np.array([f"p{i // 2}" for i in range(N)]), "dicom_id": np.array([f"d{i}" for i in range(N)])}


def _write_metrics(run: Path, films: dict) -> dict:
    with pytest.warns(UserWarning, match="Absent F"):
        report = multilabel_report(films["label"], films["pred"], CLASSES, groups=GROUPS, mask=films["mask"],
                                   subject_ids=films["subject_id"], n_bootstrap=20)
    report.save(run)
    return json.loads((run / "metrics.json").read_text())


def _write_predictions(run: Path, films: dict, embeddings: bool = True) -> None:
    """Through the real PredictionWriter, 50 films a batch."""
    batches = [
        {"pred": torch.from_numpy(films["pred"][i : i + 50]), "label": torch.from_numpy(films["label"][i : i + 50]),
         "label_mask": torch.from_numpy(films["mask"][i : i + 50]), "dicom_id": films["dicom_id"][i : i + 50].tolist(),
         "subject_id": films["subject_id"][i : i + 50].tolist(),
         **({"image_features": torch.from_numpy(films["features"][i : i + 50])} if embeddings else {})}
        for i in range(0, N, 50)
    ]
    engine = Engine(lambda e, batch: dict(batch))
    PredictionWriter(run, CLASSES, save_embeddings=embeddings).attach(engine)
    engine.run(batches, max_epochs=1)


def _write_checkpoint(run: Path, epoch: int, features: np.ndarray, k: int, visual: torch.Tensor,
                      mixture_cls=StudentTMixture) -> StudentTMixture:
    """A last_checkpoint_epoch=N.pt as train.yaml saves it: model state and the mixture handler's state."""
    handler = PseudoLabelHandler(N, mixture_cls(k, covariance_type="diag", random_state=0))
    mixture = handler.estimator_.fit(torch.from_numpy(features))
    (run / "models").mkdir(exist_ok=True)
    torch.save({"model": {"visual.proj": visual, "logit_scale": torch.ones(())}, "mixture": handler.state_dict()},
               run / "models" / f"last_checkpoint_epoch={epoch}.pt")
    return mixture


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict, dict]:
    """A complete run folder: metrics.json, predictions.npz, model.pt, checkpoints of epochs 9 and 10."""
    run = tmp_path_factory.mktemp("run")
    films = _films()
    metrics = _write_metrics(run, films)
    _write_predictions(run, films)
    visual = torch.arange(6.0)
    _write_checkpoint(run, 9, films["features"], 2, visual)  # older: must not be the one used
    _write_checkpoint(run, 10, films["features"], K, visual)
    torch.save({"model": {"visual.proj": visual}}, run / "models" / "model.pt")
    return run, films, metrics


@pytest.fixture(scope="module")
def report(run):
    return make_report(run[0], tsne_max=300)


def test_every_plot_is_a_png_of_sensible_size(report):
    assert set(report.plots) == set(PLOT_FILES)
    for name, path in report.plots.items():
        assert path == report.report_dir / PLOT_FILES[name] and path.parent == report.run_dir / "report"
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert 300 <= image.width <= 3000 and 300 <= image.height <= 3000, (name, image.size)


def test_long_steps_show_progress(run, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="monai_cxrcml"):
        make_report(run[0], tsne_max=300)
    steps = [r.getMessage() for r in caplog.records if r.getMessage().startswith("report [")]
    assert [s.split("]")[0] for s in steps] == [f"report [{i}/5" for i in range(1, 6)]
    assert "previous step" in steps[-1] and "t-SNE" in " ".join(steps)


def test_summary_mentions_each_plot_and_the_group_means(report, run):
    _, _, metrics = run
    text = report.summary_path.read_text()
    assert report.summary_path == report.report_dir / "summary.md"
    for file_name in PLOT_FILES.values():
        assert f"]({file_name})" in text
    for key in ("macro_auc", "base_auc", "rare_auc", "macro_ap"):
        assert f"{metrics[key]:.3f}" in text
    lo, hi = metrics["rare_auc_ci"]
    assert f"[{lo:.3f}, {hi:.3f}]" in text
    assert "Absent F" in text  # undefined AUC named
    assert "Nothing: every plot was drawn." in text
    for name, ece in report.ece.items():
        assert f"| {name} | {ece:.3f} |" in text


def test_auc_bars_are_sorted_by_prevalence_and_coloured_by_group(report, run):
    _, _, metrics = run
    bars = report.data["auc_bars"]
    assert sorted(bars["class"]) == sorted(CLASSES)
    assert bars["n_pos"].is_monotonic_decreasing
    assert bars["class"].tolist()[:2] == ["Common A", "Common B"] and bars["class"].iloc[-1] == "Absent F"
    for _, row in bars.iterrows():
        entry = metrics["per_class"][row["class"]]
        assert row["group"] == GROUPS[row["class"]] and row["colour"] == GROUP_COLOURS[row["group"]]
        assert row["n_pos"] == entry["n_pos"]
        if entry["auc"] is None:
            assert np.isnan(row["auc"]) and np.isnan(row["ci_low"])
        else:
            assert row["auc"] == pytest.approx(entry["auc"]) and [row["ci_low"], row["ci_high"]] == entry["ci"]


def test_default_classes_are_common_and_rare_ones_with_positives(report):
    assert report.classes == ["Common A", "Common B", "Medium C", "Rare D", "Rare E"]
    assert report.finding == "Rare D"


def test_roc_data_matches_sklearn_on_known_labels(report, run):
    _, films, _ = run
    roc = report.data["roc"]
    assert roc["class"].unique().tolist() == report.classes
    for name in report.classes:
        c = CLASSES.index(name)
        known = films["mask"][:, c]
        fpr, tpr, thresholds = roc_curve(films["label"][known, c], films["pred"][known, c])
        curve = roc[roc["class"] == name]
        np.testing.assert_allclose(curve["fpr"], fpr)
        np.testing.assert_allclose(curve["tpr"], tpr)
        np.testing.assert_allclose(curve["threshold"], thresholds)
        assert curve["auc"].iloc[0] == pytest.approx(roc_auc_score(films["label"][known, c], films["pred"][known, c]))


def test_reliability_counts_every_known_pair(report, run):
    _, films, _ = run
    table = report.data["reliability"]
    counts = table.groupby("curve")["count"].sum()
    assert counts[POOLED] == films["mask"].sum()
    for name in report.classes:
        assert counts[name] == films["mask"][:, CLASSES.index(name)].sum()
    assert set(report.ece) == {POOLED, *report.classes}


def test_reliability_bins_and_ece_by_hand():
    label = np.array([[0, 1], [1, 0], [1, 1], [0, 0], [1, 0]], np.float32)
    pred = np.array([[0.1, 0.5], [0.15, 0.5], [0.9, 0.5], [0.95, 0.5], [1.0, 0.5]], np.float32)
    mask = np.array([[1, 1], [1, 0], [1, 0], [1, 0], [1, 0]], bool)  # 1.0 belongs to the last bin
    table = reliability_table(label, pred, mask, ["x", "y"], classes=["y"], n_bins=2)
    pooled = table[table["curve"] == POOLED]
    assert pooled["count"].tolist() == [2, 4]
    np.testing.assert_allclose(pooled["confidence"], [0.125, 3.35 / 4])
    np.testing.assert_allclose(pooled["frequency"], [0.5, 3 / 4])
    expected = (2 * abs(0.5 - 0.125) + 4 * abs(3 / 4 - 3.35 / 4)) / 6
    assert pooled["ece"].tolist() == pytest.approx([expected, expected])
    only_y = table[table["curve"] == "y"]
    assert only_y["count"].tolist() == [0, 1] and only_y["ece"].iloc[0] == pytest.approx(0.5)


def test_tsne_has_one_row_per_film_and_the_newest_checkpoints_clusters(report, run):
    run_dir, films, _ = run
    tsne = report.data["tsne"]
    assert len(tsne) == N and sorted(tsne["film"]) == list(range(N))
    assert np.isfinite(tsne[["x", "y"]].to_numpy()).all()
    assert report.tsne["epoch"] == 10 and report.tsne["n_components"] == K  # epoch 10, not 9 (no string sort)
    assert report.tsne["same_image_tower"] is True
    saved = load_mixture(run_dir)
    np.testing.assert_array_equal(tsne["cluster"], saved.mixture.predict(films["features"][tsne["film"]]).numpy())
    c = CLASSES.index("Rare D")
    expected = np.where(films["mask"][:, c], films["label"][:, c], np.nan)[tsne["film"]]
    np.testing.assert_array_equal(tsne["finding"], expected)


def test_tsne_subsamples_beyond_tsne_max(run, tmp_path):
    result = make_report(run[0], classes=["Common A", "Rare E"], finding="Common A", tsne_max=60, fmt="html")
    tsne = result.data["tsne"]
    assert len(tsne) == 60 and tsne["film"].is_unique and tsne["film"].is_monotonic_increasing
    assert result.finding == "Common A" and result.classes == ["Common A", "Rare E"]
    assert "60 of 200 test films (random subset" in result.summary_path.read_text()


def test_html_summary_links_the_plots(run):
    result = make_report(run[0], classes=["Common A"], tsne_max=50, fmt="html")
    text = result.summary_path.read_text()
    assert result.summary_path.name == "summary.html" and text.startswith("<!DOCTYPE html>")
    for file_name in PLOT_FILES.values():
        assert f'<img src="{file_name}"' in text
    assert "<table>" in text and text.count("<h2>") >= 5


def test_gaussian_mixture_state_is_rebuilt_as_gaussian(tmp_path):
    films = _films()
    fitted = _write_checkpoint(tmp_path, 1, films["features"], 3, torch.zeros(2), mixture_cls=GaussianMixture)
    saved = load_mixture(tmp_path)
    assert isinstance(saved.mixture, GaussianMixture) and saved.same_image_tower is None  # no model.pt
    np.testing.assert_array_equal(saved.mixture.predict(films["features"]), fitted.predict(films["features"]))


def test_only_metrics_gives_the_bars_and_says_how_to_get_predictions(tmp_path):
    _write_metrics(tmp_path, _films())
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / PLOT_FILES["tsne"]).write_bytes(b"an earlier report's plot")
    result = make_report(tmp_path)
    assert set(result.plots) == {"auc_bars"}
    assert sorted(p.name for p in result.report_dir.glob("*.png")) == [PLOT_FILES["auc_bars"]]  # no stale plot
    text = result.summary_path.read_text()
    assert "predictions.npz is not in" in text and "PredictionWriter" in text


def test_predictions_without_embeddings_or_checkpoint(tmp_path):
    films = _films()
    _write_predictions(tmp_path, films, embeddings=False)
    result = make_report(tmp_path, classes=["Common A", "Rare D"])
    assert set(result.plots) == {"roc", "reliability"}
    text = result.summary_path.read_text()
    assert "metrics.json is not in" in text and "holds no image embeddings" in text and "save_embeddings" in text
    assert result.data["roc"]["class"].unique().tolist() == ["Common A", "Rare D"]


def test_embeddings_without_checkpoint_draw_the_finding_panel_only(tmp_path):
    _write_predictions(tmp_path, _films())
    result = make_report(tmp_path, tsne_max=80)
    assert "tsne" in result.plots and "cluster" not in result.data["tsne"]
    assert "last_checkpoint_epoch=N.pt" in result.summary_path.read_text()
    assert result.classes[:2] == ["Common A", "Common B"]  # counted from the predictions without metrics.json


def test_another_image_tower_in_model_pt_is_noted(tmp_path):
    films = _films()
    _write_predictions(tmp_path, films)
    _write_checkpoint(tmp_path, 3, films["features"], 2, torch.zeros(4))
    torch.save({"model": {"visual.proj": torch.ones(4)}}, tmp_path / "models" / "model.pt")
    _write_metrics(tmp_path, {k: v[:150] for k, v in films.items()})  # from another evaluation
    result = make_report(tmp_path, tsne_max=50)
    assert result.tsne["same_image_tower"] is False
    assert "metrics.json covers 150 images and predictions.npz 200" in result.summary_path.read_text()
    assert "cluster colours are approximate" in result.summary_path.read_text()


def test_cli_writes_html_and_names_unknown_classes(run, capsys):
    assert main([str(run[0]), "--classes", "Common A", "Rare D", "--format", "html", "--tsne-max", "40"]) == 0
    assert (run[0] / "report" / "summary.html").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main([str(run[0]), "--classes", "Common Z", "--tsne-max", "40"])
    assert exit_info.value.code == 2 and "Common Z" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(run[0]), "--finding", "Rare Z"])
    assert "Rare Z" in capsys.readouterr().err


def test_malformed_metrics_name_the_file(tmp_path):
    (tmp_path / "metrics.json").write_text('{"macro_auc": 0.5}')
    with pytest.raises(ValueError, match=r"metrics\.json has no 'per_class'"):
        make_report(tmp_path)


def test_default_classes_without_a_rare_group():
    import pandas as pd

    counts = pd.DataFrame({"n_pos": [9, 7, 5, 3, 1, 0], "group": "all"}, index=list("abcdef"))
    assert default_classes(counts, per_group=2) == ["a", "b", "d", "e"]
