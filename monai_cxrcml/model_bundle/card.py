"""A model bundle's description: ``configs/metadata.json`` (MONAI schema + the model section) and the model card."""

from __future__ import annotations

import importlib.metadata
import math
from collections.abc import Mapping, Sequence
from typing import Any

import monai
import numpy as np
import torch

from monai_cxrcml.metrics import SUMMARY_MEANS
from monai_cxrcml.protocols import ScoringProtocol, get_protocol
from monai_cxrcml.transforms.intensity import normalized_range

__all__ = [
    "METADATA_KEY",
    "METADATA_SCHEMA",
    "MODEL_FORMAT",
    "REFERENCES",
    "bundle_metadata",
    "model_card",
    "package_version",
]

MODEL_FORMAT = "monai-cxrcml-model/1"
"""``format`` of the model section of a bundle's ``configs/metadata.json``."""

METADATA_KEY = "cxrcml_model"
"""Key of the model section in ``configs/metadata.json``: architecture, image size, classes, scoring protocol."""

METADATA_SCHEMA = (
    "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
)
"""The MONAI bundle metadata schema the bundles follow (a copy ships in ``bundle/docs/``)."""

REFERENCES = (
    "Madhipati et al. CXR-CML: Improved zero-shot classification of long-tailed multi-label diseases in chest X-rays. "
    "MICCAI 2025, arXiv:2507.19398",
    "Tiu et al. Expert-level detection of pathologies from unannotated chest X-ray images via self-supervised "
    "learning (CheXzero). Nature Biomedical Engineering 2022",
    "Holste et al. CXR-LT 2024: a MICCAI challenge on long-tailed, multi-label, and zero-shot disease classification "
    "from chest X-ray. arXiv:2506.07984",
    "Johnson et al. MIMIC-CXR-JPG, a large publicly available database of labeled chest radiographs. arXiv:1901.07042",
)
"""The publications a CXR-CML bundle builds on."""

_PACKAGES = ("monai-cxrcml", "open_clip_torch", "pytorch-ignite", "scikit-learn", "pandas", "nibabel", "pydicom",
             "fire", "tensorboard")


def package_version(package: str) -> str:
    """The installed version of a distribution, or ``""`` when it is not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def bundle_metadata(
    model_name: str,
    image_size: int,
    class_names: Sequence[str],
    protocol: ScoringProtocol,
    version: str,
    changelog: Mapping[str, str],
    metrics: Mapping[str, Any] | None = None,
    data_source: str = "",
) -> dict[str, Any]:
    """``configs/metadata.json`` of a model bundle (schema :data:`METADATA_SCHEMA`).

    ``network_data_format`` says what ``network_def`` takes and gives: a normalised film ``[3, S, S]`` in, one
    probability per class out (class names as the output channels). ``eval_metrics`` holds the finite summary
    values of ``metrics`` (a ``metrics.json``). The ``cxrcml_model`` section is what
    :func:`~monai_cxrcml.model_bundle.load_model` reads: architecture, image size, classes and scoring protocol.
    """
    classes = list(class_names)
    low, high = normalized_range(protocol.normalization)
    return {
        "schema": METADATA_SCHEMA,
        "version": version,
        "changelog": dict(changelog),
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {name: package_version(name) for name in _PACKAGES if package_version(name)},
        "supported_apps": {"monai-label": ""},
        "name": f"CXR-CML zero-shot chest X-ray classification ({model_name}, {len(classes)} classes)",
        "task": f"Zero-shot multi-label classification of {len(classes)} chest X-ray findings with a CLIP model "
                "fine-tuned with Student-t mixture metric learning (CXR-CML)",
        "description": "CXR-CML (Madhipati et al., MICCAI 2025): a CLIP model trained on chest films paired with "
                       "meta-label captions, with a triplet loss on Student-t mixture pseudo-labels of the image "
                       "embeddings. Each class is scored zero-shot from a positive and a negative prompt. network_def "
                       "is the image-only classifier: a normalised film in, one probability per class out.",
        "authors": "monai-cxrcml contributors",
        "copyright": "Copyright (c) monai-cxrcml contributors",
        "data_source": data_source or "MIMIC-CXR-JPG 2.0.0 with the CXR-LT 2024 label files (PhysioNet, credentialed "
                                      "access)",
        "data_type": "jpeg",
        "image_classes": f"grayscale chest radiograph, {protocol.describe()}",
        "label_classes": f"{len(classes)} binary findings: {', '.join(classes)}",
        "pred_classes": f"probability of each of the {len(classes)} findings",
        "eval_metrics": {key: metrics[key] for key, _, _ in SUMMARY_MEANS if metrics and _finite(metrics.get(key))},
        "intended_use": "Research only. Not a medical device; not for diagnostic use.",
        "references": list(REFERENCES),
        METADATA_KEY: {
            "format": MODEL_FORMAT, "model_name": model_name, "image_size": int(image_size), "class_names": classes,
            "protocol": protocol.to_dict(),
        },
        "network_data_format": {
            "inputs": {"image": {
                "type": "image", "format": "magnitude", "modality": "XR", "num_channels": 3,
                "spatial_shape": [image_size, image_size], "dtype": "float32",
                "value_range": [round(low, 4), round(high, 4)], "is_patch_data": False,
                "channel_def": {"0": "gray", "1": "gray", "2": "gray"},
            }},
            "outputs": {"pred": {
                "type": "probabilities", "format": "classes", "num_channels": len(classes), "spatial_shape": [1],
                "dtype": "float32", "value_range": [0, 1], "is_onehot": False,
                "channel_def": {str(i): name for i, name in enumerate(classes)},
            }},
        },
    }


def _metrics_table(metrics: Mapping[str, Any]) -> list[str]:
    lines = ["| mean | value | 95% interval |", "| --- | ---: | --- |"]
    for key, label, _ in SUMMARY_MEANS:
        value = metrics.get(key)
        if not _finite(value):
            continue
        interval = metrics.get(f"{key}_ci")
        shown = f"[{interval[0]:.3f}, {interval[1]:.3f}]" if interval and all(map(_finite, interval)) else ""
        lines.append(f"| {label} | {value:.3f} | {shown} |")
    return lines


def model_card(metadata: Mapping[str, Any], provenance: Mapping[str, Any]) -> str:
    """``docs/README.md`` of a model bundle: what it is, how to use it, its data and metrics, its limits."""
    section = metadata[METADATA_KEY]
    metrics = provenance.get("metrics") or {}
    data = provenance.get("training_data") or {}
    lines = [
        f"# {metadata['name']}", "",
        f"Version {metadata['version']}. {metadata['description']}", "",
        "## Use", "",
        "```bash",
        "python -m monai_cxrcml.inference FILMS --model THIS_FOLDER --output submission.csv",
        "python -m monai.bundle run --bundle_root THIS_FOLDER --config_file THIS_FOLDER/configs/inference.yaml "
        "--input FILMS",
        "monailabel start_server --app cxrcml-app --studies FILMS --conf model THIS_FOLDER",
        "```", "",
        "`--classes`, `--protocol` and `--prompts` change what is scored and how (task 3's unseen findings work: the "
        "text tower is in `models/text.pt`); the architecture, image size and normalisation are the model's.", "",
        "## Model", "",
        f"- architecture: open_clip `{section['model_name']}`, input {section['image_size']} px",
        f"- scoring protocol: {get_protocol(section['protocol']).describe()}",
        f"- classes ({len(section['class_names'])}): {', '.join(section['class_names'])}",
        "- files: `models/model.pt` (classifier state_dict, the weights of `network_def`), `models/model.ts` "
        "(TorchScript), `models/text.pt` (text tower), `configs/provenance.json` (how it was made)", "",
        "## Data", "",
        f"- source: {metadata['data_source']}",
    ]
    if data:
        lines.append(f"- training label file: `{data.get('path')}` ({data.get('rows')} rows, sha256 "
                     f"`{str(data.get('sha256'))[:16]}...`)")
    if provenance.get("checkpoint"):
        lines.append(f"- exported from `{provenance['checkpoint']}`")
    lines += ["", "## Evaluation", ""]
    if metrics:
        lines += [f"Zero-shot on {metrics.get('n_images', '?')} test images ({metrics.get('n_classes', '?')} "
                  f"classes), bootstrap over patients:", "", *_metrics_table(metrics)]
    else:
        lines.append("Not evaluated when the bundle was written.")
    lines += [
        "", "## Intended use and limits", "",
        f"- {metadata['intended_use']}",
        "- Zero-shot probabilities are not calibrated unless `models/calibration.json` is present "
        "(`python -m monai_cxrcml.calibration --model THIS_FOLDER ...`); use AUC-type decisions otherwise.",
        "- A model trained on the phantom data set (`monai_cxrcml.phantom`) has seen synthetic films only: "
        "it says nothing about real chest X-rays.",
        *(f"- The protocol keeps a known defect on purpose: {defect}." for defect in section["protocol"]["defects"]),
        "", "## Licence", "", "Apache-2.0 (`LICENSE`); the data's licence is in `docs/data_license.txt`.", "",
    ]
    return "\n".join(lines)
