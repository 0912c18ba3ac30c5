"""How close each scoring protocol comes to CheXzero's own pipeline, on films at MIMIC size.

The reference is the independent re-implementation of CheXzero's pipeline that ``tests/test_protocols.py`` holds
(PIL, torchvision and the model; none of this project's transforms). A random ViT-B/32 in OpenAI key layout stands
in for CheXzero's weights (towers and tokens of open_clip's ``ViT-B-32-quickgelu`` agree with CheXzero's to 1e-7,
../shared/FACTS.md). Prints, per protocol: the largest probability difference and the worst per-class Spearman
correlation with the reference over the films.

    python benchmarks/chexzero_agreement.py --films 8
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_protocols import CLASSES, VIT, _chexzero_reference, _worst_spearman, write_realistic_films  # noqa: E402

from monai_cxrcml.inference import predict  # noqa: E402
from monai_cxrcml.networks import create_clip  # noqa: E402
from monai_cxrcml.protocols import get_protocol  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--films", type=int, default=8, help="films, half 8-bit JPEG and half 16-bit PNG")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "films"
        folder.mkdir()
        write_realistic_films(folder, args.films)
        torch.manual_seed(0)
        model = create_clip(VIT).eval()
        checkpoint = Path(tmp) / "chexzero.pt"
        torch.save(model.state_dict(), checkpoint)
        reference = _chexzero_reference(sorted(folder.iterdir()), model, CLASSES)
        print("| protocol | max abs difference | worst per-class Spearman | seconds |")
        print("| --- | ---: | ---: | ---: |")
        for label, protocol in (
            ("chexzero", "chexzero"),
            ("chexzero, but straight to 224 px with JPEG draft decoding (before issue 15)",
             get_protocol("chexzero", resize="longest_side", jpeg_draft=True)),
            ("chexzero_corrected", "chexzero_corrected"),
            ("present_absent", "present_absent"),
        ):
            started = time.perf_counter()
            scored = predict(folder, checkpoint, VIT, class_names=CLASSES, protocol=protocol, device="cpu")
            seconds = time.perf_counter() - started
            probabilities = scored[CLASSES].to_numpy()
            print(f"| {label} | {np.abs(probabilities - reference).max():.2g} | "
                  f"{_worst_spearman(probabilities, reference):.3f} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
