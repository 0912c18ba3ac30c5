"""Images/s of raw film decoding + resizing against the on-disk FilmCache.

Measures, on one thread (as in one DataLoader worker), for every film of a folder at ``--image-size``:

* MONAI stock: ``LoadImage(reader="PILReader")`` + ``Resize(size_mode="longest", mode="area")`` (the peer);
* raw, full decode: ``load_film(draft=False)`` (Pillow full decode, antialiased bicubic resize);
* raw, draft decode: ``load_film(draft=True)`` (libjpeg DCT-domain downscaling first);
* cache: ``FilmCache.get`` from a warm cache, and ``LoadFilmd(cache_dir=...)`` (the full transform: padded
  ``[1, S, S]`` MetaTensor).

Without ``--data-dir`` it writes a phantom data set of ``--patients`` patients with films of ``--film-size`` px
(8-bit JPEG portrait films, as MIMIC-CXR-JPG's ~2500 x 3000) into a temporary folder and times all its films.
Prints a markdown table and the command line.

Usage::

    python benchmarks/bench_film_cache.py --patients 60 --film-size 2000 --image-size 224
    python benchmarks/bench_film_cache.py --data-dir /data/mimic-cxr-jpg/files/p10 --max-films 500
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image

from monai_cxrcml.data.cache import FilmCache
from monai_cxrcml.data.films import load_film
from monai_cxrcml.phantom import make_phantom
from monai_cxrcml.transforms import LoadFilmd

FILM_SUFFIXES = (".jpg", ".jpeg", ".png", ".dcm", ".nii", ".nii.gz")


def make_films(out_dir: Path, patients: int, film_size: int, seed: int = 0) -> list[Path]:
    """Phantom films (MIMIC layout, 8-bit JPEG, longest side ``film_size``) of ``patients`` patients."""
    root = make_phantom(out_dir / "phantom", patients=patients, size=film_size, seed=seed)
    return sorted((root / "files").rglob("*.jpg"))


def find_films(data_dir: Path, limit: int | None) -> list[Path]:
    paths = sorted(p for p in data_dir.rglob("*") if p.name.lower().endswith(FILM_SUFFIXES))
    return paths[:limit] if limit else paths


def images_per_second(fn: Callable[[Path], object], paths: Sequence[Path], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for path in paths:
            fn(path)
        best = min(best, time.perf_counter() - start)
    return len(paths) / best


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, help="existing films (JPEG/PNG/DICOM/NIfTI); default: a phantom")
    parser.add_argument("--max-films", type=int, default=None, help="use at most this many films of --data-dir")
    parser.add_argument("--patients", type=int, default=60, help="patients of the phantom drawn without --data-dir")
    parser.add_argument("--film-size", type=int, default=2000, help="longest side of the phantom films")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--cache-dir", type=Path, help="default: a temporary folder")
    parser.add_argument("--warm-workers", type=int, default=None, help="threads for FilmCache.warm")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many passes per method")
    parser.add_argument("--skip-monai", action="store_true", help="do not time MONAI's LoadImage + Resize")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one DataLoader worker

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        if args.data_dir:
            paths = find_films(args.data_dir, args.max_films)
            if not paths:
                sys.exit(f"no films ({', '.join(FILM_SUFFIXES)}) under {args.data_dir}")
        else:
            start = time.perf_counter()
            paths = make_films(scratch, args.patients, args.film_size)
            print(f"wrote {len(paths)} phantom films in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        for path in paths:  # sources in the page cache for every method alike
            path.read_bytes()
        size = args.image_size
        cache = FilmCache(args.cache_dir or scratch / "cache", size)
        start = time.perf_counter()
        report = cache.warm(paths, num_workers=args.warm_workers, progress=False)
        warm_s = time.perf_counter() - start
        if report.failed:
            print(f"{len(report.failed)} unreadable films skipped, e.g. {report.failed[0]}", file=sys.stderr)
            bad = {p for p, _ in report.failed}
            paths = [p for p in paths if str(p) not in bad]
        loader = LoadFilmd("image", size, cache_dir=cache.root.parent)

        methods: list[tuple[str, Callable[[Path], object]]] = []
        if not args.skip_monai:
            from monai.transforms import Compose, LoadImage, Resize

            pil_only = all(p.suffix.lower() in (".jpg", ".jpeg", ".png") for p in paths)
            reader = "PILReader" if pil_only else None
            stock = Compose([LoadImage(image_only=True, ensure_channel_first=True, reader=reader),
                             Resize(size, size_mode="longest", mode="area")])
            methods.append((f"MONAI LoadImage({reader or 'auto'}) + Resize(longest, area)", stock))
        methods += [
            ("raw: full decode + resize (`load_film(draft=False)`)", lambda p: load_film(p, size, draft=False)),
            ("raw: draft decode + resize (`load_film`)", lambda p: load_film(p, size)),
            ("warm cache: `FilmCache.get`", cache.get),
            ("warm cache: `LoadFilmd(cache_dir=...)` -> [1, S, S]", lambda p: loader({"image": p})),
        ]
        rates = {name: images_per_second(fn, paths, args.repeats) for name, fn in methods}
        width, height = Image.open(paths[0]).size if paths[0].suffix == ".jpg" else (0, 0)

    source = f"from {args.data_dir}" if args.data_dir else f"phantom 8-bit JPEG, first {width}x{height} px"
    reference = rates["raw: full decode + resize (`load_film(draft=False)`)"]
    print(f"\n{len(paths)} films ({source}), image_size {size}, 1 thread; cache built by warm() in {warm_s:.1f} s"
          f" ({len(paths) / warm_s:.1f} films/s, {report.built} built)\n")
    print("| method | images/s | ms/image | vs raw full decode |")
    print("|---|---:|---:|---:|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.1f} | {1e3 / rate:.3f} | {rate / reference:.1f}x |")
    print(f"\ncommand: python {shlex.join(sys.argv)}")


if __name__ == "__main__":
    main()
