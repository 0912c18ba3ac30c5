"""A CXR-LT-format data set written independently of ``monai_cxrcml.phantom``, to check that the demo's recipe
is not tuned to our own phantom.

Only the file formats are shared with the package's phantom (CXR-LT 2024 ``train_labeled.csv`` in the real schema,
MIMIC-CXR-JPG paths ``files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg``); everything else differs: films of varying size
(600-900 px tall, portrait), a plain two-lung film model, each class's sign a disc, bar, ring or checker patch at
its own place on an 8 x 5 grid, labels drawn independently per study (``prevalence = 0.33 (n_c / n_max) ** 0.5`` of
the real counts, 15 % Normal studies with no other finding), 1-3 studies per patient with a PA + lateral or a single
AP exam, 5 % empty ``ViewPosition`` cells, other identifier ranges. ``--strength`` scales every sign.

    python benchmarks/other_phantom.py runs/other-phantom --patients 600 --seed 123
    python -m monai.bundle run training --config_file "['bundle/configs/train.yaml','configs/demo.yaml']" \\
        --dataset_dir runs/other-phantom --output_dir runs/demo-other-phantom \\
        --cache_dir runs/other-phantom/cache
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image

from monai_cxrcml.data import CXRLT2024_CLASSES
from monai_cxrcml.data.classes import CXRLT2024_TRAIN_COUNTS
from monai_cxrcml.data.mimic import mimic_relative_path

VIEWS = {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral"}
GRID = (8, 5)  # rows x columns of sign places


def film(labels: np.ndarray, strength: float, height: int, rng: np.random.Generator) -> np.ndarray:
    """An 8-bit portrait film ``[height, ~0.83 height]`` with the sign of every positive class."""
    width = int(height * rng.uniform(0.78, 0.88))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = 60 + 40 * np.exp(-(((xx - width / 2) / (width / 2.2)) ** 2))
    for cx in (0.3 * width, 0.7 * width):  # lungs
        image += 90 * np.exp(-((((xx - cx) / (0.16 * width)) ** 2 + ((yy - 0.5 * height) / (0.3 * height)) ** 2) ** 2))
    image += rng.normal(0, 8, size=image.shape)
    scale = height / 720
    for c in np.flatnonzero(labels):
        gy, gx = divmod(int(c), GRID[1])
        cy = height * (0.1 + 0.8 * (gy + 0.5) / GRID[0]) + rng.normal(0, 8 * scale)
        cx = width * (0.1 + 0.8 * (gx + 0.5) / GRID[1]) + rng.normal(0, 8 * scale)
        amplitude = 55 * strength * rng.uniform(0.5, 1.0)
        r = np.hypot(yy - cy, xx - cx) / scale
        shape = (
            r < 24,
            (abs(yy - cy) < 6 * scale) & (abs(xx - cx) < 30 * scale),
            (r > 16) & (r < 26),
            ((xx // (8 * scale) + yy // (8 * scale)) % 2 == 0) & (r < 26),
        )[c % 4]
        image += amplitude * shape
    return np.clip(image, 0, 255).astype(np.uint8)


def write(root: Path, patients: int, seed: int, strength: float) -> int:
    """Write the films and ``train_labeled.csv`` under ``root``; return the number of films."""
    rng = np.random.default_rng(seed)
    counts = np.array([CXRLT2024_TRAIN_COUNTS[name] for name in CXRLT2024_CLASSES], dtype=float)
    prevalence = 0.33 * (counts / counts.max()) ** 0.5
    normal = CXRLT2024_CLASSES.index("Normal")
    rows = []
    for p in range(patients):
        subject = 11_000_000 + 7 * p
        for s in range(int(rng.integers(1, 4))):
            study = 52_000_000 + 10 * p + s
            labels = (rng.random(len(CXRLT2024_CLASSES)) < prevalence).astype(int)
            labels[normal] = 0
            if rng.random() < 0.15:
                labels[:] = 0
                labels[normal] = 1
            severity = rng.uniform(0.6, 1.0) * strength
            height = int(rng.integers(600, 900))
            for f, view in enumerate(["PA", "LATERAL"] if rng.random() < 0.5 else ["AP"]):
                dicom = f"{int(rng.integers(0, 2**32)):08x}-{p:08x}-{s:04x}{f:04x}-0000aaaa-0000bbbb"
                fpath = mimic_relative_path(subject, study, dicom)
                (root / fpath).parent.mkdir(parents=True, exist_ok=True)
                pixels = film(labels, severity * (0.5 if view == "LATERAL" else 1.0), height, rng)
                Image.fromarray(pixels).save(root / fpath, quality=90)
                position = "" if rng.random() < 0.05 else view
                rows.append([dicom, subject, f"s{study}", position, VIEWS[view], fpath, *labels.tolist()])
    with open(root / "train_labeled.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["dicom_id", "subject_id", "study_id", "ViewPosition", "ViewCodeSequence_CodeMeaning", "fpath",
                         *CXRLT2024_CLASSES])
        writer.writerows(rows)
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--patients", type=int, default=600)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--strength", type=float, default=1.0, help="scale of every sign's contrast")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{write(args.out, args.patients, args.seed, args.strength)} films written to {args.out}")


if __name__ == "__main__":
    main()
