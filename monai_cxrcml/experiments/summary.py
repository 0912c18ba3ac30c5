"""Summaries of experiments: every run's AUCs, mean +- std over runs, the paper's Table 2, paired tests.

Table 2 of the paper reports, per method, the zero-shot AUC over all ("total"), base and rare classes, averaged
over five folds. :func:`compare` writes the same table for any experiments run by
:func:`~monai_cxrcml.experiments.run_experiment`, with the standard deviation over runs, and, against a baseline
experiment, the mean paired difference of each metric over the (fold, seed) runs both have, its 95% interval
(t distribution), the two-sided paired t-test and Wilcoxon signed-rank p-values, and the t-test p-value adjusted
for comparing several experiments with the same baseline (Holm's step-down, per metric).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["collect_runs", "summarise", "compare", "paired_test", "holm", "METRICS"]

METRICS = ("macro_auc", "base_auc", "rare_auc", "macro_ap")
_RUN = re.compile(r"fold(\d+)-seed(\d+)$")


def collect_runs(experiment_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per finished run of an experiment: ``fold, seed``, the zero-shot metrics and, where a linear
    probe was fitted, ``probe_<metric>``."""
    rows = []
    for run in sorted(Path(experiment_dir).iterdir()):
        match = _RUN.match(run.name)
        if not match or not (run / "metrics.json").is_file():
            continue
        row: dict[str, float | int | None] = {"fold": int(match[1]), "seed": int(match[2])}
        metrics = json.loads((run / "metrics.json").read_text())
        row.update({m: metrics.get(m) for m in METRICS})
        if (run / "probe.json").is_file():
            probe = json.loads((run / "probe.json").read_text())
            row.update({f"probe_{m}": probe.get(m) for m in METRICS})
        rows.append(row)
    if not rows:
        raise FileNotFoundError(f"{experiment_dir} holds no finished run (fold*-seed*/metrics.json).")
    return pd.DataFrame(rows).astype({m: float for m in METRICS}).sort_values(["fold", "seed"]).reset_index(drop=True)


def summarise(experiment_dir: str | os.PathLike) -> pd.DataFrame:
    """Mean, standard deviation and number of runs of every metric of an experiment (one row per metric)."""
    runs = collect_runs(experiment_dir).drop(columns=["fold", "seed"]).astype(float)
    return pd.DataFrame({"mean": runs.mean(), "std": runs.std(ddof=1), "runs": runs.count()})


def paired_test(a: pd.Series, b: pd.Series) -> dict[str, float]:
    """Paired comparison of two metrics over the same runs (index = (fold, seed)): ``b - a``.

    Returns the mean difference, its 95% t interval, and the two-sided paired t-test and Wilcoxon signed-rank
    p-values (NaN where fewer than two pairs, or all differences zero).
    """
    diff = (b - a).dropna()
    n = len(diff)
    out = {"pairs": float(n), "mean_diff": float(diff.mean()) if n else math.nan, "ci_low": math.nan,
           "ci_high": math.nan, "p_ttest": math.nan, "p_wilcoxon": math.nan}
    if n < 2 or np.allclose(diff, 0):
        return out
    half = stats.t.ppf(0.975, n - 1) * diff.std(ddof=1) / math.sqrt(n)
    out.update(ci_low=out["mean_diff"] - half, ci_high=out["mean_diff"] + half,
               p_ttest=float(stats.ttest_1samp(diff, 0.0).pvalue), p_wilcoxon=float(stats.wilcoxon(diff).pvalue))
    return out


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of ``p_values`` (family-wise error); NaN stays NaN and takes no part."""
    p = np.asarray(p_values, dtype=float)
    known = np.flatnonzero(~np.isnan(p))
    adjusted = np.full(p.shape, math.nan)
    order = known[np.argsort(p[known])]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def _mean_cell(values: pd.Series) -> str:
    """``mean ± std [95% t interval of the mean]`` over runs (just the value for one run)."""
    if len(values) == 0:
        return "n/a"
    if len(values) == 1:
        return f"{values.mean():.3f}"
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f} [{values.mean() - half:.3f}, {values.mean() + half:.3f}]"


def compare(
    experiment_dirs: Sequence[str | os.PathLike], baseline: str | None = None, probe: bool = False
) -> str:
    """Markdown: Table 2 (total/base/rare AUC, mean ± std and the 95% interval of the mean over runs) and, against
    ``baseline``, paired tests.

    Parameters
    ----------
    experiment_dirs
        Experiment folders; each row is named by its folder.
    baseline
        Name of one of them: every other is compared with it, run by run; the t-test p-values of each metric are
        also given Holm-adjusted over the experiments compared.
    probe
        Add the linear-probe AUCs beside the zero-shot ones (and to the paired tests).
    """
    runs = {Path(d).name: collect_runs(d).set_index(["fold", "seed"]) for d in experiment_dirs}
    columns = [("macro_auc", "total"), ("base_auc", "base"), ("rare_auc", "rare")]
    if probe:
        columns += [(f"probe_{m}", f"probe {label}") for m, label in columns]
    lines = ["| experiment | runs | " + " | ".join(label for _, label in columns) + " |",
             "| --- | ---: | " + " | ".join("---:" for _ in columns) + " |"]
    for name, frame in runs.items():
        cells = [_mean_cell(frame[metric].dropna() if metric in frame else pd.Series(dtype=float))
                 for metric, _ in columns]
        lines.append(f"| {name} | {len(frame)} | " + " | ".join(cells) + " |")
    if baseline is not None:
        if baseline not in runs:
            raise ValueError(f"baseline {baseline!r} is not among the experiments {list(runs)}.")
        lines += ["", f"Paired differences against {baseline} over the same (fold, seed) runs:", "",
                  "| experiment | metric | pairs | mean diff | 95% CI | p (t-test) | p (Holm) | p (Wilcoxon) |",
                  "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: |"]
        others = [name for name in runs if name != baseline]
        missing = pd.Series(dtype=float)
        tests = {(name, metric): paired_test(runs[baseline].get(metric, missing), runs[name].get(metric, missing))
                 for name in others for metric, _ in columns}
        for metric, _ in columns:
            for name, p in zip(others, holm([tests[name, metric]["p_ttest"] for name in others])):
                tests[name, metric]["p_holm"] = p
        for name in others:
            for metric, label in columns:
                t = tests[name, metric]
                lines.append(f"| {name} | {label} | {int(t['pairs'])} | {t['mean_diff']:+.3f} | "
                             f"[{t['ci_low']:+.3f}, {t['ci_high']:+.3f}] | {t['p_ttest']:.3g} | {t['p_holm']:.3g} | "
                             f"{t['p_wilcoxon']:.3g} |")
    return "\n".join(lines) + "\n"
