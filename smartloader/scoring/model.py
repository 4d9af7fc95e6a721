"""Scoring a pool with the live model, leaving the model exactly as it was.

The scoring pass runs under ``torch.no_grad()`` with every module in eval mode: dropout is
off and BatchNorm normalises with its running statistics *without updating them*, so no
parameter or buffer changes. Each module's own ``training`` flag is restored afterwards
(not a blanket ``model.train()``, which would wake up modules the user froze on purpose).

Models wrapped in ``DistributedDataParallel`` (or ``DataParallel``) are scored through their
``.module``: no forward through the wrapper, so no buffer broadcast, no gradient hooks and no
collective calls. A ``torch.compile``'d model scores through its compiled forward: eval mode,
``no_grad`` and each scoring shape are one more graph in dynamo's cache (planned by
:mod:`smartloader.config.shapes`, compiled ahead by :mod:`smartloader.integrations.compile`).
Dynamo guards on grad mode and on every module's ``training`` flag, so the scoring graph is
never the training one and BatchNorm still reads its running statistics without updating
them. The two-sample probes (the first batch's check, ``score_resolution: auto``'s size
search) run the model eagerly, so they compile no throwaway graph.

An input that is a mapping of tensors (``{"input_ids": ..., "attention_mask": ...}``, the
Hugging Face style) is passed as keyword arguments, ``model(**inputs)``, at the resolution it
was loaded: only NCHW image tensors are resized.
"""
from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

from smartloader.scoring.compiled import eager_module

__all__ = ["ModelHandle", "downsample", "default_loss", "scoring_mode", "logits_of",
           "auto_candidates", "head", "OutputError", "LossShapeError"]

logger = logging.getLogger("smartloader")


class OutputError(TypeError):
    """A model output the default loss cannot use (named, with its type and shape)."""


class LossShapeError(ValueError):
    """A ``loss_fn`` that did not return one loss per sample."""


def _shape(x: Any) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


def _is_image(x: Any) -> bool:
    """An NCHW tensor batch: the only input a scoring resolution resizes."""
    return isinstance(x, torch.Tensor) and x.dim() == 4


def _to(x: Any, device: torch.device) -> Any:
    """``x`` (a tensor, or a mapping of keyword inputs) on ``device``; other values as they are."""
    if isinstance(x, Mapping):
        return {k: _to(v, device) for k, v in x.items()}
    return x.to(device, non_blocking=True) if isinstance(x, torch.Tensor) else x


def _call(module: torch.nn.Module, x: Any) -> Any:
    """``module(**x)`` for a mapping of keyword inputs, else ``module(x)``."""
    return module(**x) if isinstance(x, Mapping) else module(x)


def _input_shape(x: Any) -> tuple:
    """An input's shape: a tensor's, or for keyword inputs the first tensor's."""
    if isinstance(x, Mapping):
        return next((tuple(v.shape) for v in x.values() if isinstance(v, torch.Tensor)), ())
    return tuple(x.shape)


def _rows(x: Any) -> int:
    """Samples in an input: a tensor's leading size, or a keyword mapping's first tensor's."""
    if isinstance(x, Mapping):
        for v in x.values():
            if isinstance(v, torch.Tensor) and v.dim() >= 1:
                return int(v.shape[0])
        raise TypeError(f"a mapping input needs at least one tensor with a batch dimension; "
                        f"got keys {list(x)}")
    return int(x.shape[0])


def head(x: Any, n: int) -> Any:
    """The first ``n`` samples of an input (a tensor, or every tensor of a keyword mapping)."""
    if isinstance(x, Mapping):
        rows = _rows(x)
        return {k: v[:n] if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == rows
                else v for k, v in x.items()}
    return x[:n]


def logits_of(outputs: Any) -> torch.Tensor:
    """The logits in a model's output: the tensor itself, the first element of a tuple or
    list, a mapping's ``logits`` (or its only tensor), or an object's ``.logits`` (Hugging
    Face style). Raises :class:`OutputError` naming what the model returned otherwise."""
    out = outputs
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    elif isinstance(out, Mapping):
        if "logits" in out:
            out = out["logits"]
        else:
            tensors = [k for k, v in out.items() if isinstance(v, torch.Tensor)]
            if len(tensors) != 1:
                raise OutputError(f"model output: a mapping with keys {list(out)} and no "
                                  f"'logits'; pass loss_fn=(outputs, targets) -> per-sample "
                                  f"losses to wrap()")
            out = out[tensors[0]]
    elif not isinstance(out, torch.Tensor) and isinstance(getattr(out, "logits", None),
                                                           torch.Tensor):
        out = out.logits
    if not isinstance(out, torch.Tensor):
        raise OutputError(f"model output: {type(outputs).__name__} holds no logits tensor "
                          f"(found {type(out).__name__}); return a tensor, a tuple whose first "
                          f"element is the logits, a mapping or object with 'logits', or pass "
                          f"loss_fn to wrap()")
    return out


def _log_auto(size: int | None, side: int, failed: list[tuple[int, str]]) -> None:
    chosen = f"{size} px" if size is not None else f"the loaded size ({side} px)"
    if not failed:
        logger.info("score_resolution auto: scoring at %s for inputs of %d px", chosen, side)
        return
    logger.warning("score_resolution auto: scoring at %s: the model failed at %s (%s); set "
                   "score_resolution to silence this", chosen,
                   ", ".join(f"{s} px" for s, _ in failed), failed[0][1])


def auto_candidates(side: int) -> list[int]:
    """Scoring sizes ``score_resolution: auto`` tries for inputs of shorter side ``side``:
    about half of it first (a cheap forward), then larger in eighths, then full size."""
    sizes = [max(1, math.ceil(side * f)) for f in (0.5, 0.625, 0.75, 0.875)] + [side]
    return sorted(set(s for s in sizes if s <= side))


def default_loss(outputs: Any, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy; targets may be class indices or soft (probability) rows.

    ``outputs`` may be anything :func:`logits_of` reads (a tensor, a tuple, a mapping, an
    object with ``logits``); the logits must be ``(batch, classes)``.
    """
    outputs = logits_of(outputs)
    if outputs.dim() != 2:
        raise OutputError(f"model output: the default loss (cross-entropy per sample) needs "
                          f"logits of shape (batch, classes), the model returned "
                          f"{_shape(outputs)}; pass loss_fn=(outputs, targets) -> a tensor of "
                          f"one loss per sample to wrap()")
    if not targets.dtype.is_floating_point:  # class indices, of any integer dtype
        if targets.dim() == 2 and targets.shape[1] == 1:  # as a column (DALI readers)
            targets = targets.reshape(-1)
        targets = targets.long()
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
    if isinstance(x, Mapping):
        raise ValueError(f"score_resolution is set ({resolution}), so the input must be an "
                         f"NCHW image batch; got keyword inputs {list(x)}. Set "
                         f"score_resolution: null to score them as loaded")
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
        resolution: shorter side of the scoring pass in px; ``None`` = as loaded;
            ``"auto"`` = about half the loaded side if the model takes it, else the next
            larger of :func:`auto_candidates` it takes (probed once per input size, on two
            samples, and logged), else full size.
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
        #: ``score_resolution: auto``: side -> the size chosen for it (None: as loaded)
        self.auto_sizes: dict[int, int | None] = {}
        #: the side ``auto`` halves: the training resolution of the step under a resolution
        #: schedule (set by the schedule applier), else None = the loaded shorter side
        self.auto_side: int | None = None
        #: shape of the last input the live model scored (None before the first)
        self.last_shape: tuple[int, ...] | None = None

    @property
    def module(self) -> torch.nn.Module:
        """What is called for scoring: the model without its (Distributed)DataParallel wrapper."""
        return _unwrap(self.model)

    @property
    def device(self) -> torch.device:
        return _device_of(self.module)

    def prepare(self, inputs: Any) -> Any:
        """Move ``inputs`` (a tensor, or a mapping of keyword inputs) to the model's device and
        resize an image batch to the scoring resolution."""
        x = _to(inputs, self.device)
        res = self.resolution
        if res == "auto":  # the size probed for this side (losses() probes it)
            res = self.auto_sizes.get(self._side(x)) if _is_image(x) else None
        elif res is None and self.scale is not None and _is_image(x):
            res = max(1, round(self.scale * min(x.shape[-2:])))
        return downsample(x, res)

    def _probe_auto(self, x: torch.Tensor, targets: Any, side: int) -> int | None:
        """Try :func:`auto_candidates` of ``side`` from the smallest on two samples; the
        first size the model takes wins (None: as loaded). Logged once: at INFO when the
        first candidate works, as a WARNING when the model needed a larger one."""
        loaded = int(min(x.shape[-2:]))
        failed: list[tuple[int, str]] = []
        for size in auto_candidates(side):
            if size >= loaded:
                break
            try:
                self._forward_loss(downsample(x, size), targets, eager=True)
            except (OutputError, LossShapeError):
                raise
            except Exception as exc:  # the model cannot take this size: try a larger one
                failed.append((size, str(exc).strip().splitlines()[0][:200]))
                continue
            _log_auto(size, side, failed)
            return size
        _log_auto(None, min(side, loaded), failed)
        return None

    def losses(self, inputs: Any, targets: Any, *, eager: bool = False) -> torch.Tensor:
        """Per-sample losses (float32, on the model's device) of a pool; ``inputs`` is a
        tensor, or a mapping passed as keyword arguments. ``eager``: run a compiled model's
        forward uncompiled (for probes, whose shapes are thrown away)."""
        if self.resolution == "auto" and _is_image(inputs):
            side = self._side(inputs)
            if side not in self.auto_sizes:  # probe once per loaded size, on two samples
                t = targets[:2] if isinstance(targets, torch.Tensor) else targets
                x = inputs[:2].to(self.device, non_blocking=True)
                self.auto_sizes[side] = self._probe_auto(x, t, side)
        return self._forward_loss(self.prepare(inputs), targets, eager=eager)

    def losses_with(self, module: torch.nn.Module, inputs: Any,
                    targets: Any) -> torch.Tensor:
        """Per-sample losses of a pool under another network (an EMA copy of the live
        model, say), prepared exactly as :meth:`losses` prepares it for the live model: the
        same device, scoring size and loss."""
        if self.resolution == "auto" and _is_image(inputs) and \
                self._side(inputs) not in self.auto_sizes:
            self.losses(inputs[:2], targets[:2] if isinstance(targets, torch.Tensor)
                        else targets, eager=True)   # probes the size once, as losses() would
        return self._forward_loss(self.prepare(inputs), targets, module)

    def _side(self, x: torch.Tensor) -> int:
        return self.auto_side or int(min(x.shape[-2:]))

    def accepts(self, inputs: Any) -> bool:
        """Whether the model runs on ``inputs`` as they are (no resize, no loss)."""
        module = self.module
        try:
            with scoring_mode(module):
                _call(eager_module(module), _to(inputs, _device_of(module)))
        except Exception:
            return False
        return True

    def _forward_loss(self, x: Any, targets: Any,
                      module: torch.nn.Module | None = None, eager: bool = False
                      ) -> torch.Tensor:
        live = module is None
        module = self.module if module is None else module
        call = eager_module(module) if eager else module
        device = _device_of(module)
        x = _to(x, device)
        y = targets.to(device, non_blocking=True) if isinstance(targets, torch.Tensor) else targets
        cast = (torch.autocast(device_type=device.type, dtype=self.autocast)
                if self.autocast is not None else contextlib.nullcontext())
        with scoring_mode(module), cast:
            loss = self.loss_fn(_call(call, x), y)
        if live and not eager:
            self.last_shape = _input_shape(x)
        n = _rows(x)
        if not isinstance(loss, torch.Tensor) or tuple(loss.shape) != (n,):
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise LossShapeError(
                f"loss_fn must return one loss per sample, a tensor of shape ({n},); it "
                f"returned {shape}. Use reduction='none' (e.g. "
                f"nn.CrossEntropyLoss(reduction='none'))")
        return loss.float()
