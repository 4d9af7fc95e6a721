"""Batched RandAugment-style ops (Cubuk et al. 2019) on NCHW tensors, torch ops only.

Magnitude ``m`` is on a 0..10 scale, linear in every op, with 5 the standard strength:

============  =====================================  ==========  ==========
op            what it does                           at m = 5    at m = 10
============  =====================================  ==========  ==========
brightness    multiply by ``1 +/- 0.09 m``            x0.55-1.45  x0.1-1.9
contrast      blend with the mean by ``1 +/- 0.09 m``  same        same
rotate        rotate by ``+/- 3 m`` degrees           15 deg      30 deg
shear_x/y     shear by ``+/- 0.03 m``                 0.15        0.3
translate_x/y shift by ``+/- 0.045 m`` of the side    22.5 %      45 %
solarize      invert pixels above ``1 - m / 10``      above 0.5   all
posterize     keep ``8 - round(0.4 m)`` bits          6 bits      4 bits
============  =====================================  ==========  ==========

``m = 0`` is exactly the identity for every op (the op is skipped), and every op changes
images monotonically more as ``m`` grows. The signs and op choices are drawn from the
generator before ``m`` is looked at, so the random stream does not depend on ``m``.
Geometric ops fill uncovered pixels with 0 (black).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from smartloader.augment.geometry import affine_sample, from_unit_float, to_unit_float

OpFn = Callable[[torch.Tensor, float, torch.Tensor], torch.Tensor]


def _brightness(y: torch.Tensor, m: float, sign: torch.Tensor) -> torch.Tensor:
    factor = 1.0 + sign * 0.09 * m
    return (y * factor[:, None, None, None]).clamp_(0.0, 1.0)


def _contrast(y: torch.Tensor, m: float, sign: torch.Tensor) -> torch.Tensor:
    factor = (1.0 + sign * 0.09 * m)[:, None, None, None]
    if y.shape[1] == 3:  # blend towards the mean luminance, as PIL does
        weights = torch.tensor([0.299, 0.587, 0.114], device=y.device, dtype=y.dtype)
        mean = (y * weights[None, :, None, None]).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    else:
        mean = y.mean((1, 2, 3), keepdim=True)
    return (mean + (y - mean) * factor).clamp_(0.0, 1.0)


def _affine(y: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
            d: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    theta = torch.stack([torch.stack([a, b, tx], 1), torch.stack([c, d, ty], 1)], 1)
    return affine_sample(y, theta)


def _rotate(y: torch.Tensor, m: float, sign: torch.Tensor) -> torch.Tensor:
    angle = sign * math.radians(3.0 * m)
    h, w = y.shape[-2:]
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(angle)
    # Rotation in pixel space, expressed in normalised coordinates (aspect-corrected).
    return _affine(y, cos, -sin * h / w, sin * w / h, cos, zero, zero)


def _shear_x(y: torch.Tensor, m: float, sign: torch.Tensor) -> torch.Tensor:
    one, zero = torch.ones_like(sign), torch.zeros_like(sign)
    return _affine(y, one, sign * 0.03 * m, zero, one, zero, zero)


def _shear_y(y: torch.Tensor, m: float, sign: torch.Tensor) -> torch.Tensor:
    one, zero = torch.ones_like(sign), torch.zeros_like(sign)
    return _affine(y, one, zero, sign * 0.03 * m, one, zero, zero)


def _translate_x(y: torch.Tensor, m: float, sign: torch.Tensor) -> torch.Tensor:
    one, zero = torch.ones_like(sign), torch.zeros_like(sign)
    return _affine(y, one, zero, zero, one, 2.0 * sign * 0.045 * m, zero)


def _translate_y(y: torch.Tensor, m: float, sign: torch.Tensor) -> torch.Tensor:
    one, zero = torch.ones_like(sign), torch.zeros_like(sign)
    return _affine(y, one, zero, zero, one, zero, 2.0 * sign * 0.045 * m)


def _solarize(y: torch.Tensor, m: float, sign: torch.Tensor) -> torch.Tensor:
    return torch.where(y > 1.0 - m / 10.0, 1.0 - y, y)


def _posterize(y: torch.Tensor, m: float, sign: torch.Tensor) -> torch.Tensor:
    bits = 8 - round(0.4 * m)
    if bits >= 8:
        return y
    q = 2 ** (8 - bits)
    return torch.floor(y * 255.0 / q) * q / 255.0


#: The op set, by name. ``rand_augment(..., ops=...)`` picks from a subset.
OPS: dict[str, OpFn] = {
    "brightness": _brightness, "contrast": _contrast, "rotate": _rotate,
    "shear_x": _shear_x, "shear_y": _shear_y, "translate_x": _translate_x,
    "translate_y": _translate_y, "solarize": _solarize, "posterize": _posterize,
}


def apply_op(x: torch.Tensor, name: str, magnitude: float,
             sign: torch.Tensor | None = None) -> torch.Tensor:
    """Apply one named op to the whole batch (``sign`` per sample, default +1)."""
    if name not in OPS:
        raise ValueError(f"unknown op {name!r}; choose from {', '.join(OPS)}")
    if sign is None:
        sign = torch.ones(x.shape[0], device=x.device)
    if magnitude == 0:
        return x
    return from_unit_float(OPS[name](to_unit_float(x), float(magnitude), sign.float()), x)


def rand_augment(x: torch.Tensor, generator: torch.Generator, magnitude: float = 5.0,
                 num_ops: int = 2, ops: tuple[str, ...] | None = None) -> torch.Tensor:
    """Apply ``num_ops`` ops per sample, each chosen uniformly (with replacement) from
    ``ops`` (default: all of :data:`OPS`) with a random sign, at magnitude ``m``.

    Samples that chose the same op in a round are processed together, so the cost is one
    batched call per (round, op). Keeps shape, dtype and device; never modifies ``x``.
    """
    if not 0.0 <= magnitude <= 10.0:
        raise ValueError(f"magnitude must be in [0, 10], got {magnitude}")
    names = tuple(OPS) if ops is None else tuple(ops)
    for name in names:
        if name not in OPS:
            raise ValueError(f"unknown op {name!r}; choose from {', '.join(OPS)}")
    n = x.shape[0]
    choice = torch.randint(len(names), (num_ops, n), generator=generator, device=x.device)
    sign = torch.where(torch.rand(num_ops, n, generator=generator, device=x.device) < 0.5,
                       -1.0, 1.0)
    if magnitude == 0 or n == 0:
        return x.clone()
    y = to_unit_float(x)
    if y is x:
        y = y.clone()
    for r in range(num_ops):
        for k, name in enumerate(names):
            idx = (choice[r] == k).nonzero().squeeze(1)
            if idx.numel():
                y[idx] = OPS[name](y[idx], float(magnitude), sign[r, idx])
    return from_unit_float(y, x)
