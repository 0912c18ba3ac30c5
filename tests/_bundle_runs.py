"""Bundle runs of the tests: overrides for short runs of the demo recipe, and overrides as command-line tokens."""

from __future__ import annotations

# the demo warms up for 100 iterations and logs every 50; its warm-up + cosine schedule refuses a shorter run
SHORT_RUN: dict[str, int] = {"warmup_steps": 2, "log_interval": 2}


def cli_args(overrides: dict) -> list[str]:
    """``--key value`` pairs of ``python -m monai.bundle run`` for a dict of overrides (None as ``$None``)."""
    return [item for key, value in overrides.items() for item in (f"--{key}", "$None" if value is None else str(value))]
