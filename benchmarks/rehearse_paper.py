"""MIMIC-shaped rehearsal of the paper's path on the CPU (issue 19): every step users run on MIMIC, at MIMIC's sizes.

Stages (``--stages``, in this order; each runs in its own process, so its peak memory is its own, and writes
``WORK/results/STAGE.json``; a stage whose results exist for the same sizes is skipped unless ``--redo``):

``phantom``
    A phantom data set at real film size: ``--films`` films (default 2000) of ``--film-size`` px (default 3000:
    ~2500 x 3000 portrait 8-bit JPEGs) in the MIMIC-CXR-JPG layout, all listed in ``train_labeled.csv``
    (``python -m monai_cxrcml.phantom --split-fractions 1 0 0``). Films/s, CPU s/film, GB on disk.
``table``
    A CXR-LT-format label file of ``--csv-rows`` rows (default 258,871, 45,480 patients; ``mimic_table.py``; the
    films need not exist) written, read (``read_cxrlt_csv``), cut into fold 0 of 5 (``load_fold``: patient-level
    stratification, validation part, groups) and turned into the training datalist. Several ``--csv-rows`` give
    the scaling exponent of each step.
``cache``
    The film cache of the phantom's frontal films built as the paper's training pipeline reads it (``FilmCache``,
    the protocol's settings) by ``FilmCache.warm`` with ``--cache-workers`` threads: films/s, GB on disk, peak RSS;
    ``--cache-films`` takes subsets (scaling exponent).
``train``
    ``configs/paper.yaml`` (``bundle/configs/train.yaml`` + ``configs/paper.yaml``, the README's MIMIC command)
    from a random CheXzero-format ViT-B/32 checkpoint on the phantom through the cache, for ``--train-iterations``
    iterations after one warm-up: s/iteration, peak RSS (with the DataLoader workers), where the time goes (per
    phase, ``iteration_phases.py``) and torch.profiler's top operators over ``--profile-iterations`` more; the
    training transforms' CPU ms per film (what each DataLoader worker costs).
``refit``
    One mixture refit as the paper's bundle makes it (``train#mixture`` of the paper configs: K = 40, nu = 4, full
    covariances) by the ``PseudoLabelHandler`` at an epoch's end, on a memory bank of ``--bank-rows`` synthetic
    CLIP-like embeddings of ``--bank-dim`` (default 181,000 x 512) with CXR-LT-like reference labels (its AMI
    diagnostics): seconds, EM iterations, peak memory added (in bank-sized copies), the E-step's chunking.
``val``
    The paper's validation pass (``validate#evaluator``: class prompts encoded, zero-shot scores, per-class AUC) over
    the phantom fold's validation films: films/s.
``extrapolate``
    One MIMIC epoch on this CPU from the stages above, and what a GPU must deliver for the targets of
    BENCHMARKS.md.

Default sizes are the issue's (full size: hours on 2 cores; run it on a quiet machine). ``--tiny`` shrinks every
size (a tiny CLIP at 64 px) so the whole rehearsal runs in a couple of minutes.

    python benchmarks/rehearse_paper.py --work runs/rehearsal
    python benchmarks/rehearse_paper.py --work runs/rehearsal --stages refit --bank-rows 10000 20000 40000
    python benchmarks/rehearse_paper.py --tiny
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mimic_table import CXRLT_PATIENTS, CXRLT_ROWS, draw_labels, write_cxrlt_table  # noqa: E402
from paper_workflow import (  # noqa: E402
    CHEXZERO_MODEL,
    FILMS_PER_PATIENT,
    film_phantom,
    paper_config,
    paper_workflow,
    write_chexzero_checkpoint,
)
from resource_meter import ResourceMeter  # noqa: E402

STAGES = ("phantom", "table", "cache", "train", "refit", "val", "extrapolate")
STAGE_PARAMS: dict[str, tuple[str, ...]] = {
    "phantom": ("films", "film_size"),
    "table": ("csv_rows", "csv_patients"),
    "cache": ("films", "film_size", "cache_films", "cache_workers"),
    "train": ("films", "film_size", "model", "image_size", "batch_size", "train_iterations", "profile_iterations",
              "workers", "threads"),
    "refit": ("bank_rows", "bank_dim", "chunk_rows", "refit_max_iter", "threads"),
    "val": ("films", "film_size", "model", "image_size", "batch_size", "workers", "threads"),
    "extrapolate": (),
}
"""The options a stage's results depend on: results made with other values are measured again."""

PAPER_BATCH = 32
GPU_IMAGES_PER_S = 1000.0
REFIT_SHARE = 0.05
"""BENCHMARKS.md's GPU targets: ViT-B/32 224 px batch 32 at >= 1000 images/s; a refit under 5% of the epoch."""

Result = dict


def scaling_exponent(sizes: Sequence[float], seconds: Sequence[float]) -> float | None:
    """Slope of log(seconds) against log(size) (least squares): 1 = linear, 2 = quadratic; None for one size."""
    if len(sizes) < 2 or min(seconds) <= 0:
        return None
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def _exponent_text(value: float | None) -> str:
    return "n/a (one size)" if value is None else f"{value:.2f}"


def _memory_exponent(sizes: Sequence[float], added_gb: Sequence[float]) -> str:
    """Scaling exponent of memory added, or "flat" where every size added less than the noise of RSS (50 MB)."""
    if max(added_gb) < 0.05:
        return "flat (< 50 MB added)"
    return _exponent_text(scaling_exponent(sizes, [max(a, 1e-3) for a in added_gb]))


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.2f} GB"


def _folder_bytes(folder: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in folder.rglob(pattern) if p.is_file())


def _memory_rows(meter: ResourceMeter, what: str) -> list[list[str]]:
    return [[f"peak RSS, {what} (this process)", f"{meter.process_peak_gb:.2f} GB (from {meter.start_gb:.2f})"],
            [f"peak PSS, {what} (with worker processes)", f"{meter.tree_peak_gb:.2f} GB"]]


def _frontal_paths(args: argparse.Namespace) -> list[str]:
    from monai_cxrcml.data.cxrlt import read_cxrlt_csv

    return read_cxrlt_csv(_phantom_dir(args) / "train_labeled.csv").frame["image"].tolist()


def _phantom_dir(args: argparse.Namespace) -> Path:
    return Path(args.work) / "phantom"


def _cache_dir(args: argparse.Namespace) -> Path:
    return Path(args.work) / "cache"


# ------------------------------------------------------------------------------------------------------ stages
def stage_phantom(args: argparse.Namespace) -> Result:
    from PIL import Image

    root = _phantom_dir(args)
    patients = math.ceil(args.films / FILMS_PER_PATIENT)
    with ResourceMeter() as meter:
        film_phantom(root, args.films, args.film_size, args.jobs, reuse=False)
    cpu = meter.tree_cpu_s
    films = sorted((root / "files").rglob("*.jpg"))
    frontal = len(_frontal_paths(args))
    width, height = Image.open(films[0]).size
    nbytes = sum(p.stat().st_size for p in films)
    if len(films) < args.films:
        print(f"note: {len(films)} films drawn for {patients} patients, fewer than --films {args.films}",
              file=sys.stderr)
    return {
        "title": f"phantom: {len(films):,} films of ~{width} x {height} px, {args.jobs} processes",
        "rows": [["films (frontal)", f"{len(films):,} ({frontal:,})"], ["patients", f"{patients:,}"],
                 ["film size (first film)", f"{width} x {height} px, 8-bit JPEG"],
                 ["wall", f"{meter.wall_s:,.1f} s"], ["films/s", f"{len(films) / meter.wall_s:.2f}"],
                 ["CPU s/film (all processes)", f"{cpu / len(films):.3f}"],
                 ["on disk", f"{_gb(nbytes)} ({nbytes / len(films) / 1e6:.2f} MB/film)"],
                 *_memory_rows(meter, "generation")],
        "values": {"films": len(films), "frontal": frontal, "wall_s": meter.wall_s, "cpu_s_per_film": cpu / len(films),
                   "bytes_per_film": nbytes / len(films)},
    }


def stage_table(args: argparse.Namespace) -> Result:
    from monai_cxrcml.data import load_fold
    from monai_cxrcml.data.cxrlt import read_cxrlt_csv

    steps = ("write CSV", "read_cxrlt_csv", "load_fold (read + fold 0 of 5 + groups)", "training datalist")
    measured: dict[str, list[ResourceMeter]] = {step: [] for step in steps}
    sizes, frontal, parts = [], [], []
    for rows in args.csv_rows:
        patients = args.csv_patients or max(5, round(rows * CXRLT_PATIENTS / CXRLT_ROWS))
        path = Path(args.work) / f"cxrlt_{rows}_rows.csv"
        with ResourceMeter() as meter:
            summary = write_cxrlt_table(path, rows, patients)
        measured[steps[0]].append(meter)
        with ResourceMeter() as meter:
            table = read_cxrlt_csv(path)
        measured[steps[1]].append(meter)
        del table
        with ResourceMeter() as meter:
            fold = load_fold(path, fold=0, num_folds=5, seed=0, val_fraction=0.1)
        measured[steps[2]].append(meter)
        with ResourceMeter() as meter:
            datalist = fold.datalist("train")
        measured[steps[3]].append(meter)
        sizes.append(rows)
        frontal.append(summary.frontal)
        parts.append([len(fold.train), len(fold.val), len(fold.test)])
        del fold, datalist
    header = ["step", *[f"{r:,} rows: s (CPU s), peak GB (added)" for r in sizes], "exponent (CPU s)",
              "exponent (memory added)"]
    table_rows = [[step, *[f"{m.wall_s:.2f} ({m.cpu_s:.2f}), {m.process_peak_gb:.2f} "
                           f"(+{m.process_peak_gb - m.start_gb:.3f})" for m in meters],
                   _exponent_text(scaling_exponent(sizes, [m.cpu_s for m in meters])),
                   _memory_exponent(sizes, [m.process_peak_gb - m.start_gb for m in meters])]
                  for step, meters in measured.items()]
    table_rows.append(["frontal films: train / val / test", *[f"{f:,}: {a:,} / {b:,} / {c:,}" for f, (a, b, c)
                                                               in zip(frontal, parts)], "", ""])
    return {
        "title": f"CXR-LT-format label file ({', '.join(f'{r:,}' for r in sizes)} rows): reader, folds, datalist",
        "header": header, "rows": table_rows,
        "values": {"rows": sizes[-1], "frontal": frontal[-1], "train": parts[-1][0], "val": parts[-1][1],
                   "test": parts[-1][2], "seconds_once": sum(m[-1].wall_s for m in measured.values())},
    }


def stage_cache(args: argparse.Namespace) -> Result:
    from monai_cxrcml.transforms import LoadFilm

    protocol = paper_config().get_parsed_content("scoring_protocol")
    paths = _frontal_paths(args)
    counts = sorted({min(n, len(paths)) for n in args.cache_films} if args.cache_films else {len(paths)})
    meters, sizes = [], []
    for count in counts:
        cache = LoadFilm(args.image_size, _cache_dir(args), resize=protocol.resize, draft=protocol.jpeg_draft).cache
        shutil.rmtree(cache.root, ignore_errors=True)
        for path in paths[:count]:  # sources in the page cache, as for a second pass over a local disk
            Path(path).read_bytes()
        with ResourceMeter() as meter:
            report = cache.warm(paths[:count], num_workers=args.cache_workers, progress=False)
        if report.failed:
            raise RuntimeError(f"{len(report.failed)} phantom films could not be cached, e.g. {report.failed[0]}")
        meters.append(meter)
        sizes.append(_folder_bytes(cache.root, "*.film"))
    header = ["measure", *[f"{c:,} films" for c in counts], "exponent"]
    rows = [
        ["wall s", *[f"{m.wall_s:.1f}" for m in meters],
         _exponent_text(scaling_exponent(counts, [m.wall_s for m in meters]))],
        ["films/s", *[f"{c / m.wall_s:.1f}" for c, m in zip(counts, meters)], ""],
        ["CPU ms/film", *[f"{1e3 * m.cpu_s / c:.1f}" for c, m in zip(counts, meters)],
         _exponent_text(scaling_exponent(counts, [m.cpu_s for m in meters]))],
        ["on disk", *[f"{_gb(b)} ({b / c / 1e3:.0f} kB/film)" for c, b in zip(counts, sizes)], ""],
        ["peak RSS, added (GB)", *[f"{m.process_peak_gb:.2f}, {m.process_peak_gb - m.start_gb:.3f}" for m in meters],
         _memory_exponent(counts, [m.process_peak_gb - m.start_gb for m in meters])],
    ]
    last = meters[-1]
    return {
        "title": f"film cache ({args.image_size} px, {cache.dtype.name}, {protocol.name}'s decoding) built by "
                 f"FilmCache.warm with {args.cache_workers} threads",
        "header": header, "rows": rows,
        "values": {"films": counts[-1], "films_per_s": counts[-1] / last.wall_s,
                   "cpu_ms_per_film": 1e3 * last.cpu_s / counts[-1], "bytes_per_film": sizes[-1] / counts[-1],
                   "workers": args.cache_workers},
    }


def _paper_run(args: argparse.Namespace, **overrides):
    """The paper's workflow on the rehearsal's phantom and cache, with the stage's sizes."""
    checkpoint = write_chexzero_checkpoint(Path(args.work) / f"chexzero-{args.model}.pt", args.model)
    return paper_workflow(_phantom_dir(args), checkpoint, Path(args.work) / "paper-run", _cache_dir(args),
                          model_name=args.model, image_size=args.image_size, batch_size=args.batch_size,
                          num_workers=args.workers, epochs=1, **overrides)


def _worker_ms_per_film(dataset, films: int = 32, warmup: int = 4) -> float:
    """CPU ms one DataLoader worker spends on a training film: ``dataset[i]`` on one thread (as in a worker, where
    torch runs one intra-op thread), timed by this thread's CPU clock (idle BLAS threads spinning elsewhere in the
    process do not count), after ``warmup`` films."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for i in range(min(warmup, len(dataset))):
            dataset[i]
        probe = range(min(warmup, len(dataset)), min(warmup + films, len(dataset)))
        tick = time.thread_time()
        for i in probe:
            dataset[i]
        return 1e3 * (time.thread_time() - tick) / max(1, len(probe))
    finally:
        torch.set_num_threads(threads)


def stage_train(args: argparse.Namespace) -> Result:
    import torch
    from bench_train_step import operator_profiler, top_operators
    from ignite.engine import Events
    from iteration_phases import IterationPhases

    iterations = 1 + args.train_iterations + args.profile_iterations
    with ResourceMeter() as build:
        # no validation (val_interval 2 of 1 epoch): the val stage times it
        parser = _paper_run(args, val_interval=2, **{"train#trainer#epoch_length": iterations}).parser
        trainer = parser.get_parsed_content("train#trainer")
    network = parser.get_parsed_content("network")
    dataset = parser.get_parsed_content("train#dataset")
    transform_ms = _worker_ms_per_film(dataset)
    phases = IterationPhases(trainer, network, skip=1, count=args.train_iterations)
    profiler, profiling = operator_profiler("cpu"), []

    def profile(engine, start: bool) -> None:
        profiler.start() if start else profiler.stop()
        profiling.append(start)

    if args.profile_iterations:  # the last iterations, not the epoch's end (refit, handlers)
        trainer.add_event_handler(Events.ITERATION_STARTED(once=iterations - args.profile_iterations + 1),
                                  profile, True)
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=iterations), profile, False)
    try:
        with ResourceMeter() as run:
            trainer.run()
    finally:
        if profiling and profiling[-1]:
            profiler.stop()
    phases.remove_hooks()
    means = phases.mean_seconds()
    per_iteration = sum(means.values())
    parameters = sum(p.numel() for p in network.parameters())
    films = len(parser.get_parsed_content("train#datalist"))
    text = f"Where the time goes (mean of {args.train_iterations} iterations):\n\n" + phases.table_text()
    if args.profile_iterations:
        text += (f"\ntorch.profiler, top operators by self CPU time over {args.profile_iterations} iterations:\n\n"
                 f"```\n{top_operators(profiler, 'cpu')}\n```\n")
    return {
        "title": f"configs/paper.yaml training, {args.model} ({parameters / 1e6:.1f} M parameters) at "
                 f"{args.image_size} px, batch {args.batch_size}, {args.workers} workers, "
                 f"{torch.get_num_threads()} threads, {films:,} training films",
        "rows": [["build (checkpoint, data, model, optimizer)",
                  f"{build.wall_s:.1f} s, peak {build.process_peak_gb:.2f} GB"],
                 ["s/iteration", f"{per_iteration:.2f} ({args.train_iterations} iterations after 1 warm-up)"],
                 ["images/s", f"{args.batch_size / per_iteration:.2f}"],
                 ["training transforms, CPU ms/film (one worker)", f"{transform_ms:.1f}"],
                 ["CPU s of the run, with workers (wall s)", f"{run.tree_cpu_s:.1f} ({run.wall_s:.1f})"],
                 *_memory_rows(run, "training")],
        "text": text,
        "values": {"s_per_iteration": per_iteration, "batch_size": args.batch_size, "phases": means,
                   "transform_ms_per_film": transform_ms, "peak_gb": run.tree_peak_gb, "films": films},
    }


@dataclass
class RefitMeasure:
    """One refit of the refit stage: sizes, times, EM iterations and memory."""

    rows: int
    wall_s: float  # the handler's epoch-end refit: fit, responsibilities, diagnostics
    cpu_s: float
    init_cpu_s: float  # the estimator's initialisation alone (k-means), a fit with max_iter 0
    em_iterations: int
    added_gb: float  # peak memory the refit added to the process
    bank_gb: float
    clusters: int

    @property
    def cpu_per_iteration(self) -> float:
        """CPU s per EM iteration, responsibilities and diagnostics spread over the iterations."""
        return (self.cpu_s - self.init_cpu_s) / max(1, self.em_iterations)


def _refit_once(args: argparse.Namespace, n: int) -> tuple[RefitMeasure, object]:
    """One epoch-end refit of the paper's mixture by the handler on an ``[n, bank_dim]`` bank; and the estimator."""
    import gc

    import torch
    from bench_refit_share import synthetic_bank
    from ignite.engine import Engine, Events
    from monai.engines.utils import IterationEvents
    from sklearn.base import clone

    from monai_cxrcml.handlers import PseudoLabelHandler

    config = paper_config()
    mixture = config.get_parsed_content("train#mixture")
    if args.chunk_rows:
        mixture.set_params(chunk_size=args.chunk_rows)
    if args.refit_max_iter:
        mixture.set_params(max_iter=args.refit_max_iter)
    bank = torch.from_numpy(synthetic_bank(n, args.bank_dim, mixture.n_components).astype(np.float32))
    labels = draw_labels(n, np.random.default_rng(0))
    with ResourceMeter() as init:
        clone(mixture).set_params(max_iter=0).fit(bank)
    handler = PseudoLabelHandler(n, mixture, warm_start=config["cluster_warm_start"], reference_labels=labels)
    gc.collect()

    def write_batch(engine: Engine, ids: torch.Tensor) -> dict:
        engine.state.output = {"image_features": bank[ids], "sample_id": ids}
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        return engine.state.output

    engine = Engine(write_batch)
    engine.register_events(*IterationEvents)
    meter = ResourceMeter()  # around the handler's refit alone: registered before and after it
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: meter.__enter__())
    handler.attach(engine)
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: meter.__exit__(None, None, None))
    engine.run(list(torch.arange(n).split(PAPER_BATCH)), max_epochs=1)
    fit = handler.last_diagnostics
    return RefitMeasure(n, meter.wall_s, meter.cpu_s, init.cpu_s, int(fit["n_iter"]),
                        meter.process_peak_gb - meter.start_gb, bank.numel() * 4 / 1e9,
                        int(fit["clusters_used"])), mixture


def stage_refit(args: argparse.Namespace) -> Result:
    import torch

    measures = []
    for n in args.bank_rows:
        measure, mixture = _refit_once(args, n)
        measures.append(measure)
    sizes = [m.rows for m in measures]

    def row(label: str, values: list[str], exponent_of: list[float] | None = None) -> list[str]:
        return [label, *values, "" if exponent_of is None else _exponent_text(scaling_exponent(sizes, exponent_of))]

    table = [
        row("refit at epoch end, wall s (CPU s)", [f"{m.wall_s:.1f} ({m.cpu_s:.1f})" for m in measures],
            [m.cpu_s for m in measures]),
        row("of which initialisation (k-means), CPU s", [f"{m.init_cpu_s:.1f}" for m in measures],
            [m.init_cpu_s for m in measures]),
        row("EM iterations", [str(m.em_iterations) for m in measures]),
        row("CPU s per EM iteration (with responsibilities, diagnostics)",
            [f"{m.cpu_per_iteration:.2f}" for m in measures], [m.cpu_per_iteration for m in measures]),
        row("bank (float32)", [f"{m.bank_gb:.3f} GB" for m in measures]),
        row("peak memory added by the refit", [f"{m.added_gb:.3f} GB = {m.added_gb / m.bank_gb:.1f} banks"
                                               for m in measures]),
        row("clusters used", [str(m.clusters) for m in measures]),
    ]
    table[-2][-1] = _memory_exponent(sizes, [m.added_gb for m in measures])
    last = measures[-1]
    return {
        "title": f"mixture refit through PseudoLabelHandler: K = {mixture.n_components}, nu = {mixture.dof}, "
                 f"{mixture.covariance_type} covariances, at most {mixture.max_iter} EM iterations, E-step chunk rows "
                 f"{args.chunk_rows or 'automatic'}, {torch.get_num_threads()} threads",
        "header": ["measure", *[f"{n:,} x {args.bank_dim}" for n in sizes], "exponent (CPU s)"], "rows": table,
        "values": {"rows": last.rows, "wall_s": last.wall_s, "em_iterations": last.em_iterations,
                   "max_iter": mixture.max_iter, "added_gb": last.added_gb},
    }


def stage_val(args: argparse.Namespace) -> Result:
    from ignite.engine import Events

    parser = _paper_run(args).parser
    evaluator = parser.get_parsed_content("validate#evaluator")
    films = len(parser.get_parsed_content("validate#datalist"))
    marks: dict[str, float] = {}
    evaluator.add_event_handler(Events.STARTED, lambda engine: marks.update(scoring=time.perf_counter()))
    evaluator.add_event_handler(Events.COMPLETED, lambda engine: marks.update(end=time.perf_counter()))
    with ResourceMeter() as meter:
        evaluator.run()
    scoring = marks["end"] - marks["scoring"]
    return {
        "title": f"validation pass of configs/paper.yaml ({films:,} films through the cache, batch "
                 f"{2 * args.batch_size}, {args.workers} workers)",
        "rows": [["wall s (prompts encoded, films scored, AUC, best checkpoint saved)", f"{meter.wall_s:.1f}"],
                 ["films/s (after the prompts)", f"{films / scoring:.2f}"],
                 ["macro AUC (random weights: ~0.5)", f"{evaluator.state.metrics.get('macro_auc', float('nan')):.3f}"],
                 *_memory_rows(meter, "validation")],
        "values": {"films": films, "films_per_s": films / scoring, "prompts_s": meter.wall_s - scoring},
    }


def stage_extrapolate(args: argparse.Namespace) -> Result:
    results = {name: _load(args, name, same_sizes=False) for name in STAGES[:-1]}
    missing = [name for name, result in results.items() if result is None]
    if missing:
        raise RuntimeError(f"extrapolate needs the results of {missing} in {Path(args.work) / 'results'}: run those "
                           f"stages first (--stages {','.join(missing)},extrapolate).")
    table, train, cache = results["table"]["values"], results["train"]["values"], results["cache"]["values"]
    refit, val = results["refit"]["values"], results["val"]["values"]
    scale = CXRLT_ROWS / table["rows"]  # the table stage's counts, at MIMIC's size
    mimic_train, mimic_val, mimic_frontal = (round(scale * table[k]) for k in ("train", "val", "frontal"))
    s_per_image = train["s_per_iteration"] / train["batch_size"]
    cpu = {
        "training iterations": mimic_train * s_per_image,
        "mixture refit": refit["wall_s"] * mimic_train / refit["rows"],
        "validation pass": mimic_val / val["films_per_s"],
    }
    cpu_epoch = sum(cpu.values())
    gpu_train = mimic_train / GPU_IMAGES_PER_S
    gpu_val = mimic_val / (3 * GPU_IMAGES_PER_S)  # forward only: ~1/3 of a training step's work per film
    gpu_refit = REFIT_SHARE / (1 - REFIT_SHARE) * (gpu_train + gpu_val)
    gpu = {"training iterations": gpu_train, "mixture refit": gpu_refit, "validation pass": gpu_val}
    workers_needed = math.ceil(GPU_IMAGES_PER_S * train["transform_ms_per_film"] / 1e3)
    cache_cpu_s = mimic_frontal * cache["cpu_ms_per_film"] / 1e3
    rows = [
        ["training iterations", f"{mimic_train:,} films = {mimic_train // PAPER_BATCH:,} iterations of 32",
         f"{s_per_image:.2f} s/image (batch {train['batch_size']})", _duration(cpu["training iterations"]),
         f">= {GPU_IMAGES_PER_S:,.0f} images/s: {_duration(gpu_train)}",
         f"{cpu['training iterations'] / gpu_train:,.0f}x this CPU"],
        ["mixture refit (once per epoch)", f"{mimic_train:,} x 512 bank",
         f"{refit['wall_s']:.1f} s at {refit['rows']:,} rows ({refit['em_iterations']} EM iterations, at most "
         f"{refit['max_iter']}), scaled linearly", _duration(cpu["mixture refit"]),
         f"< 5% of the epoch: <= {gpu_refit:.1f} s", f"{cpu['mixture refit'] / gpu_refit:,.0f}x this CPU"],
        ["validation pass (each epoch)", f"{mimic_val:,} films", f"{val['films_per_s']:.2f} films/s",
         _duration(cpu["validation pass"]), f"~3x the training rate: {_duration(gpu_val)}",
         f"{cpu['validation pass'] / gpu_val:,.0f}x this CPU"],
        ["one epoch", "", "", _duration(cpu_epoch), _duration(sum(gpu.values())),
         f"{cpu_epoch / sum(gpu.values()):,.0f}x"],
        ["data loading (DataLoader workers)", f"{mimic_train:,} films", f"{train['transform_ms_per_film']:.1f} "
         "CPU ms/film", "hidden behind the model on this CPU", f"{GPU_IMAGES_PER_S:,.0f} films/s",
         f">= {workers_needed} workers (CPU cores) beside the GPU"],
        ["film cache (first epoch, once)", f"{mimic_frontal:,} frontal films", f"{cache['cpu_ms_per_film']:.1f} CPU "
         f"ms/film", f"{_duration(cache_cpu_s / cache['workers'])} with {cache['workers']} threads",
         f"{_duration(cache_cpu_s / 16)} on 16 cores", f"{cache['bytes_per_film'] * mimic_frontal / 1e9:.1f} GB"],
    ]
    return {
        "title": f"one MIMIC epoch (fold 0 of 5: {mimic_train:,} training, {mimic_val:,} validation films, from the "
                 f"table stage's {table['rows']:,}-row counts scaled to {CXRLT_ROWS:,}) on this CPU, and what a GPU "
                 "must deliver",
        "header": ["part", "MIMIC amount", "measured here", "this CPU", "GPU target", "GPU must deliver"],
        "rows": rows, "values": {"cpu_epoch_s": cpu_epoch, "gpu_epoch_s": sum(gpu.values()), **cpu},
    }


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s"


STAGE_FUNCTIONS: dict[str, Callable[[argparse.Namespace], Result]] = {
    "phantom": stage_phantom, "table": stage_table, "cache": stage_cache, "train": stage_train,
    "refit": stage_refit, "val": stage_val, "extrapolate": stage_extrapolate,
}


# ------------------------------------------------------------------------------------------------------ driver
def _result_path(args: argparse.Namespace, name: str) -> Path:
    return Path(args.work) / "results" / f"{name}.json"


def _params(args: argparse.Namespace, name: str) -> dict:
    return {key: getattr(args, key) for key in STAGE_PARAMS[name]}


def _load(args: argparse.Namespace, name: str, same_sizes: bool = True) -> Result | None:
    """A stage's saved result; with ``same_sizes`` only when it was measured with the current options."""
    path = _result_path(args, name)
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    return result if not same_sizes or result["params"] == _params(args, name) else None


def _run_stage(name: str, options: dict) -> None:
    """Child process: run one stage and write its result."""
    args = argparse.Namespace(**options)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = STAGE_FUNCTIONS[name](args)
    result["params"] = _params(args, name)
    path = _result_path(args, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))


def print_result(name: str, result: Result) -> None:
    """A stage's Markdown table (and its notes)."""
    print(f"\n### {name}: {result['title']}\n")
    header = result.get("header", ["measure", "value"])
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for row in result["rows"]:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    if result.get("text"):
        print("\n" + result["text"])
    sys.stdout.flush()


TINY = dict(work="runs/rehearsal-tiny", films=80, film_size=256, csv_rows=[2000, 4000], csv_patients=None,
            cache_films=[20, 40], model="cxrcml-tiny", image_size=64, batch_size=8, train_iterations=2,
            profile_iterations=1, workers=0, bank_rows=[1000, 2000], bank_dim=64)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="runs/rehearsal", help="folder of the data, caches and results")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--redo", action="store_true", help="measure again stages whose results exist")
    parser.add_argument("--tiny", action="store_true", help="every size shrunk (defaults of TINY): minutes in all")
    parser.add_argument("--films", type=int, default=2000, help="phantom films (at least)")
    parser.add_argument("--film-size", type=int, default=3000, help="phantom film height in px (width ~0.83 x)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="phantom generator processes")
    parser.add_argument("--csv-rows", type=int, nargs="+", default=[CXRLT_ROWS], help="label file rows (several: "
                        "scaling exponent)")
    parser.add_argument("--csv-patients", type=int, default=None,
                        help=f"patients of the label file (default: rows x {CXRLT_PATIENTS:,} / {CXRLT_ROWS:,})")
    parser.add_argument("--cache-films", type=int, nargs="*", default=None,
                        help="cache these many of the phantom's frontal films (several: scaling; default all)")
    parser.add_argument("--cache-workers", type=int, default=os.cpu_count(), help="FilmCache.warm threads")
    parser.add_argument("--model", default=CHEXZERO_MODEL)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=PAPER_BATCH)
    parser.add_argument("--train-iterations", type=int, default=10, help="timed training iterations (>= 1)")
    parser.add_argument("--profile-iterations", type=int, default=2, help="profiled iterations after them")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers (the bundle's num_workers)")
    parser.add_argument("--bank-rows", type=int, nargs="+", default=[181_000], help="memory bank rows (several: "
                        "scaling exponent)")
    parser.add_argument("--bank-dim", type=int, default=512)
    parser.add_argument("--chunk-rows", type=int, default=None, help="E-step chunk rows (default: the estimator's)")
    parser.add_argument("--refit-max-iter", type=int, default=None,
                        help="EM iteration cap of the refit (default: the paper config's estimator's); a low cap "
                             "times the cost per iteration at several bank sizes in less time")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    if "--tiny" in (sys.argv[1:] if argv is None else argv):
        parser.set_defaults(**TINY)
    args = parser.parse_args(argv)
    args.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in args.stages if s not in STAGES]
    if unknown:
        parser.error(f"unknown stage(s) {unknown}: choose from {','.join(STAGES)}")
    if args.train_iterations < 1:
        parser.error("--train-iterations must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k not in ("stages", "redo", "tiny")}
    print(f"command: python {' '.join(['benchmarks/rehearse_paper.py', *(sys.argv[1:] if argv is None else argv)])}")
    context = multiprocessing.get_context("spawn")
    for name in [s for s in STAGES if s in args.stages]:
        result = None if args.redo else _load(args, name)
        if result is None:
            process = context.Process(target=_run_stage, args=(name, options), name=f"rehearse-{name}")
            process.start()
            process.join()
            if process.exitcode != 0:
                sys.exit(f"stage {name} failed (exit code {process.exitcode}); its error is above.")
            result = _load(args, name)
        else:
            print(f"\n(stage {name}: results of an earlier run with the same sizes, {_result_path(args, name)}; "
                  "--redo measures again)")
        print_result(name, result)


if __name__ == "__main__":
    main()
