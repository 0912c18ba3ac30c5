"""On-disk preprocessing cache: each film is decoded and resized once, then read back in microseconds.

:class:`FilmCache` stores the resized film (longest side = ``image_size``, before square padding) as one small file
per film and returns what the film's loader returns, up to the storage quantisation (``uint16``: 1/65535,
``uint8``: 1/255; ``docs/design.md``, "Film cache").

Layout and validity
    ``cache_dir/<image_size>px-<dtype>-<settings hash>/<k[:2]>/<k[2:]>.film`` where ``k`` hashes the film's absolute
    path; every setting that changes pixels (image size, dtype, draft, intensity, format version) is in the folder
    name, written out in its ``settings.json``. Each entry holds a 48-byte header (magic, dtype, height, width,
    the source's size and mtime in ns, CRC-32 of the pixels) and the raw pixels. An entry whose source size or mtime
    differs is stale and rebuilt in place (no orphans); a truncated or corrupt entry (bad magic, length or CRC) is
    rebuilt with a log line. Writes are published with ``os.replace`` (no worker sees half-written entries); a
    folder that cannot be written (read-only, disk full) degrades to uncached reads with one warning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import struct
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np

from monai_cxrcml.data.chexzero_films import load_film_chexzero
from monai_cxrcml.data.films import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIZE,
    FilmReadError,
    Intensity,
    check_film_file,
    load_film,
)

__all__ = ["CACHE_FORMAT_VERSION", "FILM_LOADERS", "FilmCache", "WarmReport"]

logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
"""Bumped whenever reading or resizing changes pixels, so old entries are never served."""

FILM_LOADERS: dict[str, Callable[..., np.ndarray]] = {"longest_side": load_film, "chexzero": load_film_chexzero}
"""How a film becomes its array, by ``resize`` name: :func:`~monai_cxrcml.data.films.load_film` (longest side to the
image size, aspect kept) or :func:`~monai_cxrcml.data.chexzero_films.load_film_chexzero` (CheXzero's square)."""

_MAGIC = b"CXRFILM1"
_HEADER = struct.Struct("<8sB3xIIQqI12x")  # magic, dtype code, height, width, src size, src mtime_ns, crc32
_DTYPES = {1: np.dtype(np.uint8), 2: np.dtype(np.uint16)}
_DTYPE_CODES = {dtype.name: code for code, dtype in _DTYPES.items()}


@dataclasses.dataclass
class WarmReport:
    """Outcome of :meth:`FilmCache.warm`: counts and the films that could not be read (path, reason)."""

    total: int = 0
    cached: int = 0
    built: int = 0
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)


class FilmCache:
    """Decode and resize each film once; later reads come from a compact on-disk entry.

    Parameters
    ----------
    cache_dir
        Root folder (created on first write). Several settings can share it.
    image_size
        Longest side of the cached films (aspect kept, no padding); with ``resize="chexzero"`` the side of
        CheXzero's square (320).
    draft, intensity, max_pixels, min_size
        Passed to :func:`~monai_cxrcml.data.films.load_film` (``resize="chexzero"`` takes only the last two).
    resize
        A key of :data:`FILM_LOADERS`.
    dtype
        Storage of each entry: ``"uint16"`` (default; within 1/65535 of the uncached film) or ``"uint8"`` (half the
        disk, within 1/255).

    Examples
    --------
    >>> cache = FilmCache("/scratch/cxr-cache", image_size=224)
    >>> report = cache.warm(paths, num_workers=8)      # optional: fill up front, with progress
    >>> film = cache.get(paths[0])                      # float32 [h, w], max(h, w) == 224
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        image_size: int,
        *,
        draft: bool = True,
        intensity: Intensity = "auto",
        dtype: Literal["uint8", "uint16"] = "uint16",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        min_size: int = DEFAULT_MIN_SIZE,
        resize: str = "longest_side",
    ) -> None:
        if resize not in FILM_LOADERS:
            raise ValueError(f"resize={resize!r}; expected one of {tuple(FILM_LOADERS)}")
        if int(image_size) < 1:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        if dtype not in _DTYPE_CODES:
            raise ValueError(f"dtype={dtype!r}; expected 'uint8' or 'uint16'")
        if intensity not in ("auto", "minmax"):
            raise ValueError(f"intensity={intensity!r}; expected 'auto' or 'minmax'")
        self.image_size = int(image_size)
        self.dtype = np.dtype(dtype)
        self.resize = resize
        if resize == "chexzero":
            self.load_kwargs = {"max_pixels": max_pixels, "min_size": min_size}
            self.settings = {"format_version": CACHE_FORMAT_VERSION, "image_size": self.image_size,
                             "dtype": self.dtype.name, "resize": resize}
        else:  # the settings (and so the folder) of caches written before resize existed
            self.load_kwargs = {
                "draft": bool(draft), "intensity": intensity, "max_pixels": max_pixels, "min_size": min_size
            }
            self.settings = {
                "format_version": CACHE_FORMAT_VERSION,
                "image_size": self.image_size,
                "dtype": self.dtype.name,
                "draft": bool(draft),
                "intensity": intensity,
            }
        digest = hashlib.sha1(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:10]
        self.root = Path(cache_dir).expanduser().absolute() / f"{self.image_size}px-{self.dtype.name}-{digest}"
        self._root_prefix = f"{self.root}{os.sep}"
        self._scale = np.float32(np.iinfo(self.dtype).max)
        self._writable = True
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"FilmCache({str(self.root)!r})"

    def entry_path(self, path: str | os.PathLike) -> Path:
        """Where the entry of the film ``path`` lives (whether or not it exists yet)."""
        key = hashlib.sha1(os.path.abspath(os.fspath(path)).encode("utf-8", "surrogateescape")).hexdigest()
        return Path(f"{self._root_prefix}{key[:2]}{os.sep}{key[2:]}.film")

    def get(self, path: str | os.PathLike) -> np.ndarray:
        """The resized film, from the cache when a valid entry exists, else decoded and stored.

        Returns
        -------
        np.ndarray
            float32 ``[h, w]`` in ``[0, 1]`` with ``max(h, w) == image_size``.

        Raises
        ------
        FilmReadError
            When the source film cannot be read (failures are not cached: a fixed file is read next time).
        """
        source = check_film_file(path)
        entry = self.entry_path(path)
        stored = self._read_entry(entry, source)
        if stored is not None:
            self.hits += 1
        else:
            self.misses += 1
            stored = self._build(path, entry, source)
        return stored.astype(np.float32) / self._scale

    def is_cached(self, path: str | os.PathLike) -> bool:
        """Whether a valid entry for the current version of ``path`` exists."""
        try:
            source = check_film_file(path)
        except FilmReadError:
            return False
        return self._read_entry(self.entry_path(path), source) is not None

    def warm(
        self, paths: Iterable[str | os.PathLike], num_workers: int | None = None, progress: bool = True
    ) -> WarmReport:
        """Build the entries of ``paths`` up front, in threads (decoding releases the GIL).

        Parameters
        ----------
        paths
            Films to cache; unreadable ones are reported, not raised.
        num_workers
            Threads; default ``min(8, os.cpu_count())``.
        progress
            Show a tqdm progress bar when tqdm is installed.
        """
        paths = [os.fspath(p) for p in paths]
        report = WarmReport(total=len(paths))
        workers = max(1, num_workers if num_workers is not None else min(8, os.cpu_count() or 1))

        def warm_one(path: str) -> tuple[str, str | None]:
            try:
                if self.is_cached(path):
                    return path, None
                self.get(path)
                return path, ""
            except FilmReadError as e:
                return path, e.reason

        bar = _progress_bar(len(paths), f"caching films in {self.root}") if progress else None
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for path, outcome in pool.map(warm_one, paths):
                if outcome is None:
                    report.cached += 1
                elif outcome == "":
                    report.built += 1
                else:
                    report.failed.append((path, outcome))
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        for path, reason in report.failed:
            logger.warning("film cache: cannot read film '%s': %s", path, reason)
        logger.info(
            "film cache %s: %d films, %d already cached, %d built, %d unreadable",
            self.root, report.total, report.cached, report.built, len(report.failed),
        )
        return report

    # ------------------------------------------------------------------------------------------------------------

    def _read_entry(self, entry: Path, source: os.stat_result) -> np.ndarray | None:
        """The stored pixels ``[h, w]`` of a valid, current entry; None when missing, stale or corrupt."""
        try:
            with open(entry, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            logger.warning("film cache: cannot read entry %s (%s); decoding the film instead", entry, e)
            return None
        header = _HEADER.size
        if len(data) >= header:
            magic, code, height, width, size, mtime_ns, crc = _HEADER.unpack_from(data)
            dtype = _DTYPES.get(code)
            valid = (
                magic == _MAGIC
                and dtype == self.dtype
                and max(height, width) == self.image_size
                and len(data) == header + height * width * dtype.itemsize
                and zlib.crc32(memoryview(data)[header:]) == crc
            )
        else:
            valid = False
        if not valid:
            logger.warning("film cache: corrupt entry %s; rebuilding it", entry)
            return None
        if size != source.st_size or mtime_ns != source.st_mtime_ns:
            return None
        return np.frombuffer(data, dtype=self.dtype, offset=header).reshape(height, width)

    def _build(self, path, entry: Path, source: os.stat_result) -> np.ndarray:
        film = FILM_LOADERS[self.resize](path, self.image_size, **self.load_kwargs)
        stored = np.rint(film * self._scale).astype(self.dtype)
        if self._writable:
            try:
                self._write_entry(entry, stored, source)
            except OSError as e:
                self._writable = False
                warnings.warn(
                    f"film cache {self.root} cannot be written ({e}); reading films uncached from now on. "
                    "Free disk space or point cache_dir at a writable folder.",
                    stacklevel=3,
                )
        return stored

    def _write_entry(self, entry: Path, stored: np.ndarray, source: os.stat_result) -> None:
        if not self.root.is_dir():
            self.root.mkdir(parents=True, exist_ok=True)
            _atomic_write(self.root / "settings.json", json.dumps(self.settings, indent=2).encode())
        entry.parent.mkdir(exist_ok=True)
        pixels = np.ascontiguousarray(stored).tobytes()
        header = _HEADER.pack(
            _MAGIC,
            _DTYPE_CODES[self.dtype.name],
            stored.shape[0],
            stored.shape[1],
            source.st_size,
            source.st_mtime_ns,
            zlib.crc32(pixels),
        )
        _atomic_write(entry, header + pixels)


def _atomic_write(target: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``target`` and publish it with ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _progress_bar(total: int, description: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=description, unit="film")
