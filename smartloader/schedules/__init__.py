"""Resolution, augmentation-magnitude and learning-rate schedules.

Every schedule is a pure function of training progress (``step`` / ``total_steps``) with a
small frozen class around it, built from the top-level YAML keys ``resolution``,
``score_scale``, ``augment`` and ``lr`` by :func:`parse_schedules`. See ``docs/schedules.md``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from smartloader.common.readers import as_float, fail, join, require_mapping
from smartloader.common.progress import Progress
from smartloader.schedules.lr import (F1CLRScheduler, F1CLRSchedule, LinearScalingScheduler,
                                      LinearScalingSchedule, LRSchedule, f1_clr, linear_scaling_lr,
                                      lr_from_config)
from smartloader.schedules.magnitude import (ConstantMagnitude, LinearMagnitude, MagnitudeSchedule,
                                             PiecewiseMagnitude, linear_magnitude,
                                             magnitude_from_config, piecewise_magnitude)
from smartloader.schedules.resolution import (ConstantResolution, ProgressiveResolution,
                                              ResolutionSchedule, SuperProgressiveResolution,
                                              distinct_resolutions, progressive_resolution,
                                              resolution_from_config, resolution_grid,
                                              score_resolution, super_progressive_resolution)

_KIND = {ConstantResolution: "constant", ProgressiveResolution: "progressive",
         SuperProgressiveResolution: "super_progressive", ConstantMagnitude: "constant",
         LinearMagnitude: "linear", PiecewiseMagnitude: "piecewise",
         F1CLRSchedule: "f1_clr", LinearScalingSchedule: "linear_scaling"}

#: The top-level config keys this package reads; the core validates all others.
SCHEDULE_KEYS = ("resolution", "score_scale", "augment", "lr")


@dataclass(frozen=True)
class Schedules:
    """The parsed schedule section of a smartloader config; absent keys are ``None``.

    ``score_scale`` (0 < s <= 1): the scoring resolution is
    ``round(score_scale * current resolution)`` (0.43 maps 224 -> 96, the paper's default).
    """

    resolution: ResolutionSchedule | None = None
    augment: MagnitudeSchedule | None = None
    lr: LRSchedule | None = None
    score_scale: float | None = None

    def score_resolution(self, progress_or_step: Progress | int) -> int | None:
        """Scoring resolution at this step, or ``None`` without resolution/score_scale."""
        if self.resolution is None or self.score_scale is None:
            return None
        return score_resolution(self.resolution(progress_or_step), self.score_scale)


def parse_schedules(mapping: Mapping[str, Any], total_steps: int | None) -> Schedules:
    """Build :class:`Schedules` from the top-level config mapping.

    Reads only :data:`SCHEDULE_KEYS` and ignores every other key. Raises
    :class:`~smartloader.errors.ConfigError` (message starting with the key path) on any
    invalid entry, and when a schedule is a function of the fraction of training but
    ``total_steps`` is ``None``. A ``super_progressive`` resolution without a warm-up key
    inherits ``lr.warmup_steps``, keeping full resolution exactly during the lr warm-up.
    """
    mapping = require_mapping(mapping, "config")
    if total_steps is not None and (isinstance(total_steps, bool)
                                    or not isinstance(total_steps, int) or total_steps < 1):
        raise fail("total_steps", "must be a positive integer", total_steps)
    lr = augment = resolution = score_scale = None
    if mapping.get("lr") is not None:
        lr = _need_total(lr_from_config(mapping["lr"], "lr", total_steps), "lr", total_steps)
    if mapping.get("augment") is not None:
        augment = _need_total(magnitude_from_config(mapping["augment"], "augment",
                                                    total_steps), "augment", total_steps)
    if mapping.get("resolution") is not None:
        resolution = _need_total(
            resolution_from_config(mapping["resolution"], "resolution", total_steps,
                                   getattr(lr, "warmup_steps", None)),
            "resolution", total_steps)
    if mapping.get("score_scale") is not None:
        score_scale = as_float(mapping["score_scale"], "score_scale", minimum=0.0,
                               maximum=1.0, min_exclusive=True)
    return Schedules(resolution, augment, lr, score_scale)


def _need_total(schedule: Any, path: str, total_steps: int | None) -> Any:
    if total_steps is None and schedule.needs_total_steps:
        raise fail(join(path, "type"), f"{_KIND[type(schedule)]} follows the fraction of training and "
                   "needs total_steps (give the loader a length or set total_steps)")
    return schedule


__all__ = [
    "SCHEDULE_KEYS", "Schedules", "parse_schedules",
    "ConstantResolution", "ProgressiveResolution", "SuperProgressiveResolution",
    "resolution_grid", "progressive_resolution", "super_progressive_resolution",
    "distinct_resolutions", "score_resolution", "resolution_from_config",
    "ConstantMagnitude", "LinearMagnitude", "PiecewiseMagnitude", "linear_magnitude",
    "piecewise_magnitude", "magnitude_from_config",
    "F1CLRSchedule", "LinearScalingSchedule", "F1CLRScheduler", "LinearScalingScheduler",
    "f1_clr", "linear_scaling_lr", "lr_from_config",
    "ResolutionSchedule", "MagnitudeSchedule", "LRSchedule",
]
