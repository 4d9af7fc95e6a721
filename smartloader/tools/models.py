"""Small image classifiers for the demo and the benchmarks (any input side >= 8 px).

- :class:`SmallResNet`: a ResNet-8 (a stem and three residual stages at widths ``w, 2w, 4w``,
  strides 1, 2, 2), enough capacity to fit CIFAR-10 subsets, global average pooling so it
  takes any resolution (the resolution schedule and low-resolution scoring need that).
- ``SmallCNN`` lives in :mod:`smartloader.tools.demo` (three conv blocks).

Both take ``uint8`` NCHW images and normalise inside, so a loader can hand over raw bytes.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmallResNet", "BasicBlock", "batch_augment"]


class BasicBlock(nn.Module):
    """The ResNet basic block: two 3x3 conv-BN layers and a (projected) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.short is None else self.short(x)))


class SmallResNet(nn.Module):
    """ResNet-8: stem conv, residual blocks at widths ``w, 2w, 4w`` (strides 1, 2, 2),
    global average pool, linear. Takes ``uint8`` (or [0, 1] float) NCHW images."""

    def __init__(self, in_channels: int, classes: int, width: int = 16) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(w), nn.ReLU())
        self.stages = nn.Sequential(BasicBlock(w, w, 1), BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 4 * w, 2))
        self.head = nn.Linear(4 * w, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x.float() * 2.0 - 1.0
        return self.head(self.stages(self.stem(x)).mean((2, 3)))


def batch_augment(x: torch.Tensor, generator: torch.Generator, pad: int,
                  flip: bool = True) -> torch.Tensor:
    """Per-sample random translation by up to ``pad`` px (zero fill) and horizontal flip,
    batched with one gather; ``pad`` 0 and no flip returns ``x``. Keeps dtype and device."""
    n, c, h, w = x.shape
    if pad <= 0 and not flip:
        return x
    if pad > 0:
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    else:
        xp = x
        dy = dx = torch.zeros(n, dtype=torch.long)
    rows = dy[:, None] + torch.arange(h)                       # (n, h)
    cols = dx[:, None] + torch.arange(w)                       # (n, w)
    if flip:
        mirror = torch.rand(n, generator=generator) < 0.5
        cols = torch.where(mirror[:, None], cols.flip(1), cols)
    return xp[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None],
              rows[:, None, :, None], cols[:, None, None, :]]
