"""Yielded images/s on a JPEG folder: uniform pass-through, plain selection, two-resolution.

Selection draws a pool of ``pool_factor`` (2) batches per trained batch. Wrapping a
``DataLoader`` as it is, the workers decode and augment every pool sample at full size, so a
selection phase yields about half the images/s of a uniform one when decoding is the
bottleneck. With ``pool_source: {type: two_resolution}`` the pool is scored on views decoded
at 1/2..1/8 scale (``JPEGFolder.low_res``: libjpeg's scaled decoding) and only the chosen
samples are decoded at full size.

Each mode yields ``--steps`` batches of ``--batch-size`` after ``--warmup`` batches, from a
``DataLoader(JPEGFolder(root, transform), batch_size, shuffle=True, num_workers=W)``:

* ``uniform``: one uniform phase (batches pass through);
* ``plain_selection``: one selection phase over the wrapped loader, scored at ``--size`` px
  (``score_resolution``: the 224-px batches are resized for the scoring forward);
* ``two_resolution``: the same phase with ``pool_source: {type: two_resolution, size,
  workers: W}``;
* ``two_resolution_cached``: the same with ``cache: true``; one whole first epoch is timed
  (``..._first_epoch_ips``: every view loads once), then ``--steps`` batches of the second
  epoch after ``--warmup`` (``two_resolution_cached_ips``: only the chosen samples load);
* ``two_resolution_prefilled``: ``cache: true, cache_dir`` with the views put on disk once
  before the passes (``smartloader.pipeline.view_cache.prefill`` into an emptied
  ``--cache-dir``, timed apart: ``prefill``): the first epoch loads only the chosen samples;

each once with the loader alone (the scoring forward is part of selection) and once with a
small model's SGD step per batch. The full-size transform is a random crop resized to
``--full`` px, as a float tensor in [0, 1].

    python benchmarks/make_jpeg_folder.py /tmp/jpeg_folder --images 6000
    OMP_NUM_THREADS=1 python benchmarks/two_resolution.py /tmp/jpeg_folder

Every mode runs ``--repeats`` times (3), the modes interleaved within each pass; the figures
are medians over the passes (``runs``: every pass's figure). Writes
``benchmarks/results/two_resolution.json`` after each mode.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import smartloader  # noqa: E402
from smartloader.sources.jpeg_folder import JPEGFolder  # noqa: E402

MODES = ("uniform", "plain_selection", "two_resolution", "two_resolution_cached",
         "two_resolution_prefilled")


class RandomCrop:
    """A random crop (40-100% of the area, aspect 3/4-4/3) resized to ``size`` px, as a
    float ``[3, size, size]`` tensor in [0, 1]; draws from Python's ``random`` (seeded per
    sample in SmartLoader's workers, per worker in a DataLoader's)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image):
        from PIL import Image
        w, h = image.size
        area = w * h * random.uniform(0.4, 1.0)
        ratio = random.uniform(3 / 4, 4 / 3)
        cw = min(w, int(round((area * ratio) ** 0.5)))
        ch = min(h, int(round((area / ratio) ** 0.5)))
        x, y = random.randint(0, w - cw), random.randint(0, h - ch)
        out = image.resize((self.size, self.size), Image.Resampling.BILINEAR,
                           box=(x, y, x + cw, y + ch))
        a = torch.from_numpy(np.asarray(out).copy()).permute(2, 0, 1)
        return a.float().div_(255)


def small_cnn(classes: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 5, stride=4, padding=2), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, classes))


def config(mode: str, args) -> dict:
    if mode == "uniform":
        return {"phases": [{"name": "uniform", "selection": "uniform"}]}
    cfg = {"phases": [{"name": "select", "selection": "ranked", "beta": 1.0}],
           "pool_factor": 2}
    if mode == "plain_selection":
        cfg["score_resolution"] = args.size
    else:
        cfg["pool_source"] = {"type": "two_resolution", "size": args.size,
                              "workers": args.workers, "cache": mode != "two_resolution"}
        if mode == "two_resolution_prefilled":
            cfg["pool_source"]["cache_dir"] = args.cache_dir
    return cfg


def measure(mode: str, with_model: bool, args, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    ds = JPEGFolder(args.root, transform=RandomCrop(args.full))
    model = small_cnn(len(getattr(ds, "classes", range(10))))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    dl = DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                    persistent_workers=True)
    loader = smartloader.wrap(dl, model, {**config(mode, args), "seed": seed})

    def batches():
        epoch = 0
        while True:  # epochs one after another, as a training loop
            loader.set_epoch(epoch)
            yield from loader
            epoch += 1

    def train(images, labels):
        if with_model:
            loss = F.cross_entropy(model(images), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()

    it = batches()
    first = None
    if mode == "two_resolution_cached":  # the first epoch fills the cache: timed apart
        t0, m = time.perf_counter(), 0
        for _ in range(len(loader)):
            images, labels, _ = next(it)
            m += images.shape[0]
            train(images, labels)
        first = m / (time.perf_counter() - t0)
    n = 0
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            t0 = time.perf_counter()
        images, labels, _ = next(it)
        if i >= args.warmup:
            n += images.shape[0]
        train(images, labels)
    seconds = time.perf_counter() - t0
    it.close()
    del it, loader, dl
    gc.collect()  # the DataLoader's iterator must not live on in the next mode's forks
    return {"images_per_s": n / seconds, "images": n, "seconds": seconds,
            "first_epoch_images_per_s": first}


def _read_all(root: str) -> None:
    """Read every file once, so that no mode pays for the first reads from disk."""
    for base, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(base, name), "rb") as fh:
                fh.read()


def _summarise(result: dict, runs: dict) -> None:
    """The median of each key's runs, and each mode's ratio to uniform's median."""
    for key, values in runs.items():
        result[key] = round(float(np.median(values)), 1)
    for suffix in ("", "_with_model"):
        u = result.get(f"uniform_ips{suffix}")
        for m in MODES[1:] + ("two_resolution_cached_first_epoch",):
            v = result.get(f"{m}_ips{suffix}")
            if u and v:
                result[f"{m}_vs_uniform{suffix}"] = round(v / u, 3)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="a JPEG folder (benchmarks/make_jpeg_folder.py)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30, help="timed batches per mode")
    ap.add_argument("--warmup", type=int, default=4, help="untimed batches first")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", type=int, default=64, help="scoring size (px)")
    ap.add_argument("--full", type=int, default=224, help="training size (px)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="passes over all modes; the figures are medians over them")
    ap.add_argument("--cache-dir", default="/tmp/smartloader-bench-views",
                    help="the view cache on disk of the prefilled mode")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "results", "two_resolution.json"))
    args = ap.parse_args(argv)
    images = sum(len(f) for _, _, f in os.walk(args.root))
    result: dict = {"config": {
        "images_in_folder": images, "batch_size": args.batch_size, "steps": args.steps,
        "warmup": args.warmup, "repeats": args.repeats, "workers": args.workers,
        "score_size": args.size,
        "train_size": args.full, "pool_factor": 2, "torch": torch.__version__,
        "cpus": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "machine": platform.processor() or platform.machine(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2)}}
    from smartloader.pipeline.view_cache import prefill
    _read_all(args.root)
    shutil.rmtree(args.cache_dir, ignore_errors=True)  # the prefill is timed from empty
    got = prefill(JPEGFolder(args.root), args.size, args.cache_dir, workers=args.workers,
                  progress=False)
    result["prefill"] = {"views": got["views"], "loaded": got["loaded"],
                         "seconds": round(got["seconds"], 1),
                         "views_per_s": round(got["loaded"] / max(got["seconds"], 1e-9), 1)}
    print(f"prefill: {got['loaded']} views in {got['seconds']:.1f} s", flush=True)
    runs: dict[str, list[float]] = {}
    result["runs"] = runs
    for repeat in range(args.repeats):  # modes interleaved, so drift hits all alike
        for with_model in (False, True):
            for mode in MODES:
                key = f"{mode}_ips" + ("_with_model" if with_model else "")
                r = measure(mode, with_model, args, seed=repeat)
                runs.setdefault(key, []).append(round(r["images_per_s"], 1))
                if r["first_epoch_images_per_s"] is not None:
                    runs.setdefault(key.replace("_ips", "_first_epoch_ips"), []).append(
                        round(r["first_epoch_images_per_s"], 1))
                print(f"[{repeat + 1}/{args.repeats}] {key:40s} {r['images_per_s']:8.1f} "
                      f"images/s ({r['images']} images, {r['seconds']:.1f} s)", flush=True)
                _summarise(result, runs)
                os.makedirs(os.path.dirname(args.out), exist_ok=True)
                with open(args.out, "w") as fh:
                    json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
