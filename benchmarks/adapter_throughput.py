"""Images/s through the FFCV and DALI adapters, alone and wrapped in SmartLoader (CPU).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/adapter_throughput.py [--n 384]

Writes ``--n`` random 64x64 JPEGs (and a .beton of the same images, jpg mode), then runs
each loader for ``--epochs`` epochs after one warm-up epoch (numba/DALI start-up excluded).
Loaders output 32x32 batches of 32; SmartLoader runs ranked
selection with pool_factor 4 scoring a tiny conv net, so it consumes all loader batches and
yields a quarter of them. images/s counts *loaded* images (what the loader delivered), and
yielded images/s what the training loop receives.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import nvidia.dali  # noqa: F401  (import before ffcv/numba, see tests/adapters/test_adapter_wrap.py)
import numpy as np
import torch
from PIL import Image

import smartloader
from smartloader.adapters.dali import DALIAdapter, batches_per_epoch, build_classification_pipeline
from smartloader.adapters.ffcv import FFCVAdapter, write_beton


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(),
                                       torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                       torch.nn.Linear(8, 10))

    def forward(self, x):
        return self.net(x.float() / 255 if x.dtype == torch.uint8 else x)


class Data:
    def __init__(self, n):
        rng = np.random.default_rng(0)
        self.images = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
        self.labels = rng.integers(0, 10, n)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


def run(loader, epochs):
    for _ in loader:                          # warm-up epoch
        pass
    yielded = 0
    t = time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            yielded += len(batch["index"])
    return time.perf_counter() - t, yielded


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=384)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = Data(args.n)
    cfg = {"pool_factor": 4, "phases": [{"name": "s", "selection": "ranked", "beta": 1.0}]}
    rows = []
    with tempfile.TemporaryDirectory() as root:
        files = []
        for i in range(args.n):
            path = os.path.join(root, f"{i:04d}.jpg")
            Image.fromarray(data.images[i]).save(path, quality=90)
            files.append(path)
        beton = os.path.join(root, "b.beton")
        write_beton(beton, data, write_mode="jpg")

        def ffcv():
            return FFCVAdapter.from_beton(beton, batch_size=32, resolution=32, num_workers=1)

        def dali():
            pipe = build_classification_pipeline(files, list(data.labels), 32,
                                                 size_fn=lambda b, e: 32, num_threads=1)
            return DALIAdapter(pipe, labels=list(data.labels))

        for name, make in (("ffcv", ffcv), ("dali", dali)):
            for wrapped in (False, True):
                adapter = make()
                loader = smartloader.wrap(adapter, Tiny(), cfg) if wrapped else adapter
                secs, yielded = run(loader, args.epochs)
                loaded = args.n * args.epochs
                rows.append((name, "SmartLoader" if wrapped else "adapter alone",
                             loaded / secs, yielded / secs))
                if hasattr(adapter, "close"):
                    adapter.close()
    print(f"{args.n} JPEGs 64x64 -> 32x32, batch 32, {args.epochs} epochs after 1 warm-up, "
          f"torch threads 1")
    print("| loader | mode | loaded images/s | yielded images/s |")
    print("|---|---|---|---|")
    for name, mode, loaded, yielded in rows:
        print(f"| {name} | {mode} | {loaded:,.0f} | {yielded:,.0f} |")


if __name__ == "__main__":
    main()
