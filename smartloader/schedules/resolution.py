"""Training-resolution schedules (thesis Ch. 3.3.2, ``ALGORITHMS.md`` §3).

Pure functions of ``(step, total_steps)`` plus one small frozen class per schedule, built
from the ``resolution:`` YAML section. Resolutions are square side lengths in pixels.

Quantisation ("snapping"): a ramp from ``min`` to ``max`` is split into **equal-length
stages**, one per value of :func:`resolution_grid` -- ``min``, every multiple of
``increment`` strictly between, then ``max``. 96 -> 224 in 32-px increments gives the five
stages 96, 128, 160, 192, 224. Why stages rather than rounding the linear value: every
resolution gets the same share of the ramp, both end points are actually trained on
(floor-rounding never reaches ``max``, nearest-rounding gives the end points half a stage),
and the result never leaves ``[min, max]``. Why 32 px: most CNNs downsample 5 times, so a
multiple of 32 keeps feature maps integral and limits the number of distinct input shapes
(each new shape costs a cudnn/compile warm-up).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from smartloader.common.readers import (as_float, as_int, as_str, check_keys, fail, join,
                                        require_mapping)
from smartloader.common.progress import Progress
from smartloader.schedules._axis import ramp, resolve

#: Default snapping increment in pixels (5 stride-2 stages in a ResNet: 2**5 = 32).
DEFAULT_INCREMENT = 32


def resolution_grid(minimum: int, maximum: int, increment: int = DEFAULT_INCREMENT) -> list[int]:
    """Allowed resolutions between ``minimum`` and ``maximum`` (both included), ascending.

    ``resolution_grid(96, 224) == [96, 128, 160, 192, 224]``;
    ``resolution_grid(100, 224) == [100, 128, 160, 192, 224]``.
    """
    if minimum < 1 or maximum < minimum:
        raise ValueError(f"need 1 <= minimum <= maximum, got {minimum}, {maximum}")
    if increment < 1:
        raise ValueError(f"increment must be >= 1, got {increment}")
    first = (minimum // increment + 1) * increment  # first multiple strictly above min
    inner = list(range(first, maximum, increment))
    return [minimum] + inner + ([maximum] if maximum > minimum else [])


def staged(position: float, grid: list[int]) -> int:
    """Value of ``grid`` at ramp ``position`` in [0, 1], in equal-length stages."""
    n = len(grid)
    # The 1e-9 keeps e.g. position 0.6 with 5 stages in stage 3, not 2.999... -> 2.
    index = int(position * n + 1e-9)
    return grid[min(max(index, 0), n - 1)]


def progressive_resolution(step: int, total_steps: int, minimum: int, maximum: int,
                           start: float = 0.0, end: float = 1.0,
                           increment: int = DEFAULT_INCREMENT) -> int:
    """Progressive learning (Tan & Le 2021): ``minimum`` before fraction ``start``, rising in
    equal stages to ``maximum`` at fraction ``end``, ``maximum`` after.

    >>> [progressive_resolution(s, 100, 96, 224) for s in (0, 19, 20, 80, 99, 100)]
    [96, 96, 128, 224, 224, 224]
    """
    grid = resolution_grid(minimum, maximum, increment)
    return staged(ramp(step, total_steps, start, end), grid)


def super_progressive_resolution(step: int, total_steps: int, minimum: int, maximum: int,
                                 warmup_steps: int,
                                 increment: int = DEFAULT_INCREMENT) -> int:
    """Super progressive learning (thesis §3.3.2): ``maximum`` for the first
    ``warmup_steps`` steps (the learning-rate warm-up, where low resolution destabilises
    training), then drop to ``minimum`` and rise in equal stages to ``maximum`` at
    ``total_steps``.

    >>> [super_progressive_resolution(s, 110, 96, 224, 10) for s in (0, 9, 10, 29, 30, 109)]
    [224, 224, 96, 96, 128, 224]
    """
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"need 0 <= warmup_steps < total_steps, got {warmup_steps}, "
                         f"{total_steps}")
    if step < warmup_steps:
        return maximum
    grid = resolution_grid(minimum, maximum, increment)
    return staged(ramp(step, total_steps, warmup_steps / total_steps, 1.0), grid)


def distinct_resolutions(schedule: Callable[[int], int], total_steps: int) -> list[int]:
    """Sorted distinct values ``schedule(step)`` takes over ``range(total_steps)``.

    Its length is the number of distinct input shapes a run sees (each costs a warm-up
    of cudnn autotuning / ``torch.compile``).
    """
    return sorted({schedule(step) for step in range(total_steps)})


def score_resolution(resolution: int, score_scale: float) -> int:
    """Scoring resolution ``max(1, round(score_scale * resolution))``.

    The default ``score_scale`` 0.43 maps 224 -> 96, the paper's scoring resolution.
    """
    return max(1, round(score_scale * resolution))


# --------------------------------------------------------------------------- classes

@dataclass(frozen=True)
class ConstantResolution:
    """Train at ``value`` px throughout (no ``total_steps`` needed)."""

    value: int

    needs_total_steps = False

    def __post_init__(self) -> None:
        if self.value < 1:
            raise ValueError(f"value must be >= 1, got {self.value}")

    @property
    def maximum(self) -> int:
        return self.value

    def __call__(self, progress_or_step: Progress | int) -> int:
        resolve(progress_or_step, None, needs_total=False)
        return self.value

    @classmethod
    def from_config(cls, mapping: Mapping[str, Any], path: str = "resolution",
                    total_steps: int | None = None) -> "ConstantResolution":
        check_keys(mapping, ("type", "value"), path)
        if "value" not in mapping:
            raise fail(join(path, "value"), "required for type constant")
        return cls(as_int(mapping["value"], join(path, "value"), minimum=1))


def _min_max_increment(mapping: Mapping[str, Any], path: str) -> tuple[int, int, int]:
    for key in ("min", "max"):
        if key not in mapping:
            raise fail(join(path, key), f"required for type {mapping['type']}")
    lo = as_int(mapping["min"], join(path, "min"), minimum=1)
    hi = as_int(mapping["max"], join(path, "max"), minimum=1)
    if lo > hi:
        raise fail(join(path, "min"), f"must be <= max ({hi})", lo)
    inc = as_int(mapping.get("increment", DEFAULT_INCREMENT), join(path, "increment"),
                 minimum=1)
    return lo, hi, inc


@dataclass(frozen=True)
class ProgressiveResolution:
    """:func:`progressive_resolution` with its parameters; ``start``/``end`` default to
    0.0/1.0 (ramp over the whole run, as in EfficientNetV2's progressive learning)."""

    minimum: int
    maximum: int
    start: float = 0.0
    end: float = 1.0
    increment: int = DEFAULT_INCREMENT
    total_steps: int | None = None

    needs_total_steps = True

    def __post_init__(self) -> None:
        resolution_grid(self.minimum, self.maximum, self.increment)  # validates
        if not 0.0 <= self.start < self.end <= 1.0:
            raise ValueError(f"need 0 <= start < end <= 1, got {self.start}, {self.end}")

    def __call__(self, progress_or_step: Progress | int) -> int:
        step, total = resolve(progress_or_step, self.total_steps)
        return progressive_resolution(step, total, self.minimum, self.maximum,
                                      self.start, self.end, self.increment)

    @classmethod
    def from_config(cls, mapping: Mapping[str, Any], path: str = "resolution",
                    total_steps: int | None = None) -> "ProgressiveResolution":
        check_keys(mapping, ("type", "min", "max", "start", "end", "increment"), path)
        lo, hi, inc = _min_max_increment(mapping, path)
        start = as_float(mapping.get("start", 0.0), join(path, "start"),
                         minimum=0.0, maximum=1.0)
        end = as_float(mapping.get("end", 1.0), join(path, "end"), minimum=0.0, maximum=1.0)
        if start >= end:
            raise fail(join(path, "start"), f"must be < end ({end})", start)
        return cls(lo, hi, start, end, inc, total_steps)


@dataclass(frozen=True)
class SuperProgressiveResolution:
    """:func:`super_progressive_resolution`; the warm-up is ``warmup_steps`` or
    ``warmup_fraction`` of ``total_steps`` (exactly one). Set it equal to the learning-rate
    warm-up: the thesis keeps full resolution exactly while the learning rate is small."""

    minimum: int
    maximum: int
    warmup_steps: int | None = None
    warmup_fraction: float | None = None
    increment: int = DEFAULT_INCREMENT
    total_steps: int | None = None

    needs_total_steps = True

    def __post_init__(self) -> None:
        resolution_grid(self.minimum, self.maximum, self.increment)
        if (self.warmup_steps is None) == (self.warmup_fraction is None):
            raise ValueError("give exactly one of warmup_steps, warmup_fraction")
        if self.warmup_fraction is not None and not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")

    def warmup_for(self, total_steps: int) -> int:
        """Warm-up length in steps for a run of ``total_steps``."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return round(self.warmup_fraction * total_steps)

    def __call__(self, progress_or_step: Progress | int) -> int:
        step, total = resolve(progress_or_step, self.total_steps)
        return super_progressive_resolution(step, total, self.minimum, self.maximum,
                                            self.warmup_for(total), self.increment)

    @classmethod
    def from_config(cls, mapping: Mapping[str, Any], path: str = "resolution",
                    total_steps: int | None = None,
                    default_warmup_steps: int | None = None) -> "SuperProgressiveResolution":
        """``default_warmup_steps`` (the learning-rate warm-up) is used when neither warm-up
        key is given."""
        check_keys(mapping, ("type", "min", "max", "warmup_steps", "warmup_fraction",
                             "increment"), path)
        lo, hi, inc = _min_max_increment(mapping, path)
        if "warmup_steps" in mapping and "warmup_fraction" in mapping:
            raise fail(join(path, "warmup_fraction"), "give warmup_steps or "
                       "warmup_fraction, not both")
        steps = frac = None
        if "warmup_steps" in mapping:
            steps = as_int(mapping["warmup_steps"], join(path, "warmup_steps"), minimum=0)
            if total_steps is not None and steps >= total_steps:
                raise fail(join(path, "warmup_steps"),
                           f"must be < total_steps ({total_steps})", steps)
        elif "warmup_fraction" in mapping:
            frac = as_float(mapping["warmup_fraction"], join(path, "warmup_fraction"),
                            minimum=0.0, maximum=1.0, max_exclusive=True)
        elif default_warmup_steps is not None:
            steps = default_warmup_steps
        else:
            raise fail(join(path, "warmup_steps"), "required (or warmup_fraction) for "
                       "type super_progressive when lr has no warmup_steps")
        return cls(lo, hi, steps, frac, inc, total_steps)


RESOLUTION_TYPES = {
    "constant": ConstantResolution,
    "progressive": ProgressiveResolution,
    "super_progressive": SuperProgressiveResolution,
}

ResolutionSchedule = ConstantResolution | ProgressiveResolution | SuperProgressiveResolution


def resolution_from_config(value: Any, path: str = "resolution",
                           total_steps: int | None = None,
                           default_warmup_steps: int | None = None) -> ResolutionSchedule:
    """Build a resolution schedule from its YAML mapping (``type`` picks the class).

    A bare integer is accepted as shorthand for ``{type: constant, value: N}``.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return ConstantResolution(as_int(value, path, minimum=1))
    mapping = require_mapping(value, path)
    if "type" not in mapping:
        raise fail(join(path, "type"), f"required (one of {', '.join(RESOLUTION_TYPES)})")
    kind = as_str(mapping["type"], join(path, "type"), choices=RESOLUTION_TYPES)
    if kind == "super_progressive":
        return SuperProgressiveResolution.from_config(mapping, path, total_steps,
                                                      default_warmup_steps)
    return RESOLUTION_TYPES[kind].from_config(mapping, path, total_steps)
