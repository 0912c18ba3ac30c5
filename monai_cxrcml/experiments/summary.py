"""Summaries of experiments: every run's AUCs, mean +- std over runs, the paper's Table 2, paired tests.

Table 2 of the paper reports, per method, the zero-shot AUC over all ("total"), base and rare classes, averaged
over five folds. :func:`compare` writes the same table for any experiments run by
:func:`~monai_cxrcml.experiments.run_experiment`, one column group per scoring protocol, with the standard deviation
over runs, and, against a baseline experiment, the mean paired difference of each metric over the (fold, seed) runs
both have, its 95% interval (t distribution), the two-sided paired t-test and Wilcoxon signed-rank p-values, and
the t-test p-value adjusted for comparing several experiments with the same baseline (Holm's step-down, per column).
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

from monai_cxrcml.metrics import SUMMARY_MEANS

__all__ = ["METRICS", "collect_runs", "compare", "holm", "paired_test", "run_metrics", "summarise"]

METRICS = tuple(key for key, _, _ in SUMMARY_MEANS)
"""The summary means of a run's ``metrics.json`` (:data:`monai_cxrcml.metrics.SUMMARY_MEANS`)."""
_RUN = re.compile(r"fold(\d+)-seed(\d+)$")


def run_metrics(run: str | os.PathLike, protocol: str | None = None) -> dict | None:
    """A run's ``metrics.json`` under ``protocol`` (None: its own), or None when it was not scored so.

    A run's own scores are ``metrics.json`` (its ``protocol`` entry names the protocol); its scores under another
    protocol are ``protocol-<name>/metrics.json`` (written by the experiment runner).
    """
    run = Path(run)
    own = run / "metrics.json"
    if not own.is_file():
        return None
    metrics = json.loads(own.read_text())
    if protocol is None or metrics.get("protocol", {}).get("name") == protocol:
        return metrics
    other = run / f"protocol-{protocol}" / "metrics.json"
    return json.loads(other.read_text()) if other.is_file() else None


def collect_runs(experiment_dir: str | os.PathLike, protocol: str | None = None) -> pd.DataFrame:
    """One row per finished run of an experiment: ``fold, seed``, ``protocol`` (the name scored under), the
    zero-shot metrics under ``protocol`` (None: each run's own) and, where a linear probe was fitted,
    ``probe_<metric>``."""
    rows = []
    for run in sorted(Path(experiment_dir).iterdir()):
        match = _RUN.match(run.name)
        metrics = run_metrics(run, protocol) if match else None
        if metrics is None:
            continue
        row: dict[str, float | int | str | None] = {"fold": int(match[1]), "seed": int(match[2]),
                                                    "protocol": metrics.get("protocol", {}).get("name")}
        row.update({m: metrics.get(m) for m in METRICS})
        if (run / "probe.json").is_file():
            probe = json.loads((run / "probe.json").read_text())
            row.update({f"probe_{m}": probe.get(m) for m in METRICS})
        rows.append(row)
    if not rows:
        scored = "" if protocol is None else f" scored under protocol {protocol!r}"
        raise FileNotFoundError(f"{experiment_dir} holds no finished run{scored} (fold*-seed*/metrics.json).")
    return pd.DataFrame(rows).astype({m: float for m in METRICS}).sort_values(["fold", "seed"]).reset_index(drop=True)


def summarise(experiment_dir: str | os.PathLike, protocol: str | None = None) -> pd.DataFrame:
    """Mean, standard deviation and number of runs of every metric of an experiment (one row per metric)."""
    runs = collect_runs(experiment_dir, protocol).drop(columns=["fold", "seed", "protocol"]).astype(float)
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


def _runs_under(experiment_dir: str | os.PathLike, protocol: str | None) -> pd.DataFrame:
    """Runs of an experiment scored under ``protocol``, indexed by (fold, seed); empty when none was."""
    try:
        return collect_runs(experiment_dir, protocol).set_index(["fold", "seed"])
    except FileNotFoundError:
        return pd.DataFrame(columns=list(METRICS), index=pd.MultiIndex.from_tuples([], names=["fold", "seed"]))


def compare(
    experiment_dirs: Sequence[str | os.PathLike],
    baseline: str | None = None,
    probe: bool = False,
    protocols: Sequence[str | None] = (None,),
) -> str:
    """Markdown: Table 2 (total/base/rare AUC, mean ± std and the 95% interval of the mean over runs) and, against
    ``baseline``, paired tests.

    Parameters
    ----------
    experiment_dirs
        Experiment folders; each row is named by its folder.
    baseline
        Name of one of them: every other is compared with it, run by run; the t-test p-values of each column are
        also given Holm-adjusted over the experiments compared.
    probe
        Add the linear-probe AUCs beside the zero-shot ones (and to the paired tests).
    protocols
        One column group per scoring protocol (:func:`run_metrics`); None is each run's own protocol.
    """
    names = [Path(d).name for d in experiment_dirs]
    runs = {(protocol, name): _runs_under(d, protocol) for protocol in protocols
            for name, d in zip(names, experiment_dirs)}
    metrics = [("macro_auc", "total"), ("base_auc", "base"), ("rare_auc", "rare")]
    if probe:
        metrics += [(f"probe_{m}", f"probe {label}") for m, label in metrics]
    columns = [(protocol, metric, label if len(protocols) == 1 else f"{protocol or 'own protocol'}: {label}")
               for protocol in protocols for metric, label in metrics]
    lines = ["| experiment | runs | " + " | ".join(label for _, _, label in columns) + " |",
             "| --- | ---: | " + " | ".join("---:" for _ in columns) + " |"]
    missing = pd.Series(dtype=float)
    for name in names:
        scored = {key for protocol in protocols for key in runs[protocol, name].index}
        cells = [_mean_cell(runs[protocol, name].get(metric, missing).dropna()) for protocol, metric, _ in columns]
        lines.append(f"| {name} | {len(scored)} | " + " | ".join(cells) + " |")
    if None in protocols:
        own = sorted({p for name in names for p in runs[None, name].get("protocol", missing).dropna()})
        lines += ["", f"Own protocol of the runs: {', '.join(own) or 'not recorded'}."]
    if baseline is not None:
        if baseline not in names:
            raise ValueError(f"baseline {baseline!r} is not among the experiments {names}.")
        lines += ["", f"Paired differences against {baseline} over the same (fold, seed) runs:", "",
                  "| experiment | metric | pairs | mean diff | 95% CI | p (t-test) | p (Holm) | p (Wilcoxon) |",
                  "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: |"]
        others = [name for name in names if name != baseline]
        tests = {(name, protocol, metric): paired_test(runs[protocol, baseline].get(metric, missing),
                                                       runs[protocol, name].get(metric, missing))
                 for name in others for protocol, metric, _ in columns}
        for protocol, metric, _ in columns:
            adjusted = holm([tests[name, protocol, metric]["p_ttest"] for name in others])
            for name, p in zip(others, adjusted):
                tests[name, protocol, metric]["p_holm"] = p
        for name in others:
            for protocol, metric, label in columns:
                t = tests[name, protocol, metric]
                lines.append(f"| {name} | {label} | {int(t['pairs'])} | {t['mean_diff']:+.3f} | "
                             f"[{t['ci_low']:+.3f}, {t['ci_high']:+.3f}] | {t['p_ttest']:.3g} | {t['p_holm']:.3g} | "
                             f"{t['p_wilcoxon']:.3g} |")
    return "\n".join(lines) + "\n"
