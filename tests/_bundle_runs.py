"""Bundle runs of the tests: overrides for short runs of the demo recipe, and overrides as command-line tokens."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundle" / "configs"
TRAIN = [str(CONFIGS / "train.yaml"), str(REPO / "configs" / "demo.yaml")]
"""The README demo's training configs."""

# the demo warms up for 100 iterations and logs every 50; its warm-up + cosine schedule refuses a shorter run
SHORT_RUN: dict[str, int] = {"warmup_steps": 2, "log_interval": 2}


def cli_args(overrides: dict) -> list[str]:
    """``--key value`` pairs of ``python -m monai.bundle run`` for a dict of overrides (None as ``$None``)."""
    return [item for key, value in overrides.items() for item in (f"--{key}", "$None" if value is None else str(value))]


def small_run(phantom_dir: Path, output_dir: Path) -> dict:
    """Overrides that make the demo a one-epoch run on the test phantom."""
    return {
        "dataset_dir": str(phantom_dir),
        "output_dir": str(output_dir),
        "cache_dir": None,
        "epochs": 1,
        **SHORT_RUN,
        "batch_size": 16,
        "num_workers": 0,
        "n_bootstrap": 20,
    }
