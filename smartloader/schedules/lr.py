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
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from smartloader.common.progress import Progress
from smartloader.common.readers import join
from smartloader.common.spec import REQUIRED, Field, Section, Typed, raise_problems, valid
from smartloader.schedules._axis import resolve

_HIGH = Field("momentum_high", "float", 0.95, minimum=0.0, maximum=1.0, max_exclusive=True,
              doc="momentum (or Adam's beta1) at the start and the end")
_LOW = Field("momentum_low", "float", 0.85, minimum=0.0, maximum=1.0, max_exclusive=True,
             doc="momentum at the learning-rate peak (<= momentum_high)")
_BASE_BATCH = Field("base_batch_size", "int", 256, minimum=1,
                    doc="the batch size base_lr is meant for")
_DECAY = Field("decay", "str", "none", choices=("none", "cosine"),
               doc="after the warm-up: constant, or a cosine to 0 at total_steps")


def f1_clr(step: int, total_steps: int, max_lr: float, warmup_steps: int,
           momentum_high: float = _HIGH.default,
           momentum_low: float = _LOW.default) -> tuple[float, float]:
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
                      decay: str = _DECAY.default, total_steps: int | None = None) -> float:
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
                 warmup_steps: int, momentum_high: float = _HIGH.default,
                 momentum_low: float = _LOW.default, last_epoch: int = -1) -> None:
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
                 decay: str = _DECAY.default, total_steps: int | None = None,
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
    momentum_high: float = _HIGH.default
    momentum_low: float = _LOW.default
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


@dataclass(frozen=True)
class LinearScalingSchedule:
    """Linear scaling rule built from ``lr: {type: linear_scaling, ...}``."""

    base_lr: float
    batch_size: int
    warmup_steps: int
    base_batch_size: int = _BASE_BATCH.default
    warmup_start_lr: float | None = None
    decay: str = _DECAY.default
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


LR_TYPES = {"f1_clr": F1CLRSchedule, "linear_scaling": LinearScalingSchedule}

LRSchedule = F1CLRSchedule | LinearScalingSchedule


# ------------------------------------------------------------------------------ spec

def _low_le_high(v: dict, given: Any, path: str, problems: list) -> None:
    if valid(v, "momentum_low", "momentum_high") and v["momentum_low"] > v["momentum_high"]:
        problems.append(f"{join(path, 'momentum_low')}: must be <= momentum_high "
                        f"({v['momentum_high']}), got {v['momentum_low']!r}")


def _warmup(doc: str) -> Field:
    return Field("warmup_steps", "int", REQUIRED, minimum=0, doc=doc)


#: The ``lr:`` section (``loader.lr_scheduler(optimizer)`` builds a torch scheduler from it).
LR = Typed("lr", (
    ("f1_clr", Section("f1_clr", (
        Field("max_lr", "float", REQUIRED, minimum=0.0, min_exclusive=True,
              doc="peak learning rate, reached at the end of the warm-up"),
        _warmup("fixed cosine warm-up from 0 to max_lr, in steps (< total_steps)"),
        _HIGH, _LOW), checks=(_low_le_high,), required_message="required for type f1_clr")),
    ("linear_scaling", Section("linear_scaling", (
        Field("base_lr", "float", REQUIRED, minimum=0.0, min_exclusive=True,
              doc="learning rate that works at base_batch_size"),
        _BASE_BATCH,
        Field("batch_size", "int", REQUIRED, minimum=1,
              doc="your global batch size: target lr = base_lr x batch_size / base_batch_size"),
        _warmup("linear per-step ramp to the target lr, in steps"),
        Field("warmup_start_lr", "float", None, minimum=0.0, nullable=True,
              default_doc="`min(base_lr, target)`", doc="learning rate the ramp starts from"),
        _DECAY,
        Field("momentum", "float", None, minimum=0.0, maximum=1.0, max_exclusive=True,
              nullable=True, doc="constant momentum / beta1 to set; null leaves the optimizer's"),
    ), required_message="required for type linear_scaling")),
), doc="learning-rate (and momentum) schedule",
    type_doc="`f1_clr`: the thesis' fixed 1-cycle (Eq. 3.8); `linear_scaling`: Goyal et al.'s "
             "linear scaling rule with gradual warm-up")


def _needs_total(v: Any) -> bool:
    return v["type"] == "f1_clr" or v["decay"] == "cosine"


def lr_problems(v: dict, path: str, total_steps: int | None, problems: list[str]) -> None:
    """Relations of a read ``lr`` section with ``total_steps``."""
    if total_steps is None:
        if _needs_total(v):
            problems.append(f"{join(path, 'type')}: {v['type']} follows the fraction of "
                            f"training and needs total_steps (give the loader a length or set "
                            f"total_steps)")
    elif _needs_total(v) and v["warmup_steps"] >= total_steps:
        problems.append(f"{join(path, 'warmup_steps')}: must be < total_steps ({total_steps}), "
                        f"got {v['warmup_steps']!r}")


def make_lr(v: Any, total_steps: int | None = None) -> LRSchedule:
    """The schedule of a read ``lr`` section (its problems already reported)."""
    if v["type"] == "f1_clr":
        return F1CLRSchedule(v["max_lr"], v["warmup_steps"], v["momentum_high"],
                             v["momentum_low"], total_steps)
    return LinearScalingSchedule(v["base_lr"], v["batch_size"], v["warmup_steps"],
                                 v["base_batch_size"], v["warmup_start_lr"], v["decay"],
                                 v["momentum"], total_steps)


def lr_from_config(value: Any, path: str = "lr",
                   total_steps: int | None = None) -> LRSchedule:
    """Build a learning-rate schedule from its YAML mapping (``type`` picks the class); every
    problem is reported at once."""
    problems: list[str] = []
    v = LR.read(value, path, problems)
    if not problems:
        lr_problems(v, path, total_steps, problems)
    raise_problems(problems)
    return make_lr(v, total_steps)
