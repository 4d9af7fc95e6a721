"""Scoring a pool with the live model, leaving the model exactly as it was.

The scoring pass runs under ``torch.no_grad()`` with every module in eval mode: dropout is
off and BatchNorm normalises with its running statistics *without updating them*, so no
parameter or buffer changes. Each module's own ``training`` flag is restored afterwards
(not a blanket ``model.train()``, which would wake up modules the user froze on purpose).

Models wrapped in ``DistributedDataParallel`` (or ``DataParallel``) are scored through their
``.module``: no forward through the wrapper, so no buffer broadcast, no gradient hooks and no
collective calls. A ``torch.compile``'d model is called as compiled (eval mode and the scoring
shape add one graph to its cache).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
import torch.nn.functional as F

__all__ = ["ModelHandle", "downsample", "default_loss", "scoring_mode"]


def default_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy; targets may be class indices or soft (probability) rows."""
    if targets.dtype.is_floating_point and targets.dim() == outputs.dim():
        return -(targets * F.log_softmax(outputs.float(), dim=-1)).sum(-1)
    return F.cross_entropy(outputs.float(), targets, reduction="none")


def downsample(x: torch.Tensor, resolution: int | None) -> torch.Tensor:
    """Resize an NCHW batch so its shorter side is ``resolution`` px (antialiased bilinear).

    Never upsamples: a batch already at or below ``resolution`` is returned unchanged.
    Integer images (uint8) are resized in float and rounded back to their dtype.
    """
    if resolution is None:
        return x
    if x.dim() != 4:
        raise ValueError(f"score_resolution is set ({resolution}), so the input must be an "
                         f"NCHW image batch; got shape {tuple(x.shape)}. Set "
                         f"score_resolution: null to score at full resolution")
    h, w = x.shape[-2:]
    short = min(h, w)
    if short <= resolution:
        return x
    size = (max(1, round(h * resolution / short)), max(1, round(w * resolution / short)))
    if x.dtype.is_floating_point:
        return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    info = torch.iinfo(x.dtype)
    y = F.interpolate(x.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return y.round_().clamp_(info.min, info.max).to(x.dtype)


@contextlib.contextmanager
def scoring_mode(module: torch.nn.Module):
    """``no_grad`` with every module in eval mode (dropout off, BatchNorm reads its running
    statistics and does not update them); each module's own ``training`` flag is restored on
    exit, even on error, so modules the user froze stay frozen."""
    flags = [(m, m.training) for m in module.modules()]
    try:
        module.eval()
        with torch.no_grad():
            yield module
    finally:
        for m, training in flags:
            m.training = training


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    parallel = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    while isinstance(model, parallel):
        model = model.module
    return model


def _device_of(module: torch.nn.Module) -> torch.device:
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


class ModelHandle:
    """Computes per-sample losses of a pool with the live model, side-effect free.

    Args:
        model: the training model (plain, DDP-wrapped or compiled).
        loss_fn: ``loss_fn(outputs, targets) -> Tensor[n]`` per-sample losses; default
            cross-entropy (class indices or soft targets).
        resolution: shorter side of the scoring pass in px; ``None`` = as loaded.
        autocast: ``None``, ``"bfloat16"`` or ``"float16"``: dtype of the scoring forward.
    """

    def __init__(self, model: torch.nn.Module, loss_fn: Callable | None = None,
                 resolution: int | None = None, autocast: str | None = None):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.loss_fn = loss_fn or default_loss
        self.resolution = resolution
        #: When set (and ``resolution`` is None), score at ``round(scale * shorter side)``
        #: of each pool as loaded (``score_scale`` without a resolution schedule).
        self.scale: float | None = None
        self.autocast = None if autocast is None else getattr(torch, autocast)

    @property
    def module(self) -> torch.nn.Module:
        """What is called for scoring: the model without its (Distributed)DataParallel wrapper."""
        return _unwrap(self.model)

    @property
    def device(self) -> torch.device:
        return _device_of(self.module)

    def prepare(self, inputs: torch.Tensor) -> torch.Tensor:
        """Move ``inputs`` to the model's device and resize them to the scoring resolution."""
        x = inputs.to(self.device, non_blocking=True)
        res = self.resolution
        if res is None and self.scale is not None and x.dim() == 4:
            res = max(1, round(self.scale * min(x.shape[-2:])))
        return downsample(x, res)

    def losses(self, inputs: torch.Tensor, targets: Any) -> torch.Tensor:
        """Per-sample losses (float32, on the model's device) of a pool."""
        module = self.module
        device = _device_of(module)
        x = self.prepare(inputs)
        y = targets.to(device, non_blocking=True) if isinstance(targets, torch.Tensor) else targets
        cast = (torch.autocast(device_type=device.type, dtype=self.autocast)
                if self.autocast is not None else contextlib.nullcontext())
        with scoring_mode(module), cast:
            loss = self.loss_fn(module(x), y)
        n = x.shape[0]
        if not isinstance(loss, torch.Tensor) or tuple(loss.shape) != (n,):
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(
                f"loss_fn must return one loss per sample, a tensor of shape ({n},); it "
                f"returned {shape}. Use reduction='none' (e.g. "
                f"nn.CrossEntropyLoss(reduction='none'))")
        return loss.float()
