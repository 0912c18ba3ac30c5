"""Training images/s of CXRCMLTrainer: the model step alone, and end to end from the preprocessing cache.

Variants (each a row; the same model, batch and data):

* ``before``: the loop as it was: batches reach the model as MONAI ``MetaTensor`` and a foreach AdamW makes the
  non-finite guard read the loss on the host every iteration;
* ``plain + fused``: plain tensors (``prepare_clip_batch``), fused AdamW, the guard as a device flag (no host
  read in the hot path);
* ``+ channels_last``: also images and model in channels-last memory format (only the ViT's patch convolution can
  use it);
* on CUDA, ``+ bf16``: bf16 autocast on top (and with channels-last).

Sources: ``synthetic`` (pre-collated in-memory batches: the model step alone) or ``cache`` (the training
transforms over a phantom data set read through a warm ``FilmCache``, ``--workers`` DataLoader workers with pinned
memory: end to end). Timing covers ``--steps`` iterations after ``--warmup`` (CUDA synchronised at both ends only).
``--profile`` prints the top operators of the first variant by self time (where the time goes).

    python benchmarks/bench_train_step.py --device cpu --source synthetic --threads 2
    python benchmarks/bench_train_step.py --device cpu --source cache --workers 1 --threads 1
    python benchmarks/bench_train_step.py --device cuda --model ViT-B-32-quickgelu --image-size 224 \
        --batch-size 32 --source cache --workers 8 --phantom-patients 2000 --phantom-size 512 --profile

Without CUDA, ``--device cuda`` prints "skipped: no CUDA".
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
from ignite.engine import Events
from monai.data import MetaTensor

from monai_cxrcml.engines import CXRCMLTrainer, prepare_clip_batch
from monai_cxrcml.losses import CXRCMLLoss, PseudoLabelTripletLoss
from monai_cxrcml.networks import create_clip, get_tokenizer


@dataclass
class Variant:
    name: str
    plain: bool
    fused: bool
    channels_last: bool
    amp: bool


def variants(device: str) -> list[Variant]:
    rows = [
        Variant("before: MetaTensor batches, host NaN check", False, False, False, False),
        Variant("plain + fused (device NaN guard)", True, True, False, False),
        Variant("plain + fused + channels_last", True, True, True, False),
    ]
    if device == "cuda":
        rows += [Variant("plain + fused + bf16", True, True, False, True),
                 Variant("plain + fused + bf16 + channels_last", True, True, True, True)]
    return rows


def synthetic_batches(n_batches: int, batch: int, size: int, model_name: str) -> list[dict]:
    """Collated batches as a DataLoader over the training transforms yields them (MetaTensor images)."""
    gen = torch.Generator().manual_seed(0)
    text = get_tokenizer(model_name)(["pleural effusion is present, cardiomegaly is present"] * batch)
    return [{"image": MetaTensor(torch.randn(batch, 3, size, size, generator=gen)), "text": text,
             "sample_id": torch.arange(i * batch, (i + 1) * batch)} for i in range(n_batches)]


def cache_loader(args: argparse.Namespace, n_batches: int, device: str) -> torch.utils.data.DataLoader:
    """Training transforms over a phantom read through a warm FilmCache; ``n_batches`` full batches."""
    from monai_cxrcml.phantom import ensure_phantom

    root = ensure_phantom(args.phantom_dir, patients=args.phantom_patients, size=args.phantom_size, seed=0)
    return phantom_loader(args, root, Path(args.phantom_dir) / "cache", n_batches, device)


def phantom_loader(args: argparse.Namespace, root: Path, cache_dir: Path, n_batches: int,
                   device: str) -> torch.utils.data.DataLoader:
    """Training transforms over the fold-0 training films of the phantom data set in ``root``, read through a
    FilmCache in ``cache_dir`` (warmed first); ``n_batches`` full batches of ``args.batch_size``."""
    from monai.data import Dataset

    from monai_cxrcml.data import load_fold
    from monai_cxrcml.data.cache import FilmCache
    from monai_cxrcml.transforms import chest_film_transforms, skip_unreadable_collate

    fold = load_fold(Path(root) / "train_labeled.csv", root, fold=0, num_folds=5, seed=0)
    items = fold.datalist("train")
    FilmCache(cache_dir, args.image_size).warm([item["image"] for item in items], progress=False)
    items = [dict(items[i % len(items)], sample_id=i) for i in range(n_batches * args.batch_size)]
    transforms = chest_film_transforms(
        train=True, image_size=args.image_size, normalization="clip", cache_dir=cache_dir,
        tokenizer=get_tokenizer(args.model), caption={"class_names": fold.class_names, "shuffle": True},
    )
    return torch.utils.data.DataLoader(
        Dataset(items, transforms), batch_size=args.batch_size, shuffle=True, drop_last=True,
        num_workers=args.workers, pin_memory=device == "cuda", persistent_workers=args.workers > 0,
        collate_fn=skip_unreadable_collate,
    )


def _prepare(variant: Variant) -> Callable:
    def prepare(batch: dict, device, non_blocking: bool = False, **kwargs):
        image, text, ids = prepare_clip_batch(batch, device, non_blocking, **kwargs)
        if not variant.plain:
            image = MetaTensor(image)  # what the model saw before prepare_clip_batch dropped the metadata
        if variant.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return image, text, ids

    return prepare


def measure(args: argparse.Namespace, variant: Variant, data, device: str, profile: bool) -> float:
    """Images/s over ``args.steps`` iterations after ``args.warmup``."""
    torch.manual_seed(0)
    model = create_clip(args.model).to(device)
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
    trainer = CXRCMLTrainer(
        device=device, max_epochs=1, epoch_length=args.warmup + args.steps, train_data_loader=data, network=model,
        optimizer=torch.optim.AdamW(model.parameters(), lr=1e-5, fused=variant.fused),
        loss_function=CXRCMLLoss(PseudoLabelTripletLoss(margin=0.2)), prepare_batch=_prepare(variant),
        amp=variant.amp, grad_clip_norm=1.0,
    )
    marks: dict[str, float] = {}

    def mark(name: str) -> None:
        if device == "cuda":
            torch.cuda.synchronize()
        marks[name] = time.perf_counter()

    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=args.warmup), lambda e: mark("start"))
    trainer.add_event_handler(Events.COMPLETED, lambda e: mark("end"))
    if profile:
        with operator_profiler(device) as profiler:
            trainer.run()
        print(top_operators(profiler, device), file=sys.stderr)
    else:
        trainer.run()
    return args.steps * args.batch_size / (marks["end"] - marks["start"])


def operator_profiler(device: str) -> torch.profiler.profile:
    """A torch.profiler recording CPU operators (and CUDA kernels on ``"cuda"``): a context manager, or
    ``start()`` / ``stop()`` around the iterations to profile."""
    from torch.profiler import ProfilerActivity

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    return torch.profiler.profile(activities=activities)


def top_operators(profiler: torch.profiler.profile, device: str, rows: int = 15) -> str:
    """The profiled operators that took the most self time (device time on CUDA), as torch.profiler's table."""
    key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    return profiler.key_averages().table(sort_by=key, row_limit=rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--model", default=None,
                        help="open_clip name (default: cxrcml-tiny on CPU, ViT-B-32-quickgelu on CUDA)")
    parser.add_argument("--image-size", type=int, default=None, help="default: the model config's")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--source", choices=("synthetic", "cache"), default="synthetic")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    parser.add_argument("--phantom-dir", default="runs/phantom-bench")
    parser.add_argument("--phantom-patients", type=int, default=200)
    parser.add_argument("--phantom-size", type=int, default=256)
    parser.add_argument("--only", type=int, nargs="*", default=None, help="indices of the variants to run")
    parser.add_argument("--profile", action="store_true", help="print the top operators of the first variant run")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("skipped: no CUDA")
        return
    args.model = args.model or ("ViT-B-32-quickgelu" if args.device == "cuda" else "cxrcml-tiny")
    args.image_size = args.image_size or open_clip.get_model_config(args.model)["vision_cfg"]["image_size"]
    if args.threads:
        torch.set_num_threads(args.threads)
    n_batches = args.warmup + args.steps
    rows = [v for i, v in enumerate(variants(args.device)) if args.only is None or i in args.only]
    results = []
    for i, variant in enumerate(rows):
        data = (synthetic_batches(n_batches, args.batch_size, args.image_size, args.model) if args.source == "synthetic"
                else cache_loader(args, n_batches, args.device))
        results.append((variant, measure(args, variant, data, args.device, args.profile and i == 0)))
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"\n{args.model} at {args.image_size} px, batch {args.batch_size}, {args.source}"
          f"{f' ({args.workers} workers)' if args.source == 'cache' else ''}, {device}; "
          f"{args.steps} steps after {args.warmup} warm-up")
    print("| variant | images/s | ms/step | vs first row |")
    print("|---|---:|---:|---:|")
    for variant, rate in results:
        print(f"| {variant.name} | {rate:,.1f} | {1e3 * args.batch_size / rate:.1f} | {rate / results[0][1]:.2f}x |")
    print(f"\ncommand: python {shlex.join(sys.argv)}")


if __name__ == "__main__":
    main()
