"""Share of epoch time spent refitting the Student-t mixture on the memory bank (once per epoch).

Banks: synthetic CLIP-like embeddings (unit rows of a K-component t mixture, ``bench_mixture.make_data``) of the
phantom demo's size (N = 796 training films, d = 128: the demo's model) and of MIMIC-CXR's (N = 200,000, d = 512:
ViT-B/32), K = 40, nu = 4, as the bundle fits them (``max_iter`` 100, tol 1e-3). Two refits per bank: the
handler's default (a fresh k-means start every epoch) and the optional warm start (``warm_start=True``, on the next
epoch's bank: the same rows moved slightly). Epoch time = N / images per second: measured here for the demo's
model on this device (CXRCMLTrainer, batch 32), and for the MIMIC-sized bank the ``--mimic-ips`` given (default
1,000 images/s: the H100 target for ViT-B/32 at 224 px). Share = refit / (epoch + refit), the cost when the refit
runs synchronously at the end of each epoch.

``--loop`` also trains the demo's model for a few epochs on a phantom-sized synthetic set, with no mixture, with a
synchronous refit, and with the refit in the background (``overlap_iterations``), and reports seconds per epoch.

    python benchmarks/bench_refit_share.py --banks phantom --threads 2 --loop
    python benchmarks/bench_refit_share.py --banks mimic --covariance diag --threads 2
    python benchmarks/bench_refit_share.py --banks phantom mimic --device cuda --mimic-ips 1000
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_mixture import Case, make_data  # noqa: E402

from monai_cxrcml.mixture import StudentTMixture  # noqa: E402

BANKS = {"phantom": (796, 128), "mimic": (200_000, 512)}
MODEL = "cxrcml-cnn"
"""The demo's model: its throughput sets the phantom bank's epoch time."""


@dataclass
class Refit:
    cold_s: float
    cold_iter: int
    warm_s: float
    warm_iter: int


def synthetic_bank(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    """Unit-norm rows of a K-component t mixture (nu = 5): CLIP-like embeddings with cluster structure."""
    return make_data(Case(f"N={n}, d={d}, K={k}", n, d, k, True, 100, False), seed=seed)[0]


def _timed(fn, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_refits(bank: np.ndarray, k: int, covariance: str, device: str, max_iter: int) -> Refit:
    """Seconds of a refit from k-means (the handler's default; the first epoch's fit is one too) and of a
    warm-started refit on the next epoch's (slightly moved) bank."""
    x = torch.tensor(bank, dtype=torch.float32, device=device)
    mixture = StudentTMixture(n_components=k, covariance_type=covariance, dof=4.0, random_state=0, max_iter=max_iter)
    cold = _timed(lambda: mixture.fit(x).predict_proba(x), device)
    cold_iter = mixture.n_iter_
    moved = torch.nn.functional.normalize(x + 0.01 * torch.randn_like(x) / bank.shape[1] ** 0.5, dim=1)
    mixture.warm_start = True
    warm = _timed(lambda: mixture.fit(moved).predict_proba(moved), device)
    return Refit(cold, cold_iter, warm, mixture.n_iter_)


def tiny_images_per_second(device: str, steps: int = 10) -> float:
    """CXRCMLTrainer throughput of the demo's model at 64 px, batch 32 (bench_train_step's fast variant)."""
    from bench_train_step import measure, synthetic_batches, variants

    args = argparse.Namespace(model=MODEL, image_size=64, batch_size=32, steps=steps, warmup=2)
    data = synthetic_batches(steps + 2, 32, 64, MODEL)
    return measure(args, variants(device)[1], data, device, profile=False)


def loop_epochs(n: int, epochs: int, overlap: int, covariance: str, device: str) -> list[tuple[str, float]]:
    """Seconds per epoch of the demo's model on n synthetic films: no mixture, synchronous refit, background refit."""
    from bench_train_step import synthetic_batches
    from ignite.engine import Events

    from monai_cxrcml.engines import CXRCMLTrainer
    from monai_cxrcml.handlers import PseudoLabelHandler
    from monai_cxrcml.losses import CXRCMLLoss, PseudoLabelTripletLoss
    from monai_cxrcml.networks import create_clip

    data = synthetic_batches(n // 32, 32, 64, MODEL)
    rows = []
    for name, mixture_overlap in (("no mixture", None), ("refit at epoch end", 0),
                                  (f"refit in the background ({overlap} iterations)", overlap)):
        torch.manual_seed(0)
        model = create_clip(MODEL).to(device)
        handlers = [] if mixture_overlap is None else [PseudoLabelHandler(
            len(data) * 32, StudentTMixture(40, covariance_type=covariance, dof=4.0, random_state=0),
            overlap_iterations=mixture_overlap)]
        trainer = CXRCMLTrainer(
            device=device, max_epochs=epochs, train_data_loader=data, network=model,
            optimizer=torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True),
            loss_function=CXRCMLLoss(PseudoLabelTripletLoss(margin=0.2)), train_handlers=handlers,
        )
        marks = []
        trainer.add_event_handler(Events.EPOCH_STARTED(once=2), lambda e: marks.append(time.perf_counter()))
        trainer.add_event_handler(Events.COMPLETED, lambda e: marks.append(time.perf_counter()))
        trainer.run()  # epoch 1 (no labels yet, the first fit) is left out: steady state from epoch 2
        rows.append((name, (marks[1] - marks[0]) / (epochs - 1)))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--banks", nargs="+", choices=sorted(BANKS), default=["phantom"])
    parser.add_argument("--mimic-n", type=int, default=None, help="override N of the MIMIC-sized bank (quick checks)")
    parser.add_argument("--k", type=int, default=40)
    parser.add_argument("--covariance", choices=("full", "diag"), default="full")
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--mimic-ips", type=float, default=1000.0, help="training images/s assumed for the MIMIC bank")
    parser.add_argument("--loop", action="store_true", help="also time real epochs of the demo's model")
    parser.add_argument("--loop-films", type=int, default=796)
    parser.add_argument("--loop-epochs", type=int, default=3)
    parser.add_argument("--overlap", type=int, default=8, help="overlap_iterations of the background refit")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("skipped: no CUDA")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    tiny_ips = tiny_images_per_second(args.device) if "phantom" in args.banks else None
    print(f"\nmixture refit per epoch, K={args.k}, nu=4, {args.covariance} covariance, max_iter {args.max_iter}, "
          f"{where}")
    print("| bank | N | d | refit from k-means s (EM it.), the default | warm refit s (EM it.) | epoch s (images/s) | "
          "share of epoch: default | warm |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.banks:
        n, d = BANKS[name]
        n = args.mimic_n or n if name == "mimic" else n
        refit = time_refits(synthetic_bank(n, d, args.k), args.k, args.covariance, args.device, args.max_iter)
        ips, source = (tiny_ips, f"measured, {MODEL}") if name == "phantom" else (args.mimic_ips, "assumed")
        epoch = n / ips
        print(f"| {name} | {n:,} | {d} | {refit.cold_s:.2f} ({refit.cold_iter}) | {refit.warm_s:.2f} "
              f"({refit.warm_iter}) | {epoch:.1f} ({ips:,.0f} {source}) | "
              f"{100 * refit.cold_s / (epoch + refit.cold_s):.1f}% | "
              f"{100 * refit.warm_s / (epoch + refit.warm_s):.1f}% |")
    if args.loop:
        rows = loop_epochs(args.loop_films, args.loop_epochs, args.overlap, args.covariance, args.device)
        print(f"\n{MODEL}, {args.loop_films} synthetic films, batch 32, epochs 2..{args.loop_epochs}, {where}")
        print("| loop | s/epoch | vs no mixture |")
        print("|---|---:|---:|")
        for name, seconds in rows:
            print(f"| {name} | {seconds:.2f} | {100 * (seconds / rows[0][1] - 1):+.1f}% |")
    print(f"\ncommand: python {shlex.join(sys.argv)}")


if __name__ == "__main__":
    main()
