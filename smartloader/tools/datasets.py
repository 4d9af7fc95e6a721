"""Small in-memory image datasets for the demo and the benchmarks (no downloads).

- :func:`synthetic_images`: procedurally generated, class = grating orientation; a fifth of
  the samples are noisy, low-contrast *hard* ones (the kind selection should find).
- :func:`load_image_dir`: MNIST/Fashion-MNIST IDX files (``train-images-idx3-ubyte[.gz]``)
  or CIFAR-10 binary batches (``data_batch_1..5.bin``; train on 1-4, validate on 5).

All return ``(train_x uint8 [N,C,H,W], train_y int64, test_x, test_y)``.
"""
from __future__ import annotations

import gzip
import math
import os
from typing import Iterator

import numpy as np
import torch

__all__ = ["synthetic_images", "load_image_dir", "ShuffledBatches"]


def synthetic_images(n_train: int = 8000, n_test: int = 2000, size: int = 32,
                     classes: int = 10, seed: int = 0):
    """Oriented sine gratings (class = orientation) with random frequency, phase, contrast
    and Gaussian noise; 20% of samples get strong noise and low contrast."""
    g = torch.Generator().manual_seed(seed)

    def make(n: int):
        y = torch.randint(0, classes, (n,), generator=g)
        theta = y.float() * math.pi / classes + 0.08 * torch.randn(n, generator=g)
        freq = 0.25 + 0.35 * torch.rand(n, generator=g)
        phase = 2 * math.pi * torch.rand(n, generator=g)
        hard = torch.rand(n, generator=g) < 0.2
        contrast = torch.where(hard, 0.35, 1.0) * (0.6 + 0.4 * torch.rand(n, generator=g))
        noise = torch.where(hard, 0.9, 0.25)
        ax = torch.arange(size, dtype=torch.float32) - size / 2
        yy, xx = torch.meshgrid(ax, ax, indexing="ij")
        proj = (xx[None] * theta.cos()[:, None, None] + yy[None] * theta.sin()[:, None, None])
        img = contrast[:, None, None] * torch.sin(freq[:, None, None] * proj + phase[:, None, None])
        img = img + noise[:, None, None] * torch.randn(n, size, size, generator=g)
        img = ((img.clamp(-2, 2) + 2) / 4 * 255).round().to(torch.uint8)
        return img[:, None], y

    train_x, train_y = make(n_train)
    test_x, test_y = make(n_test)
    return train_x, train_y, test_x, test_y


def _read_idx(path: str) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    dims = np.frombuffer(data, ">u4", count=ndim, offset=4).astype(np.int64)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(directory: str, stem: str) -> str | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"),
                 stem.replace("-idx", ".idx") + ".gz"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def load_image_dir(directory: str):
    """Load an IDX (MNIST-style) or CIFAR-10 binary directory into uint8 NCHW tensors."""
    idx_train = _find(directory, "train-images-idx3-ubyte")
    if idx_train is not None:
        parts = [idx_train, _find(directory, "train-labels-idx1-ubyte"),
                 _find(directory, "t10k-images-idx3-ubyte"),
                 _find(directory, "t10k-labels-idx1-ubyte")]
        if None in parts:
            raise FileNotFoundError(f"{directory}: IDX set incomplete (need train/t10k "
                                    f"images and labels)")
        xs, ys, xt, yt = (_read_idx(p) for p in parts)
        return (torch.from_numpy(xs.copy())[:, None], torch.from_numpy(ys.astype(np.int64)),
                torch.from_numpy(xt.copy())[:, None], torch.from_numpy(yt.astype(np.int64)))
    cifar = directory
    if os.path.isdir(os.path.join(directory, "cifar-10-batches-bin")):
        cifar = os.path.join(directory, "cifar-10-batches-bin")
    files = [os.path.join(cifar, f"data_batch_{i}.bin") for i in range(1, 6)]
    if all(os.path.isfile(f) for f in files):
        def read(paths):
            a = np.concatenate([np.fromfile(p, np.uint8).reshape(-1, 3073) for p in paths])
            return (torch.from_numpy(a[:, 1:].reshape(-1, 3, 32, 32).copy()),
                    torch.from_numpy(a[:, 0].astype(np.int64)))
        xs, ys = read(files[:4])
        xt, yt = read(files[4:])
        return xs, ys, xt, yt
    raise FileNotFoundError(f"{directory}: found neither IDX files "
                            f"(train-images-idx3-ubyte[.gz]) nor CIFAR-10 data_batch_1..5.bin")


class ShuffledBatches:
    """Batches of in-memory tensors, reshuffled per epoch from (seed, epoch): deterministic,
    resumable, and free of per-sample collate cost. Yields ``(x, y, index)``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0,
                 drop_last: bool = False):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.seed, self.drop_last, self.epoch = seed, drop_last, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self) -> torch.Tensor:
        """This epoch's permutation of the sample indices (a function of seed and epoch)."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(len(self.x), generator=g)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        order = self.order()
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield self.x[idx], self.y[idx], idx
