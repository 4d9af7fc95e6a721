"""How SmartLoader applies the configured schedules to the batches it yields.

The schedules themselves (:mod:`smartloader.schedules`) are pure functions of the step;
this module is the small amount of state that connects them to a running loader:

* **resolution** -- every yielded batch's input field is resized (antialiased bilinear,
  :func:`~smartloader.augment.resize_batch`, on the batch's device, dtype kept) to the
  scheduled resolution of its step. Nothing else in the batch changes.
* **score_scale** -- the scoring pass of a selection step runs at
  ``round(score_scale * r_t)``, set on the :class:`~smartloader.scoring.ModelHandle`
  before the pool is scored.
* **augment** -- :attr:`ScheduleApplier.magnitude` is a
  :class:`~smartloader.common.shared_value.SharedValue` set at the start of every step to the
  magnitude of the step about to be produced, so DataLoader workers read it without
  restarting. Workers build batches ahead (``prefetch_factor * num_workers``), so a batch
  carries the value that was current when a worker built it: the change lands a few
  batches late, which is negligible for a slowly moving schedule.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from smartloader.augment import resize_batch
from smartloader.schedules import Schedules
from smartloader.schedules.magnitude import STANDARD_MAGNITUDE
from smartloader.schedules.resolution import score_resolution as _scaled
from smartloader.common.shared_value import SharedValue

from smartloader.common.batch import replace_field

__all__ = ["ScheduleApplier", "replace_field"]

#: Magnitude ``loader.magnitude`` holds when no ``augment`` schedule is configured
#: (the standard strength of the augment ops).
DEFAULT_MAGNITUDE = STANDARD_MAGNITUDE


class ScheduleApplier:
    """Applies ``config.schedules`` step by step; holds no state a resume would need
    (everything is a function of the step), only the shared magnitude cell."""

    def __init__(self, schedules: Schedules, total_steps: int | None,
                 fixed_score_resolution: int | None, handle: Any) -> None:
        self.schedules = schedules
        self.total_steps = total_steps
        self.fixed_score_resolution = fixed_score_resolution
        self.handle = handle  # the loader's ModelHandle: its scoring resolution is set here
        m0 = self._magnitude_at(0)
        self.magnitude = SharedValue(DEFAULT_MAGNITUDE if m0 is None else m0)
        #: nothing changes from step to step (no schedule): begin_step and finish are no-ops
        self.static = (schedules.resolution is None and schedules.augment is None
                       and schedules.score_scale is None)
        self._begun = False
        self.begin_step(0)

    def resolution_at(self, step: int) -> int | None:
        """Training resolution of ``step``; ``None`` without a resolution schedule."""
        r = self.schedules.resolution
        return None if r is None else int(r(step))

    def score_resolution_at(self, step: int) -> int | None:
        """Scoring resolution of ``step``: ``round(score_scale * r_t)`` with a score_scale
        (without a resolution schedule ``r_t`` is the loaded size, scaled per pool by
        :attr:`ModelHandle.scale`), else the fixed ``score_resolution`` (``None`` = as loaded)."""
        scale = self.schedules.score_scale
        r = self.resolution_at(step)
        if scale is not None and r is not None:
            return _scaled(r, scale)
        return self.fixed_score_resolution

    def _magnitude_at(self, step: int) -> float | None:
        m = self.schedules.augment
        return None if m is None else float(m(step))

    def begin_step(self, step: int) -> None:
        """Called before the batch of ``step`` is drawn or scored."""
        if self.static and self._begun:
            return
        self._begun = True
        m = self._magnitude_at(step)
        if m is not None:
            self.magnitude.set(m)
        if self.schedules.score_scale is not None and self.schedules.resolution is None:
            # no training schedule: scale the loaded size, pool by pool (ModelHandle.scale)
            self.handle.resolution = None
            self.handle.scale = self.schedules.score_scale
        else:
            self.handle.resolution = self.score_resolution_at(step)
            # auto under a resolution schedule: half of this stage's training size
            self.handle.auto_side = (self.resolution_at(step)
                                     if self.handle.resolution == "auto" else None)

    def finish(self, batch: Any, input_key: Sequence, step: int
               ) -> tuple[Any, int | None, float | None]:
        """The batch of ``step`` with its input resized, its resolution and magnitude."""
        if self.static:
            return batch, None, None
        r = self.resolution_at(step)
        if r is not None:
            from smartloader.common.batch import get_field
            x = get_field(batch, input_key, "input_key")
            if not isinstance(x, torch.Tensor) or x.dim() != 4:
                shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise TypeError(f"resolution: the schedule resizes the input, which must be "
                                f"an NCHW tensor batch; got {shape}")
            y = resize_batch(x, r)
            if y is not x:
                batch = replace_field(batch, input_key, y)
        return batch, r, self._magnitude_at(step)

    def lr_scheduler(self, optimizer: torch.optim.Optimizer):
        """The configured ``lr`` schedule as a ``torch.optim.lr_scheduler.LRScheduler``."""
        if self.schedules.lr is None:
            raise ValueError("lr_scheduler(): the config has no lr section")
        return self.schedules.lr.scheduler(optimizer, self.total_steps)
