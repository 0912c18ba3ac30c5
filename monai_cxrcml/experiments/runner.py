"""Run one experiment (bundle config + overrides) over cross-validation folds and seeds, resumably.

Each (fold, seed) trains in its own process exactly as a user would run it::

    python -m monai.bundle run training --config_file "[train.yaml, *configs]" --fold F --seed S --output_dir ...

so a sweep is a list of ordinary bundle runs; a run whose ``metrics.json`` exists is not repeated. ``seed`` moves
the model initialisation, data order, augmentation and mixture seeds; the patient split (``split_seed``) stays
fixed, so every arm of a comparison sees the same folds. Each run's test part is also scored under every protocol
of ``protocols`` that is not its own (``protocol-<name>/metrics.json``, the bundle's ``evaluating`` entry with the
run's normalisation kept). With ``probe=True`` a linear probe is fitted on the best checkpoint's embeddings of the
training part and scored on the test part (``probe.json``), the ceiling the image tower sets for the zero-shot AUC;
a ``pretrained`` model scored without training has no checkpoint of its own and is probed as built.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_BUNDLE_CONFIG", "TABLE_PROTOCOLS", "probe_run", "protocol_dir", "run_dir", "run_experiment"]

DEFAULT_BUNDLE_CONFIG = Path("bundle") / "configs" / "train.yaml"

TABLE_PROTOCOLS = ("chexzero", "present_absent")
"""The protocols Table 2 reports: CheXzero's (the authors' code is a CheXzero fork) and this project's default."""

logger = logging.getLogger(__name__)


def run_dir(experiment_dir: str | os.PathLike, fold: int, seed: int) -> Path:
    """Output folder of one run of an experiment."""
    return Path(experiment_dir) / f"fold{fold}-seed{seed}"


def protocol_dir(run: str | os.PathLike, protocol: str) -> Path:
    """Folder of a run's test scores under another protocol than its own."""
    return Path(run) / f"protocol-{protocol}"


def _config_files(bundle_config: str | os.PathLike, configs: Sequence[str | os.PathLike]) -> list[str]:
    files = [Path(bundle_config), *(Path(c) for c in configs)]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"config file(s) {missing} not found: run from the monai-cxrcml checkout or pass --bundle-config and "
            "--config with their paths."
        )
    return [str(f.resolve()) for f in files]


def _cli_value(value: Any) -> str:
    """A setting as MONAI's CLI (python-fire) reads it back: Python literals, so True/False stay booleans."""
    if value is None:
        return "$None"
    if isinstance(value, float) and not math.isfinite(value):
        return f"$float('{value}')"
    return repr(value) if isinstance(value, (bool, list, tuple, dict)) else str(value)


def run_experiment(
    name: str,
    configs: Sequence[str | os.PathLike],
    output_root: str | os.PathLike = "runs/experiments",
    folds: Sequence[int] = (0,),
    seeds: Sequence[int] = (0,),
    overrides: Mapping[str, Any] | None = None,
    probe: bool = False,
    bundle_config: str | os.PathLike = DEFAULT_BUNDLE_CONFIG,
    protocols: Sequence[str] = TABLE_PROTOCOLS,
) -> Path:
    """Train and test every (fold, seed) of an experiment; return its folder (``output_root/name``).

    Parameters
    ----------
    name
        Experiment name (its folder).
    configs
        Experiment configs merged on top of ``bundle_config`` in order (e.g. ``configs/demo.yaml``).
    output_root
        Parent folder of experiments.
    folds, seeds
        The grid to run.
    overrides
        Config ids to set in every run (``{"nu": 6, "metric_loss_weight": 0.5}``).
    probe
        Also fit and score a linear probe on each run's best checkpoint.
    bundle_config
        The bundle's training config.
    protocols
        Scoring protocols every run's test part is also scored under (see the module docstring).
    """
    files = _config_files(bundle_config, configs)
    experiment_dir = Path(output_root) / name
    experiment_dir.mkdir(parents=True, exist_ok=True)
    overrides = dict(overrides or {})
    (experiment_dir / "experiment.json").write_text(
        json.dumps({"name": name, "configs": files, "overrides": overrides, "folds": list(folds),
                    "seeds": list(seeds)}, indent=1) + "\n"
    )
    for fold in folds:
        for seed in seeds:
            out = run_dir(experiment_dir, fold, seed)
            settings = {**overrides, "fold": fold, "seed": seed, "output_dir": str(out.resolve())}
            if not (out / "metrics.json").is_file():
                _train(files, settings, out)
            own = json.loads((out / "metrics.json").read_text()).get("protocol", {})
            for protocol in protocols:
                target = protocol_dir(out, protocol)
                if protocol != own.get("name") and not (target / "metrics.json").is_file():
                    _rescore(files, settings, out, protocol, own.get("normalization"))
            if probe and not (out / "probe.json").is_file():
                probe_run(files, settings)
    return experiment_dir


def _bundle_run(run_id: str, files: list[str], settings: Mapping[str, Any], out: Path, log_name: str) -> list[str]:
    """Run ``python -m monai.bundle run RUN_ID`` with these configs and settings, logging to ``out/log_name``."""
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", json.dumps(files)]
    command += [token for k, v in settings.items() for token in (f"--{k}", _cli_value(v))]
    logger.info("%s %s", run_id, out)
    with open(out / log_name, "w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{run_id} run {out} failed (exit {result.returncode}); see {out / log_name}.")
    return command


def _train(files: list[str], settings: Mapping[str, Any], out: Path) -> None:
    started = time.perf_counter()
    command = _bundle_run("training", files, settings, out, "train.log")
    (out / "run.json").write_text(
        json.dumps({"command": command, "seconds": round(time.perf_counter() - started, 1)}, indent=1) + "\n"
    )


def _rescore(files: list[str], settings: Mapping[str, Any], run: Path, protocol: str, normalization: str | None
             ) -> None:
    """Score a finished run's test part under ``protocol``, keeping the normalisation the run was trained with."""
    evaluate = str(Path(files[0]).with_name("evaluate.yaml"))
    overrides = {**settings, "output_dir": str(protocol_dir(run, protocol).resolve()), "protocol": protocol,
                 "ckpt_path": str((run / "models" / "model.pt").resolve())}
    if normalization is not None:
        overrides["normalization"] = normalization
    _bundle_run("evaluating", [*files, evaluate], overrides, protocol_dir(run, protocol), "evaluate.log")


def probe_run(files: Sequence[str], settings: Mapping[str, Any]) -> dict:
    """Fit a linear probe on a finished run's best checkpoint and write ``probe.json`` beside its metrics."""
    from monai.bundle import ConfigWorkflow
    from monai.data import DataLoader, Dataset

    from monai_cxrcml.engines import encode_images
    from monai_cxrcml.metrics import linear_probe_report
    from monai_cxrcml.networks import load_clip_checkpoint, unwrap_parallel

    workflow = ConfigWorkflow(config_file=list(files), workflow_type=None, **{**settings, "num_workers": 0})
    workflow.initialize()
    parse = workflow.parser.get_parsed_content
    out = Path(settings["output_dir"])
    data, network, device = parse("data"), parse("network"), parse("device")
    checkpoint = out / "models" / "model.pt"
    if checkpoint.is_file() or not settings.get("pretrained"):
        load_clip_checkpoint(unwrap_parallel(network), checkpoint)
    # else a pretrained model scored without training (nothing saved): the network as built, from `pretrained`
    transform = parse("validate#preprocessing")  # deterministic: no augmentation
    collate = parse("test#dataloader").collate_fn
    train, test = (
        encode_images(network, DataLoader(Dataset(data.datalist(part), transform), batch_size=64,
                                          collate_fn=collate), device)
        for part in ("train", "test")
    )
    report = linear_probe_report(train.features, train.labels, test.features, test.labels, data.class_names,
                                 data.groups, data.prevalence_groups, train.label_mask, test.label_mask)
    summary = {k: v for k, v in report.summary.items() if not k.endswith("_ci")}
    (out / "probe.json").write_text(json.dumps(report.to_dict(), indent=1) + "\n")
    workflow.finalize()
    return summary
