"""Experiment runner: cross-validation over folds and seeds, summaries, Table 2 and paired tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _bundle_runs import REPO, SHORT_RUN

from monai_cxrcml.experiments import collect_runs, compare, holm, paired_test, run_dir, run_experiment, summarise
from monai_cxrcml.networks import create_clip


def _fake_experiment(root: Path, name: str, aucs: dict[tuple[int, int], tuple[float, float, float]],
                     protocol: str | None = None) -> Path:
    for (fold, seed), (macro, base, rare) in aucs.items():
        out = run_dir(root / name, fold, seed)
        out.mkdir(parents=True)
        metrics = {"macro_auc": macro, "base_auc": base, "rare_auc": rare, "macro_ap": 0.2, "per_class": {}}
        if protocol is not None:
            metrics["protocol"] = {"name": protocol}
        (out / "metrics.json").write_text(json.dumps(metrics))
    return root / name


def test_summary_is_mean_and_std_over_runs(tmp_path: Path):
    exp = _fake_experiment(tmp_path, "a", {(0, 0): (0.70, 0.72, 0.65), (1, 0): (0.74, 0.76, 0.69)})
    (exp / "not-a-run").mkdir()
    runs = collect_runs(exp)
    assert runs[["fold", "seed"]].values.tolist() == [[0, 0], [1, 0]]
    summary = summarise(exp)
    assert summary.loc["macro_auc", "mean"] == pytest.approx(0.72)
    assert summary.loc["macro_auc", "std"] == pytest.approx(np.std([0.70, 0.74], ddof=1))
    assert summary.loc["rare_auc", "runs"] == 2


def test_compare_writes_table_two_and_paired_tests(tmp_path: Path):
    keys = [(0, s) for s in range(5)]
    rng = np.random.default_rng(0)
    base = {k: (0.70 + 0.01 * i, 0.71, 0.60 + 0.01 * i) for i, k in enumerate(keys)}
    better = {k: (m + 0.02, b, r + 0.05 + rng.normal(0, 0.005)) for k, (m, b, r) in base.items()}
    a = _fake_experiment(tmp_path, "contrastive", base)
    b = _fake_experiment(tmp_path, "cxrcml", better)
    table = compare([a, b], baseline="contrastive")
    assert "| experiment | runs | total | base | rare |" in table
    assert "| cxrcml | 5 | 0.740 ± 0.016 [0.720, 0.760] |" in table  # mean ± std [95% t interval]
    rare_row = next(line for line in table.splitlines() if line.startswith("| cxrcml | rare |"))
    assert "+0.05" in rare_row and "| 5 |" in rare_row
    with pytest.raises(ValueError, match="baseline 'nope'"):
        compare([a, b], baseline="nope")


def test_holm_adjusts_for_the_experiments_compared_with_one_baseline():
    adjusted = holm([0.01, 0.04, 0.03, float("nan")])  # hand-computed: 3 x 0.01, max(2 x 0.03, 0.04), 0.06
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and np.isnan(adjusted[3])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_compare_gives_holm_adjusted_p_values_over_the_experiments(tmp_path: Path):
    keys = [(0, s) for s in range(4)]
    base = {k: (0.70 + 0.01 * i, 0.71, 0.60) for i, k in enumerate(keys)}
    experiments = [_fake_experiment(tmp_path, "contrastive", base)]
    for name, shift in (("small", 0.004), ("large", 0.05)):
        runs = {k: (m + shift + 0.002 * (i % 2), b, r) for i, (k, (m, b, r)) in enumerate(base.items())}
        experiments.append(_fake_experiment(tmp_path, name, runs))
    table = compare(experiments, baseline="contrastive")
    assert "| p (t-test) | p (Holm) | p (Wilcoxon) |" in table
    row = next(line for line in table.splitlines() if line.startswith("| large | total |"))
    cells = [c.strip() for c in row.split("|")]
    assert float(cells[7]) == pytest.approx(2 * float(cells[6]), rel=1e-2)  # the smaller of two p-values, x 2


def test_paired_test_pairs_by_run_and_handles_too_few_pairs():
    index = pd.MultiIndex.from_tuples([(0, 0), (0, 1), (0, 2), (0, 3)], names=["fold", "seed"])
    a = pd.Series([0.60, 0.62, 0.61, 0.63], index=index)
    b = pd.Series([0.65, 0.66, 0.67, 0.66], index=index[::-1])[index]  # same runs, other order
    t = paired_test(a, b)
    assert t["pairs"] == 4 and t["mean_diff"] == pytest.approx(np.mean(b - a))
    assert t["ci_low"] < t["mean_diff"] < t["ci_high"] and t["p_ttest"] < 0.05
    assert np.isnan(paired_test(a.iloc[:1], b.iloc[:1])["p_ttest"])


def test_missing_config_is_named(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        run_experiment("x", [tmp_path / "nope.yaml"], tmp_path, bundle_config=REPO / "bundle/configs/train.yaml")


def test_compare_has_a_column_group_per_protocol(tmp_path: Path):
    keys = [(0, s) for s in range(3)]
    own = _fake_experiment(tmp_path, "cxrcml", {k: (0.80, 0.82, 0.75) for k in keys}, protocol="present_absent")
    for key in keys:
        other = run_dir(own, *key) / "protocol-chexzero"
        other.mkdir()
        (other / "metrics.json").write_text(json.dumps({"macro_auc": 0.6, "base_auc": 0.61, "rare_auc": 0.55,
                                                        "protocol": {"name": "chexzero"}}))
    table = compare([own], protocols=("chexzero", None))
    assert "| experiment | runs | chexzero: total | chexzero: base | chexzero: rare | own protocol: total |" in table
    assert "| cxrcml | 3 | 0.600 ± 0.000" in table and "| 0.800 ± 0.000" in table
    assert "Own protocol of the runs: present_absent." in table
    assert collect_runs(own, "chexzero")["macro_auc"].tolist() == [0.6] * 3
    assert collect_runs(own, "present_absent")["macro_auc"].tolist() == [0.8] * 3  # its own, by name
    with pytest.raises(FileNotFoundError, match="scored under protocol 'chexzero_corrected'"):
        collect_runs(own, "chexzero_corrected")


def test_chexzero_baseline_is_scored_under_both_table_protocols(phantom_dir: Path, tmp_path: Path):
    """The paper's baseline row: a CheXzero-format checkpoint, no training, CheXzero's protocol and ours."""
    torch.manual_seed(0)
    checkpoint = tmp_path / "chexzero_tiny.pt"
    torch.save(create_clip("cxrcml-tiny").state_dict(), checkpoint)  # plain state_dict, OpenAI key names
    overrides = {"dataset_dir": str(phantom_dir), "cache_dir": None, "num_workers": 0, "n_bootstrap": 0,
                 "pretrained": str(checkpoint), "model_name": "cxrcml-tiny", "batch_size": 16}
    configs = [REPO / "configs" / "demo.yaml", REPO / "configs" / "ablations" / "chexzero_zeroshot.yaml"]
    exp = run_experiment("chexzero", configs, tmp_path / "experiments", overrides=overrides,
                         bundle_config=REPO / "bundle/configs/train.yaml",
                         protocols=("chexzero", "present_absent_pooled"))
    run = run_dir(exp, 0, 0)
    own = json.loads((run / "metrics.json").read_text())
    assert own["protocol"]["name"] == "chexzero" and own["protocol"]["scale"] == 1.0
    other = json.loads((run / "protocol-present_absent_pooled" / "metrics.json").read_text())
    assert other["protocol"]["name"] == "present_absent_pooled"
    assert other["protocol"]["normalization"] == own["protocol"]["normalization"]  # the model's normalisation kept
    assert other["macro_auc"] != own["macro_auc"]
    table = compare([exp], protocols=("chexzero", "present_absent_pooled"))
    row = next(line for line in table.splitlines() if line.startswith("| chexzero |"))
    assert row.count("n/a") == 0 and f"{own['macro_auc']:.3f}" in row and f"{other['macro_auc']:.3f}" in row


def test_a_saved_checkpoint_is_scored_and_fine_tuned_as_pretrained(trained: Path, phantom_dir: Path, tmp_path: Path):
    """The paper's regime as a user runs it with CheXzero's weights: a checkpoint saved by a training run (the
    source) is passed as ``pretrained``, scored zero-shot without training, and fine-tuned one epoch and scored."""
    checkpoint = trained / "models" / "model.pt"
    source = json.loads((trained / "metrics.json").read_text())
    overrides = {"dataset_dir": str(phantom_dir), "cache_dir": None, "num_workers": 0, "n_bootstrap": 0,
                 "batch_size": 16, "pretrained": str(checkpoint), **SHORT_RUN}
    bundle = REPO / "bundle/configs/train.yaml"
    start = run_experiment("start", [REPO / "configs" / "demo.yaml", REPO / "configs/ablations/chexzero_zeroshot.yaml"],
                           tmp_path, overrides={**overrides, "protocol": source["protocol"]["name"]},
                           bundle_config=bundle, protocols=(), probe=True)
    zero_shot = json.loads((run_dir(start, 0, 0) / "metrics.json").read_text())
    # the start scores as the run that saved it: its weights were loaded, all of them
    assert zero_shot["macro_auc"] == pytest.approx(source["macro_auc"], abs=1e-6)
    assert zero_shot["rare_auc"] == pytest.approx(source["rare_auc"], abs=1e-6)
    assert not (run_dir(start, 0, 0) / "models").exists()  # nothing trained; the probe embeds with the start
    assert 0.0 <= json.loads((run_dir(start, 0, 0) / "probe.json").read_text())["macro_auc"] <= 1.0
    tuned = run_experiment("finetune", [REPO / "configs" / "demo.yaml"], tmp_path,
                           overrides={**overrides, "epochs": 1, "lr": 1e-4, "nu": 4.0}, bundle_config=bundle,
                           protocols=("chexzero",))
    run = run_dir(tuned, 0, 0)
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["macro_auc"] <= 1.0 and metrics["macro_auc"] != zero_shot["macro_auc"]
    assert (run / "protocol-chexzero" / "metrics.json").is_file()
    start_weights = torch.load(checkpoint, weights_only=True)
    tuned_weights = torch.load(run / "models" / "model.pt", weights_only=True)
    assert set(tuned_weights) == set(start_weights)  # the same model, trained on from the start
    assert any(not torch.equal(start_weights[k], tuned_weights[k]) for k in start_weights)


@pytest.mark.slow
def test_cross_validation_runner_trains_each_fold_and_resumes(phantom_dir: Path, tmp_path: Path):
    overrides = {"dataset_dir": str(phantom_dir), "cache_dir": None, "epochs": 1, "batch_size": 16,
                 "num_workers": 0, "n_bootstrap": 0, "num_folds": 2, **SHORT_RUN}
    exp = run_experiment("cv", [REPO / "configs" / "demo.yaml"], tmp_path, folds=(0, 1), overrides=overrides,
                         probe=True, bundle_config=REPO / "bundle/configs/train.yaml", protocols=("chexzero",))
    runs = collect_runs(exp)
    assert runs["fold"].tolist() == [0, 1] and runs["probe_macro_auc"].notna().all()
    assert collect_runs(exp, "chexzero")["fold"].tolist() == [0, 1]  # the test parts, scored under chexzero too
    stamp = (run_dir(exp, 0, 0) / "metrics.json").stat().st_mtime_ns
    rescored = (run_dir(exp, 0, 0) / "protocol-chexzero" / "metrics.json").stat().st_mtime_ns
    run_experiment("cv", [REPO / "configs" / "demo.yaml"], tmp_path, folds=(0, 1), overrides=overrides,
                   bundle_config=REPO / "bundle/configs/train.yaml", protocols=("chexzero",))
    assert (run_dir(exp, 0, 0) / "metrics.json").stat().st_mtime_ns == stamp  # finished runs are not repeated
    assert (run_dir(exp, 0, 0) / "protocol-chexzero" / "metrics.json").stat().st_mtime_ns == rescored
