"""Batched, device-side augmentations whose strength follows a magnitude ``m``.

``m`` is on a 0..10 scale where 5 is the standard strength (the thesis' convention: it
scales SimCLR colour jitter linearly with 5 = standard, and raises ``m`` from 4 to 6 while
resolution rises). Inputs are NCHW ``uint8`` in [0, 255] or float in [0, 1]; outputs keep
shape (or take the requested size), dtype and device. All randomness comes from a passed
:class:`torch.Generator` on the images' device -- never the global RNG.
"""
from __future__ import annotations

from typing import Any

import torch

from smartloader.augment.geometry import (crop_boxes, random_hflip, random_resized_crop,
                                          resize_batch)
from smartloader.augment.randaugment import OPS, apply_op, rand_augment


def _read(magnitude: Any) -> float:
    """A magnitude given as a number, a ``SharedValue``-like object or a callable."""
    if hasattr(magnitude, "get"):
        return float(magnitude.get())
    if callable(magnitude):
        return float(magnitude())
    return float(magnitude)


class BatchAugment:
    """Random-resized-crop to ``size``, random horizontal flip, then RandAugment.

    ``magnitude`` may be a number, a :class:`~smartloader.common.shared_value.SharedValue` (read on
    every call, so a schedule can change it while DataLoader workers run) or a callable
    returning a number. ``num_ops`` (default 2, RandAugment's N) ops are applied per sample.
    """

    def __init__(self, size: int | tuple[int, int], magnitude: Any = 5.0, num_ops: int = 2,
                 flip: bool = True, ops: tuple[str, ...] | None = None) -> None:
        if num_ops < 0:
            raise ValueError(f"num_ops must be >= 0, got {num_ops}")
        self.size, self.magnitude, self.num_ops = size, magnitude, num_ops
        self.flip, self.ops = flip, ops

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        m = _read(self.magnitude)
        x = random_resized_crop(x, self.size, generator, magnitude=m)
        if self.flip:
            x = random_hflip(x, generator)
        return rand_augment(x, generator, m, self.num_ops, self.ops)


__all__ = ["BatchAugment", "OPS", "apply_op", "crop_boxes", "rand_augment",
           "random_hflip", "random_resized_crop", "resize_batch"]
