"""Resolution, augmentation-magnitude and learning-rate schedules.

Every schedule is a pure function of training progress (``step`` / ``total_steps``) with a
small frozen class around it, built from the top-level YAML keys ``resolution``,
``score_scale``, ``augment`` and ``lr`` by :func:`parse_schedules`. See ``docs/schedules.md``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from smartloader.common.readers import fail, require_mapping
from smartloader.common.progress import Progress
from smartloader.common.spec import INVALID, Field, Section, raise_problems, valid
from smartloader.schedules.lr import (LR, F1CLRScheduler, F1CLRSchedule, LinearScalingScheduler,
                                      LinearScalingSchedule, LRSchedule, f1_clr, linear_scaling_lr,
                                      lr_from_config, lr_problems, make_lr)
from smartloader.schedules.magnitude import (AUGMENT, ConstantMagnitude, LinearMagnitude,
                                             MagnitudeSchedule, PiecewiseMagnitude,
                                             linear_magnitude, magnitude_from_config,
                                             magnitude_problems, make_magnitude,
                                             piecewise_magnitude)
from smartloader.schedules.resolution import (RESOLUTION, ConstantResolution,
                                              ProgressiveResolution, ResolutionSchedule,
                                              SuperProgressiveResolution, distinct_resolutions,
                                              make_resolution, progressive_resolution,
                                              resolution_from_config, resolution_grid,
                                              resolution_problems, score_resolution,
                                              super_progressive_resolution)

#: The top-level config keys this package reads, in the order the docs list them.
SCHEDULE_FIELDS = (
    Field("resolution", "section", None, nullable=True, section=RESOLUTION,
          type_doc="mapping or int", doc=RESOLUTION.doc + "; an integer N is a constant N"),
    Field("score_scale", "float", None, minimum=0.0, maximum=1.0, min_exclusive=True,
          nullable=True, doc="scoring resolution = round(score_scale x training resolution) "
                             "(0.43 maps 224 to 96); excludes score_resolution"),
    Field("augment", "section", None, nullable=True, section=AUGMENT, doc=AUGMENT.doc),
    Field("lr", "section", None, nullable=True, section=LR, doc=LR.doc),
)
SCHEDULE_KEYS = tuple(f.name for f in SCHEDULE_FIELDS)
_SECTION = Section("schedules", SCHEDULE_FIELDS)


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


def _lr_warmup(values: Mapping[str, Any]) -> Any:
    lr = values.get("lr")
    if lr is INVALID:
        return INVALID
    return None if lr is None else lr["warmup_steps"]


def schedule_problems(values: Mapping[str, Any], total_steps: int | None,
                      problems: list[str]) -> None:
    """Relations of the read schedule keys with ``total_steps`` and with each other (a
    ``super_progressive`` resolution without a warm-up takes ``lr.warmup_steps``); keys
    already reported INVALID are skipped."""
    if valid(values, "lr") and values.get("lr") is not None:
        lr_problems(values["lr"], "lr", total_steps, problems)
    if valid(values, "augment") and values.get("augment") is not None:
        magnitude_problems(values["augment"], "augment", total_steps, problems)
    if valid(values, "resolution") and values.get("resolution") is not None:
        resolution_problems(values["resolution"], "resolution", total_steps,
                            _lr_warmup(values), problems)


def make_schedules(values: Mapping[str, Any], total_steps: int | None) -> Schedules:
    """:class:`Schedules` from read schedule keys whose problems are all reported."""
    get = values.get
    lr = None if get("lr") is None else make_lr(values["lr"], total_steps)
    return Schedules(
        None if get("resolution") is None else make_resolution(
            values["resolution"], total_steps, _lr_warmup(values)),
        None if get("augment") is None else make_magnitude(values["augment"], total_steps),
        lr, get("score_scale"))


def parse_schedules(mapping: Mapping[str, Any], total_steps: int | None) -> Schedules:
    """Build :class:`Schedules` from the top-level config mapping.

    Reads only :data:`SCHEDULE_KEYS` and ignores every other key. Raises
    :class:`~smartloader.errors.ConfigError` listing every invalid entry (each message
    starting with its key path), including a schedule that is a function of the fraction of
    training while ``total_steps`` is ``None``. A ``super_progressive`` resolution without a
    warm-up key inherits ``lr.warmup_steps``, keeping full resolution exactly during the lr
    warm-up.
    """
    mapping = require_mapping(mapping, "config")
    if total_steps is not None and (isinstance(total_steps, bool)
                                    or not isinstance(total_steps, int) or total_steps < 1):
        raise fail("total_steps", "must be a positive integer", total_steps)
    problems: list[str] = []
    values = _SECTION.read({k: mapping[k] for k in SCHEDULE_KEYS if k in mapping}, "",
                           problems)
    schedule_problems(values, total_steps, problems)
    raise_problems(problems)
    return make_schedules(values, total_steps)


__all__ = [
    "SCHEDULE_KEYS", "SCHEDULE_FIELDS", "Schedules", "parse_schedules", "schedule_problems",
    "make_schedules", "RESOLUTION", "AUGMENT", "LR",
    "ConstantResolution", "ProgressiveResolution", "SuperProgressiveResolution",
    "resolution_grid", "progressive_resolution", "super_progressive_resolution",
    "distinct_resolutions", "score_resolution", "resolution_from_config",
    "ConstantMagnitude", "LinearMagnitude", "PiecewiseMagnitude", "linear_magnitude",
    "piecewise_magnitude", "magnitude_from_config",
    "F1CLRSchedule", "LinearScalingSchedule", "F1CLRScheduler", "LinearScalingScheduler",
    "f1_clr", "linear_scaling_lr", "lr_from_config",
    "ResolutionSchedule", "MagnitudeSchedule", "LRSchedule",
]
