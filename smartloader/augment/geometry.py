"""Batched geometric augmentations on NCHW tensors, torch ops only.

Images are ``uint8`` in [0, 255] or floating point in [0, 1]; every function returns the
input's dtype and device. Randomness comes only from the ``generator`` argument, which must
live on the same device as the images.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """``uint8`` [0, 255] -> float32 [0, 1]; floating tensors are returned as float32."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if not x.is_floating_point():
        raise TypeError(f"images must be uint8 or floating point, got {x.dtype}")
    return x.float()


def from_unit_float(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Back to ``like``'s dtype: uint8 rounds and clamps to [0, 255]."""
    if like.dtype == torch.uint8:
        return y.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return y.to(like.dtype)


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def resize_batch(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize an NCHW batch to ``size`` (int = square side, or ``(h, w)``) with
    antialiased bilinear interpolation; keeps dtype (uint8 in -> uint8 out) and device.

    Antialiasing matters when downsampling for the low-resolution scoring pass: without it
    the small image aliases and its loss ranks samples worse. Returns ``x`` itself when the
    size already matches.
    """
    if x.dim() != 4:
        raise ValueError(f"expected an NCHW batch, got shape {tuple(x.shape)}")
    h, w = _size(size)
    if (h, w) == tuple(x.shape[-2:]):
        return x
    y = F.interpolate(to_unit_float(x) if x.dtype == torch.uint8 else x.float(),
                      size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    if x.dtype == torch.uint8:
        return from_unit_float(y, x)
    return y.to(x.dtype)


def affine_sample(x: torch.Tensor, theta: torch.Tensor,
                  size: tuple[int, int] | None = None) -> torch.Tensor:
    """Sample ``x`` (float NCHW) through per-sample 2x3 affine maps ``theta`` (N, 2, 3) in
    normalised coordinates (output -> input), bilinear, zeros outside the image."""
    n, c, h, w = x.shape
    oh, ow = size or (h, w)
    grid = F.affine_grid(theta.to(x.dtype), [n, c, oh, ow], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def crop_boxes(n: int, magnitude: float, generator: torch.Generator,
               device: torch.device | str = "cpu",
               scale: tuple[float, float] | None = None,
               ratio: tuple[float, float] | None = None) -> torch.Tensor:
    """Random crop boxes ``(N, 4)`` as ``(cx, cy, half_w, half_h)`` in normalised [-1, 1]
    coordinates of the source image.

    By default the area fraction is drawn from ``[0.08 ** (m / 5), 1]`` and the aspect
    ratio log-uniformly from ``[(3/4) ** (m / 5), (4/3) ** (m / 5)]``: ``m = 5`` is the
    standard Inception crop (scale 0.08-1, ratio 3/4-4/3), ``m = 0`` the whole image and
    ``m = 10`` crops down to 0.64 % of the area. Explicit ``scale``/``ratio`` override ``m``.
    """
    s_lo, s_hi = scale if scale is not None else (0.08 ** (magnitude / 5.0), 1.0)
    r_lo, r_hi = ratio if ratio is not None else ((3 / 4) ** (magnitude / 5.0),
                                                  (4 / 3) ** (magnitude / 5.0))
    u = torch.rand(n, 4, generator=generator, device=device)
    area = s_lo + (s_hi - s_lo) * u[:, 0]
    log_r = math.log(r_lo) + (math.log(r_hi) - math.log(r_lo)) * u[:, 1]
    r = torch.exp(log_r)
    # Width and height as fractions of the source side; clamp keeps the box inside.
    half_w = torch.sqrt(area * r).clamp(max=1.0)
    half_h = torch.sqrt(area / r).clamp(max=1.0)
    cx = (1.0 - half_w) * (2.0 * u[:, 2] - 1.0)
    cy = (1.0 - half_h) * (2.0 * u[:, 3] - 1.0)
    return torch.stack([cx, cy, half_w, half_h], dim=1)


def random_resized_crop(x: torch.Tensor, size: int | tuple[int, int],
                        generator: torch.Generator, magnitude: float = 5.0,
                        scale: tuple[float, float] | None = None,
                        ratio: tuple[float, float] | None = None) -> torch.Tensor:
    """Crop a random box per sample (see :func:`crop_boxes`) and resize it to ``size``,
    batched through one ``grid_sample``. Keeps dtype and device.

    The sampling is bilinear without antialiasing, so very small outputs from large crops
    alias a little; resize the batch first (:func:`resize_batch`) when that matters.
    """
    oh, ow = _size(size)
    boxes = crop_boxes(x.shape[0], magnitude, generator, x.device, scale, ratio)
    theta = torch.zeros(x.shape[0], 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2] = boxes[:, 2], boxes[:, 0]
    theta[:, 1, 1], theta[:, 1, 2] = boxes[:, 3], boxes[:, 1]
    return from_unit_float(affine_sample(to_unit_float(x), theta, (oh, ow)), x)


def random_hflip(x: torch.Tensor, generator: torch.Generator,
                 p: float = 0.5) -> torch.Tensor:
    """Flip each sample left-right with probability ``p`` (default 0.5)."""
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)
