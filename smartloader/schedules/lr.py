"""Learning-rate (and momentum) schedules.

* **F1-CLR** -- Fixed 1-cycle learning rate, thesis Eq. 3.8: a cosine warm-up of fixed
  length ``t_w`` from 0 to ``max_lr``, then a cosine decay to 0 at ``total_steps`` (``L``);
  momentum moves anti-phase between ``momentum_high`` (0.95) and ``momentum_low`` (0.85).
  The warm-up length stays fixed when training is lengthened (1-CLR's proportional warm-up
  wastes compute on long runs).
* **Linear scaling rule with gradual warm-up** (Goyal et al. 2017): the target learning rate
  is ``base_lr * batch_size / base_batch_size``, reached by a linear per-iteration ramp.

Each is a pure function, a frozen class built from the ``lr:`` YAML section, and a
:class:`torch.optim.lr_scheduler.LRScheduler` subclass that also sets SGD's ``momentum`` or
Adam's ``betas[0]`` in every param group. All param groups get the same learning rate,
multiplied by the group's optional ``"lr_scale"`` entry (e.g. 0.1 for a pretrained backbone).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from smartloader.common.readers import (as_float, as_int, as_str, check_keys, fail, join,
                                        require_mapping)
from smartloader.common.progress import Progress
from smartloader.schedules._axis import resolve


def f1_clr(step: int, total_steps: int, max_lr: float, warmup_steps: int,
           momentum_high: float = 0.95, momentum_low: float = 0.85) -> tuple[float, float]:
    """``(lr, momentum)`` at ``step`` by thesis Eq. 3.8 (``t`` = step, ``L`` = total_steps)::

        lr_t = max_lr - max_lr/2 (cos(pi t / t_w) + 1)              t < t_w
               max_lr/2 (cos(pi (t - t_w) / (L - t_w)) + 1)         otherwise
        m_t  = m_low + (m_high - m_low)/2 (cos(pi t / t_w) + 1)     t < t_w
               m_high - (m_high - m_low)/2 (cos(pi (t - t_w) / (L - t_w)) + 1)

    Steps past ``total_steps`` keep the final values (lr 0, momentum high). Note lr is 0 at
    step 0, exactly as in the equation.

    >>> [round(v, 6) for v in f1_clr(5, 20, 0.1, 10)]
    [0.05, 0.9]
    """
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"need 0 <= warmup_steps < total_steps, got {warmup_steps}, "
                         f"{total_steps}")
    t = min(step, total_steps)
    span = momentum_high - momentum_low
    if t < warmup_steps:
        c = math.cos(math.pi * t / warmup_steps) + 1.0
        return max_lr - 0.5 * max_lr * c, momentum_low + 0.5 * span * c
    c = math.cos(math.pi * (t - warmup_steps) / (total_steps - warmup_steps)) + 1.0
    return 0.5 * max_lr * c, momentum_high - 0.5 * span * c


def linear_scaling_lr(step: int, base_lr: float, base_batch_size: int, batch_size: int,
                      warmup_steps: int, warmup_start_lr: float | None = None,
                      decay: str = "none", total_steps: int | None = None) -> float:
    """Linear scaling rule with gradual warm-up (Goyal et al. 2017).

    Target ``lr = base_lr * batch_size / base_batch_size``; during the first
    ``warmup_steps`` the rate rises linearly per iteration from ``warmup_start_lr``
    (default: ``base_lr``, the small-batch rate Goyal starts from, capped at the target) to
    the target. After it: constant (``decay="none"``, add your own step decay) or a cosine
    decay to 0 at ``total_steps`` (``decay="cosine"``).

    >>> linear_scaling_lr(50, 0.1, 256, 1024, 100)
    0.25
    """
    target = base_lr * batch_size / base_batch_size
    start = min(base_lr, target) if warmup_start_lr is None else warmup_start_lr
    if step < warmup_steps:
        return start + (target - start) * step / warmup_steps
    if decay == "none":
        return target
    if decay != "cosine":
        raise ValueError(f"decay must be 'none' or 'cosine', got {decay!r}")
    if total_steps is None or total_steps <= warmup_steps:
        raise ValueError("decay='cosine' needs total_steps > warmup_steps")
    t = min(step, total_steps)
    return 0.5 * target * (math.cos(math.pi * (t - warmup_steps)
                                    / (total_steps - warmup_steps)) + 1.0)


# ----------------------------------------------------------------- torch schedulers

class _ClosedFormScheduler(LRScheduler):
    """Sets lr (and momentum/beta1 when ``_values`` returns one) from ``last_epoch``,
    which counts ``scheduler.step()`` calls, i.e. optimizer steps."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        self._check_momentum_slot(optimizer)
        super().__init__(optimizer, last_epoch)

    def _values(self, step: int) -> tuple[float, float | None]:
        raise NotImplementedError

    def _check_momentum_slot(self, optimizer: Optimizer) -> None:
        if self._values(0)[1] is None:
            return
        for i, group in enumerate(optimizer.param_groups):
            if "betas" not in group and "momentum" not in group:
                raise ValueError(f"param_groups[{i}] has neither 'momentum' nor 'betas'; "
                                 "this schedule sets momentum")

    def get_lr(self) -> list[float]:
        lr, momentum = self._values(self.last_epoch)
        groups = self.optimizer.param_groups
        if momentum is not None:
            for group in groups:
                if "betas" in group:
                    group["betas"] = (momentum, *tuple(group["betas"])[1:])
                else:
                    group["momentum"] = momentum
        return [lr * group.get("lr_scale", 1.0) for group in groups]

    _get_closed_form_lr = get_lr


class F1CLRScheduler(_ClosedFormScheduler):
    """:func:`f1_clr` as a torch scheduler; call ``step()`` after every optimizer step."""

    def __init__(self, optimizer: Optimizer, total_steps: int, max_lr: float,
                 warmup_steps: int, momentum_high: float = 0.95,
                 momentum_low: float = 0.85, last_epoch: int = -1) -> None:
        self.total_steps, self.max_lr, self.warmup_steps = total_steps, max_lr, warmup_steps
        self.momentum_high, self.momentum_low = momentum_high, momentum_low
        f1_clr(0, total_steps, max_lr, warmup_steps)  # validate before touching optimizer
        super().__init__(optimizer, last_epoch)

    def _values(self, step: int) -> tuple[float, float | None]:
        return f1_clr(step, self.total_steps, self.max_lr, self.warmup_steps,
                      self.momentum_high, self.momentum_low)


class LinearScalingScheduler(_ClosedFormScheduler):
    """:func:`linear_scaling_lr` as a torch scheduler; sets momentum/beta1 to the constant
    ``momentum`` when given, else leaves it alone."""

    def __init__(self, optimizer: Optimizer, base_lr: float, base_batch_size: int,
                 batch_size: int, warmup_steps: int, warmup_start_lr: float | None = None,
                 decay: str = "none", total_steps: int | None = None,
                 momentum: float | None = None, last_epoch: int = -1) -> None:
        self.base_lr, self.base_batch_size, self.batch_size = base_lr, base_batch_size, batch_size
        self.warmup_steps, self.warmup_start_lr = warmup_steps, warmup_start_lr
        self.decay, self.total_steps, self.momentum = decay, total_steps, momentum
        super().__init__(optimizer, last_epoch)

    def _values(self, step: int) -> tuple[float, float | None]:
        return linear_scaling_lr(step, self.base_lr, self.base_batch_size, self.batch_size,
                                 self.warmup_steps, self.warmup_start_lr, self.decay,
                                 self.total_steps), self.momentum


# ------------------------------------------------------------------ YAML classes

@dataclass(frozen=True)
class F1CLRSchedule:
    """F1-CLR built from ``lr: {type: f1_clr, ...}``. ``__call__`` gives the lr,
    :meth:`momentum` the momentum, :meth:`scheduler` a torch scheduler."""

    max_lr: float
    warmup_steps: int
    momentum_high: float = 0.95
    momentum_low: float = 0.85
    total_steps: int | None = None

    needs_total_steps = True

    def values(self, progress_or_step: Progress | int) -> tuple[float, float]:
        step, total = resolve(progress_or_step, self.total_steps)
        return f1_clr(step, total, self.max_lr, self.warmup_steps, self.momentum_high,
                      self.momentum_low)

    def __call__(self, progress_or_step: Progress | int) -> float:
        return self.values(progress_or_step)[0]

    def momentum(self, progress_or_step: Progress | int) -> float:
        return self.values(progress_or_step)[1]

    def scheduler(self, optimizer: Optimizer, total_steps: int | None = None) -> F1CLRScheduler:
        total = total_steps or self.total_steps
        if total is None:
            raise ValueError("F1-CLR needs total_steps")
        return F1CLRScheduler(optimizer, total, self.max_lr, self.warmup_steps,
                              self.momentum_high, self.momentum_low)

    @classmethod
    def from_config(cls, mapping: Mapping[str, Any], path: str = "lr",
                    total_steps: int | None = None) -> "F1CLRSchedule":
        check_keys(mapping, ("type", "max_lr", "warmup_steps", "momentum_high",
                             "momentum_low"), path)
        _require(mapping, ("max_lr", "warmup_steps"), path)
        max_lr = as_float(mapping["max_lr"], join(path, "max_lr"), minimum=0.0,
                          min_exclusive=True)
        warmup = as_int(mapping["warmup_steps"], join(path, "warmup_steps"), minimum=0)
        if total_steps is not None and warmup >= total_steps:
            raise fail(join(path, "warmup_steps"), f"must be < total_steps ({total_steps})",
                       warmup)
        high = as_float(mapping.get("momentum_high", 0.95), join(path, "momentum_high"),
                        minimum=0.0, maximum=1.0, max_exclusive=True)
        low = as_float(mapping.get("momentum_low", 0.85), join(path, "momentum_low"),
                       minimum=0.0, maximum=1.0, max_exclusive=True)
        if low > high:
            raise fail(join(path, "momentum_low"), f"must be <= momentum_high ({high})", low)
        return cls(max_lr, warmup, high, low, total_steps)


@dataclass(frozen=True)
class LinearScalingSchedule:
    """Linear scaling rule built from ``lr: {type: linear_scaling, ...}``."""

    base_lr: float
    batch_size: int
    warmup_steps: int
    base_batch_size: int = 256
    warmup_start_lr: float | None = None
    decay: str = "none"
    momentum_value: float | None = None
    total_steps: int | None = None

    @property
    def needs_total_steps(self) -> bool:
        return self.decay == "cosine"

    def __call__(self, progress_or_step: Progress | int) -> float:
        step, total = resolve(progress_or_step, self.total_steps,
                              needs_total=self.needs_total_steps)
        return linear_scaling_lr(step, self.base_lr, self.base_batch_size, self.batch_size,
                                 self.warmup_steps, self.warmup_start_lr, self.decay, total)

    def momentum(self, progress_or_step: Progress | int) -> float | None:
        return self.momentum_value

    def scheduler(self, optimizer: Optimizer,
                  total_steps: int | None = None) -> LinearScalingScheduler:
        return LinearScalingScheduler(optimizer, self.base_lr, self.base_batch_size,
                                      self.batch_size, self.warmup_steps,
                                      self.warmup_start_lr, self.decay,
                                      total_steps or self.total_steps, self.momentum_value)

    @classmethod
    def from_config(cls, mapping: Mapping[str, Any], path: str = "lr",
                    total_steps: int | None = None) -> "LinearScalingSchedule":
        check_keys(mapping, ("type", "base_lr", "base_batch_size", "batch_size",
                             "warmup_steps", "warmup_start_lr", "decay", "momentum"), path)
        _require(mapping, ("base_lr", "batch_size", "warmup_steps"), path)
        base_lr = as_float(mapping["base_lr"], join(path, "base_lr"), minimum=0.0,
                           min_exclusive=True)
        batch = as_int(mapping["batch_size"], join(path, "batch_size"), minimum=1)
        base_batch = as_int(mapping.get("base_batch_size", 256),
                            join(path, "base_batch_size"), minimum=1)
        warmup = as_int(mapping["warmup_steps"], join(path, "warmup_steps"), minimum=0)
        start = mapping.get("warmup_start_lr")
        if start is not None:
            start = as_float(start, join(path, "warmup_start_lr"), minimum=0.0)
        decay = as_str(mapping.get("decay", "none"), join(path, "decay"),
                       choices=("none", "cosine"))
        if decay == "cosine" and total_steps is not None and warmup >= total_steps:
            raise fail(join(path, "warmup_steps"), f"must be < total_steps ({total_steps})",
                       warmup)
        momentum = mapping.get("momentum")
        if momentum is not None:
            momentum = as_float(momentum, join(path, "momentum"), minimum=0.0, maximum=1.0,
                                max_exclusive=True)
        return cls(base_lr, batch, warmup, base_batch, start, decay, momentum, total_steps)


def _require(mapping: Mapping[str, Any], keys: tuple[str, ...], path: str) -> None:
    for key in keys:
        if key not in mapping:
            raise fail(join(path, key), f"required for type {mapping['type']}")


LR_TYPES = {"f1_clr": F1CLRSchedule, "linear_scaling": LinearScalingSchedule}

LRSchedule = F1CLRSchedule | LinearScalingSchedule


def lr_from_config(value: Any, path: str = "lr",
                   total_steps: int | None = None) -> LRSchedule:
    """Build a learning-rate schedule from its YAML mapping (``type`` picks the class)."""
    mapping = require_mapping(value, path)
    if "type" not in mapping:
        raise fail(join(path, "type"), f"required (one of {', '.join(LR_TYPES)})")
    kind = as_str(mapping["type"], join(path, "type"), choices=LR_TYPES)
    return LR_TYPES[kind].from_config(mapping, path, total_steps)
