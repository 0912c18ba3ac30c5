"""GPU check (issue 19): every GPU target of BENCHMARKS.md measured in one run and printed as one table.

Checks (``--only`` picks some), each a row: measure, value, target, status, the command that reproduces it:

``mixture``
    Case 3 of ``bench_mixture.py``: our Student-t EM, full covariances, N = 200,000, d = 512, K = 40, <= 50
    iterations, float32 (target < 5 s).
``train_step``
    ViT-B/32 at 224 px, batch 32, CXRCMLTrainer from the film cache (``bench_train_step.py``'s ``measure`` over the
    phantom's fold-0 training films, augmentation on): images/s in fp32 and with bf16 autocast, the bundle's
    ``amp`` (target >= 1000 images/s, bf16); torch.profiler's top kernels of the fp32 run are printed above the
    table.
``epoch``
    One epoch of ``configs/paper.yaml`` (the README's MIMIC command: train.yaml + paper.yaml, a random
    CheXzero-format ViT-B/32, validation, mixture refit, the epoch's checkpoint) on a 2000-film phantom through the
    cache: epoch seconds, peak GPU memory, the refit's share of the epoch (target < 5%), and the share at MIMIC's
    size from case 3's fit and the measured training rate.
``inference``
    ``monai_cxrcml.inference.predict`` (the inference command's path, films read and resized uncached) over the
    phantom's films: films/s (from two runs of different length, so the model's loading cancels out); and bf16
    autocast against fp32 probabilities on the same films (largest and mean difference; no target).
``cuda_tests``
    ``pytest -m gpu`` over the test files that hold the marker.

``--tiny`` shrinks every size (a tiny CLIP at 64 px, 60 phantom films, a small mixture) so the whole check runs on
a CPU in a couple of minutes (``.ci/run`` runs it so it cannot rot); without CUDA every target reads
"n/a (no CUDA)". The exit status is non-zero only when a check fails with an error, not when a target is missed.

    bash benchmarks/gpu_check.sh            # on one H100: <= 8 minutes with 16 CPU cores
    bash benchmarks/gpu_check.sh --tiny     # anywhere
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paper_workflow import CHEXZERO_MODEL, REPO, film_phantom, paper_workflow, write_chexzero_checkpoint  # noqa: E402

MIXTURE_TARGET_S = 5.0
TRAIN_TARGET_IPS = 1000.0
REFIT_SHARE_TARGET = 0.05
MIMIC_TRAIN_FILMS = 130_000
"""Training films of one MIMIC fold (fold 0 of 5, validation carved out: ~72% of 181k frontal films)."""


@dataclass(frozen=True)
class Sizes:
    """How big each check is."""

    films: int  # phantom films
    film_size: int  # phantom film height, px
    model: str
    image_size: int
    batch_size: int
    warmup: int  # train-step warm-up iterations
    steps: int  # train-step timed iterations
    workers: int  # DataLoader workers of the train-step and inference checks
    epoch_workers: int | None  # the epoch's (None: configs/paper.yaml's num_workers, what users run)
    mixture_n: int
    mixture_d: int
    inference_films: int


FULL = Sizes(films=2000, film_size=512, model=CHEXZERO_MODEL, image_size=224, batch_size=32, warmup=5, steps=40,
             workers=max(1, (os.cpu_count() or 2) - 2), epoch_workers=None, mixture_n=200_000, mixture_d=512,
             inference_films=1024)
TINY = Sizes(films=60, film_size=128, model="cxrcml-tiny", image_size=64, batch_size=8, warmup=1, steps=2,
             workers=0, epoch_workers=0, mixture_n=2000, mixture_d=32, inference_films=16)


@dataclass
class Check:
    """One row of the table."""

    measure: str
    value: str
    target: str
    status: str  # PASS | FAIL | n/a (no CUDA) | info | ERROR
    command: str


@dataclass
class Context:
    """What every check shares: device, sizes, the phantom, the checkpoint, the cache and the results so far."""

    device: str
    sizes: Sizes
    work: Path
    tiny: bool
    phantom: Path
    checkpoint: Path
    cache_dir: Path
    found: dict = dataclasses.field(default_factory=dict)  # values later checks use (fit seconds, images/s)

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def status(self, passed: bool) -> str:
        """PASS/FAIL on CUDA; a target measured elsewhere does not count."""
        return ("PASS" if passed else "FAIL") if self.cuda else "n/a (no CUDA)"

    def this(self, check: str) -> str:
        """The command that repeats one check at this check's sizes."""
        return f"bash benchmarks/gpu_check.sh{' --tiny' if self.tiny else ''} --only {check}"


def _rate(per_second: float) -> str:
    return f"{per_second:,.0f}" if per_second >= 100 else f"{per_second:.2f}"


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------------------ checks
def check_mixture(ctx: Context) -> list[Check]:
    from bench_mixture import CASES, estimator_params, make_data, time_fit

    from monai_cxrcml.mixture import StudentTMixture

    case = dataclasses.replace(CASES["3"], n=ctx.sizes.mixture_n, d=ctx.sizes.mixture_d)
    x64, truth = make_data(case)
    x32 = torch.tensor(x64, dtype=torch.float32, device=ctx.device)
    row = time_fit("ours, t, full, fp32", StudentTMixture(dof=4.0, **estimator_params(case)), x32, truth,
                   torch.tensor(x64, device=ctx.device), ctx.device)
    ctx.found["mixture_s"] = row.seconds
    ctx.found["mixture_n"] = case.n
    command = ctx.this("mixture") if ctx.tiny else "python benchmarks/bench_mixture.py --cases 3 --device cuda"
    return [Check(f"mixture case 3: t EM, full, N = {case.n:,}, d = {case.d}, K = {case.k}, <= {case.max_iter} it.",
                  f"{row.seconds:.2f} s ({row.iterations} iterations, ARI {row.ari:.3f})", f"< {MIXTURE_TARGET_S:g} s",
                  ctx.status(row.seconds < MIXTURE_TARGET_S), command)]


def check_train_step(ctx: Context) -> list[Check]:
    from bench_train_step import measure, phantom_loader, variants

    s = ctx.sizes
    bench = argparse.Namespace(model=s.model, image_size=s.image_size, batch_size=s.batch_size, steps=s.steps,
                               warmup=s.warmup, workers=s.workers)
    chosen = {"fp32": variants(ctx.device)[1]}
    if ctx.cuda:
        chosen["bf16 (the bundle's amp)"] = next(v for v in variants(ctx.device) if v.amp and not v.channels_last)
    rows = []
    for i, (label, variant) in enumerate(chosen.items()):
        loader = phantom_loader(bench, ctx.phantom, ctx.cache_dir, s.warmup + s.steps, ctx.device)
        rate = measure(bench, variant, loader, ctx.device, profile=i == 0)
        ctx.found["images_per_s"] = rate
        target = label.startswith("bf16") or not ctx.cuda
        rows.append(Check(f"{s.model} {s.image_size} px batch {s.batch_size} training from the cache, {label}, "
                          f"{s.workers} workers", f"{_rate(rate)} images/s",
                          f">= {TRAIN_TARGET_IPS:,.0f} images/s" if target else "(bf16 row)",
                          ctx.status(rate >= TRAIN_TARGET_IPS) if target else "info",
                          f"python benchmarks/bench_train_step.py --device cuda --model {s.model} --image-size "
                          f"{s.image_size} --batch-size {s.batch_size} --source cache --workers {s.workers} "
                          "--profile" if not ctx.tiny else ctx.this("train_step")))
    return rows


def check_epoch(ctx: Context) -> list[Check]:
    from ignite.engine import Events

    s = ctx.sizes
    workers = {} if s.epoch_workers is None else {"num_workers": s.epoch_workers}
    workflow = paper_workflow(ctx.phantom, ctx.checkpoint, ctx.work / "paper-epoch", ctx.cache_dir, epochs=1,
                              model_name=s.model, image_size=s.image_size, batch_size=s.batch_size, **workers)
    parser = workflow.parser
    trainer = parser.get_parsed_content("train#trainer")
    parser.get_parsed_content("train#last_checkpoint").attach(trainer)  # as the bundle's `run` does
    mixture = parser.get_parsed_content("train#pseudo_labels")
    validator = parser.get_parsed_content("validate#evaluator")
    marks: dict[str, float] = {}

    def mark(name: str) -> Callable:
        return lambda engine: (_synchronize(ctx.device), marks.update({name: time.perf_counter()}))

    trainer.add_event_handler(Events.EPOCH_STARTED, mark("epoch_start"))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, mark("epoch_end"))  # after refit, validation, checkpoint
    validator.add_event_handler(Events.STARTED, mark("val_start"))
    validator.add_event_handler(Events.COMPLETED, mark("val_end"))
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.run()
    epoch = marks["epoch_end"] - marks["epoch_start"]
    refit = mixture.last_diagnostics["seconds"]
    films = trainer.state.epoch_length * s.batch_size
    memory = (f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB allocated, "
              f"{torch.cuda.max_memory_reserved() / 2**30:.1f} GiB reserved") if ctx.cuda else "n/a (no CUDA)"
    rows = [
        Check(f"epoch of configs/paper.yaml on a {s.films:,}-film phantom ({films:,} training films, "
              f"{parser['num_workers']} workers)",
              f"{epoch:.1f} s (validation {marks['val_end'] - marks['val_start']:.1f} s, refit {refit:.2f} s)",
              "(reported)", "info", ctx.this("epoch")),
        Check("peak GPU memory of the epoch", memory, "(reported)", "info", ctx.this("epoch")),
        Check("refit share of this epoch", f"{100 * refit / epoch:.1f}% ({int(mixture.last_diagnostics['n_films']):,}"
              " films in the bank)", f"< {100 * REFIT_SHARE_TARGET:g}%", ctx.status(refit / epoch < REFIT_SHARE_TARGET),
              ctx.this("epoch")),
    ]
    if "mixture_s" in ctx.found and "images_per_s" in ctx.found:
        fit, rate = ctx.found["mixture_s"], ctx.found["images_per_s"]
        mimic_epoch = MIMIC_TRAIN_FILMS / rate
        share = fit / (mimic_epoch + fit)
        rows.append(Check(f"refit share of a MIMIC epoch ({MIMIC_TRAIN_FILMS:,} films at {_rate(rate)} images/s, "
                          f"case-3 fit on {ctx.found['mixture_n']:,} rows)", f"{100 * share:.1f}%",
                          f"< {100 * REFIT_SHARE_TARGET:g}%", ctx.status(share < REFIT_SHARE_TARGET),
                          ctx.this("mixture,train_step,epoch")))
    return rows


def check_inference(ctx: Context) -> list[Check]:
    from monai_cxrcml.data.cxrlt import read_cxrlt_csv
    from monai_cxrcml.inference import predict

    s = ctx.sizes
    films = read_cxrlt_csv(ctx.phantom / "train_labeled.csv").frame["image"].tolist()[: s.inference_films]
    options = dict(model_name=s.model, protocol="present_absent", device=ctx.device, num_workers=s.workers,
                   batch_size=2 * s.batch_size)

    def timed(paths: list[str], precision: str):
        _synchronize(ctx.device)
        tick = time.perf_counter()
        frame = predict(paths, ctx.checkpoint, precision=precision, **options)
        _synchronize(ctx.device)
        return frame, time.perf_counter() - tick

    quarter = max(1, len(films) // 4)
    _, short = timed(films[:quarter], "fp32")
    fp32, full = timed(films, "fp32")
    bf16, _ = timed(films, "autocast")
    rate = (len(films) - quarter) / max(full - short, 1e-9)
    classes = [c for c in fp32.columns if c != "path"]
    difference = np.abs(fp32[classes].to_numpy() - bf16[classes].to_numpy())
    return [
        Check(f"inference films/s ({len(films):,} films of {s.film_size} px read uncached, {s.workers} workers)",
              f"{_rate(rate)} films/s", "(reported)", "info", ctx.this("inference")),
        Check("bf16 autocast against fp32 probabilities (same films)",
              f"largest difference {difference.max():.2e}, mean {difference.mean():.2e}", "(reported)",
              "info" if ctx.cuda else "n/a (no CUDA)", ctx.this("inference")),
    ]


def check_cuda_tests(ctx: Context) -> list[Check]:
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py")
                   if "pytest.mark.gpu" in p.read_text())
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *files]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr.strip()[-200:]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|error|errors)", summary)}
    if done.returncode not in (0, 1) or counts.get("error", 0) or counts.get("errors", 0):
        raise RuntimeError(f"pytest -m gpu could not run (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    if counts.get("failed"):
        print(done.stdout, file=sys.stderr)
    status = ctx.status(not counts.get("failed") and counts.get("passed", 0) > 0)
    return [Check(f"CUDA tests ({len(files)} files with the gpu marker)", summary.strip("= "), "all pass", status,
                  f"python -m pytest -m gpu {' '.join(files)}")]


CHECKS: dict[str, Callable[[Context], list[Check]]] = {
    "mixture": check_mixture, "train_step": check_train_step, "epoch": check_epoch, "inference": check_inference,
    "cuda_tests": check_cuda_tests,
}


# ------------------------------------------------------------------------------------------------------ driver
def prepare(args: argparse.Namespace, sizes: Sizes, device: str) -> Context:
    """The phantom, the random CheXzero-format checkpoint and the warm film cache every check shares."""
    from monai_cxrcml.data.cache import FilmCache
    from monai_cxrcml.data.cxrlt import read_cxrlt_csv

    work = Path(args.work)
    tick = time.perf_counter()
    phantom = film_phantom(work / f"phantom-{sizes.films}x{sizes.film_size}", sizes.films, sizes.film_size,
                           jobs=os.cpu_count() or 1)
    checkpoint = write_chexzero_checkpoint(work / f"chexzero-{sizes.model}.pt", sizes.model)
    cache_dir = work / "cache"
    films = read_cxrlt_csv(phantom / "train_labeled.csv").frame["image"].tolist()
    FilmCache(cache_dir, sizes.image_size).warm(films, num_workers=os.cpu_count(), progress=False)
    print(f"prepared in {time.perf_counter() - tick:.1f} s: phantom {phantom} ({len(films):,} frontal films), "
          f"checkpoint {checkpoint}, film cache {cache_dir}", flush=True)
    return Context(device, sizes, work, args.tiny, phantom, checkpoint, cache_dir)


def print_table(rows: list[Check], seconds: float, device: str) -> None:
    where = torch.cuda.get_device_name() if device == "cuda" else "CPU (no CUDA)"
    print(f"\n## GPU check: {where}, {os.cpu_count()} CPU cores, torch {torch.__version__}, {seconds / 60:.1f} min\n")
    print("| measure | value | target | status | command |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r.measure} | {r.value} | {r.target} | {r.status} | `{r.command}` |")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="every size shrunk: a couple of minutes on a CPU")
    parser.add_argument("--only", default=",".join(CHECKS), help=f"comma-separated subset of {','.join(CHECKS)}")
    parser.add_argument("--work", default=None, help="folder for the phantom, checkpoint, cache and runs "
                        "(default runs/gpu-check or runs/gpu-check-tiny)")
    args = parser.parse_args(argv)
    args.work = args.work or str(REPO / "runs" / ("gpu-check-tiny" if args.tiny else "gpu-check"))
    chosen = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in CHECKS]
    if unknown:
        parser.error(f"unknown check(s) {unknown}: choose from {','.join(CHECKS)}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sizes = TINY if args.tiny else FULL
    if device == "cpu" and not args.tiny:
        print("no CUDA device: the full-size check needs a GPU (--tiny runs the small version anywhere)",
              file=sys.stderr)
    if device == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    start = time.perf_counter()
    ctx = prepare(args, sizes, device)
    rows, errors = [], 0
    for name in [c for c in CHECKS if c in chosen]:
        tick = time.perf_counter()
        print(f"\n--- {name}", flush=True)
        try:
            found = CHECKS[name](ctx)
        except Exception as error:  # a broken check must not hide the others' figures
            traceback.print_exc()
            errors += 1
            found = [Check(name, f"{type(error).__name__}: {error}".splitlines()[0][:200], "", "ERROR",
                           ctx.this(name))]
        rows += found
        print(f"--- {name}: {time.perf_counter() - tick:.1f} s", flush=True)
    print_table(rows, time.perf_counter() - start, device)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
