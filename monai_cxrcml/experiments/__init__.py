"""Experiments: run a bundle config over folds and seeds, summarise, and compare in the form of the paper's Table 2."""

from .runner import probe_run, run_dir, run_experiment
from .summary import collect_runs, compare, holm, paired_test, summarise

__all__ = ["collect_runs", "compare", "holm", "paired_test", "probe_run", "run_dir", "run_experiment", "summarise"]
