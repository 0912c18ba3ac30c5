"""Write a self-contained MONAI model bundle: weights, architecture, scoring protocol, classes, provenance, card."""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ckpt_export

from monai_cxrcml.data.classes import resolve_class_names
from monai_cxrcml.metrics.temperature import Calibration
from monai_cxrcml.model_bundle.card import METADATA_KEY, bundle_metadata, model_card, package_version
from monai_cxrcml.model_bundle.trained_model import CLASSIFIER_FILE, TEXT_TOWER_FILE
from monai_cxrcml.networks import ZeroShotClassifier, get_tokenizer, unwrap_parallel
from monai_cxrcml.protocols import ScoringProtocol

__all__ = [
    "CALIBRATION_FILE",
    "file_fingerprint",
    "package_provenance",
    "write_bundle_calibration",
    "write_model_bundle",
]

logger = logging.getLogger(__name__)

CALIBRATION_FILE = os.path.join("models", "calibration.json")
"""Where a bundle keeps its fitted calibration (applied by class name, so it also serves other class lists)."""

_DATA_LICENSE = (
    "The weights of this bundle were trained on the data named in docs/README.md and configs/provenance.json.\n"
    "MIMIC-CXR-JPG and the CXR-LT label files are under the PhysioNet Credentialed Health Data License 1.5.0; a\n"
    "model trained on them may be shared only as that licence allows. The phantom data set of monai-cxrcml is\n"
    "synthetic and free of such terms.\n"
)


def file_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """``{"path", "sha256", "bytes", "rows"}`` of a label file (rows: lines after the header of a text CSV)."""
    path = Path(path)
    digest, rows = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            rows += block.count(b"\n")
    text = not path.name.endswith(".gz")
    return {"path": str(path.resolve()), "sha256": digest.hexdigest(), "bytes": path.stat().st_size,
            "rows": max(rows - 1, 0) if text else None}


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        result = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (result.stdout.strip() or None) if result.returncode == 0 else None


def package_provenance() -> dict[str, Any]:
    """When and with what a bundle was written: time, command line, package versions, git commit of the code."""
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": list(sys.argv),
        "packages": {name: package_version(name) for name in ("monai-cxrcml", "monai", "torch", "open_clip_torch",
                                                        "pytorch-ignite", "numpy", "scikit-learn", "pandas")},
        "git_commit": _git_commit(),
    }


def _resource(name: str) -> Path:
    return Path(str(resources.files("monai_cxrcml.model_bundle").joinpath("resources", name)))


def write_model_bundle(
    output_dir: str | os.PathLike,
    clip: torch.nn.Module,
    model_name: str,
    image_size: int,
    class_names: Sequence[str] | str,
    protocol: ScoringProtocol,
    *,
    metrics: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    calibration: Calibration | None = None,
    version: str = "0.1.0",
    changelog: Mapping[str, str] | None = None,
    data_source: str = "",
) -> Path:
    """Write ``clip`` as a model bundle in ``output_dir`` (MONAI bundle specification, model-zoo layout).

    Parameters
    ----------
    output_dir
        The bundle folder (created; files of an earlier bundle there are replaced).
    clip
        The trained open_clip CLIP (a DDP wrapper is unwrapped); its image tower goes into ``models/model.pt``,
        its text tower into ``models/text.pt``.
    model_name, image_size
        Its open_clip config and input side.
    class_names
        The classes the bundle scores by default (``"cxrlt2024"``, ``"chexpert"`` or names).
    protocol
        Its scoring protocol (the normalisation it was trained with included).
    metrics
        Its evaluation (a ``metrics.json``): ``eval_metrics`` of the metadata and the model card's table.
    provenance
        What made it (training settings, label file fingerprint, source checkpoint, ...), stored with
        :func:`package_provenance` in ``configs/provenance.json``.
    calibration
        A fitted calibration, stored in ``models/calibration.json`` and applied to ``models/model.pt``.
    version, changelog
        Bundle version and its changelog (default: this version, "written by monai-cxrcml").
    data_source
        What the model was trained on, for the metadata and the card.

    Returns
    -------
    Path
        The bundle folder.
    """
    root = Path(output_dir)
    for folder in ("configs", "models", "docs"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    clip = unwrap_parallel(clip)
    classes = resolve_class_names(class_names)
    if calibration is not None:
        calibration.save(root / CALIBRATION_FILE)
        protocol = protocol.with_knobs(calibration=CALIBRATION_FILE)
    elif protocol.calibration is not None:
        raise ValueError(f"protocol {protocol.name!r} names the calibration file {protocol.calibration}: pass the "
                         "Calibration itself (write_model_bundle(..., calibration=Calibration.load(path))).")
    classifier = ZeroShotClassifier.from_clip(clip, get_tokenizer(model_name), classes, protocol.prompts,
                                              protocol.scale)
    if calibration is not None:
        calibration.apply(classifier)
    torch.save({k: v.detach().cpu() for k, v in classifier.state_dict().items()}, root / CLASSIFIER_FILE)
    torch.save({k: v.detach().cpu() for k, v in clip.state_dict().items() if not k.startswith("visual.")},
               root / TEXT_TOWER_FILE)
    metadata = bundle_metadata(model_name, image_size, classes, protocol, version,
                               changelog or {version: "written by monai-cxrcml"}, metrics, data_source)
    record = {**package_provenance(), **dict(provenance or {}), "metrics": dict(metrics or {})}
    (root / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    (root / "configs" / "provenance.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    for name, target in (("inference.yaml", "configs"), ("logging.conf", "configs"), ("LICENSE", ".")):
        shutil.copyfile(_resource(name), root / target / name)
    (root / "docs" / "README.md").write_text(model_card(metadata, record))
    (root / "docs" / "data_license.txt").write_text(_DATA_LICENSE)
    _export_torchscript(root)
    _list_large_files(root)
    logger.info("model bundle written to %s (%s, %d classes, protocol %s)", root, model_name, len(classes),
                protocol.name)
    return root


LARGE_FILE_BYTES = 25 * 2**20
"""Model-zoo keeps files up to 25 MB in its repository; larger ones are listed in ``large_files.yml``."""


def _list_large_files(root: Path) -> None:
    """Write ``large_files.yml`` for the files over :data:`LARGE_FILE_BYTES` (md5, and the url to fill in)."""
    large = sorted(p for p in root.rglob("*") if p.is_file() and p.stat().st_size > LARGE_FILE_BYTES)
    target = root / "large_files.yml"
    if not large:
        target.unlink(missing_ok=True)
        return
    lines = ["# Files over 25 MB, which MONAI model-zoo keeps outside its repository: put each where it can be",
             "# downloaded and fill in its url before publishing the bundle.", "large_files:"]
    for path in large:
        digest = hashlib.md5()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        lines += [f'- path: "{path.relative_to(root).as_posix()}"', '  url: ""',
                  f'  hash_val: "{digest.hexdigest()}"', '  hash_type: "md5"']
    target.write_text("\n".join(lines) + "\n")


def _export_torchscript(root: Path) -> None:
    """``models/model.ts`` from ``network_def`` and ``models/model.pt``, as model-zoo's ``ckpt_export`` check does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notices
        ckpt_export(net_id="network_def", filepath=str(root / "models" / "model.ts"),
                    ckpt_file=str(root / CLASSIFIER_FILE), meta_file=str(root / "configs" / "metadata.json"),
                    config_file=str(root / "configs" / "inference.yaml"), bundle_root=str(root))


def write_bundle_calibration(bundle: str | os.PathLike, calibration: Calibration) -> Path:
    """Keep a fitted calibration in a model bundle: its file, the classifier's temperature and bias, a new version.

    ``models/calibration.json`` is written and named in the protocol of ``configs/metadata.json`` (so other class
    lists get it by name), ``models/model.pt`` and ``models/model.ts`` carry the calibrated probabilities of the
    bundle's classes, and the bundle's patch version is raised with a changelog line.

    Returns
    -------
    Path
        The calibration file.
    """
    root = Path(bundle)
    path = calibration.save(root / CALIBRATION_FILE)
    meta_path = root / "configs" / "metadata.json"
    metadata = json.loads(meta_path.read_text())
    section = metadata[METADATA_KEY]
    section["protocol"]["calibration"] = CALIBRATION_FILE
    major, minor, patch = (int(part) for part in metadata["version"].split("."))
    metadata["version"] = f"{major}.{minor}.{patch + 1}"
    mode = "per-class" if calibration.per_class else "global"
    metadata["changelog"] = {metadata["version"]: f"{mode} temperature calibration"
                             f"{' with bias' if calibration.fit_bias else ''} fitted on "
                             f"{calibration.fitted_on.get('films', '?')} films (ECE "
                             f"{calibration.before['ece']:.4f} -> {calibration.after['ece']:.4f})",
                             **metadata["changelog"]}
    meta_path.write_text(json.dumps(metadata, indent=2) + "\n")
    state = torch.load(root / CLASSIFIER_FILE, map_location="cpu", weights_only=True)
    temperature, bias = calibration.parameters_for(section["class_names"])
    state["temperature"] = torch.as_tensor(temperature, dtype=state["temperature"].dtype)
    state["bias"] = torch.as_tensor(bias, dtype=state["bias"].dtype)
    torch.save(state, root / CLASSIFIER_FILE)
    provenance = json.loads((root / "configs" / "provenance.json").read_text())
    (root / "docs" / "README.md").write_text(model_card(metadata, provenance))
    _export_torchscript(root)
    _list_large_files(root)
    logger.info("calibration written into the bundle %s (version %s)", root, metadata["version"])
    return path
