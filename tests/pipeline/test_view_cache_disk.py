"""pool_source: {cache: true, cache_dir}: views in memory-mapped files, reused across runs
and filled before training by ``prefill`` / ``smartloader views``."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import smartloader
from smartloader import ConfigError
from smartloader.pipeline.view_cache import ViewCache, prefill
from test_two_resolution import BS, SELECT, SMALL, Planted, two_res, wrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Keyed(Planted):
    """Planted with a cache_key; ``low_res`` fails once ``stop`` exists (set after the
    views are on disk: a run that still loads a view fails)."""

    def __init__(self, stop: str, n: int = 60, key: str = "planted-v1"):
        super().__init__(n)
        self.stop, self.key = stop, key

    def cache_key(self) -> str:
        return self.key

    def low_res(self, i: int, size: int):
        if os.path.exists(self.stop):
            raise RuntimeError("a view was loaded")
        return super().low_res(i, size)


def _ids(sl, epochs=2):
    out = []
    for e in range(epochs):
        sl.set_epoch(e)
        out.append([b[2].tolist() for b in sl])
    return out


def test_prefilled_views_are_never_loaded_and_choose_as_loaded_views(tmp_path):
    stop = str(tmp_path / "stop")
    ds = Keyed(stop)
    got = prefill(ds, SMALL, str(tmp_path / "views"), workers=2, chunk=16, progress=False)
    assert got["views"] == got["loaded"] == 60
    open(stop, "w").close()  # from now on loading a view raises
    cached = _ids(wrap(ds, two_res(SELECT, workers=2, cache=True,
                                   cache_dir=str(tmp_path / "views"))))
    os.remove(stop)
    assert cached == _ids(wrap(Keyed(stop), two_res(SELECT, workers=2)))
    again = prefill(ds, SMALL, str(tmp_path / "views"), progress=False)
    assert again["loaded"] == 0  # all there already
    folder = got["folder"]
    assert os.path.basename(folder).startswith(f"views-{SMALL}px-60-")
    meta = json.load(open(os.path.join(folder, "meta.json")))
    assert meta["key"] == "planted-v1" and meta["n"] == 60 and meta["size"] == SMALL
    assert meta["fields"][0] == [[3, SMALL, SMALL], "float32"]


def test_a_run_fills_the_folder_for_the_next(tmp_path):
    """The first run loads each view once into the files; a second run (a new process's
    view of the same folder) loads none."""
    stop = str(tmp_path / "stop")
    cfg = two_res(SELECT, workers=2, cache=True, cache_dir=str(tmp_path / "views"))
    first = _ids(wrap(Keyed(stop), cfg), epochs=1)
    cache = ViewCache.on_disk(str(tmp_path / "views"), Keyed(stop), SMALL)
    assert cache.cached == 60
    open(stop, "w").close()
    assert _ids(wrap(Keyed(stop), cfg), epochs=1) == first


def test_another_key_gets_another_folder_and_a_tampered_one_is_refused(tmp_path):
    stop = str(tmp_path / "stop")
    a = prefill(Keyed(stop), SMALL, str(tmp_path), progress=False)["folder"]
    b = prefill(Keyed(stop, key="planted-v2"), SMALL, str(tmp_path), progress=False)["folder"]
    assert a != b and sorted(os.listdir(tmp_path)) == sorted(
        [os.path.basename(a), os.path.basename(b)])
    meta_path = os.path.join(a, "meta.json")
    meta = json.load(open(meta_path))
    json.dump({**meta, "key": "something else"}, open(meta_path, "w"))
    with pytest.raises(ValueError, match="pool_source.cache_dir: .*meta.json holds views with "
                                         "key 'something else'"):
        ViewCache.on_disk(str(tmp_path), Keyed(stop), SMALL)


class Named(Planted):
    def cache_key(self):
        return "named"

    def low_res(self, i, size):
        image, label, index = super().low_res(i, size)
        return image, label, f"img{index}.jpg"  # a string field: cannot be memory-mapped


def test_a_field_that_is_not_a_tensor_is_refused_naming_the_key(tmp_path):
    cfg = two_res(SELECT, workers=1, cache=True, cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="pool_source.cache_dir: low_res's views have a "
                                         "per-sample field of type (list|tuple)"):
        list(wrap(Named(), cfg))


def test_a_dataset_without_cache_key_warns_that_only_type_and_length_name_it(tmp_path,
                                                                             caplog):
    caplog.set_level("WARNING", logger="smartloader")
    cfg = two_res(SELECT, workers=1, cache=True, cache_dir=str(tmp_path))
    assert len(list(wrap(Planted(), cfg))) == 60 // (2 * BS)
    assert "Planted has no cache_key()" in caplog.text


def test_cache_dir_needs_cache_true():
    with pytest.raises(ConfigError, match="pool_source.cache_dir: needs cache: true"):
        smartloader.load_config({"pool_source": {"type": "two_resolution",
                                                 "cache_dir": "/tmp/x"}})


def test_views_command_fills_the_folder_of_a_jpeg_folder(tmp_path):
    """``smartloader views ROOT --size S --cache-dir DIR`` on real JPEG files; the run that
    then reads the folder loads no view and chooses as an uncached run does."""
    from PIL import Image
    from smartloader.sources.jpeg_folder import JPEGFolder
    g = torch.Generator().manual_seed(0)
    for i in range(24):
        d = tmp_path / "jpegs" / f"c{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        a = (torch.rand(40 + i, 48, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(a).save(d / f"{i:03d}.jpg", quality=90)
    env = {**os.environ, "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, "-m", "smartloader", "views", str(tmp_path / "jpegs"),
                          "--size", "16", "--cache-dir", str(tmp_path / "views"),
                          "--workers", "2"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "24 views at 16 px: 24 loaded" in out.stdout
    ds = JPEGFolder(tmp_path / "jpegs")
    cache = ViewCache.on_disk(str(tmp_path / "views"), ds, 16)
    assert cache.cached == 24
    assert torch.equal(cache.take(torch.arange(24))[0],
                       torch.stack([ds.low_res(i, 16)[0] for i in range(24)]))
    os.utime(ds.samples[0][0], ns=(1, 1))  # a rewritten file: another key, another folder
    assert ViewCache.on_disk(str(tmp_path / "views"), JPEGFolder(tmp_path / "jpegs"),
                             16).cached == 0


class RandomViews(Planted):
    """A low_res that draws noise from the global RNG: its views must not be cached."""

    def cache_key(self):
        return "random-views"

    def low_res(self, i, size):
        image, label, index = super().low_res(i, size)
        return image + torch.rand(1), label, index


def test_a_low_res_that_draws_random_numbers_is_refused_by_the_cache(tmp_path):
    message = r"pool_source.cache: low_res\(\d+, 8\) returned different views on two loads"
    with pytest.raises(ValueError, match=message):
        list(wrap(RandomViews(), two_res(SELECT, workers=2, cache=True)))
    with pytest.raises(ValueError, match=message):
        prefill(RandomViews(), SMALL, str(tmp_path), progress=False)
    assert len(list(wrap(RandomViews(), two_res(SELECT, workers=2)))) == 5  # uncached: fine
