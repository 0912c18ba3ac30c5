"""FilmCache: hits, invalidation, corruption, atomic parallel writes, warm-up, and LoadFilmd through the cache."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from _films import asymmetric_film, write_pil

from monai_cxrcml.data.cache import FilmCache
from monai_cxrcml.data.films import FilmReadError, load_film
from monai_cxrcml.transforms import LoadFilmd


@pytest.fixture
def film_path(tmp_path):
    return write_pil(tmp_path / "film.jpg", asymmetric_film(), "L", quality=95)


def _entries(cache: FilmCache) -> list:
    return sorted(p for p in cache.root.rglob("*") if p.is_file() and p.name != "settings.json")


def test_hit_returns_identical_array_close_to_uncached(tmp_path, film_path):
    cache = FilmCache(tmp_path / "cache", 48)
    first = cache.get(film_path)
    second = cache.get(film_path)
    assert (cache.misses, cache.hits) == (1, 1)
    assert np.array_equal(first, second) and first.dtype == np.float32 and first.shape == (48, 32)
    np.testing.assert_allclose(first, load_film(film_path, 48), atol=1 / 65535)
    assert len(_entries(cache)) == 1 and (cache.root / "settings.json").is_file()


def test_uint8_entries_are_half_the_size(tmp_path, film_path):
    small = FilmCache(tmp_path / "cache", 48, dtype="uint8")
    np.testing.assert_allclose(small.get(film_path), load_film(film_path, 48), atol=0.5 / 255 + 1e-6)
    large = FilmCache(tmp_path / "cache", 48)
    large.get(film_path)
    assert small.root != large.root
    assert _entries(small)[0].stat().st_size < 0.6 * _entries(large)[0].stat().st_size


def test_settings_that_change_pixels_get_their_own_entries(tmp_path, film_path):
    roots = {
        FilmCache(tmp_path, 48).root,
        FilmCache(tmp_path, 64).root,
        FilmCache(tmp_path, 48, intensity="minmax").root,
        FilmCache(tmp_path, 48, draft=False).root,
    }
    assert len(roots) == 4


def test_invalidated_when_the_source_changes(tmp_path, film_path):
    cache = FilmCache(tmp_path / "cache", 48)
    before = cache.get(film_path)
    write_pil(film_path, 1 - asymmetric_film(), "L", quality=95)
    st = film_path.stat()
    os.utime(film_path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    after = cache.get(film_path)
    assert cache.misses == 2
    np.testing.assert_allclose(after, 1 - before, atol=0.03)
    assert len(_entries(cache)) == 1  # rebuilt in place, no orphan


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip a pixel byte", "empty"])
def test_corrupt_entries_are_detected_and_rebuilt(tmp_path, film_path, damage, caplog):
    cache = FilmCache(tmp_path / "cache", 48)
    good = cache.get(film_path)
    entry = cache.entry_path(film_path)
    data = bytearray(entry.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(os.urandom(len(data)))
    elif damage == "flip a pixel byte":
        data[-100] ^= 0xFF
    else:
        data = bytearray()
    entry.write_bytes(bytes(data))
    assert np.array_equal(cache.get(film_path), good)
    assert cache.misses == 2 and "corrupt entry" in caplog.text
    assert np.array_equal(cache.get(film_path), good) and cache.hits == 1


def test_parallel_builds_of_one_film_are_atomic(tmp_path, film_path):
    cache = FilmCache(tmp_path / "cache", 48)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: cache.get(film_path), range(16)))
    assert all(np.array_equal(r, results[0]) for r in results)
    assert [p.name for p in _entries(cache)] == [cache.entry_path(film_path).name]  # no temporary files left


def test_unreadable_source_raises_and_is_not_cached(tmp_path, film_path):
    cache = FilmCache(tmp_path / "cache", 48)
    with pytest.raises(FilmReadError, match="does not exist"):
        cache.get(tmp_path / "missing.jpg")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"nope" * 20)
    with pytest.raises(FilmReadError, match="broken.jpg"):
        cache.get(broken)
    assert _entries(cache) == []


def test_unwritable_cache_degrades_to_uncached_reads(tmp_path, film_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the cache folder should be")
    cache = FilmCache(blocker, 48)
    with pytest.warns(UserWarning, match="cannot be written"):
        film = cache.get(film_path)
    np.testing.assert_allclose(film, load_film(film_path, 48), atol=1 / 65535)
    np.testing.assert_allclose(cache.get(film_path), film)  # no second warning, still served


def test_warm_builds_once_and_reports_failures(tmp_path):
    paths = [write_pil(tmp_path / f"f{i}.png", asymmetric_film() * (i + 1) / 4, "L") for i in range(3)]
    (tmp_path / "bad.png").write_bytes(b"")
    cache = FilmCache(tmp_path / "cache", 32)
    report = cache.warm([*paths, tmp_path / "bad.png"], num_workers=2, progress=False)
    assert (report.total, report.built, report.cached) == (4, 3, 0)
    assert report.failed == [(str(tmp_path / "bad.png"), report.failed[0][1])] and "empty" in report.failed[0][1]
    again = cache.warm(paths, num_workers=2, progress=False)
    assert (again.built, again.cached, again.failed) == (0, 3, [])
    assert all(cache.is_cached(p) for p in paths)


def test_load_filmd_through_the_cache_matches_direct_reads(tmp_path, film_path):
    direct = LoadFilmd("image", 48)({"image": film_path})["image"]
    cached_loader = LoadFilmd("image", 48, cache_dir=tmp_path / "cache")
    first = cached_loader({"image": film_path})["image"]
    second = cached_loader({"image": film_path})["image"]
    assert torch.equal(first, second) and first.shape == (1, 48, 48)
    torch.testing.assert_close(first.as_tensor(), direct.as_tensor(), atol=1 / 65535, rtol=0)
    assert cached_loader.loader.cache.hits == 1
